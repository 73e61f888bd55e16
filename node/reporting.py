"""Public credit reports this city issues, and the verification of any city's reports.

Issuing gathers what the federation knows about a subject (every city's list entries, in
force or recently removed, with their provenance; administrative penalties; ratings on the
common scale), signs it, and keeps its status in this city's signed status list. Verifying
checks a report offline against the trusted manifest chain, then asks its issuer whether
it still stands; when the issuer cannot be reached, the issuer's signed status list held
here answers, and without either the verdict is "signature valid, status unknown since T".
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import logging
from collections.abc import Mapping

import grpc

from creditnet.v1 import peer_pb2
from federation.clock import CHINA_TZ, Clock, china_date, format_utc
from federation.errors import (
    CreditNetError,
    FailedPreconditionError,
    InvalidInputError,
    NotFoundError,
)
from federation.reports import (
    MAX_REVOCATION_REASON,
    CreditReport,
    ReportCommitment,
    ReportLicence,
    ReportListEntry,
    ReportPenalty,
    ReportRating,
    ReportState,
    ReportStatus,
    SignedReport,
    SignedStatusList,
    StatusList,
    StatusSource,
    Verdict,
    accept_status_list,
    check_report_no,
    final_verdict,
    report_digest,
    report_number,
    sign_report,
    sign_status_list,
    verify_offline,
    verify_status_list,
)
from federation.sanctions import DEFAULT_POLICIES, ListKind, ListPolicy, Subject
from federation.signing import SigningKey
from federation.subjects import SubjectKind, parse_subject
from node.peers import PeerLinks
from node.queries import ListQueries
from node.ratings_desk import RatingDesk
from node.storage.reports import IssuedReport, ReportRepository, StatusCheck
from node.trust import TrustStore

log = logging.getLogger(__name__)

DEFAULT_VALID_DAYS = 30
MAX_VALID_DAYS = 366
# A listing that ended (removed, or its publicity over) stays in a report this long after.
RECENTLY_REMOVED = dt.timedelta(days=365)
# How long an issuer's answer is reused before asking again.
STATUS_TTL = dt.timedelta(seconds=10)
# How long a "valid" from an issuer's status list held here stands in for the issuer while
# it cannot be reached (the list is pulled every sync interval while it can): after that the
# status is unknown. A revocation or supersession in the list stays final whatever its age.
REPLICA_STATUS_MAX_AGE = dt.timedelta(hours=24)
CONFIRM_EVERY = dt.timedelta(minutes=1)
# How long after a revoked report expires its reason is still kept in the status list: a
# verifier whose clock is behind still counts the report valid for a while.
REASON_KEPT_AFTER_EXPIRY = dt.timedelta(days=1)
STATUS_TIMEOUT_S = 2.0

_STATE_FROM_WIRE: dict[int, ReportState] = {1: "valid", 2: "revoked", 3: "superseded"}


@dataclasses.dataclass(frozen=True)
class StatusFound:
    """What this node found of a report's status, where, and as of when.

    Without a status, ``as_of`` is when it was last known (if ever) and
    ``unknown_because`` may say why it is unknown.
    """

    status: ReportStatus | None
    source: StatusSource | None
    as_of: dt.datetime | None
    unknown_because: str | None = None

    @classmethod
    def unknown(cls, as_of: dt.datetime | None, because: str | None = None) -> StatusFound:
        return cls(None, None, as_of, because)


@dataclasses.dataclass(frozen=True)
class Verification:
    verdict: Verdict
    report: CreditReport | None
    status: ReportStatus | None
    status_source: str
    status_as_of: dt.datetime | None
    #: The file's verification code (what the printed report shows), when it could be read.
    verification_code: str = ""


class ReportOffice:
    def __init__(
        self,
        *,
        city_code: str,
        city_name: str,
        signing_key: SigningKey,
        trust: TrustStore,
        reports: ReportRepository,
        queries: ListQueries,
        ratings: RatingDesk,
        links: PeerLinks,
        clock: Clock,
        list_policies: Mapping[ListKind, ListPolicy] = DEFAULT_POLICIES,
    ) -> None:
        self._me = city_code
        self._name = city_name
        self._key = signing_key
        self._trust = trust
        self._reports = reports
        self._queries = queries
        self._ratings = ratings
        self._links = links
        self._clock = clock
        self._policies = list_policies
        self._parsed_lists: dict[str, tuple[int, StatusList]] = {}

    # --- issuing ------------------------------------------------------------------------

    def issue(
        self, subject_text: str, *, subject_name: str, valid_days: int, supersedes: str
    ) -> SignedReport:
        now = self._clock.now().replace(microsecond=0)
        subject = parse_subject(subject_text, today=china_date(now))
        days = valid_days or DEFAULT_VALID_DAYS
        if not 0 < days <= MAX_VALID_DAYS:
            raise InvalidInputError(f"valid_days must be 1 to {MAX_VALID_DAYS}, not {days}")
        old = self._own_report(check_report_no(supersedes, "supersedes")) if supersedes else None
        if old is not None and old.subject_id != subject.value:
            raise InvalidInputError(
                f"supersedes: report {supersedes} is about another subject; a report is "
                "superseded only by a report on the same subject"
            )
        if old is not None and (was := self.status_list().status_of(old.status_index)) != "valid":
            raise FailedPreconditionError(
                f"supersedes: report {supersedes} is {was} already; only a valid report "
                "can be superseded"
            )
        names = self._member_names()
        today = china_date(now)
        entries, penalties = [], []
        for answer in self._queries.subject_status(subject, include_inactive=True):
            state = answer.state
            removal = state.removal
            if state.origin == self._me and not self._policies[state.entry.list_kind].public:
                # A list this city keeps to itself (a watch list): a report is handed to
                # the applicant and read by every city. Other cities' entries held here
                # are of lists they publish: they replicate no other kind.
                continue
            if state.entry.listed_on > today or (removal and removal.removed_on > today):
                # Dated after the issue day by a city whose clock is ahead (around
                # midnight): not part of the record yet, and no report may show it.
                continue
            if not answer.status.active:
                # Removed, or past its publicity: a listing is shown for a year after it
                # ended, with why; a penalty no longer (credit repair ends its publicity).
                ended = removal.removed_on if removal else state.entry.publicity_end
                if (
                    state.entry.list_kind is ListKind.ADMINISTRATIVE_PENALTY
                    or today - ended > RECENTLY_REMOVED
                ):
                    continue
            if state.entry.list_kind is ListKind.ADMINISTRATIVE_PENALTY:
                penalties.append(
                    ReportPenalty(
                        authority=state.entry.authority,
                        decision_no=state.entry.decision_no,
                        decided_on=state.entry.listed_on,
                        summary=state.entry.reason,
                    )
                )
                continue
            entries.append(
                ReportListEntry.from_state(
                    state, origin_name=names.get(state.origin, state.origin), at=now
                )
            )
            subject_name = subject_name or state.entry.subject.name
        ratings = [
            ReportRating(
                issuer=a.statement.issuer,
                scale=a.statement.scale_id,
                grade=a.statement.grade,
                common_grade=a.recognition.common_grade,
                issued_on=a.statement.issued_on,
                valid_until=a.statement.valid_until,
            )
            for a in self._ratings.about(subject)
            if a.current and a.statement.issued_on <= today
        ]
        if not subject_name:
            raise InvalidInputError(
                "subject_name is needed: no list entry here gives the subject's name"
            )
        prefix = f"{self._me}-{now.astimezone(CHINA_TZ):%Y%m%d}-"
        report_no = report_number(self._me, now, self._reports.count_issued_on(prefix) + 1)
        index = self._reports.next_status_index()
        label = "统一社会信用代码" if subject.kind is SubjectKind.USCC else "公民身份号码"
        report = CreditReport(
            report_no=report_no,
            issuer=self._me,
            issuer_name=self._name,
            subject=Subject(kind=subject.kind, id=subject.value, name=subject_name),
            issued_at=now,
            valid_until=now + dt.timedelta(days=days),
            manifest_version=self._trust.current.version,
            status_index=index,
            supersedes=supersedes or None,
            registration=(("名称", subject_name), (label, subject.value)),
            list_entries=tuple(entries),
            penalties=tuple(penalties),
            licences=tuple(
                lic for lic in self._reports.licences_of(subject.value) if lic.issued_on <= today
            ),
            ratings=tuple(ratings),
            commitments=tuple(
                c for c in self._reports.commitments_of(subject.value) if c.made_on <= today
            ),
        )
        signed = sign_report(report, self._key)
        status_list = self._status_list_to_change(now)
        if index >= status_list.size:
            status_list = status_list.grow(max(status_list.size * 2, index + 1), now)
        if old is not None:
            status_list = status_list.supersede(old.status_index, report_no, now)
        # Signed first: a list with no room left refuses the report before it is recorded.
        signed_list = sign_status_list(status_list, self._key)
        self._reports.add(
            IssuedReport(
                report_no=report_no,
                status_index=index,
                subject_id=subject.value,
                issued_at=report.issued_at,
                valid_until=report.valid_until,
                supersedes=supersedes or None,
                document=signed.to_bytes(),
            )
        )
        self._store_status_list(signed_list)
        log.info("report issued", extra={"fields": {"report_no": report_no}})
        return signed

    # --- what this city records for its reports ------------------------------------------

    def record_licence(
        self,
        subject_text: str,
        *,
        authority: str,
        licence_no: str,
        issued_on: dt.date,
        summary: str,
    ) -> None:
        """Record an administrative licence (行政许可) of a subject for this city's reports."""
        now = self._clock.now()
        subject = parse_subject(subject_text, today=china_date(now))
        _not_after_today(issued_on, now, "issued_on")
        licence = ReportLicence(
            authority=authority.strip(),
            licence_no=licence_no.strip(),
            issued_on=issued_on,
            summary=summary.strip(),
        )
        self._reports.add_licence(subject.value, licence, now)

    def record_commitment(self, subject_text: str, *, made_on: dt.date, content: str) -> None:
        """Record a credit commitment (信用承诺) a subject made, for this city's reports."""
        now = self._clock.now()
        subject = parse_subject(subject_text, today=china_date(now))
        _not_after_today(made_on, now, "made_on")
        commitment = ReportCommitment(made_on=made_on, content=content.strip())
        self._reports.add_commitment(subject.value, commitment, now)

    def _member_names(self) -> Mapping[str, str]:
        return {m.city_code: m.name for m in self._trust.current.members}

    def _own_report(self, report_no: str) -> IssuedReport:
        row = self._reports.get(report_no)
        if row is None:
            raise NotFoundError(f"this city ({self._me}) has issued no report {report_no}")
        return row

    # --- status -------------------------------------------------------------------------

    def status_list(self) -> StatusList:
        stored = self._reports.status_list(self._me)
        if stored is None:
            return StatusList.new(issuer=self._me, at=self._clock.now())
        return SignedStatusList.from_bytes(stored.document).status_list

    def _status_list_to_change(self, now: dt.datetime) -> StatusList:
        """The status list a change starts from: the one held, less the reasons of revoked
        reports that expired more than :data:`REASON_KEPT_AFTER_EXPIRY` ago (their
        revocations stay). Without this the list would grow with every revocation until it
        passed what readers accept."""
        held = self.status_list()
        if not held.reasons:
            return held
        expired = self._reports.expired_among(
            (index for index, _ in held.reasons), now - REASON_KEPT_AFTER_EXPIRY
        )
        return held.forget(expired, now) if expired else held

    def _store_status_list(self, signed: SignedStatusList) -> None:
        status_list = signed.status_list
        self._reports.put_status_list(
            self._me,
            status_list.version,
            status_list.updated_at,
            signed.to_bytes(),
            self._clock.now(),
        )

    def signed_status_list(self) -> bytes:
        stored = self._reports.status_list(self._me)
        return stored.document if stored is not None else b""

    def revoke(self, report_no: str, reason: str) -> int:
        if not reason.strip():
            raise InvalidInputError("a revocation needs a reason")
        if len(reason.strip()) > MAX_REVOCATION_REASON:
            raise InvalidInputError(
                f"a revocation reason is at most {MAX_REVOCATION_REASON} characters, not "
                f"{len(reason.strip())}: say why in a few words; the decision behind it "
                "belongs in the city's own records"
            )
        row = self._own_report(report_no)
        now = self._clock.now()
        status_list = self._status_list_to_change(now).revoke(row.status_index, reason.strip(), now)
        self._store_status_list(sign_status_list(status_list, self._key))
        log.info("report revoked", extra={"fields": {"report_no": report_no}})
        return status_list.version

    def own_status(self, report_no: str, digest: bytes = b"") -> ReportStatus:
        """The status of this city's report ``report_no``. With ``digest`` (what
        :func:`report_digest` gives for the report asked about), a report held under that
        number that is another one (numbers are given again after a restore from an old
        backup) is not found: its status says nothing of the report asked about."""
        row = self._own_report(report_no)
        report = SignedReport.from_bytes(row.document).report
        if digest and not hmac.compare_digest(report_digest(report), digest):
            raise NotFoundError(
                f"report {report_no} held by this city ({self._me}) is another report than "
                "the one asked about"
            )
        return self.status_list().status_for(report)

    async def pull_status_lists(self) -> None:
        """Keep every issuer's signed status list, so verification goes on while it is down."""
        manifest = self._trust.current
        for member in manifest.members:
            if member.city_code == self._me:
                continue
            stub = self._links.stub(member.city_code)
            if stub is None:
                continue
            try:
                answer = await stub.GetStatusList(peer_pb2.GetStatusListRequest(), timeout=10)
                if not answer.status_list.document:
                    continue
                signed = SignedStatusList.from_bytes(answer.status_list.document)
                candidate = verify_status_list(signed, manifest, now=self._clock.now())
                if candidate.issuer != member.city_code:
                    raise InvalidInputError(
                        f"{member.city_code} sent the status list of {candidate.issuer}"
                    )
                held = self._reports.status_list(member.city_code)
                current = (
                    None if held is None else SignedStatusList.from_bytes(held.document).status_list
                )
                if accept_status_list(current, candidate) is current:
                    # The same list (two different ones of a version are refused): it is
                    # still the issuer's list now, which a replica's verdict says (noted
                    # once a minute at most, not at every round).
                    now = self._clock.now()
                    if held is not None and now - held.received_at >= CONFIRM_EVERY:
                        self._reports.confirm_status_list(member.city_code, held.version, now)
                    continue
                self._reports.put_status_list(
                    member.city_code,
                    candidate.version,
                    candidate.updated_at,
                    signed.to_bytes(),
                    self._clock.now(),
                )
            except grpc.aio.AioRpcError:
                continue
            except CreditNetError as exc:
                log.warning(
                    "status list from peer refused",
                    extra={"fields": {"peer": member.city_code, "reason": exc.message}},
                )

    # --- verifying ----------------------------------------------------------------------

    async def verify(self, data: bytes, *, offline_only: bool) -> Verification:
        now = self._clock.now()
        if not data:
            verdict = Verdict("invalid", ("the report file is empty",), "invalid: empty file")
            return Verification(verdict, None, None, "", None)
        try:
            signed = SignedReport.from_bytes(data)
        except CreditNetError as exc:
            verdict = Verdict(
                "invalid",
                (f"not a signed credit report: {exc.message}",),
                f"invalid: {exc.message}",
            )
            return Verification(verdict, None, None, "", None)
        offline = verify_offline(signed, chain=self._trust.epochs(), now=now)
        report, code = offline.report, signed.verification_code
        if report is None or offline.state != "valid" or offline_only:
            verdict = final_verdict(offline, None, status_source=None, status_as_of=None)
            return Verification(verdict, report, None, "", None, code)
        found = await self._status(report)
        verdict = final_verdict(
            offline,
            found.status,
            status_source=found.source,
            status_as_of=found.as_of,
            unknown_because=found.unknown_because,
        )
        return Verification(verdict, report, found.status, found.source or "", found.as_of, code)

    async def _status(self, report: CreditReport) -> StatusFound:
        """The report's status: from this city's own list for its own reports; for another
        city's, a revocation or supersession known here (they are final), else the issuer's
        answer (reused for :data:`STATUS_TTL`), else the issuer's signed list held here."""
        now = self._clock.now()
        if report.issuer == self._me:
            try:
                own = self.own_status(report.report_no, report_digest(report))
            except NotFoundError:
                return StatusFound.unknown(now, f"this city has no record of {report.describe()}")
            return StatusFound(own, "issuer", now)
        cached = self._readable(self._reports.cached_status(report.report_no))
        held = self._held_status(report)
        settled = _settled(cached, held)
        if settled is not None:
            return settled
        if cached is not None and now - cached.checked_at <= STATUS_TTL:
            return StatusFound(_from_check(cached), "issuer", cached.checked_at)
        try:
            status = await self._ask_issuer(report)
        except _IssuerDenies:
            return StatusFound.unknown(
                now, f"the issuer {report.issuer} answered that it has no record of this report"
            )
        if status is not None:
            self._reports.cache_status(
                StatusCheck(
                    report_no=report.report_no,
                    issuer=report.issuer,
                    state=status.state,
                    reason=status.reason,
                    superseded_by=status.superseded_by,
                    status_at=status.at,
                    checked_at=now,
                )
            )
            return StatusFound(status, "issuer", now)
        last_checked = cached.checked_at if cached is not None else None
        if held is not None:
            status, confirmed = held
            if now - confirmed <= REPLICA_STATUS_MAX_AGE:
                return StatusFound(status, "replica", confirmed)
            return StatusFound.unknown(
                max(confirmed, last_checked or confirmed),
                f"the issuer's status list held here was last confirmed at "
                f"{format_utc(confirmed)}, more than {_hours(REPLICA_STATUS_MAX_AGE)} ago",
            )
        return StatusFound.unknown(last_checked)

    async def _ask_issuer(self, report: CreditReport) -> ReportStatus | None:
        """The issuer's answer; ``None`` when it gives none this node can use (unreachable,
        or an answer that is not one: a state or time it cannot read, another report)."""
        stub = self._links.stub(report.issuer)
        if stub is None:
            return None
        try:
            answer = await stub.GetReportStatus(
                peer_pb2.GetReportStatusRequest(
                    report_no=report.report_no, report_digest=report_digest(report)
                ),
                timeout=STATUS_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise _IssuerDenies from None
            error = f"{exc.code().name}: {exc.details()}"[:200]
            log.info(
                "issuer did not answer a status request",
                extra={"fields": {"issuer": report.issuer, "error": error}},
            )
            return None
        try:
            state = _STATE_FROM_WIRE[answer.state]
            status = ReportStatus(
                report_no=report.report_no,
                state=state,
                reason=answer.reason,
                superseded_by=answer.superseded_by or None,
                at=answer.at.ToDatetime(dt.UTC),
            )
        except (KeyError, ValueError, OverflowError, CreditNetError) as exc:
            # Fail closed: an answer that cannot be read says nothing (never "valid").
            log.warning(
                "issuer's status answer refused",
                extra={"fields": {"issuer": report.issuer, "reason": _unreadable(exc)}},
            )
            return None
        return status

    def _held_status(self, report: CreditReport) -> tuple[ReportStatus, dt.datetime] | None:
        """The report's status in the issuer's signed status list held here, if any, and
        when the issuer last sent that list."""
        held = self._reports.status_list(report.issuer)
        if held is None:
            return None
        # Parsing a 131,072-bit list costs milliseconds: keep the parsed newest version.
        cached = self._parsed_lists.get(report.issuer)
        if cached is None or cached[0] != held.version:
            cached = (held.version, SignedStatusList.from_bytes(held.document).status_list)
            self._parsed_lists[report.issuer] = cached
        status_list = cached[1]
        if report.status_index >= status_list.size or held.received_at < report.issued_at:
            # A list the issuer sent before it issued the report says nothing about it.
            return None
        try:
            return status_list.status_for(report), held.received_at
        except CreditNetError as exc:
            # Signed by the issuer, and still no status (a report superseded by itself):
            # fail closed, as for an answer that cannot be read.
            log.warning(
                "issuer's status list held here refused",
                extra={"fields": {"issuer": report.issuer, "reason": exc.message}},
            )
            return None

    @staticmethod
    def _readable(check: StatusCheck | None) -> StatusCheck | None:
        """A cached answer, unless it is one this version refuses (kept by an older one)."""
        if check is None:
            return None
        try:
            _from_check(check)
        except CreditNetError:
            return None
        return check


def _not_after_today(day: dt.date, now: dt.datetime, field: str) -> None:
    today = china_date(now)
    if day > today:
        raise InvalidInputError(f"{field}: {day} is after today ({today} in China)")


def _hours(span: dt.timedelta) -> str:
    return f"{span.total_seconds() / 3600:g} hours"


class _IssuerDenies(Exception):
    """The issuer answered that it has no record of the report (NOT_FOUND)."""


def _unreadable(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"unknown state {exc.args[0]}"
    if isinstance(exc, CreditNetError):
        return exc.message
    return f"unreadable time: {exc}"


def _settled(
    cached: StatusCheck | None, held: tuple[ReportStatus, dt.datetime] | None
) -> StatusFound | None:
    """A revocation or supersession known here, from the issuer's answer or its signed list.

    Both are final: no later answer undoes them (an issuer that says "valid" afterwards has
    lost its records). A revocation wins over a supersession, as in the issuer's list.
    """
    known: list[tuple[ReportStatus, StatusSource, dt.datetime]] = []
    if cached is not None:
        known.append((_from_check(cached), "issuer", cached.checked_at))
    if held is not None:
        known.append((held[0], "replica", held[1]))
    final = [found for found in known if found[0].state != "valid"]
    if not final:
        return None
    return StatusFound(*min(final, key=lambda found: found[0].state != "revoked"))


def _from_check(check: StatusCheck) -> ReportStatus:
    return ReportStatus(
        report_no=check.report_no,
        state=check.state,  # type: ignore[arg-type]
        reason=check.reason,
        superseded_by=check.superseded_by,
        at=check.status_at,
    )
