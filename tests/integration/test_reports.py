"""Signed credit reports and recognised ratings across real nodes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Iterator

import grpc
import pytest

from creditnet.v1 import client_pb2, client_pb2_grpc, lists_pb2, reports_pb2
from federation.clock import CHINA_TZ
from federation.reports import SignedReport, report_number, sign_report
from federation.signing import SigningKey
from node.demo import TAX_CREDIT_MAPPING, DemoNode, all_reachable, start, stop
from node.keystore import load_node_keys, read_secret
from node.samples import sample_entry
from node.service.convert import entry_to_wire
from tests.integration.conftest import Federation, form_federation, wait_for

pytestmark = pytest.mark.integration

TODAY = dt.datetime.now(CHINA_TZ).date()


class Client:
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

    def verify(self, document: bytes, **kwargs: bool) -> client_pb2.VerifyReportResponse:
        request = client_pb2.VerifyReportRequest(
            report=reports_pb2.SignedReport(document=document), **kwargs
        )
        return self.stub.VerifyReport(request, timeout=10)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    fed = form_federation(tmp_path_factory.mktemp("reports"), ["370200", "370600", "371000"])
    yantai = fed.node("370600").config.config_path
    yantai.write_text(yantai.read_text() + TAX_CREDIT_MAPPING)
    os.environ["CREDIT_NODE_FEDERATION_SYNC_INTERVAL_S"] = "1"
    try:
        for node in fed.nodes:
            start(node)
    finally:
        del os.environ["CREDIT_NODE_FEDERATION_SYNC_INTERVAL_S"]
    try:
        wait_for(lambda: all_reachable(fed.nodes, 1), timeout_s=60)
        yield fed
    finally:
        assert stop(fed.nodes) == [0] * len(fed.nodes)


@pytest.fixture(scope="module")
def clients(fed: Federation) -> dict[str, Client]:
    return {n.member.city_code: Client(n) for n in fed.nodes}


@pytest.fixture(scope="module")
def company(clients: dict[str, Client]) -> str:
    """A company Qingdao lists and Yantai rates."""
    entry = sample_entry("370200", 77, listed_on=TODAY - dt.timedelta(days=100))
    result = clients["370200"].stub.SubmitListChanges(
        client_pb2.SubmitListChangesRequest(
            changes=[lists_pb2.ListChange(add=entry_to_wire(entry))]
        ),
        timeout=10,
    )
    assert result.results[0].outcome == client_pb2.CHANGE_OUTCOME_APPLIED
    rating = client_pb2.SubmitRatingRequest(
        subject_id=entry.subject.id,
        subject_name=entry.subject.name,
        scale_id="tax-credit",
        grade="M",
        issued_on=(TODAY - dt.timedelta(days=40)).isoformat(),
        valid_until=(TODAY + dt.timedelta(days=300)).isoformat(),
        evidence_ref="烟税评〔2026〕12号",
    )
    assert clients["370600"].stub.SubmitRating(rating, timeout=10).sequence == 1
    return entry.subject.id


def issue(client: Client, subject: str, **kwargs: object) -> client_pb2.IssueReportResponse:
    return client.stub.IssueReport(
        client_pb2.IssueReportRequest(subject_id=subject, **kwargs),  # type: ignore[arg-type]
        timeout=10,
    )


def test_a_rating_shows_on_the_common_scale_elsewhere(
    clients: dict[str, Client], company: str
) -> None:
    def seen() -> bool:
        answer = clients["371000"].stub.GetSubjectRatings(
            client_pb2.GetSubjectRatingsRequest(subject_id=company), timeout=10
        )
        return len(answer.ratings) == 1

    wait_for(seen, timeout_s=20)
    (view,) = (
        clients["371000"]
        .stub.GetSubjectRatings(client_pb2.GetSubjectRatingsRequest(subject_id=company), timeout=10)
        .ratings
    )
    assert (view.issuer, view.scale_id, view.grade, view.common_grade) == (
        "370600",
        "tax-credit",
        "M",
        "C",
    )
    assert view.recognised and "recognised" in view.reasons[0]


def test_a_report_verifies_elsewhere_then_its_revocation_is_seen(
    fed: Federation, clients: dict[str, Client], company: str
) -> None:
    wait_for(
        lambda: (
            len(
                clients["370200"]
                .stub.GetSubjectRatings(
                    client_pb2.GetSubjectRatingsRequest(subject_id=company), timeout=10
                )
                .ratings
            )
            == 1
        ),
        timeout_s=20,
    )
    issued = issue(clients["370200"], company)
    assert issued.report_no.startswith("370200-") and len(issued.verification_code) == 19
    assert issued.report_no in issued.html and issued.verification_code in issued.html
    report = SignedReport.from_bytes(issued.report.document).report
    assert [e.decision_no for e in report.list_entries] == ["信惩〔2026〕77号"]
    assert [(r.issuer, r.grade, r.common_grade) for r in report.ratings] == [("370600", "M", "C")]

    verdict = clients["371000"].verify(issued.report.document)
    assert verdict.verdict == reports_pb2.REPORT_VERDICT_VALID, verdict.reasons
    assert verdict.status_source == "issuer" and verdict.report_no == issued.report_no

    clients["370200"].stub.RevokeReport(
        client_pb2.RevokeReportRequest(report_no=issued.report_no, reason="信息有误"), timeout=10
    )
    wait_for(
        lambda: (
            clients["371000"].verify(issued.report.document).verdict
            == reports_pb2.REPORT_VERDICT_REVOKED
        ),
        timeout_s=30,
    )
    assert "信息有误" in clients["371000"].verify(issued.report.document).summary


def test_a_new_report_supersedes_the_old_one(clients: dict[str, Client], company: str) -> None:
    first = issue(clients["370200"], company)
    second = issue(clients["370200"], company, supersedes=first.report_no)
    verdict = clients["370200"].verify(first.report.document)
    assert verdict.verdict == reports_pb2.REPORT_VERDICT_SUPERSEDED
    assert verdict.superseded_by == second.report_no


@pytest.mark.parametrize(
    ("mangle", "words"),
    [
        (lambda d: d[: len(d) // 2], "not a signed credit report"),
        (lambda d: os.urandom(200), "not a signed credit report"),
        (lambda d: d.replace("信惩".encode(), "信罚".encode(), 1), "signature"),
    ],
    ids=["truncated", "random", "tampered"],
)
def test_bad_reports_get_an_invalid_verdict_with_the_reason(
    clients: dict[str, Client], company: str, mangle: object, words: str
) -> None:
    issued = issue(clients["370200"], company)
    verdict = clients["371000"].verify(mangle(issued.report.document))  # type: ignore[operator]
    assert verdict.verdict == reports_pb2.REPORT_VERDICT_INVALID
    assert words in " ".join([verdict.summary, *verdict.reasons])


def _resign(fed: Federation, document: bytes, key: SigningKey, **changes: object) -> bytes:
    report = dataclasses.replace(SignedReport.from_bytes(document).report, **changes)
    return sign_report(report, key).to_bytes()


def test_expired_future_and_foreign_key_reports(
    fed: Federation, clients: dict[str, Client], company: str
) -> None:
    issued = issue(clients["370200"], company)
    report = SignedReport.from_bytes(issued.report.document).report
    key = load_node_keys(fed.node("370200").config).signing_key
    expired = _resign(
        fed, issued.report.document, key, valid_until=report.issued_at + dt.timedelta(seconds=1)
    )
    wait_for(
        lambda: clients["371000"].verify(expired).verdict == reports_pb2.REPORT_VERDICT_EXPIRED,
        timeout_s=10,
    )
    future = _resign(
        fed,
        issued.report.document,
        key,
        issued_at=report.issued_at + dt.timedelta(hours=2),
        valid_until=report.valid_until + dt.timedelta(hours=2),
        # The number carries the issue date, which may be another day two hours later.
        report_no=report_number("370200", report.issued_at + dt.timedelta(hours=2), 999_999),
    )
    dated = clients["371000"].verify(future)
    assert dated.verdict == reports_pb2.REPORT_VERDICT_INVALID
    assert "future" in dated.summary
    foreign = sign_report(report, SigningKey.generate()).to_bytes()
    verdict = clients["371000"].verify(foreign)
    assert verdict.verdict == reports_pb2.REPORT_VERDICT_INVALID
    assert "key" in verdict.summary


def test_issuer_down_means_replica_status_or_unknown(
    fed: Federation, clients: dict[str, Client], company: str
) -> None:
    issued = issue(clients["370200"], company)
    # Wait until Weihai holds Qingdao's status list with this report in it.
    wait_for(
        lambda: (
            clients["371000"].verify(issued.report.document).verdict
            == reports_pb2.REPORT_VERDICT_VALID
        ),
        timeout_s=20,
    )
    qingdao = fed.node("370200")
    assert stop([qingdao]) == [0]
    try:
        verdict = clients["371000"].verify(issued.report.document)
        # Either the cached answer of the issuer or its signed list held here: never a
        # plain valid without saying where the status comes from.
        assert verdict.verdict == reports_pb2.REPORT_VERDICT_VALID
        assert verdict.status_source in ("issuer", "replica")
        assert "as of" in verdict.summary
        offline = clients["371000"].verify(issued.report.document, offline_only=True)
        assert offline.verdict == reports_pb2.REPORT_VERDICT_STATUS_UNKNOWN
        assert offline.summary.startswith("signature valid, status unknown")
    finally:
        start(qingdao)
        wait_for(lambda: all_reachable(fed.nodes, 1), timeout_s=60)


def test_an_unknown_scale_is_refused(clients: dict[str, Client], company: str) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        clients["370600"].stub.SubmitRating(
            client_pb2.SubmitRatingRequest(
                subject_id=company,
                subject_name="x",
                scale_id="no-such-scale",
                grade="A",
                valid_until=(TODAY + dt.timedelta(days=30)).isoformat(),
                evidence_ref="e",
            ),
            timeout=10,
        )
    assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    assert "no-such-scale" in refused.value.details()


RESIDENT_ID = "11010519491231002X"  # typed into the wrong field: never echoed


@pytest.mark.parametrize(
    ("field", "status"),
    [
        ("scale_id", grpc.StatusCode.NOT_FOUND),
        ("issued_on", grpc.StatusCode.INVALID_ARGUMENT),
        ("valid_until", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_an_id_number_in_the_wrong_field_is_not_echoed(
    clients: dict[str, Client], company: str, field: str, status: grpc.StatusCode
) -> None:
    request = client_pb2.SubmitRatingRequest(
        subject_id=company,
        subject_name="x",
        scale_id="tax-credit",
        grade="A",
        valid_until=(TODAY + dt.timedelta(days=30)).isoformat(),
        evidence_ref="e",
    )
    setattr(request, field, RESIDENT_ID)
    with pytest.raises(grpc.RpcError) as refused:
        clients["370600"].stub.SubmitRating(request, timeout=10)
    assert refused.value.code() is status
    details = refused.value.details() or ""
    assert field.removesuffix("_id") in details and "'[hidden]'" in details
    assert RESIDENT_ID not in details and "1101051949" not in details
