"""How a node finds a report's status (node.reporting.ReportOffice), whatever the issuer
answers: a real SQLite database and trust store; the issuer's peer API is the one fake,
at the network boundary, so that it can answer what a real node never would."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from creditnet.v1 import peer_pb2, reports_pb2
from federation.canonical import MAX_DOCUMENT_BYTES
from federation.clock import FixedClock
from federation.errors import InvalidInputError, NotFoundError, ReportStatusError
from federation.manifest import SignedManifest, build_manifest
from federation.reports import (
    SignedReport,
    SignedStatusList,
    StatusList,
    sign_report,
    sign_status_list,
)
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


def office(database: Any, clock: FixedClock, city: str, links: Links) -> ReportOffice:
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
        queries=Unused(),  # type: ignore[arg-type]
        ratings=Unused(),  # type: ignore[arg-type]
        links=links,  # type: ignore[arg-type]
        clock=clock,
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
    with pytest.raises(NotFoundError):
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
