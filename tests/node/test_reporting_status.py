"""How a node finds a report's status (node.reporting.ReportOffice), whatever the issuer
answers: a real SQLite database and trust store; the issuer's peer API is the one fake,
at the network boundary, so that it can answer what a real node never would."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest

from creditnet.v1 import peer_pb2, reports_pb2
from federation.canonical import MAX_DOCUMENT_BYTES
from federation.clock import FixedClock
from federation.errors import (
    FailedPreconditionError,
    InvalidInputError,
    NotFoundError,
    ReportFormatError,
    ReportStatusError,
)
from federation.manifest import SignedManifest, build_manifest
from federation.reports import (
    ReportStatus,
    SignedReport,
    SignedStatusList,
    StatusList,
    report_digest,
    sign_report,
    sign_status_list,
)
from federation.sanctions import (
    DEFAULT_POLICIES,
    EntryState,
    ListKind,
    ListPolicy,
    Removal,
    RemovalReason,
    SanctionEntry,
)
from node.queries import EntryAnswer
from node.reporting import STATUS_TTL, ReportOffice, Verification
from node.storage import open_database
from node.storage.reports import IssuedReport, ReportRepository, StatusCheck
from node.storage.repositories import EventRepository, ManifestRepository
from node.trust import TrustStore
from tests.federation.conftest import YEAR, make_city
from tests.federation.fixtures.reports import COMPANY, ISSUED, PERSON_ID, QINGDAO, YANTAI
from tests.federation.fixtures.reports import full_report as _full_report

CITIES = {code: make_city(code) for code in (QINGDAO, YANTAI)}
NOW = ISSUED + dt.timedelta(hours=1)
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class FakeIssuer:
    """Qingdao's peer API as Yantai's node reaches it: answers what the test sets."""

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.state = 1  # valid
        self.reason = "not revoked or superseded"
        self.superseded_by = ""
        self.at_seconds: int | None = None
        self.error: grpc.StatusCode | None = None
        self.calls = 0
        self.status_list = b""

    async def GetReportStatus(
        self, request: peer_pb2.GetReportStatusRequest, **_call_options: Any
    ) -> peer_pb2.GetReportStatusResponse:
        self.calls += 1
        if self.error is not None:
            raise grpc.aio.AioRpcError(
                self.error, grpc.aio.Metadata(), grpc.aio.Metadata(), f"{self.error.name} here"
            )
        answer = peer_pb2.GetReportStatusResponse(
            state=self.state, reason=self.reason, superseded_by=self.superseded_by
        )
        if self.at_seconds is None:
            answer.at.FromDatetime(self.clock.now())
        else:
            answer.at.seconds = self.at_seconds
        return answer

    async def GetStatusList(
        self, request: peer_pb2.GetStatusListRequest, **_call_options: Any
    ) -> peer_pb2.GetStatusListResponse:
        return peer_pb2.GetStatusListResponse(
            status_list=reports_pb2.SignedStatusList(document=self.status_list)
        )

    def revoke(self, reason: str) -> None:
        self.state, self.reason = 2, reason


class Links:
    def __init__(self, issuer: FakeIssuer | None) -> None:
        self.issuer = issuer

    def stub(self, city_code: str) -> Any:
        return self.issuer if city_code == QINGDAO else None


class Unused:
    """Issuing parts that these tests never reach."""

    def subject_status(self, subject: Any, include_inactive: bool) -> list[Any]:
        return []

    def about(self, subject: Any) -> list[Any]:
        return []


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def issuer(clock: FixedClock) -> FakeIssuer:
    return FakeIssuer(clock)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Any]:
    db = open_database(f"sqlite:///{tmp_path / 'node.db'}")
    yield db
    db.close()


def office(
    database: Any,
    clock: FixedClock,
    city: str,
    links: Links,
    queries: Any = None,
    policies: Mapping[ListKind, ListPolicy] = DEFAULT_POLICIES,
) -> ReportOffice:
    manifest = build_manifest(
        federation_id="jiaodong",
        federation_name="胶东经济圈",
        members=[c.member for c in CITIES.values()],
        threshold=2,
        expires=ISSUED + YEAR,
    )
    signed = SignedManifest(manifest)
    for member in CITIES.values():
        signed = signed.sign(member.key)
    trust = TrustStore(ManifestRepository(database), clock, EventRepository(database))
    trust.install(signed.to_bytes(), source="operator")
    return ReportOffice(
        city_code=city,
        city_name=city,
        signing_key=CITIES[city].key,
        trust=trust,
        reports=ReportRepository(database),
        queries=queries or Unused(),
        ratings=Unused(),  # type: ignore[arg-type]
        links=links,  # type: ignore[arg-type]
        clock=clock,
        list_policies=policies,
    )


@pytest.fixture
def yantai(database: Any, clock: FixedClock, issuer: FakeIssuer) -> ReportOffice:
    return office(database, clock, YANTAI, Links(issuer))


def full_report() -> SignedReport:
    return sign_report(_full_report(), CITIES[QINGDAO].key)


def qingdao_status_list(*, revoked: bool, at: dt.datetime, reason: str = "出具有误") -> StatusList:
    status_list = StatusList.new(issuer=QINGDAO, at=at, size=64)
    if revoked:
        status_list = status_list.revoke(_full_report().status_index, reason, at)
    return status_list


def hold_status_list(database: Any, *, revoked: bool, at: dt.datetime) -> None:
    """Qingdao's signed status list as Yantai holds it (a replica)."""
    status_list = qingdao_status_list(revoked=revoked, at=at)
    ReportRepository(database).put_status_list(
        QINGDAO,
        status_list.version,
        status_list.updated_at,
        sign_status_list(status_list, CITIES[QINGDAO].key).to_bytes(),
        at,
    )


def verify(office: ReportOffice, document: SignedReport) -> Verification:
    return asyncio.run(office.verify(document.to_bytes(), offline_only=False))


def test_the_issuers_answer_is_reused_for_its_ttl(
    yantai: ReportOffice, issuer: FakeIssuer, clock: FixedClock
) -> None:
    document = full_report()
    first = verify(yantai, document)
    assert (first.verdict.state, first.status_source, issuer.calls) == ("valid", "issuer", 1)
    clock.advance(STATUS_TTL)
    assert verify(yantai, document).verdict.state == "valid"
    assert issuer.calls == 1
    clock.advance(dt.timedelta(seconds=1))
    assert verify(yantai, document).verdict.state == "valid"
    assert issuer.calls == 2


def test_a_revocation_learnt_from_the_issuer_outlives_the_ttl_and_the_issuer(
    yantai: ReportOffice, issuer: FakeIssuer, clock: FixedClock, database: Any
) -> None:
    # The list held here is older than the revocation, and says valid.
    hold_status_list(database, revoked=False, at=NOW - dt.timedelta(minutes=5))
    document = full_report()
    issuer.revoke("出具有误")
    assert verify(yantai, document).verdict.state == "revoked"
    clock.advance(STATUS_TTL * 3)
    issuer.error = UNAVAILABLE
    later = verify(yantai, document)
    assert later.verdict.state == "revoked"
    assert later.verdict.summary == "revoked: 出具有误"
    # Back up and answering "valid" (a restored backup, say): a revocation is final.
    issuer.error = None
    issuer.state, issuer.reason = 1, "not revoked or superseded"
    clock.advance(STATUS_TTL * 3)
    assert verify(yantai, document).verdict.state == "revoked"


def test_a_revocation_in_the_held_list_wins_over_the_issuers_valid(
    yantai: ReportOffice, issuer: FakeIssuer, database: Any
) -> None:
    hold_status_list(database, revoked=True, at=NOW - dt.timedelta(minutes=5))
    found = verify(yantai, full_report())
    assert (found.verdict.state, found.status_source) == ("revoked", "replica")


def check(state: str, seconds: int) -> StatusCheck:
    at = NOW + dt.timedelta(seconds=seconds)
    return StatusCheck(
        report_no=_full_report().report_no,
        issuer=QINGDAO,
        state=state,
        reason={"valid": "not revoked", "revoked": "出具有误", "superseded": "replaced"}[state],
        superseded_by="370200-20260601-000018" if state == "superseded" else None,
        status_at=at,
        checked_at=at,
    )


@pytest.mark.parametrize(
    ("answers", "kept"),
    [
        (("valid", "valid"), ("valid", 1)),
        (("valid", "revoked", "valid"), ("revoked", 1)),  # the last, slower, answer loses
        (("superseded", "valid"), ("superseded", 0)),
        (("superseded", "revoked", "superseded"), ("revoked", 1)),
    ],
)
def test_a_stored_revocation_or_supersession_stays(
    database: Any, answers: tuple[str, ...], kept: tuple[str, int]
) -> None:
    reports = ReportRepository(database)
    for seconds, state in enumerate(answers):
        reports.cache_status(check(state, seconds))
    held = reports.cached_status(_full_report().report_no)
    assert held is not None
    assert (held.state, held.checked_at) == (kept[0], NOW + dt.timedelta(seconds=kept[1]))


def test_a_revocation_in_the_held_list_wins_over_a_supersession_learnt_before(
    yantai: ReportOffice, database: Any, issuer: FakeIssuer
) -> None:
    ReportRepository(database).cache_status(check("superseded", -60))
    assert verify(yantai, full_report()).verdict.state == "superseded"
    hold_status_list(database, revoked=True, at=NOW - dt.timedelta(seconds=30))
    found = verify(yantai, full_report())
    assert (found.verdict.state, found.status_source) == ("revoked", "replica")
    assert issuer.calls == 0  # nothing the issuer says could change either


@pytest.mark.parametrize(
    "answer",
    [
        {"state": 0},  # unspecified
        {"state": 7, "reason": "suspended for review"},  # a state this node does not know
        {"at_seconds": 2**62},  # a time protobuf cannot convert
        {"state": 3},  # superseded, by no report
        {"state": 3, "superseded_by": "not-a-report-number"},
    ],
)
def test_an_answer_the_node_cannot_read_is_no_answer(
    yantai: ReportOffice, issuer: FakeIssuer, database: Any, answer: dict[str, Any]
) -> None:
    for name, value in answer.items():
        setattr(issuer, name, value)
    found = verify(yantai, full_report())
    assert found.verdict.state == "status-unknown"
    assert found.verdict.summary == "signature valid, status unknown since never checked"
    # With the issuer's signed list held here, that list answers.
    hold_status_list(database, revoked=False, at=NOW - dt.timedelta(minutes=5))
    found = verify(yantai, full_report())
    assert (found.verdict.state, found.status_source) == ("valid", "replica")


def test_an_issuer_without_a_record_of_the_report_is_not_overruled_by_the_held_list(
    yantai: ReportOffice, issuer: FakeIssuer, database: Any
) -> None:
    hold_status_list(database, revoked=False, at=NOW - dt.timedelta(minutes=5))
    issuer.error = grpc.StatusCode.NOT_FOUND
    found = verify(yantai, full_report())
    assert found.verdict.state == "status-unknown"
    assert found.status is None
    assert (
        "status: unknown (the issuer 370200 answered that it has no record of this report; "
        "last checked: 2026-06-01T07:30:00Z)"
    ) in found.verdict.reasons


def test_an_unreachable_issuer_leaves_the_held_list_or_unknown(
    yantai: ReportOffice, issuer: FakeIssuer, clock: FixedClock, database: Any
) -> None:
    document = full_report()
    assert verify(yantai, document).verdict.state == "valid"
    issuer.error = UNAVAILABLE
    clock.advance(STATUS_TTL * 2)
    found = verify(yantai, document)
    assert found.verdict.summary == (
        "signature valid, status unknown since 2026-06-01T07:30:00Z"  # the last answer
    )
    hold_status_list(database, revoked=False, at=NOW)
    found = verify(yantai, document)
    assert (found.verdict.state, found.status_source) == ("valid", "replica")


def test_own_report_without_a_record_here_is_status_unknown(
    database: Any, clock: FixedClock
) -> None:
    qingdao = office(database, clock, QINGDAO, Links(None))
    found = verify(qingdao, full_report())
    assert found.verdict.state == "status-unknown"
    assert any("this city has no record of report 370200-" in r for r in found.verdict.reasons)


def test_supersedes_must_name_an_own_report_on_the_same_subject(
    database: Any, clock: FixedClock
) -> None:
    qingdao = office(database, clock, QINGDAO, Links(None))
    first = qingdao.issue(COMPANY.id, subject_name=COMPANY.name, valid_days=30, supersedes="")
    number = first.report.report_no
    with pytest.raises(InvalidInputError, match="about another subject") as caught:
        qingdao.issue(PERSON_ID, subject_name="张三", valid_days=30, supersedes=number)
    assert PERSON_ID not in caught.value.message
    # An identifier typed where the report number goes is refused as malformed, not echoed.
    with pytest.raises(InvalidInputError) as malformed:
        qingdao.issue(COMPANY.id, subject_name=COMPANY.name, valid_days=30, supersedes=PERSON_ID)
    assert PERSON_ID not in malformed.value.message
    with pytest.raises(NotFoundError, match="has issued no report 370200-20260601-000099"):
        qingdao.issue(
            COMPANY.id,
            subject_name=COMPANY.name,
            valid_days=30,
            supersedes="370200-20260601-000099",
        )
    # Nothing was superseded by the refusals; the same subject may supersede.
    assert qingdao.own_status(number).state == "valid"
    second = qingdao.issue(COMPANY.id, subject_name=COMPANY.name, valid_days=30, supersedes=number)
    assert qingdao.own_status(number).superseded_by == second.report.report_no
    # Once only, and never a revoked one: the refusal names the report.
    qingdao.revoke(second.report.report_no, "出具有误")
    for gone, state in ((number, "superseded"), (second.report.report_no, "revoked")):
        with pytest.raises(FailedPreconditionError, match=f"report {gone} is {state} already"):
            qingdao.issue(COMPANY.id, subject_name=COMPANY.name, valid_days=30, supersedes=gone)


def test_a_revocation_reason_too_long_is_refused_saying_so(
    database: Any, clock: FixedClock
) -> None:
    qingdao = office(database, clock, QINGDAO, Links(None))
    number = qingdao.issue(
        COMPANY.id, subject_name=COMPANY.name, valid_days=30, supersedes=""
    ).report.report_no
    with pytest.raises(InvalidInputError, match="at most 200 characters, not 201"):
        qingdao.revoke(number, "误" * 201)
    assert qingdao.own_status(number).state == "valid"
    qingdao.revoke(number, "误" * 200)
    assert qingdao.own_status(number).state == "revoked"


def test_two_different_status_lists_of_one_version_keep_the_first(
    yantai: ReportOffice,
    issuer: FakeIssuer,
    database: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def publish(status_list: StatusList) -> bytes:
        issuer.status_list = sign_status_list(status_list, CITIES[QINGDAO].key).to_bytes()
        return issuer.status_list

    at = NOW - dt.timedelta(minutes=5)
    first = publish(qingdao_status_list(revoked=True, at=at))
    asyncio.run(yantai.pull_status_lists())
    stored = ReportRepository(database).status_list(QINGDAO)
    assert stored is not None and stored.document == first
    publish(qingdao_status_list(revoked=True, at=at, reason="另一个理由"))  # version 2 again
    with caplog.at_level(logging.WARNING, logger="node.reporting"):
        asyncio.run(yantai.pull_status_lists())
    stored = ReportRepository(database).status_list(QINGDAO)
    assert stored is not None and stored.document == first
    [refused] = [r for r in caplog.records if r.getMessage() == "status list from peer refused"]
    assert "two different status lists with version 2" in refused.fields["reason"]  # type: ignore[attr-defined]


# --- a status list with no room left ---------------------------------------------------------

#: The longest revocation reason a status list keeps, in Chinese: about 600 bytes signed.
LONG_REASON = ("因申请人提供虚假材料撤销本报告" * 14)[:200]


def signed_size(status_list: StatusList) -> int:
    """The size of ``status_list`` signed (an Ed25519 signature is always 64 bytes)."""
    return len(SignedStatusList(status_list, "0" * 64, bytes(64)).to_bytes())


def with_revocations(status_list: StatusList, reasons: list[tuple[int, str]]) -> StatusList:
    """The next version of ``status_list`` with ``reasons`` revoked as well (built at once:
    revoking one by one would re-check every earlier reason each time)."""
    revoked = bytearray(status_list.revoked)
    for index, _reason in reasons:
        revoked[index // 8] |= 0x80 >> (index % 8)
    return dataclasses.replace(
        status_list,
        version=status_list.version + 1,
        revoked=bytes(revoked),
        reasons=tuple(sorted((*status_list.reasons, *reasons))),
    )


def fill_own_list(office: ReportOffice, database: Any, *, room: int) -> bytes:
    """Store the office's status list after ~1,700 revocations of long reasons (of reports
    from index 10,000 on), leaving about ``room`` bytes under the limit; the document."""
    current = office.status_list()
    long_item = len(f'{{"index":10000,"reason":"{LONG_REASON}"}},'.encode())
    count = (MAX_DOCUMENT_BYTES - room - signed_size(current)) // long_item
    reasons = [(10000 + n, LONG_REASON) for n in range(count)]
    gap = MAX_DOCUMENT_BYTES - room - signed_size(with_revocations(current, reasons))
    filler = gap - len(b'{"index":19999,"reason":""},')
    assert 0 < filler <= 3 * 200
    reasons.append((19999, "中" * (filler // 3) + "x" * (filler % 3)))
    status_list = with_revocations(current, reasons)
    assert room - 8 <= MAX_DOCUMENT_BYTES - signed_size(status_list) <= room + 8
    document = sign_status_list(status_list, CITIES[QINGDAO].key).to_bytes()
    ReportRepository(database).put_status_list(
        QINGDAO, status_list.version, status_list.updated_at, document, NOW
    )
    return document


def test_a_change_the_status_list_has_no_room_for_is_refused_and_nothing_is_stored(
    database: Any, clock: FixedClock
) -> None:
    qingdao = office(database, clock, QINGDAO, Links(None))
    reports = ReportRepository(database)

    def issue(supersedes: str = "") -> str:
        signed = qingdao.issue(
            COMPANY.id, subject_name=COMPANY.name, valid_days=30, supersedes=supersedes
        )
        return signed.report.report_no

    first, second = issue(), issue()
    full = fill_own_list(qingdao, database, room=100)

    # A long reason (about 600 bytes) no longer fits: refused, the list as it was.
    with pytest.raises(ReportStatusError, match="has no room for this change") as refused:
        qingdao.revoke(first, LONG_REASON)
    assert "more than the 1048576 a reader accepts" in refused.value.message
    stored = reports.status_list(QINGDAO)
    assert stored is not None and stored.document == full
    assert qingdao.own_status(first).state == "valid"

    # What still fits goes in: a supersession (about 50 bytes), a short reason.
    third = issue(supersedes=first)
    assert qingdao.own_status(first).superseded_by == third
    qingdao.revoke(second, "出具有误")
    assert qingdao.own_status(second).state == "revoked"

    # A report whose supersession does not fit is not issued: no number, no record.
    issued_before = reports.count_issued_on(f"{QINGDAO}-")
    kept = reports.status_list(QINGDAO)
    with pytest.raises(ReportStatusError, match="has no room for this change"):
        issue(supersedes=third)
    assert reports.count_issued_on(f"{QINGDAO}-") == issued_before
    assert reports.status_list(QINGDAO) == kept
    assert qingdao.own_status(third).state == "valid"
    # Every list this node signed is one a reader accepts.
    assert kept is not None and len(kept.document) <= MAX_DOCUMENT_BYTES
    assert SignedStatusList.from_bytes(kept.document).status_list.version > 1


def record_reports_valid_for_ten_days(reports: ReportRepository, indices: list[int]) -> None:
    """Records of reports at ``indices`` (their bodies do not matter here), valid ten days."""
    for index in indices:
        reports.add(
            IssuedReport(
                report_no=f"{QINGDAO}-20260601-{index:06d}",
                status_index=index,
                subject_id=COMPANY.id,
                issued_at=NOW,
                valid_until=NOW + dt.timedelta(days=10),
                supersedes=None,
                document=b"{}",
            )
        )


def test_the_reasons_of_expired_reports_are_forgotten_to_make_room(
    database: Any, clock: FixedClock
) -> None:
    qingdao = office(database, clock, QINGDAO, Links(None))
    reports = ReportRepository(database)
    signed = qingdao.issue(COMPANY.id, subject_name=COMPANY.name, valid_days=30, supersedes="")
    first = signed.report.report_no
    fill_own_list(qingdao, database, room=100)
    filled = [index for index, _reason in qingdao.status_list().reasons]
    record_reports_valid_for_ten_days(reports, filled)  # the ~1,700 revoked reports
    with pytest.raises(ReportStatusError, match="has no room for this change"):
        qingdao.revoke(first, LONG_REASON)

    # Their reasons are kept a day after they expire (a verifier's clock may be behind) ...
    clock.advance(dt.timedelta(days=10, hours=23))
    with pytest.raises(ReportStatusError, match="has no room for this change"):
        qingdao.revoke(first, LONG_REASON)
    # ... and then make room: their revocations stay.
    clock.advance(dt.timedelta(hours=2))
    qingdao.revoke(first, LONG_REASON)
    status_list = qingdao.status_list()
    index = signed.report.status_index
    assert status_list.reasons == ((index, LONG_REASON),)
    assert all(status_list.status_of(i) == "revoked" for i in (*filled, index))
    assert qingdao.own_status(first).reason == LONG_REASON
    stored = reports.status_list(QINGDAO)
    assert stored is not None and len(stored.document) < 10_000


def test_issuing_a_report_also_forgets_the_reasons_of_expired_reports(
    database: Any, clock: FixedClock
) -> None:
    qingdao = office(database, clock, QINGDAO, Links(None))
    reports = ReportRepository(database)
    first = qingdao.issue(COMPANY.id, subject_name=COMPANY.name, valid_days=30, supersedes="")
    fill_own_list(qingdao, database, room=20)
    filled = [index for index, _reason in qingdao.status_list().reasons]
    record_reports_valid_for_ten_days(reports, filled)
    number = first.report.report_no
    with pytest.raises(ReportStatusError, match="has no room for this change"):
        qingdao.issue(COMPANY.id, subject_name=COMPANY.name, valid_days=30, supersedes=number)

    # A supersession needs no revocation first to find the room expired reports leave.
    clock.advance(dt.timedelta(days=12))
    second = qingdao.issue(COMPANY.id, subject_name=COMPANY.name, valid_days=30, supersedes=number)
    assert qingdao.own_status(number).superseded_by == second.report.report_no
    status_list = qingdao.status_list()
    assert status_list.reasons == ()
    assert all(status_list.status_of(i) == "revoked" for i in filled)


def test_a_valid_in_the_list_held_stands_for_a_day_then_the_status_is_unknown(
    yantai: ReportOffice, issuer: FakeIssuer, clock: FixedClock, database: Any
) -> None:
    document = full_report()
    issuer.error = UNAVAILABLE
    hold_status_list(database, revoked=False, at=NOW)  # received now
    clock.advance(dt.timedelta(hours=23))
    found = verify(yantai, document)
    assert (found.verdict.state, found.status_source, found.status_as_of) == (
        "valid",
        "replica",
        NOW,  # when the issuer last sent the list, not when it last changed it
    )
    clock.advance(dt.timedelta(hours=2))
    found = verify(yantai, document)
    assert found.verdict.state == "status-unknown"
    assert found.verdict.summary == "signature valid, status unknown since 2026-06-01T07:30:00Z"
    assert (
        "the issuer's status list held here was last confirmed at 2026-06-01T07:30:00Z, "
        "more than 24 hours ago" in found.verdict.reasons[-1]
    )


def test_a_revocation_in_the_list_held_stays_whatever_its_age(
    yantai: ReportOffice, issuer: FakeIssuer, clock: FixedClock, database: Any
) -> None:
    issuer.error = UNAVAILABLE
    hold_status_list(database, revoked=True, at=NOW)
    clock.advance(dt.timedelta(days=30))
    found = verify(yantai, full_report())
    assert (found.verdict.state, found.status_source) == ("revoked", "replica")


def test_the_same_list_sent_again_is_confirmed_as_still_the_issuers(
    yantai: ReportOffice, issuer: FakeIssuer, clock: FixedClock, database: Any
) -> None:
    status_list = qingdao_status_list(revoked=False, at=NOW)
    issuer.status_list = sign_status_list(status_list, CITIES[QINGDAO].key).to_bytes()
    asyncio.run(yantai.pull_status_lists())
    clock.advance(dt.timedelta(seconds=30))
    asyncio.run(yantai.pull_status_lists())  # within a minute: not written again
    held = ReportRepository(database).status_list(QINGDAO)
    assert held is not None and held.received_at == NOW
    clock.advance(dt.timedelta(hours=20, seconds=-30))
    asyncio.run(yantai.pull_status_lists())  # the same version: confirmed, not stored again
    held = ReportRepository(database).status_list(QINGDAO)
    assert held is not None and (held.version, held.received_at) == (
        status_list.version,
        NOW + dt.timedelta(hours=20),
    )
    # The issuer goes down: its list held here stands for a day from the last confirmation.
    issuer.error = UNAVAILABLE
    clock.advance(dt.timedelta(hours=20))
    found = verify(yantai, full_report())
    assert (found.verdict.state, found.status_source) == ("valid", "replica")
    assert found.status_as_of == NOW + dt.timedelta(hours=20)


# --- what a report holds of the lists ----------------------------------------------------


class HeldEntries:
    """The list entries this node holds on the subject (its own and replicas), as the
    node's list queries answer them at the clock's time."""

    def __init__(self, clock: FixedClock, *states: EntryState) -> None:
        self.clock, self.states = clock, states

    def subject_status(self, subject: Any, include_inactive: bool) -> list[EntryAnswer]:
        return [EntryAnswer(s, s.effective(self.clock.now())) for s in self.states]


def held(
    kind: ListKind,
    listed_on: dt.date,
    *,
    publicity_end: dt.date | None = None,
    removed_on: dt.date | None = None,
    number: int = 1,
    origin: str = YANTAI,
) -> EntryState:
    entry = SanctionEntry.create(
        list_kind=kind,
        subject_id=COMPANY.id,
        subject_name=COMPANY.name,
        reason="拒不履行法定义务",
        legal_basis="《山东省社会信用条例》第三十条",
        authority="烟台市发展和改革委员会",
        decision_no=f"烟发改信〔2019〕{number}号",
        listed_on=listed_on,
        publicity_end=publicity_end,
        policy=DEFAULT_POLICIES[kind],
    )
    removal = None
    if removed_on is not None:
        removal = Removal(removed_on, RemovalReason.REPAIR, "烟台市发展和改革委员会", "已修复")
    return EntryState(
        origin=origin,
        entry_id=entry.entry_id(origin),
        entry=entry,
        removal=removal,
        objection=None,
        last_index=number,
        updated_at=ISSUED,
    )


def issue_at(
    database: Any,
    at: dt.datetime,
    *states: EntryState,
    policies: Mapping[ListKind, ListPolicy] = DEFAULT_POLICIES,
) -> SignedReport:
    clock = FixedClock(NOW)  # the manifest is installed at NOW, then the clock moves
    queries = HeldEntries(clock, *states)
    qingdao = office(database, clock, QINGDAO, Links(None), queries, policies)
    clock.advance(at - NOW)
    return qingdao.issue(COMPANY.id, subject_name=COMPANY.name, valid_days=30, supersedes="")


SERIOUS, PENALTY = ListKind.SERIOUS_DISHONESTY, ListKind.ADMINISTRATIVE_PENALTY


def test_a_listing_is_shown_for_a_year_after_it_ended_however_it_ended(database: Any) -> None:
    today = dt.date(2026, 6, 1)  # NOW in China
    year = dt.timedelta(days=365)
    report = issue_at(
        database,
        NOW,
        held(SERIOUS, dt.date(2019, 1, 10), publicity_end=dt.date(2020, 1, 9), number=1),
        held(SERIOUS, dt.date(2024, 1, 10), publicity_end=today - year, number=2),
        held(SERIOUS, dt.date(2024, 1, 10), publicity_end=today - year - dt.timedelta(1), number=3),
        held(SERIOUS, dt.date(2024, 1, 10), removed_on=today - year, number=4),
        held(SERIOUS, dt.date(2024, 1, 10), removed_on=today - year - dt.timedelta(1), number=5),
        held(SERIOUS, dt.date(2026, 1, 10), number=6),
    ).report
    shown = {e.decision_no[-2]: (e.active, e.why) for e in report.list_entries}
    assert shown == {
        "2": (False, f"publicity ended on {today - year}"),
        "4": (False, f"removed on {today - year}: repair"),
        "6": (True, "listed on 2026-01-10, public until 2029-01-09"),
    }


def test_only_penalties_in_their_publicity_are_shown(database: Any) -> None:
    report = issue_at(
        database,
        NOW,
        held(PENALTY, dt.date(2026, 1, 10), number=1),
        held(PENALTY, dt.date(2025, 1, 10), removed_on=dt.date(2026, 5, 1), number=2),
        held(PENALTY, dt.date(2023, 1, 10), publicity_end=dt.date(2026, 1, 9), number=3),
    ).report
    assert [p.decision_no for p in report.penalties] == ["烟发改信〔2019〕1号"]


def test_the_year_is_counted_in_days_in_china(database: Any) -> None:
    # 07:00 in China on 2027-06-02 is still 2027-06-01 in UTC.
    at = dt.datetime(2027, 6, 1, 23, 0, tzinfo=dt.UTC)
    removed = held(SERIOUS, dt.date(2024, 1, 10), removed_on=dt.date(2026, 6, 1))  # 366 days
    assert issue_at(database, at, removed).report.list_entries == ()


def test_an_entry_dated_after_the_issue_day_is_left_out_not_refused(database: Any) -> None:
    # A city whose clock is ahead listed (or removed) it "tomorrow", as seen here.
    tomorrow = dt.date(2026, 6, 2)
    report = issue_at(
        database,
        NOW,
        held(SERIOUS, tomorrow, number=1),
        held(PENALTY, tomorrow, number=2),
        held(SERIOUS, dt.date(2026, 1, 10), removed_on=tomorrow, number=3),
        held(SERIOUS, dt.date(2026, 1, 10), number=4),
    ).report
    assert [e.decision_no for e in report.list_entries] == ["烟发改信〔2019〕4号"]
    assert report.penalties == ()


# --- which report a number stands for ----------------------------------------------------


def test_another_report_under_the_same_number_is_not_the_one_asked_about(
    tmp_path: Path, clock: FixedClock
) -> None:
    """After the issuer restores an old backup, it gives a lost report's number again."""
    lost_db = open_database(f"sqlite:///{tmp_path / 'lost.db'}")
    lost = office(lost_db, clock, QINGDAO, Links(None), HeldEntries(clock))
    first = lost.issue(COMPANY.id, subject_name=COMPANY.name, valid_days=30, supersedes="")
    lost.revoke(first.report.report_no, "出具有误")
    restored_db = open_database(f"sqlite:///{tmp_path / 'restored.db'}")
    restored = office(restored_db, clock, QINGDAO, Links(None), HeldEntries(clock))
    clock.advance(dt.timedelta(minutes=5))
    again = restored.issue(PERSON_ID, subject_name="张三", valid_days=30, supersedes="")
    assert again.report.report_no == first.report.report_no
    checked = verify(restored, first)
    assert checked.verdict.state == "status-unknown"
    assert f"no record of report {first.report.report_no}" in " ".join(checked.verdict.reasons)
    assert verify(restored, again).verdict.state == "valid"
    # A peer asking with the report's digest is told the issuer has no record of it; one
    # asking with the number alone (a node of an older version) gets the number's status.
    with pytest.raises(NotFoundError, match="another report than the one asked about"):
        restored.own_status(first.report.report_no, report_digest(first.report))
    assert restored.own_status(first.report.report_no).state == "valid"
    assert restored.own_status(again.report.report_no, report_digest(again.report)).state == (
        "valid"
    )
    lost_db.close()
    restored_db.close()


def test_the_verifier_names_the_report_it_asks_about(
    yantai: ReportOffice, issuer: FakeIssuer
) -> None:
    document = full_report()
    asked: list[peer_pb2.GetReportStatusRequest] = []
    answer = issuer.GetReportStatus

    async def recording(request: peer_pb2.GetReportStatusRequest, **options: Any) -> Any:
        asked.append(request)
        return await answer(request, **options)

    issuer.GetReportStatus = recording  # type: ignore[method-assign]
    assert verify(yantai, document).verdict.state == "valid"
    assert [(r.report_no, r.report_digest) for r in asked] == [
        (document.report.report_no, hashlib.sha256(document.report.signed_bytes()).digest())
    ]


# --- a successor must be a later report of the same issuer -------------------------------


@pytest.mark.parametrize(
    "successor",
    [
        _full_report().report_no,  # itself
        "370600-20260602-000001",  # another city's
        "370200-20260531-000099",  # issued before it
    ],
)
def test_an_answer_naming_an_impossible_successor_is_no_answer(
    yantai: ReportOffice, issuer: FakeIssuer, clock: FixedClock, successor: str
) -> None:
    document = full_report()
    issuer.state, issuer.superseded_by = 3, successor  # superseded
    checked = verify(yantai, document)
    assert checked.verdict.state == "status-unknown"
    # Nothing of it was kept as final: the issuer's next answer counts.
    issuer.state, issuer.superseded_by = 1, ""
    clock.advance(STATUS_TTL * 2)
    assert verify(yantai, document).verdict.state == "valid"


def test_a_held_list_superseding_a_report_by_itself_is_not_used(
    yantai: ReportOffice, issuer: FakeIssuer, database: Any, caplog: pytest.LogCaptureFixture
) -> None:
    document = full_report()
    index = document.report.status_index
    status_list = StatusList.new(issuer=QINGDAO, at=NOW, size=64).supersede(
        index, document.report.report_no, NOW
    )
    ReportRepository(database).put_status_list(
        QINGDAO,
        status_list.version,
        status_list.updated_at,
        sign_status_list(status_list, CITIES[QINGDAO].key).to_bytes(),
        NOW,
    )
    issuer.error = UNAVAILABLE
    with caplog.at_level(logging.WARNING):
        checked = verify(yantai, document)
    assert checked.verdict.state == "status-unknown"
    assert "issuer's status list held here refused" in caplog.text
    issuer.error = None
    assert verify(yantai, document).verdict.state == "valid"


def test_a_successor_must_be_a_later_report_of_the_same_issuer() -> None:
    ok = ReportStatus(
        report_no="370200-20260601-000017",
        state="superseded",
        reason="superseded by report 370200-20260601-000018",
        superseded_by="370200-20260601-000018",
        at=NOW,
    )
    assert ok.superseded_by == "370200-20260601-000018"
    for successor in ("370200-20260601-000017", "370200-20260531-000020", "370600-20260601-000018"):
        with pytest.raises(ReportFormatError, match="a successor is a later report of the same"):
            dataclasses.replace(ok, superseded_by=successor)


# --- what a public report may show -----------------------------------------------------------


def test_a_list_this_city_keeps_to_itself_is_not_in_its_reports(database: Any) -> None:
    private = dataclasses.replace(DEFAULT_POLICIES[SERIOUS], public=False)
    report = issue_at(
        database,
        NOW,
        held(ListKind.WATCH_LIST, dt.date(2026, 1, 10), number=1, origin=QINGDAO),
        held(SERIOUS, dt.date(2026, 1, 10), number=2, origin=QINGDAO),
        held(ListKind.JOINT_PUNISHMENT, dt.date(2026, 1, 10), number=3, origin=QINGDAO),
        held(SERIOUS, dt.date(2026, 1, 10), number=4),  # Yantai's, replicated: it publishes it
        policies={**DEFAULT_POLICIES, SERIOUS: private},
    ).report
    assert not DEFAULT_POLICIES[ListKind.WATCH_LIST].public
    assert sorted((e.origin, e.decision_no[-2]) for e in report.list_entries) == [
        (QINGDAO, "3"),
        (YANTAI, "4"),
    ]


# --- a list held here speaks only for reports issued before it was sent ---------------------


def test_a_list_sent_before_the_report_was_issued_says_nothing_of_it(
    yantai: ReportOffice, issuer: FakeIssuer, database: Any
) -> None:
    document = full_report()
    issued = document.report.issued_at
    hold_status_list(database, revoked=False, at=issued - dt.timedelta(minutes=1))
    issuer.error = UNAVAILABLE
    checked = verify(yantai, document)
    assert checked.verdict.state == "status-unknown"
    assert checked.status_source != "replica"
    # Sent again (the same version) once the report was issued: now it speaks for it.
    ReportRepository(database).confirm_status_list(QINGDAO, 1, issued)
    assert verify(yantai, document).status_source == "replica"


# --- licences and commitments this city records ------------------------------------------------


def test_recorded_licences_and_commitments_are_in_this_citys_reports(
    database: Any, clock: FixedClock
) -> None:
    qingdao = office(database, clock, QINGDAO, Links(None), HeldEntries(clock))
    qingdao.record_licence(
        COMPANY.id.lower(),  # normalised, as every identifier
        authority=" 青岛市行政审批服务局 ",
        licence_no="JY13702000012345",
        issued_on=dt.date(2024, 3, 1),
        summary="食品经营许可",
    )
    qingdao.record_commitment(COMPANY.id, made_on=dt.date(2026, 6, 1), content="承诺依法诚信经营。")
    report = qingdao.issue(
        COMPANY.id, subject_name=COMPANY.name, valid_days=30, supersedes=""
    ).report
    assert [(lic.authority, lic.licence_no) for lic in report.licences] == [
        ("青岛市行政审批服务局", "JY13702000012345")
    ]
    assert [c.content for c in report.commitments] == ["承诺依法诚信经营。"]
    # Another subject's report shows none of them.
    other = qingdao.issue(PERSON_ID, subject_name="张三", valid_days=30, supersedes="").report
    assert (other.licences, other.commitments) == ((), ())


DAY = dt.date(2026, 1, 1)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            lambda o: o.record_licence(
                COMPANY.id, authority="局", licence_no="1", issued_on=dt.date(2026, 6, 2),
                summary="x",
            ),
            "issued_on: 2026-06-02 is after today (2026-06-01 in China)",
        ),
        (
            lambda o: o.record_commitment(COMPANY.id, made_on=dt.date(2026, 6, 2), content="x"),
            "made_on: 2026-06-02 is after today",
        ),
        (
            lambda o: o.record_licence(
                COMPANY.id, authority="  ", licence_no="1", issued_on=dt.date(2026, 1, 1),
                summary="x",
            ),
            "authority: must not be empty",
        ),
        (
            lambda o: o.record_commitment(COMPANY.id, made_on=DAY, content="x" * 4001),
            "content: ",
        ),
        (
            lambda o: o.record_commitment("91370200MA3C5XXX0X", made_on=DAY, content="x"),
            "check character",
        ),
    ],
    ids=["future-licence", "future-commitment", "no-authority", "too-long", "bad-subject"],
)  # fmt: skip
def test_a_bad_licence_or_commitment_is_refused_and_nothing_recorded(
    database: Any, clock: FixedClock, record: Callable[[ReportOffice], None], message: str
) -> None:
    qingdao = office(database, clock, QINGDAO, Links(None), HeldEntries(clock))
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        record(qingdao)
    repository = ReportRepository(database)
    assert repository.licences_of(COMPANY.id) == repository.commitments_of(COMPANY.id) == []
