"""The client API servicer (for the city's own platform) and its token check."""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from creditnet.v1 import (
    client_pb2,
    client_pb2_grpc,
    lists_pb2,
    manifest_pb2,
    matching_pb2,
    reports_pb2,
    subject_pb2,
)
from federation.clock import Clock, china_date
from federation.errors import CreditNetError, InvalidInputError
from federation.member import check_city_code
from federation.reports import check_report_no
from federation.subjects import SubjectKind, check_subject, parse_subject
from node.ledger import Change, Outcome, OwnLog
from node.matching.querier import BatchResult, CityAnswer, MatchMode, MatchQuerier
from node.matching.querier import Outcome as MatchOutcome
from node.peers import PeerLinks
from node.queries import Freshness, ListQueries
from node.ratings_desk import RatingDesk, statement_for
from node.replication import Replicator
from node.report_html import render_html
from node.reporting import ReportOffice
from node.service.convert import (
    change_from_wire,
    date_from_wire,
    history_to_wire,
    optional_date_from_wire,
    timestamp,
    view_to_wire,
)
from node.service.errors import translate_errors, translate_stream_errors
from node.storage.repositories import EventRepository, PeerContactRepository
from node.trust import TrustStore

log = logging.getLogger(__name__)

MAX_IDENTIFIERS = 1000
MAX_IDENTIFIER_CHARS = 64

_KIND = {
    SubjectKind.USCC: subject_pb2.SUBJECT_KIND_USCC,
    SubjectKind.RESIDENT_ID: subject_pb2.SUBJECT_KIND_RESIDENT_ID,
}

# A member counts as reachable if its last successful contact is this many heartbeats old
# at most, and nothing failed since.
REACHABLE_HEARTBEATS = 3
RECENT_EVENTS = 10


def _timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


class ClientApi(client_pb2_grpc.ClientServiceServicer):
    def __init__(
        self,
        *,
        city_code: str,
        trust: TrustStore,
        contacts: PeerContactRepository,
        events: EventRepository,
        own_log: OwnLog,
        queries: ListQueries,
        replicator: Replicator,
        links: PeerLinks,
        reports: ReportOffice,
        ratings: RatingDesk,
        matching: MatchQuerier,
        clock: Clock,
        heartbeat_interval_s: float,
        started: dt.datetime,
    ) -> None:
        self._matching = matching
        self._reports = reports
        self._ratings = ratings
        self._own = own_log
        self._queries = queries
        self._replicator = replicator
        self._links = links
        self._city_code = city_code
        self._trust = trust
        self._contacts = contacts
        self._events = events
        self._clock = clock
        self._fresh = dt.timedelta(seconds=heartbeat_interval_s * REACHABLE_HEARTBEATS + 1)
        self._started = started

    @translate_errors
    async def GetStatus(
        self, request: client_pb2.GetStatusRequest, context: Any
    ) -> client_pb2.GetStatusResponse:
        manifest = self._trust.current
        contacts = self._contacts.all()
        now = self._clock.now()
        members = []
        for member in manifest.members:
            status = client_pb2.MemberStatus(
                city_code=member.city_code, name=member.name, endpoint=member.endpoint
            )
            if member.city_code == self._city_code:
                status.is_self = True
                status.reachable = True
                status.manifest_version = manifest.version
                status.last_contact.FromDatetime(now)
            elif (contact := contacts.get(member.city_code)) is not None:
                success = contact.last_success
                status.reachable = (
                    success is not None
                    and contact.consecutive_failures == 0
                    and now - success <= self._fresh
                )
                status.manifest_version = contact.manifest_version or 0
                if success is not None:
                    status.last_contact.FromDatetime(success)
                status.last_error = contact.last_error or ""
            members.append(status)
        return client_pb2.GetStatusResponse(
            city_code=self._city_code,
            federation_id=manifest.federation_id,
            manifest_version=manifest.version,
            manifest_expires=_timestamp(manifest.expires),
            members=members,
            started=_timestamp(self._started),
            recent_events=[
                client_pb2.NodeEvent(at=_timestamp(e.at), kind=e.kind, detail=e.detail)
                for e in self._events.recent(RECENT_EVENTS)
            ],
        )

    @translate_errors
    async def CheckSubjects(
        self, request: client_pb2.CheckSubjectsRequest, context: Any
    ) -> client_pb2.CheckSubjectsResponse:
        if not request.identifiers:
            raise InvalidInputError("no identifiers given")
        if len(request.identifiers) > MAX_IDENTIFIERS:
            raise InvalidInputError(
                f"{len(request.identifiers)} identifiers in one request; at most {MAX_IDENTIFIERS}"
            )
        results = []
        for index, text in enumerate(request.identifiers):
            if len(text) > MAX_IDENTIFIER_CHARS:
                results.append(
                    client_pb2.SubjectCheck(
                        index=index,
                        reason=f"{len(text)} characters; an identifier has at most "
                        f"{MAX_IDENTIFIER_CHARS}",
                    )
                )
                continue
            check = check_subject(text, today=china_date(self._clock.now()))
            result = client_pb2.SubjectCheck(
                index=index,
                valid=check.valid,
                masked=check.masked or "",
                reason=check.reason or "",
                warnings=list(check.warnings),
            )
            if check.kind is not None:
                result.kind = _KIND[check.kind]
            # Only what may be shown in clear is echoed: never a personal identifier (nor an
            # all-digit code that could be one); the platform has its own input anyway.
            if check.valid and check.normalized == check.masked:
                result.normalized = check.normalized or ""
            results.append(result)
        return client_pb2.CheckSubjectsResponse(results=results)

    @translate_errors
    async def GetManifest(
        self, request: client_pb2.GetManifestRequest, context: Any
    ) -> client_pb2.GetManifestResponse:
        documents = self._trust.documents_after(self._trust.current.version - 1)
        return client_pb2.GetManifestResponse(
            manifest=manifest_pb2.SignedManifest(document=documents[-1])
        )

    # --- lists ----------------------------------------------------------------------

    @translate_errors
    async def SubmitListChanges(
        self, request: client_pb2.SubmitListChangesRequest, context: Any
    ) -> client_pb2.SubmitListChangesResponse:
        if not request.changes:
            raise InvalidInputError("no changes given")
        if len(request.changes) > MAX_CHANGES:
            raise InvalidInputError(
                f"{len(request.changes)} changes in one request; at most {MAX_CHANGES}"
            )
        results: list[client_pb2.ChangeResult | None] = [None] * len(request.changes)
        changes: list[Change] = []
        positions: list[int] = []
        for index, message in enumerate(request.changes):
            try:
                changes.append(change_from_wire(message, self._own.policies))
                positions.append(index)
            except CreditNetError as exc:
                results[index] = client_pb2.ChangeResult(
                    index=index,
                    outcome=client_pb2.CHANGE_OUTCOME_REJECTED,
                    reason=exc.message,
                )
        size_before = self._own.store.size
        # Off the event loop: a large import must not stall the node's other answers.
        recorded = await asyncio.to_thread(self._own.submit, changes)
        for index, result in zip(positions, recorded, strict=True):
            results[index] = client_pb2.ChangeResult(
                index=index,
                outcome=_OUTCOME[result.outcome],
                entry_id=result.entry_id,
                reason=result.reason,
                log_index=result.log_index or 0,
            )
        if self._own.store.size > size_before and self._own.store.checkpoint:
            self._links.announce(self._own.store.checkpoint)
        return client_pb2.SubmitListChangesResponse(
            results=[r for r in results if r is not None], log_size=self._own.store.size
        )

    @translate_errors
    async def GetSubjectStatus(
        self, request: client_pb2.GetSubjectStatusRequest, context: Any
    ) -> client_pb2.GetSubjectStatusResponse:
        subject = parse_subject(request.subject_id, today=china_date(self._clock.now()))
        answers = self._queries.subject_status(subject, include_inactive=request.include_inactive)
        members = [m.city_code for m in self._trust.current.members]
        return client_pb2.GetSubjectStatusResponse(
            masked_subject=subject.masked,
            kind=_KIND[subject.kind],
            entries=[view_to_wire(a) for a in answers],
            origins=[_freshness(f) for f in self._queries.freshness(members)],
        )

    @translate_errors
    async def ExportEntries(
        self, request: client_pb2.ExportEntriesRequest, context: Any
    ) -> client_pb2.ExportEntriesResponse:
        if request.origin:
            check_city_code(request.origin)
        answers, token = self._queries.export_page(
            origin=request.origin,
            list_kind=request.list_kind,
            active_only=request.active_only,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return client_pb2.ExportEntriesResponse(
            entries=[view_to_wire(a) for a in answers], next_page_token=token
        )

    @translate_errors
    async def GetEntryHistory(
        self, request: client_pb2.GetEntryHistoryRequest, context: Any
    ) -> client_pb2.GetEntryHistoryResponse:
        check_city_code(request.origin)
        items = self._queries.history(request.origin, request.entry_id)
        return client_pb2.GetEntryHistoryResponse(events=[history_to_wire(i) for i in items])

    @translate_errors
    async def GetSyncStatus(
        self, request: client_pb2.GetSyncStatusRequest, context: Any
    ) -> client_pb2.GetSyncStatusResponse:
        members = [
            m.city_code for m in self._trust.current.members if m.city_code != self._city_code
        ]
        replicas = []
        for fresh in self._queries.freshness(members):
            replica = fresh.replica
            item = client_pb2.ReplicaSync(
                origin=fresh.origin,
                verified_size=fresh.verified_size,
                latest_seen_size=fresh.latest_seen_size,
                lag=fresh.latest_seen_size - fresh.verified_size,
            )
            if replica is not None:
                if replica.last_success is not None:
                    item.last_success.CopyFrom(timestamp(replica.last_success))
                item.last_error = replica.last_error or ""
                item.blocked = replica.blocked
                item.blocked_reason = replica.blocked_reason or ""
            replicas.append(item)
        views = [
            client_pb2.SplitView(
                origin=v.origin,
                detected_at=timestamp(v.detected_at),
                reason=v.reason,
                reported_by=v.reported_by,
                first=lists_pb2.SignedCheckpoint(document=v.first_checkpoint),
                second=lists_pb2.SignedCheckpoint(document=v.second_checkpoint),
            )
            for v in self._replicator.split_views()
        ]
        return client_pb2.GetSyncStatusResponse(
            own_log_size=self._own.store.size, replicas=replicas, split_views=views
        )

    @translate_errors
    async def ResumeSync(
        self, request: client_pb2.ResumeSyncRequest, context: Any
    ) -> client_pb2.ResumeSyncResponse:
        origin = check_city_code(request.origin)
        if self._trust.current.member(origin) is None or origin == self._city_code:
            raise InvalidInputError(f"{origin} is not another member of the federation")
        self._replicator.resume(origin)
        return client_pb2.ResumeSyncResponse()

    # --- reports and ratings ---------------------------------------------------------

    @translate_errors
    async def IssueReport(
        self, request: client_pb2.IssueReportRequest, context: Any
    ) -> client_pb2.IssueReportResponse:
        signed = self._reports.issue(
            request.subject_id,
            subject_name=request.subject_name.strip(),
            valid_days=request.valid_days,
            supersedes=request.supersedes.strip(),
        )
        issuer_name = self._trust.current.member(self._city_code)
        return client_pb2.IssueReportResponse(
            report=reports_pb2.SignedReport(document=signed.to_bytes()),
            report_no=signed.report.report_no,
            verification_code=signed.verification_code,
            html=render_html(signed, issuer_name_zh=issuer_name.name if issuer_name else ""),
        )

    @translate_errors
    async def VerifyReport(
        self, request: client_pb2.VerifyReportRequest, context: Any
    ) -> client_pb2.VerifyReportResponse:
        # An empty or garbled document gets a verdict (invalid, with the reason), not an
        # error: it is what an applicant handed in, and the clerk must be told why.
        result = await self._reports.verify(
            request.report.document, offline_only=request.offline_only
        )
        answer = client_pb2.VerifyReportResponse(
            verdict=_VERDICT[result.verdict.state],
            summary=result.verdict.summary,
            reasons=list(result.verdict.reasons),
            status_source=result.status_source,
            verification_code=result.verification_code,
        )
        report = result.report
        if report is not None:
            answer.report_no = report.report_no
            answer.issuer = report.issuer
            answer.masked_subject = report.subject.masked
            answer.issued_at.CopyFrom(timestamp(report.issued_at))
            answer.valid_until.CopyFrom(timestamp(report.valid_until))
        if result.status_as_of is not None:
            answer.status_as_of.CopyFrom(timestamp(result.status_as_of))
        if result.status is not None and result.status.superseded_by:
            answer.superseded_by = result.status.superseded_by
        return answer

    @translate_errors
    async def RevokeReport(
        self, request: client_pb2.RevokeReportRequest, context: Any
    ) -> client_pb2.RevokeReportResponse:
        version = self._reports.revoke(check_report_no(request.report_no), request.reason)
        return client_pb2.RevokeReportResponse(status_list_version=version)

    @translate_errors
    async def RecordLicence(
        self, request: client_pb2.RecordLicenceRequest, context: Any
    ) -> client_pb2.RecordLicenceResponse:
        self._reports.record_licence(
            request.subject_id,
            authority=request.authority,
            licence_no=request.licence_no,
            issued_on=date_from_wire(request.issued_on, "issued_on"),
            summary=request.summary,
        )
        return client_pb2.RecordLicenceResponse()

    @translate_errors
    async def RecordCommitment(
        self, request: client_pb2.RecordCommitmentRequest, context: Any
    ) -> client_pb2.RecordCommitmentResponse:
        self._reports.record_commitment(
            request.subject_id,
            made_on=date_from_wire(request.made_on, "made_on"),
            content=request.content,
        )
        return client_pb2.RecordCommitmentResponse()

    @translate_errors
    async def SubmitRating(
        self, request: client_pb2.SubmitRatingRequest, context: Any
    ) -> client_pb2.SubmitRatingResponse:
        today = china_date(self._clock.now())
        subject = parse_subject(request.subject_id, today=today)
        scale = self._ratings.scale(request.scale_id)
        statement = statement_for(
            issuer=self._city_code,
            subject=subject,
            subject_name=request.subject_name.strip(),
            scale=scale,
            grade=request.grade.strip(),
            points=request.points if request.has_points else None,
            issued_on=optional_date_from_wire(request.issued_on, "issued_on"),
            valid_until=date_from_wire(request.valid_until, "valid_until"),
            evidence_ref=request.evidence_ref.strip(),
            clock=self._clock,
        )
        return client_pb2.SubmitRatingResponse(sequence=self._ratings.submit(statement))

    @translate_errors
    async def GetSubjectRatings(
        self, request: client_pb2.GetSubjectRatingsRequest, context: Any
    ) -> client_pb2.GetSubjectRatingsResponse:
        subject = parse_subject(request.subject_id, today=china_date(self._clock.now()))
        views = []
        for answer in self._ratings.about(subject):
            statement = answer.statement
            view = reports_pb2.RatingView(
                issuer=statement.issuer,
                scale_id=statement.scale_id,
                scale_name=answer.scale.name if answer.scale else "",
                grade=statement.grade,
                points=statement.points or 0,
                common_grade=answer.recognition.common_grade or "",
                recognised=answer.recognition.recognised,
                reasons=list(answer.recognition.reasons),
                issued_on=statement.issued_on.isoformat(),
                valid_until=statement.valid_until.isoformat(),
                evidence_ref=statement.evidence_ref,
            )
            view.received_at.CopyFrom(timestamp(answer.received_at))
            views.append(view)
        return client_pb2.GetSubjectRatingsResponse(
            masked_subject=subject.masked,
            ratings=views,
            common_scale=list(self._trust.current.common_scale),
        )

    # --- private matching -------------------------------------------------------------

    @translate_errors
    async def MatchOne(
        self, request: matching_pb2.MatchOneRequest, context: Any
    ) -> matching_pb2.MatchOneResponse:
        cities = [check_city_code(c) for c in request.city_codes]
        answers = await self._matching.match_one(request.subject_id, cities)
        return matching_pb2.MatchOneResponse(cities=[_city_match(a) for a in answers])

    @translate_stream_errors
    async def MatchBatch(
        self, request: matching_pb2.MatchBatchRequest, context: Any
    ) -> AsyncIterator[matching_pb2.MatchBatchResponse]:
        """Progress after every request to the peer, then the results (done = true)."""
        city, mode = _batch_arguments(request)
        queue: asyncio.Queue[matching_pb2.MatchBatchResponse | None] = asyncio.Queue()

        async def progress(done: int, total: int) -> None:
            await queue.put(
                matching_pb2.MatchBatchResponse(done_subjects=done, total_subjects=total)
            )

        async def run() -> BatchResult:
            try:
                return await self._matching.match_batch(
                    list(request.subject_ids), city, mode, progress
                )
            finally:
                await queue.put(None)

        task = asyncio.create_task(run())
        try:
            while (message := await queue.get()) is not None:
                yield message
            result = await task
        finally:
            if not task.done():
                task.cancel()
        yield _batch_result(result, mode)

    @translate_errors
    async def DiscloseEntry(
        self, request: matching_pb2.DiscloseEntryRequest, context: Any
    ) -> matching_pb2.DiscloseEntryResponse:
        city = check_city_code(request.city_code)
        answer = await self._matching.disclose(
            city,
            request.subject_id,
            match_request_id=request.match_request_id,
            purpose=request.purpose,
            legal_basis=request.legal_basis,
            requested_by=request.requested_by,
        )
        return matching_pb2.DiscloseEntryResponse(
            entries=list(answer.entries), disclosure_id=answer.disclosure_id
        )

    @translate_errors
    async def GetMatchingStatus(
        self, request: matching_pb2.GetMatchingStatusRequest, context: Any
    ) -> matching_pb2.GetMatchingStatusResponse:
        tables = []
        for state in self._matching.tables():
            table = matching_pb2.MatchTableState(
                city_code=state.city,
                table_id=state.table_id,
                epoch=state.epoch,
                bins=state.bins,
                pooled_residues=state.pooled_residues,
                quota_left=state.quota_left,
            )
            table.issued_at.CopyFrom(timestamp(state.issued_at))
            tables.append(table)
        return matching_pb2.GetMatchingStatusResponse(tables=tables)


MAX_CHANGES = 1000
#: A batch request of 100,000 identifiers is under 2 MB, within the message limit.
MAX_MATCH_SUBJECTS = 100_000

_MATCH_MODE = {
    matching_pb2.MATCH_MODE_MEMBERSHIP: MatchMode.MEMBERSHIP,
    matching_pb2.MATCH_MODE_COUNT: MatchMode.COUNT,
}
_MATCH_OUTCOME = {
    MatchOutcome.HIT: matching_pb2.CityMatch.OUTCOME_HIT,
    MatchOutcome.NO_HIT: matching_pb2.CityMatch.OUTCOME_NO_HIT,
    MatchOutcome.UNAVAILABLE: matching_pb2.CityMatch.OUTCOME_UNAVAILABLE,
    MatchOutcome.REFUSED: matching_pb2.CityMatch.OUTCOME_REFUSED,
}


def _batch_arguments(request: matching_pb2.MatchBatchRequest) -> tuple[str, MatchMode]:
    city = check_city_code(request.city_code)
    if len(request.subject_ids) > MAX_MATCH_SUBJECTS:
        raise InvalidInputError(
            f"{len(request.subject_ids)} subjects in one request; at most {MAX_MATCH_SUBJECTS}"
        )
    mode = _MATCH_MODE.get(request.mode)
    if mode is None:
        raise InvalidInputError("give a mode: membership or count")
    return city, mode


def _city_match(answer: CityAnswer) -> matching_pb2.CityMatch:
    return matching_pb2.CityMatch(
        city_code=answer.city,
        outcome=_MATCH_OUTCOME[answer.outcome],
        list_kinds=list(answer.kinds),
        detail=answer.detail,
        match_request_id=answer.request_id,
    )


def _batch_result(result: BatchResult, mode: MatchMode) -> matching_pb2.MatchBatchResponse:
    answer = matching_pb2.MatchBatchResponse(
        done_subjects=result.total,
        total_subjects=result.total,
        done=True,
        hit_count=result.hit_count,
        match_request_ids=result.request_ids,
    )
    if mode is MatchMode.MEMBERSHIP:
        answer.hits.extend(
            matching_pb2.MatchSubjectResult(index=index, list_kinds=list(kinds))
            for index, kinds in result.hits
        )
    return answer


_VERDICT = {
    "valid": reports_pb2.REPORT_VERDICT_VALID,
    "revoked": reports_pb2.REPORT_VERDICT_REVOKED,
    "superseded": reports_pb2.REPORT_VERDICT_SUPERSEDED,
    "expired": reports_pb2.REPORT_VERDICT_EXPIRED,
    "invalid": reports_pb2.REPORT_VERDICT_INVALID,
    "status-unknown": reports_pb2.REPORT_VERDICT_STATUS_UNKNOWN,
}


_OUTCOME = {
    Outcome.APPLIED: client_pb2.CHANGE_OUTCOME_APPLIED,
    Outcome.DUPLICATE: client_pb2.CHANGE_OUTCOME_DUPLICATE,
    Outcome.REJECTED: client_pb2.CHANGE_OUTCOME_REJECTED,
}


def _freshness(fresh: Freshness) -> client_pb2.OriginFreshness:
    item = client_pb2.OriginFreshness(
        origin=fresh.origin,
        verified_size=fresh.verified_size,
        latest_seen_size=fresh.latest_seen_size,
    )
    if fresh.head is not None:
        item.last_sync.CopyFrom(timestamp(fresh.head.updated_at))
    return item


HEALTH_PREFIX = "/grpc.health.v1.Health/"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Every client-API call needs ``authorization: Bearer <token>``; health checks do not,
    so that an orchestrator can probe the port."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        presented = b""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                presented = value.encode() if isinstance(value, str) else value
        if hmac.compare_digest(presented, self._expected):
            return handler
        return _refusal(handler)


async def _abort_unauthenticated(
    request: object, context: grpc.aio.ServicerContext[Any, Any]
) -> None:
    await context.abort(
        grpc.StatusCode.UNAUTHENTICATED,
        "missing or wrong client token (send 'authorization: Bearer <token>' with the token "
        "from the node's keys/client-token)",
    )


def _refusal(handler: Handler | None) -> Handler:
    if handler is not None and handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_abort_unauthenticated)
    if handler is not None and handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_abort_unauthenticated)
    if handler is not None and handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_abort_unauthenticated)
    return grpc.unary_unary_rpc_method_handler(_abort_unauthenticated)
