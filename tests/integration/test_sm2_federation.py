"""A federation that signs with SM2/SM3 (国密), as real node processes on loopback.

Two cities whose nodes were initialised with ``signature_suite="sm2-sm3"``, under a manifest
of that suite: they connect, a sanction-list entry recorded at one reaches the other with
an SM2-signed checkpoint, and a credit report issued at one verifies at the other.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator

import grpc
import pytest

from creditnet.v1 import client_pb2, client_pb2_grpc, lists_pb2, reports_pb2
from federation.checkpoint import SignedCheckpoint, verify_checkpoint
from federation.clock import CHINA_TZ, SystemClock
from federation.manifest import SignedManifest, build_manifest
from federation.reports import SignedReport
from federation.signing import SM2_SM3
from node.demo import DemoNode, all_reachable, create_nodes, sign, start, stop
from node.keystore import read_secret
from node.samples import sample_entry
from node.service.convert import entry_to_wire
from node.trust import install_manifest
from tests.integration.conftest import Federation, wait_for
from tests.integration.faults import sqlite_path

pytestmark = pytest.mark.integration

QINGDAO, YANTAI = "370200", "370600"
TODAY = dt.datetime.now(CHINA_TZ).date()


class Client:
    """The client API of one node, with its token."""

    def __init__(self, node: DemoNode) -> None:
        token = read_secret(node.config.client_token_path).decode().strip()
        credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(node.config.tls_cert_path.read_bytes()),
            grpc.access_token_call_credentials(token),
        )
        self.channel = grpc.secure_channel(
            node.config.client_listen,
            credentials,
            options=[("grpc.ssl_target_name_override", f"{node.member.city_code}.node.creditnet")],
        )
        self.stub = client_pb2_grpc.ClientServiceStub(self.channel)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("sm2")
    nodes = create_nodes(root, [QINGDAO, YANTAI], paillier_bits=1024, signature_suite=SM2_SM3)
    manifest = build_manifest(
        federation_id="jiaodong",
        federation_name="胶东经济圈",
        members=[n.member for n in nodes],
        threshold=2,
        expires=SystemClock().now() + dt.timedelta(days=7),
        signature_suite=SM2_SM3,
    )
    signed = sign(manifest, nodes)
    for node in nodes:
        install_manifest(node.config, signed.to_bytes(), clock=SystemClock())
    federation = Federation(root, nodes, signed)
    for node in nodes:
        start(node)
    try:
        wait_for(lambda: all_reachable(nodes, 1), timeout_s=60)
        yield federation
    finally:
        assert stop(nodes) == [0, 0]


@pytest.fixture(scope="module")
def clients(fed: Federation) -> Iterator[dict[str, Client]]:
    clients = {n.member.city_code: Client(n) for n in fed.nodes}
    yield clients
    for client in clients.values():
        client.channel.close()


@pytest.fixture(scope="module")
def listed(clients: dict[str, Client]) -> str:
    """A company Qingdao lists; its subject id."""
    entry = sample_entry(QINGDAO, 41, listed_on=TODAY - dt.timedelta(days=100))
    answer = clients[QINGDAO].stub.SubmitListChanges(
        client_pb2.SubmitListChangesRequest(
            changes=[lists_pb2.ListChange(add=entry_to_wire(entry))]
        ),
        timeout=30,
    )
    assert answer.results[0].outcome == client_pb2.CHANGE_OUTCOME_APPLIED, answer.results[0]
    return entry.subject.id


def test_sm2_members_under_an_sm2_manifest_all_reachable(
    fed: Federation, clients: dict[str, Client]
) -> None:
    assert fed.manifest.manifest.signature_suite == SM2_SM3
    for node in fed.nodes:
        assert node.member.signing_key.suite == SM2_SM3
        assert node.signing_key().suite == SM2_SM3
        status = node.status()
        assert status.manifest_version == 1
        assert sorted((m.city_code, m.reachable) for m in status.members) == [
            (QINGDAO, True),
            (YANTAI, True),
        ]
        served = clients[node.member.city_code].stub.GetManifest(
            client_pb2.GetManifestRequest(), timeout=10
        )
        manifest = SignedManifest.from_bytes(served.manifest.document).manifest
        assert manifest == fed.manifest.manifest
        assert manifest.signature_suite == SM2_SM3


def _replica_checkpoint(node: DemoNode, origin: str) -> SignedCheckpoint | None:
    connection = sqlite3.connect(sqlite_path(node.config), timeout=10)
    try:
        row = connection.execute(
            "SELECT checkpoint FROM log_heads WHERE origin = ?", (origin,)
        ).fetchone()
    finally:
        connection.close()
    if row is None or row[0] is None:
        return None
    return SignedCheckpoint.from_bytes(bytes(row[0]))


def test_an_entry_recorded_at_one_city_reaches_the_other_under_an_sm2_checkpoint(
    fed: Federation, clients: dict[str, Client], listed: str
) -> None:
    def served_at_yantai() -> bool:
        answer = clients[YANTAI].stub.GetSubjectStatus(
            client_pb2.GetSubjectStatusRequest(subject_id=listed), timeout=10
        )
        return any(v.active and v.origin == QINGDAO for v in answer.entries)

    wait_for(served_at_yantai, timeout_s=30)
    wait_for(lambda: _replica_checkpoint(fed.node(YANTAI), QINGDAO) is not None, timeout_s=30)
    checkpoint = _replica_checkpoint(fed.node(YANTAI), QINGDAO)
    assert checkpoint is not None and checkpoint.checkpoint.size >= 1
    qingdao_key = fed.node(QINGDAO).member.signing_key
    assert qingdao_key.suite == SM2_SM3
    assert checkpoint.keyid == qingdao_key.keyid
    assert checkpoint.signature[0] == 0x30  # DER SEQUENCE {r, s}: an SM2 signature
    qingdao_key.verify(checkpoint.signature, checkpoint.checkpoint.signed_bytes())
    verify_checkpoint(checkpoint, fed.manifest.manifest, now=SystemClock().now())


def test_a_report_issued_at_one_city_verifies_valid_at_the_other(
    fed: Federation, clients: dict[str, Client], listed: str
) -> None:
    issued = clients[QINGDAO].stub.IssueReport(
        client_pb2.IssueReportRequest(subject_id=listed), timeout=30
    )
    document = SignedReport.from_bytes(issued.report.document)
    qingdao_key = fed.node(QINGDAO).member.signing_key
    assert document.keyid == qingdao_key.keyid
    assert document.report.subject.id == listed
    assert [e.origin for e in document.report.list_entries] == [QINGDAO]

    request = client_pb2.VerifyReportRequest(
        report=reports_pb2.SignedReport(document=issued.report.document)
    )
    verdict = clients[YANTAI].stub.VerifyReport(request, timeout=30)
    assert verdict.verdict == reports_pb2.REPORT_VERDICT_VALID, verdict.reasons
    assert verdict.report_no == issued.report_no

    forged = issued.report.document.replace("信惩".encode(), "信罚".encode(), 1)
    assert forged != issued.report.document
    request = client_pb2.VerifyReportRequest(report=reports_pb2.SignedReport(document=forged))
    verdict = clients[YANTAI].stub.VerifyReport(request, timeout=30)
    assert verdict.verdict == reports_pb2.REPORT_VERDICT_INVALID
