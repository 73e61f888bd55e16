"""Real node processes talking gRPC over pinned mutual TLS on loopback."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from creditnet.v1 import (
    client_pb2,
    client_pb2_grpc,
    matching_pb2,
    peer_pb2,
    peer_pb2_grpc,
    subject_pb2,
)
from federation.clock import SystemClock
from federation.manifest import next_version
from federation.member import tls_server_name
from node.demo import DemoNode, all_reachable, create_nodes, sign
from node.keystore import read_secret
from node.storage.database import open_database
from node.storage.matching import MatchAuditRepository
from node.trust import install_manifest
from tests.integration.conftest import Federation, wait_for

pytestmark = pytest.mark.integration


def peer_channel(caller_home: Path, target: DemoNode) -> grpc.Channel:
    """A channel to ``target``'s peer API presenting the certificate found in ``caller_home``."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=target.member.tls_certificate.encode(),
        private_key=read_secret(caller_home / "keys" / "tls.key"),
        certificate_chain=(caller_home / "keys" / "tls.crt").read_bytes(),
    )
    return grpc.secure_channel(
        target.member.endpoint,
        credentials,
        options=[("grpc.ssl_target_name_override", tls_server_name(target.member.city_code))],
    )


def client_channel(node: DemoNode, *, client_cert_home: Path | None = None) -> grpc.Channel:
    """A TLS channel to ``node``'s client API with no token attached."""
    extra = {}
    if client_cert_home is not None:
        extra = {
            "private_key": read_secret(client_cert_home / "keys" / "tls.key"),
            "certificate_chain": (client_cert_home / "keys" / "tls.crt").read_bytes(),
        }
    credentials = grpc.ssl_channel_credentials(
        root_certificates=node.config.tls_cert_path.read_bytes(), **extra
    )
    return grpc.secure_channel(
        node.config.client_listen,
        credentials,
        options=[("grpc.ssl_target_name_override", tls_server_name(node.member.city_code))],
    )


def token_metadata(node: DemoNode) -> list[tuple[str, str]]:
    token = read_secret(node.config.client_token_path).decode().strip()
    return [("authorization", f"Bearer {token}")]


def test_every_member_sees_every_other(federation: Federation) -> None:
    for node in federation.nodes:
        status = node.status()
        assert status.federation_id == "jiaodong"
        assert [m.city_code for m in status.members] == sorted(
            n.member.city_code for n in federation.nodes
        )
        assert all(m.reachable for m in status.members)
        assert sum(m.is_self for m in status.members) == 1


def test_status_command_prints_the_federation(federation: Federation) -> None:
    node = federation.nodes[0]
    result = subprocess.run(
        [sys.executable, "-m", "node.cli.main", "status", "--dir", str(node.config.home)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "3 of 3 members reachable" in result.stdout
    for other in federation.nodes:
        assert other.member.city_code in result.stdout
    assert "self" in result.stdout


def test_a_node_outside_the_manifest_cannot_connect(federation: Federation, tmp_path: Path) -> None:
    (outsider,) = create_nodes(tmp_path, ["370100"], paillier_bits=1024)
    with peer_channel(outsider.config.home, federation.nodes[0]) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            peer_pb2_grpc.PeerServiceStub(channel).Hello(
                peer_pb2.HelloRequest(federation_id="jiaodong", manifest_version=1), timeout=5
            )
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


def test_a_stranger_claiming_a_members_city_cannot_connect(
    federation: Federation, tmp_path: Path
) -> None:
    # Same city code (so the same name in its certificate), but not the pinned certificate.
    (impostor,) = create_nodes(tmp_path, ["370600"], paillier_bits=1024)
    with peer_channel(impostor.config.home, federation.node("370200")) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            peer_pb2_grpc.PeerServiceStub(channel).Hello(
                peer_pb2.HelloRequest(federation_id="jiaodong", manifest_version=1), timeout=5
            )
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


def test_a_member_is_answered_and_identified(federation: Federation) -> None:
    caller, target = federation.node("370600"), federation.node("370200")
    with peer_channel(caller.config.home, target) as channel:
        answer = peer_pb2_grpc.PeerServiceStub(channel).Hello(
            peer_pb2.HelloRequest(federation_id="jiaodong", manifest_version=1), timeout=5
        )
    assert answer.city_code == "370200"
    assert answer.federation_id == "jiaodong"


def test_get_ratings_refuses_a_sequence_no_database_holds(federation: Federation) -> None:
    caller, target = federation.node("370600"), federation.node("370200")
    with peer_channel(caller.config.home, target) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            peer_pb2_grpc.PeerServiceStub(channel).GetRatings(
                peer_pb2.GetRatingsRequest(after_sequence=2**64 - 1), timeout=5
            )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "after_sequence 18446744073709551615 is out of range" in refused.value.details()


def test_get_report_status_refuses_a_digest_that_is_no_sha256(federation: Federation) -> None:
    caller, target = federation.node("370600"), federation.node("370200")
    request = peer_pb2.GetReportStatusRequest(
        report_no="370200-20261202-000001", report_digest=b"\x01" * 20
    )
    with peer_channel(caller.config.home, target) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            peer_pb2_grpc.PeerServiceStub(channel).GetReportStatus(request, timeout=5)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "report_digest must be 32 bytes (SHA-256) or empty, not 20" in refused.value.details()


@pytest.mark.parametrize("version", [2**63, 2**64 - 1])
def test_manifest_versions_no_database_holds_are_refused(
    federation: Federation, version: int
) -> None:
    caller, target = federation.node("370600"), federation.node("370200")
    with peer_channel(caller.config.home, target) as channel:
        stub = peer_pb2_grpc.PeerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as manifests:
            stub.GetManifests(peer_pb2.GetManifestsRequest(after_version=version), timeout=5)
        with pytest.raises(grpc.RpcError) as hello:
            stub.Hello(
                peer_pb2.HelloRequest(federation_id="jiaodong", manifest_version=version),
                timeout=5,
            )
    assert manifests.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"after_version {version} is out of range" in manifests.value.details()
    assert hello.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"manifest_version {version} is out of range" in hello.value.details()


@pytest.mark.parametrize(
    "sent_at",
    [Timestamp(seconds=2**62), Timestamp(seconds=-(2**62)), Timestamp(seconds=0, nanos=-1)],
    ids=["far-future", "far-past", "negative-nanos"],
)
def test_a_matching_request_sent_at_no_time_is_refused(
    federation: Federation, sent_at: Timestamp
) -> None:
    caller, target = federation.node("370600"), federation.node("370200")
    audit = MatchAuditRepository(open_database(target.config.database_url))
    before = max((r.id for r in audit.recent(direction="received")), default=0)
    with peer_channel(caller.config.home, target) as channel:
        stub = peer_pb2_grpc.PeerServiceStub(channel)
        with pytest.raises(grpc.RpcError) as evaluate:
            stub.EvaluateSubjects(matching_pb2.EvaluateSubjectsRequest(sent_at=sent_at), timeout=5)
        with pytest.raises(grpc.RpcError) as probe:
            stub.Probe(matching_pb2.ProbeRequest(sent_at=sent_at), timeout=5)
        with pytest.raises(grpc.RpcError) as disclose:
            stub.Disclose(matching_pb2.DiscloseRequest(sent_at=sent_at), timeout=5)
    for refused in (evaluate, probe, disclose):
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "sent_at is not a valid time" in refused.value.details()
    # Refused by the holder, which audits them like any other refused request.
    rows = [r for r in audit.recent(direction="received") if r.id > before]
    assert sorted(r.mode for r in rows) == ["disclose", "evaluate", "unspecified"]
    assert all(r.peer == "370600" and r.outcome == "refused" for r in rows)
    assert all("sent_at is not a valid time" in (r.reason or "") for r in rows)


def test_a_member_of_another_federation_id_is_refused(federation: Federation) -> None:
    caller, target = federation.node("370600"), federation.node("370200")
    with peer_channel(caller.config.home, target) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            peer_pb2_grpc.PeerServiceStub(channel).Hello(
                peer_pb2.HelloRequest(federation_id="yellow-river", manifest_version=1), timeout=5
            )
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "jiaodong" in refused.value.details()


def test_client_api_refuses_calls_without_the_token(federation: Federation) -> None:
    node = federation.nodes[0]
    with client_channel(node) as channel:
        stub = client_pb2_grpc.ClientServiceStub(channel)
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetStatus(client_pb2.GetStatusRequest(), timeout=5)
        with pytest.raises(grpc.RpcError) as wrong:
            stub.GetStatus(
                client_pb2.GetStatusRequest(),
                metadata=[("authorization", "Bearer not-the-token")],
                timeout=5,
            )
        assert (
            stub.GetStatus(
                client_pb2.GetStatusRequest(), metadata=token_metadata(node), timeout=5
            ).city_code
            == node.member.city_code
        )
    assert missing.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert wrong.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "client-token" in missing.value.details()


def test_a_peer_certificate_does_not_open_the_client_api(federation: Federation) -> None:
    node, peer = federation.nodes[0], federation.nodes[1]
    with client_channel(node, client_cert_home=peer.config.home) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            client_pb2_grpc.ClientServiceStub(channel).GetManifest(
                client_pb2.GetManifestRequest(), timeout=5
            )
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_client_api_token_does_not_open_the_peer_api(federation: Federation) -> None:
    node = federation.nodes[0]
    credentials = grpc.ssl_channel_credentials(
        root_certificates=node.member.tls_certificate.encode()
    )
    with (
        grpc.secure_channel(
            node.member.endpoint,
            credentials,
            options=[("grpc.ssl_target_name_override", tls_server_name(node.member.city_code))],
        ) as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        peer_pb2_grpc.PeerServiceStub(channel).Hello(
            peer_pb2.HelloRequest(federation_id="jiaodong"),
            metadata=token_metadata(node),
            timeout=5,
        )
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


def test_health_is_served_on_both_ports(federation: Federation) -> None:
    node, peer = federation.nodes[0], federation.nodes[1]
    with client_channel(node) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with peer_channel(peer.config.home, node) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_check_subjects_over_the_client_api(federation: Federation) -> None:
    node = federation.nodes[0]
    with client_channel(node) as channel:
        stub = client_pb2_grpc.ClientServiceStub(channel)
        answer = stub.CheckSubjects(
            client_pb2.CheckSubjectsRequest(
                identifiers=["91350200MA2YJ1XR9G", "11010519491231002X", "123"]
            ),
            metadata=token_metadata(node),
            timeout=5,
        )
    uscc, person, bad = answer.results
    assert uscc.valid and uscc.normalized == "91350200MA2YJ1XR9G"
    assert person.valid and person.kind == subject_pb2.SUBJECT_KIND_RESIDENT_ID
    assert person.normalized == "" and person.masked == "110105********002X"
    assert not bad.valid and "18 characters" in bad.reason


@pytest.mark.parametrize(
    ("identifiers", "status", "words"),
    [
        ([], grpc.StatusCode.INVALID_ARGUMENT, "no identifiers"),
        (["91350200MA2YJ1XR9G"] * 1001, grpc.StatusCode.INVALID_ARGUMENT, "at most 1000"),
        (["9" * 1000] * 5000, grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ],
    ids=["empty", "too-many", "oversized-message"],
)
def test_bad_client_requests_get_clear_status(
    federation: Federation, identifiers: list[str], status: grpc.StatusCode, words: str
) -> None:
    node = federation.nodes[0]
    with client_channel(node) as channel, pytest.raises(grpc.RpcError) as refused:
        client_pb2_grpc.ClientServiceStub(channel).CheckSubjects(
            client_pb2.CheckSubjectsRequest(identifiers=identifiers),
            metadata=token_metadata(node),
            timeout=10,
        )
    assert refused.value.code() is status
    assert words in (refused.value.details() or "")


def test_a_new_manifest_installed_at_one_node_reaches_all(federation: Federation) -> None:
    current = federation.manifest.manifest
    update = next_version(current, expires=SystemClock().now() + dt.timedelta(days=30))
    signed = sign(update, federation.nodes[1:3])
    install_manifest(federation.nodes[0].config, signed.to_bytes(), clock=SystemClock())
    wait_for(lambda: all_reachable(federation.nodes, current.version + 1), timeout_s=30)
    federation.manifest = signed
    for node in federation.nodes[1:]:
        assert "manifest adopted" in federation.log(node.member.city_code)


def test_a_node_with_a_test_sized_paillier_key_says_so_at_start(federation: Federation) -> None:
    # The test federation's keys are 1024 bits, for speed; production keys are 2048.
    started = [
        json.loads(line)
        for line in federation.log("370200").splitlines()
        if "weak Paillier key" in line
    ]
    assert started and started[0]["level"] == "warning"
    assert started[0]["bits"] == 1024 and started[0]["production_bits"] == 2048
