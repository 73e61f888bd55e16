"""A node process facing a broken set-up or a lying peer: clear errors, nothing adopted."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from creditnet.v1 import manifest_pb2, peer_pb2, peer_pb2_grpc
from federation.clock import SystemClock
from federation.manifest import SignedManifest, next_version
from node.demo import DemoNode, all_reachable, create_nodes, sign, start, stop
from node.keystore import read_secret
from node.service.tls import members_bundle
from node.storage.database import open_database
from node.storage.matching import MatchAuditRepository
from node.storage.repositories import EventRepository
from tests.integration.conftest import Federation, form_federation, wait_for

pytestmark = pytest.mark.integration


def serve(home: Path, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli.main", "serve", "--dir", str(home)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def lone_node(tmp_path: Path) -> DemoNode:
    """One member of a one-city federation, installed but not started."""
    return form_federation(tmp_path, ["370200"]).nodes[0]


def test_sigterm_and_sigint_stop_the_node_cleanly(lone_node: DemoNode) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        start(lone_node)
        wait_for(lambda: all_reachable([lone_node], 1), timeout_s=20)
        assert lone_node.process is not None
        lone_node.process.send_signal(signum)
        assert lone_node.process.wait(timeout=15) == 0
    log = (lone_node.config.home / "node.log").read_text()
    assert log.count('"msg": "node stopped"') == 2
    assert "Traceback" not in log


def test_the_node_logs_its_audit_head_at_start_and_as_it_stops(lone_node: DemoNode) -> None:
    database = open_database(lone_node.config.database_url)
    audit = MatchAuditRepository(database)
    for peer in ("370600", "371000"):
        audit.record("received", peer, os.urandom(16), "membership", 3, 3, None, "answered")
    start(lone_node)
    wait_for(lambda: all_reachable([lone_node], 1), timeout_s=20)
    audit.record("sent", "370600", os.urandom(16), "count", 5, 5, 1, "answered")
    rows, head = audit.head()
    database.close()
    assert lone_node.process is not None
    lone_node.process.send_signal(signal.SIGTERM)
    assert lone_node.process.wait(timeout=15) == 0
    lines = (lone_node.config.home / "node.log").read_text().splitlines()
    logged = [json.loads(line) for line in lines if '"msg": "audit head"' in line]
    assert [(e["rows"], len(e["head"])) for e in logged] == [(2, 64), (3, 64)]
    assert logged[-1]["head"] == head and rows == 3
    # The operator checks a logged head against the chain as it stands.
    assert audit_of(lone_node).verify(recorded_head=logged[0]["head"]).head_found is True


def audit_of(node: DemoNode) -> MatchAuditRepository:
    return MatchAuditRepository(open_database(node.config.database_url))


def test_a_port_in_use_is_a_clear_error(lone_node: DemoNode) -> None:
    host, port = lone_node.member.endpoint.rsplit(":", 1)
    with socket.socket() as holder:
        holder.bind((host, int(port)))
        holder.listen()
        result = serve(lone_node.config.home)
    assert result.returncode == 1
    assert f"cannot listen for the peer API on {lone_node.member.endpoint}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("key", ["signing.pem", "tls.key", "paillier.json", "client-token"])
def test_a_world_readable_key_stops_the_node(lone_node: DemoNode, key: str) -> None:
    path = lone_node.config.home / "keys" / key
    path.chmod(0o644)
    result = serve(lone_node.config.home)
    assert result.returncode == 1
    assert str(path) in result.stderr and "chmod 600" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    result = serve(tmp_path / "nowhere")
    assert result.returncode == 1
    assert "node.toml" in result.stderr and "credit-node init" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broken_config_is_a_clear_error(lone_node: DemoNode) -> None:
    config = lone_node.config.home / "node.toml"
    config.write_text(config.read_text() + "\n[peer\nbroken = \n")
    result = serve(lone_node.config.home)
    assert result.returncode == 1
    assert "node.toml" in result.stderr and "line" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_node_without_a_manifest_refuses_to_start(tmp_path: Path) -> None:
    (node,) = create_nodes(tmp_path, ["370600"], paillier_bits=1024)
    result = serve(node.config.home)
    assert result.returncode == 1
    assert "no federation manifest is installed" in result.stderr
    assert "credit-node federation install" in result.stderr


def test_a_restarted_node_keeps_the_manifest_chain(tmp_path: Path) -> None:
    fed = form_federation(tmp_path, ["370200", "370600"])
    update = next_version(fed.manifest.manifest, expires=SystemClock().now() + dt.timedelta(days=9))
    for node in fed.nodes:
        # The manifest needs both signatures: threshold 2 of the trusted version.
        from node.trust import install_manifest

        install_manifest(node.config, sign(update, fed.nodes).to_bytes(), clock=SystemClock())
    for node in fed.nodes:
        start(node)
    try:
        wait_for(lambda: all_reachable(fed.nodes, 2), timeout_s=30)
    finally:
        assert stop(fed.nodes) == [0, 0]
    for node in fed.nodes:
        start(node)
    try:
        wait_for(lambda: all_reachable(fed.nodes, 2), timeout_s=30)
    finally:
        assert stop(fed.nodes) == [0, 0]


# --- a lying peer -------------------------------------------------------------------


class ForgingPeer(peer_pb2_grpc.PeerServiceServicer):
    """Stands in for a member (with its real keys) and offers a forged manifest chain."""

    def __init__(self, city_code: str) -> None:
        self.city_code = city_code
        self.offer: list[bytes] = []
        self.claimed_version = 2

    def Hello(
        self, request: peer_pb2.HelloRequest, context: grpc.ServicerContext
    ) -> peer_pb2.HelloResponse:
        return peer_pb2.HelloResponse(
            city_code=self.city_code,
            federation_id="jiaodong",
            manifest_version=self.claimed_version,
        )

    def GetManifests(
        self, request: peer_pb2.GetManifestsRequest, context: grpc.ServicerContext
    ) -> peer_pb2.GetManifestsResponse:
        return peer_pb2.GetManifestsResponse(
            manifests=[manifest_pb2.SignedManifest(document=d) for d in self.offer]
        )


@pytest.fixture(scope="module")
def forged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, ForgingPeer]]:
    fed = form_federation(tmp_path_factory.mktemp("forged"), ["370200", "370600", "371000"])
    liar = fed.node("371000")
    peer = ForgingPeer("371000")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    peer_pb2_grpc.add_PeerServiceServicer_to_server(peer, server)
    credentials = grpc.ssl_server_credentials(
        [(read_secret(liar.config.tls_key_path), liar.config.tls_cert_path.read_bytes())],
        root_certificates=members_bundle(fed.manifest.manifest),
        require_client_auth=True,
    )
    server.add_secure_port(liar.member.endpoint, credentials)
    server.start()
    honest = fed.nodes[:2]
    for node in honest:
        start(node)
    try:
        yield fed, peer
    finally:
        server.stop(0)
        assert stop(honest) == [0, 0]


def _rejections(node: DemoNode) -> list[str]:
    database = open_database(node.config.database_url)
    try:
        return [
            e.detail for e in EventRepository(database).recent() if e.kind == "manifest.rejected"
        ]
    finally:
        database.close()


def _below_threshold(fed: Federation, update: object) -> bytes:
    return sign(update, [fed.node("371000")]).to_bytes()  # type: ignore[arg-type]


def _tampered(fed: Federation, update: object) -> bytes:
    good = sign(update, fed.nodes[:2]).to_bytes()  # type: ignore[arg-type]
    return good.replace(b'"threshold":2', b'"threshold":1')


def _expired(fed: Federation, update: object) -> bytes:
    stale = next_version(fed.manifest.manifest, expires=SystemClock().now() - dt.timedelta(days=1))
    return sign(stale, fed.nodes[:2]).to_bytes()


def _rollback(fed: Federation, update: object) -> bytes:
    return fed.manifest.to_bytes()


def _garbage(fed: Federation, update: object) -> bytes:
    return os.urandom(300)


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (_below_threshold, "1 valid signature"),
        (_tampered, "valid signature"),
        (_expired, "expired"),
        (_rollback, "version"),
        (_garbage, "not"),
    ],
    ids=["below-threshold", "tampered", "expired", "rollback", "garbage"],
)
def test_a_forged_manifest_from_a_peer_is_refused_and_recorded(
    forged: tuple[Federation, ForgingPeer],
    forge: Callable[[Federation, object], bytes],
    reason: str,
) -> None:
    fed, peer = forged
    update = next_version(fed.manifest.manifest, expires=SystemClock().now() + dt.timedelta(days=3))
    victim = fed.node("370200")
    before = len(_rejections(victim))
    peer.offer = [forge(fed, update)]
    wait_for(lambda: len(_rejections(victim)) > before, timeout_s=20)
    newest = _rejections(victim)[0]
    assert newest.startswith("from 371000:")
    assert reason in newest
    assert victim.status().manifest_version == 1
    assert SignedManifest.from_bytes(fed.manifest.to_bytes()).manifest.version == 1


def test_a_mapping_that_does_not_cover_its_scale_stops_the_node(lone_node: DemoNode) -> None:
    config = lone_node.config.home / "node.toml"
    config.write_text(
        config.read_text() + '\n[ratings.mappings.tax-credit]\nA = "A"\nB = "B"\n',
        encoding="utf-8",
    )
    result = serve(lone_node.config.home)
    assert result.returncode == 1, result.stderr
    assert "tax-credit" in result.stderr and "M" in result.stderr
    assert "Traceback" not in result.stderr
