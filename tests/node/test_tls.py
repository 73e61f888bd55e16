"""Mutual TLS pinned to the manifest: the client-certificate bundle and peer fingerprints."""

from __future__ import annotations

import dataclasses
import hashlib
import ssl
from collections.abc import Sequence

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from federation.manifest import Manifest, build_manifest
from federation.member import Member
from node.service.tls import (
    PinnedServerCredentials,
    members_bundle,
    peer_fingerprint,
    server_name_option,
)
from tests.federation.conftest import NOW, YEAR, make_city, tls_certificate

CODES = ("370200", "370600", "370700")


def manifest_of(members: Sequence[Member], *, version: int = 1) -> Manifest:
    return build_manifest(
        federation_id="jiaodong",
        federation_name="胶东经济圈",
        members=members,
        threshold=1,
        expires=NOW + YEAR,
        version=version,
    )


@pytest.fixture(scope="module")
def members() -> list[Member]:
    return [make_city(code).member for code in CODES]


def fingerprints_in(bundle: bytes) -> list[str]:
    return sorted(
        hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
        for cert in x509.load_pem_x509_certificates(bundle)
    )


def openssl_count(bundle: bytes) -> int:
    """How many certificates OpenSSL, whose PEM reader gRPC core shares, finds in ``bundle``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=bundle.decode("ascii"))
    return int(context.cert_store_stats()["x509"])


# --- the bundle ------------------------------------------------------------------------


def test_members_bundle_holds_every_members_certificate(members: list[Member]) -> None:
    bundle = members_bundle(manifest_of(members))
    assert fingerprints_in(bundle) == sorted(m.tls_fingerprint for m in members)
    assert openssl_count(bundle) == len(members)


def test_members_bundle_holds_nothing_else(members: list[Member]) -> None:
    bundle = members_bundle(manifest_of(members[:2]))
    assert fingerprints_in(bundle) == sorted(m.tls_fingerprint for m in members[:2])


def test_members_bundle_survives_pem_without_final_newline(members: list[Member]) -> None:
    # A member's PEM is accepted without its final newline; glued to the next certificate
    # ("-----END CERTIFICATE----------BEGIN CERTIFICATE-----") OpenSSL no longer reads it.
    trimmed = dataclasses.replace(members[0], tls_certificate=members[0].tls_certificate.rstrip())
    bundle = members_bundle(manifest_of([trimmed, *members[1:]]))
    assert openssl_count(bundle) == len(members)


# --- peer fingerprints -----------------------------------------------------------------


def test_peer_fingerprint_maps_to_the_manifest_member(members: list[Member]) -> None:
    manifest = manifest_of(members)
    pem = members[1].tls_certificate.encode("ascii")
    fingerprint = peer_fingerprint({"x509_pem_cert": [pem]})
    assert fingerprint == members[1].tls_fingerprint
    assert manifest.member_by_fingerprint(fingerprint) == members[1]


def test_peer_fingerprint_of_a_stranger_matches_no_member(members: list[Member]) -> None:
    stranger, _key = tls_certificate("999999")
    fingerprint = peer_fingerprint({"x509_pem_cert": [stranger.encode("ascii")]})
    assert fingerprint is not None
    assert manifest_of(members).member_by_fingerprint(fingerprint) is None


@pytest.mark.parametrize(
    "context",
    [
        pytest.param({}, id="no-cert"),
        pytest.param({"x509_pem_cert": []}, id="empty-list"),
        pytest.param({"transport_security_type": [b"ssl"]}, id="other-keys"),
    ],
)
def test_peer_fingerprint_without_certificate_is_none(context: dict[str, list[bytes]]) -> None:
    assert peer_fingerprint(context) is None


def test_server_name_option() -> None:
    assert server_name_option("370200") == (
        "grpc.ssl_target_name_override",
        "370200.node.creditnet",
    )


# --- credentials that follow the manifest ----------------------------------------------


def test_pinned_credentials_fetch_follows_the_manifest(members: list[Member]) -> None:
    cert_pem, key_pem = tls_certificate(CODES[0])
    pinned = PinnedServerCredentials(
        key_pem=key_pem, cert_pem=cert_pem.encode("ascii"), manifest=manifest_of(members[:2])
    )
    first = pinned._fetch()
    assert isinstance(first, grpc.ServerCertificateConfiguration)
    assert pinned._fetch() is None  # nothing changed: gRPC keeps the current configuration

    pinned.follow(manifest_of(members[:2], version=2))  # same members, same bundle
    assert pinned._fetch() is None

    pinned.follow(manifest_of(members, version=3))
    second = pinned._fetch()
    assert isinstance(second, grpc.ServerCertificateConfiguration)
    assert second is not first
    assert pinned._fetch() is None


def test_pinned_credentials_build(members: list[Member]) -> None:
    cert_pem, key_pem = tls_certificate(CODES[0])
    pinned = PinnedServerCredentials(
        key_pem=key_pem, cert_pem=cert_pem.encode("ascii"), manifest=manifest_of(members)
    )
    assert isinstance(pinned.credentials(), grpc.ServerCredentials)
    assert pinned._fetch() is None  # the initial configuration counts as served
