"""Saying Hello to the other members (:mod:`node.peers`): a real peer link over pinned mutual
TLS to a peer served in-process, recording what the peer answered in a real database."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from creditnet.v1 import peer_pb2, peer_pb2_grpc
from federation.clock import FixedClock
from federation.manifest import SignedManifest, build_manifest
from node.background import Background
from node.identity import self_signed_certificate
from node.peers import PeerLinks
from node.storage import open_database
from node.storage.repositories import (
    EventRepository,
    ManifestRepository,
    PeerContact,
    PeerContactRepository,
)
from node.trust import TrustStore
from tests.federation.conftest import NOW, YEAR, TestCity, make_city

QINGDAO, YANTAI = "370200", "370600"


class AnsweringPeer(peer_pb2_grpc.PeerServiceServicer):
    """Yantai's peer API as far as Hello: it answers with the manifest version it is given."""

    def __init__(self, manifest_version: int) -> None:
        self.manifest_version = manifest_version

    async def Hello(  # gRPC method names are CamelCase
        self, request: peer_pb2.HelloRequest, context: Any
    ) -> peer_pb2.HelloResponse:
        return peer_pb2.HelloResponse(
            city_code=YANTAI, federation_id="jiaodong", manifest_version=self.manifest_version
        )


def with_node_certificate(city: TestCity) -> tuple[TestCity, bytes, bytes]:
    """The city with a TLS certificate made as ``credit-node init`` makes it, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = self_signed_certificate(key, city.code, now=NOW)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    member = dataclasses.replace(city.member, tls_certificate=certificate.decode("ascii"))
    return dataclasses.replace(city, member=member), certificate, key_pem


async def hello_from_qingdao(directory: Path, yantai_answers: int) -> PeerContact:
    """Qingdao says Hello to Yantai once; what Qingdao recorded about Yantai."""
    qingdao, qingdao_cert, qingdao_key = with_node_certificate(make_city(QINGDAO))
    yantai, yantai_cert, yantai_key = with_node_certificate(make_city(YANTAI))
    server = grpc.aio.server()
    peer_pb2_grpc.add_PeerServiceServicer_to_server(AnsweringPeer(yantai_answers), server)
    port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials(
            [(yantai_key, yantai_cert)],
            root_certificates=qingdao_cert,
            require_client_auth=True,
        ),
    )
    await server.start()
    yantai_member = dataclasses.replace(yantai.member, endpoint=f"127.0.0.1:{port}")
    manifest = build_manifest(
        federation_id="jiaodong",
        federation_name="胶东经济圈",
        members=[qingdao.member, yantai_member],
        threshold=1,
        expires=NOW + YEAR,
    )
    clock = FixedClock(NOW)
    db = open_database(f"sqlite:///{directory / 'qingdao.db'}")
    trust = TrustStore(ManifestRepository(db), clock)
    trust.install(SignedManifest(manifest).sign(qingdao.key).to_bytes(), source="test")
    contacts = PeerContactRepository(db)
    links = PeerLinks(
        city_code=QINGDAO,
        tls_key_pem=qingdao_key,
        tls_cert_pem=qingdao_cert,
        trust=trust,
        contacts=contacts,
        events=EventRepository(db),
        clock=clock,
        timeout_s=10.0,
        max_message_bytes=4 * 1024 * 1024,
        background=Background(),
    )
    try:
        links.follow(manifest)
        await links.heartbeat()
        return contacts.all()[YANTAI]
    finally:
        await links.close()
        await server.stop(None)
        db.close()


def test_the_manifest_version_a_peer_answers_is_recorded(tmp_path: Path) -> None:
    contact = asyncio.run(hello_from_qingdao(tmp_path, 1))
    assert (contact.manifest_version, contact.last_error) == (1, None)


@pytest.mark.parametrize("version", [2**63, 2**64 - 1])
def test_a_manifest_version_no_database_holds_is_a_failed_contact(
    tmp_path: Path, version: int
) -> None:
    contact = asyncio.run(hello_from_qingdao(tmp_path, version))
    assert contact.last_success is None
    assert contact.manifest_version is None
    assert contact.last_error == (
        f"answered with manifest_version {version} is out of range: "
        f"a manifest version is 0 to {2**63 - 1}"
    )
