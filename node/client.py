"""A small synchronous client for a node's client API, used by the CLI and the demo.

gRPC failures become :class:`CreditNetError` subclasses carrying the server's message
(which the node writes to be safe to show): a caller handles one error family, and the
CLI prints it without a traceback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import grpc

from creditnet.v1 import client_pb2, client_pb2_grpc, lists_pb2, matching_pb2, reports_pb2
from federation.errors import (
    AlreadyExistsError,
    CreditNetError,
    ErrorCode,
    FailedPreconditionError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    UnauthenticatedError,
    UnavailableError,
)
from federation.member import tls_server_name
from node.config import NodeConfig, client_target
from node.keystore import read_public, read_secret
from node.service.errors import domain_code, refused_by_quota

#: Recording up to 1000 changes is one database transaction and a log append per change;
#: it is given longer than a query.
SUBMIT_TIMEOUT_S = 120.0
#: The node's limit per ExportEntries page.
MAX_PAGE_SIZE = 1000
#: Verifying may ask the issuer for the report's status (the node gives it 2 s) after the
#: signature checks: more than a local query.
VERIFY_TIMEOUT_S = 15.0
#: One subject against every city at once: the node waits up to 20 s for each city (a table
#: fetched first, the peer's worker processes starting), in parallel.
MATCH_ONE_TIMEOUT_S = 60.0
#: A whole screening run streams progress; the deadline is for the run, not per message.
MATCH_BATCH_TIMEOUT_S = 6 * 3600.0

_Response = TypeVar("_Response")

_ERROR_FOR: dict[grpc.StatusCode, type[CreditNetError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInputError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: QuotaExceededError,
}


class NodeClient:
    """Dials the client API of the node whose directory we can read (token and certificate)."""

    def __init__(self, config: NodeConfig, *, timeout_s: float = 5.0) -> None:
        self._config = config
        self._timeout = timeout_s
        token = read_secret(config.client_token_path).decode().strip()
        certificate = read_public(config.tls_cert_path, what="TLS certificate")
        credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(root_certificates=certificate),
            grpc.access_token_call_credentials(token),
        )
        self._channel = grpc.secure_channel(
            client_target(config),
            credentials,
            options=[("grpc.ssl_target_name_override", tls_server_name(config.city_code))],
        )
        self._stub = client_pb2_grpc.ClientServiceStub(self._channel)

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def status(self) -> client_pb2.GetStatusResponse:
        return self._call(self._stub.GetStatus, client_pb2.GetStatusRequest())

    # --- sanction lists -----------------------------------------------------------------

    def submit(
        self, changes: Sequence[lists_pb2.ListChange]
    ) -> client_pb2.SubmitListChangesResponse:
        """Record list changes of this city; each gets its own outcome (index = position)."""
        request = client_pb2.SubmitListChangesRequest(changes=list(changes))
        timeout = max(self._timeout, SUBMIT_TIMEOUT_S)
        return self._call(self._stub.SubmitListChanges, request, timeout=timeout)

    def subject_status(
        self, subject_id: str, *, include_inactive: bool = False
    ) -> client_pb2.GetSubjectStatusResponse:
        """Every city's entries about one subject, with how fresh each city's replica is."""
        request = client_pb2.GetSubjectStatusRequest(
            subject_id=subject_id, include_inactive=include_inactive
        )
        return self._call(self._stub.GetSubjectStatus, request)

    def export(
        self,
        *,
        origin: str = "",
        list_kind: str = "",
        active_only: bool = False,
        page_size: int = 500,
    ) -> Iterator[lists_pb2.EntryView]:
        """The entries the node holds, page after page (lazily: one page in memory)."""
        if not 0 < page_size <= MAX_PAGE_SIZE:
            raise InvalidInputError(f"page size {page_size} is out of range 1-{MAX_PAGE_SIZE}")
        token = ""
        while True:
            request = client_pb2.ExportEntriesRequest(
                origin=origin,
                list_kind=list_kind,
                active_only=active_only,
                page_size=page_size,
                page_token=token,
            )
            page = self._call(self._stub.ExportEntries, request)
            yield from page.entries
            token = page.next_page_token
            if not token:
                return

    def history(self, origin: str, entry_id: str) -> client_pb2.GetEntryHistoryResponse:
        """The events of one entry in its origin's log, in log order."""
        request = client_pb2.GetEntryHistoryRequest(origin=origin, entry_id=entry_id)
        return self._call(self._stub.GetEntryHistory, request)

    def sync_status(self) -> client_pb2.GetSyncStatusResponse:
        """Per city, how far this node's replica is behind, and any split view detected."""
        request = client_pb2.GetSyncStatusRequest()
        return self._call(self._stub.GetSyncStatus, request)

    def resume(self, origin: str) -> client_pb2.ResumeSyncResponse:
        """Let sync from ``origin`` start again after an operator looked at a split view."""
        request = client_pb2.ResumeSyncRequest(origin=origin)
        return self._call(self._stub.ResumeSync, request)

    # --- reports and ratings ------------------------------------------------------------

    def issue_report(
        self, subject_id: str, subject_name: str = "", valid_days: int = 0, supersedes: str = ""
    ) -> client_pb2.IssueReportResponse:
        """Issue a signed credit report about one subject (``valid_days`` 0: the node's
        default; ``supersedes``: the number of an earlier report of this city it replaces)."""
        request = client_pb2.IssueReportRequest(
            subject_id=subject_id,
            subject_name=subject_name,
            valid_days=valid_days,
            supersedes=supersedes,
        )
        return self._call(self._stub.IssueReport, request)

    def verify_report(
        self, document: bytes, offline_only: bool = False
    ) -> client_pb2.VerifyReportResponse:
        """The node's verdict on a report document, sent exactly as given."""
        request = client_pb2.VerifyReportRequest(
            report=reports_pb2.SignedReport(document=document), offline_only=offline_only
        )
        timeout = max(self._timeout, VERIFY_TIMEOUT_S)
        return self._call(self._stub.VerifyReport, request, timeout=timeout)

    def revoke_report(self, report_no: str, reason: str) -> client_pb2.RevokeReportResponse:
        """Revoke a report this city issued; the answer carries the new status list version."""
        request = client_pb2.RevokeReportRequest(report_no=report_no, reason=reason)
        return self._call(self._stub.RevokeReport, request)

    def submit_rating(
        self,
        subject_id: str,
        subject_name: str,
        scale_id: str,
        *,
        grade: str = "",
        points: int | None = None,
        issued_on: str | dt.date = "",
        valid_until: str | dt.date,
        evidence_ref: str,
    ) -> client_pb2.SubmitRatingResponse:
        """Record a rating of this city in one of its scales (dates as YYYY-MM-DD; an empty
        ``issued_on`` means today). For a points scale the grade may follow from ``points``."""
        request = client_pb2.SubmitRatingRequest(
            subject_id=subject_id,
            subject_name=subject_name,
            scale_id=scale_id,
            grade=grade,
            points=points or 0,
            has_points=points is not None,
            issued_on=_day(issued_on),
            valid_until=_day(valid_until),
            evidence_ref=evidence_ref,
        )
        return self._call(self._stub.SubmitRating, request)

    def record_licence(
        self,
        subject_id: str,
        *,
        authority: str,
        licence_no: str,
        issued_on: str | dt.date,
        summary: str,
    ) -> None:
        """Record an administrative licence of a subject, for this city's reports."""
        request = client_pb2.RecordLicenceRequest(
            subject_id=subject_id,
            authority=authority,
            licence_no=licence_no,
            issued_on=_day(issued_on),
            summary=summary,
        )
        self._call(self._stub.RecordLicence, request)

    def record_commitment(self, subject_id: str, *, made_on: str | dt.date, content: str) -> None:
        """Record a credit commitment a subject made, for this city's reports."""
        request = client_pb2.RecordCommitmentRequest(
            subject_id=subject_id, made_on=_day(made_on), content=content
        )
        self._call(self._stub.RecordCommitment, request)

    def subject_ratings(self, subject_id: str) -> client_pb2.GetSubjectRatingsResponse:
        """Every city's ratings of a subject, on the common scale, with this node's
        recognition of each."""
        request = client_pb2.GetSubjectRatingsRequest(subject_id=subject_id)
        return self._call(self._stub.GetSubjectRatings, request)

    # --- private matching ---------------------------------------------------------------

    def match_one(
        self, subject_id: str, city_codes: Sequence[str] = ()
    ) -> matching_pb2.MatchOneResponse:
        """Whether one subject is on another city's non-public lists, every city (or those
        named) asked at once; one answer per city."""
        request = matching_pb2.MatchOneRequest(subject_id=subject_id, city_codes=list(city_codes))
        timeout = max(self._timeout, MATCH_ONE_TIMEOUT_S)
        return self._call(self._stub.MatchOne, request, timeout=timeout)

    def match_batch(
        self, subject_ids: Sequence[str], city_code: str, *, count_only: bool = False
    ) -> Iterator[matching_pb2.MatchBatchResponse]:
        """Screen many subjects against one city: progress messages, then the result
        (``done``): which subjects hit (membership) or only how many (``count_only``)."""
        mode = matching_pb2.MATCH_MODE_COUNT if count_only else matching_pb2.MATCH_MODE_MEMBERSHIP
        request = matching_pb2.MatchBatchRequest(
            city_code=city_code, subject_ids=list(subject_ids), mode=mode
        )
        stream = self._stub.MatchBatch(request, timeout=MATCH_BATCH_TIMEOUT_S)
        try:
            yield from stream
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def disclose(
        self,
        city_code: str,
        subject_id: str,
        *,
        match_request_id: bytes,
        purpose: str,
        legal_basis: str = "",
        requested_by: str = "",
    ) -> matching_pb2.DiscloseEntryResponse:
        """Ask the city that reported a hit for its entries about the subject (audited)."""
        request = matching_pb2.DiscloseEntryRequest(
            city_code=city_code,
            subject_id=subject_id,
            match_request_id=match_request_id,
            purpose=purpose,
            legal_basis=legal_basis,
            requested_by=requested_by,
        )
        return self._call(self._stub.DiscloseEntry, request, timeout=max(self._timeout, 30.0))

    def matching_status(self) -> matching_pb2.GetMatchingStatusResponse:
        """The matching table this node publishes and the peers' tables it holds."""
        request = matching_pb2.GetMatchingStatusRequest()
        return self._call(self._stub.GetMatchingStatus, request)

    # --- errors -------------------------------------------------------------------------

    def _call(
        self, rpc: Callable[..., _Response], request: object, *, timeout: float | None = None
    ) -> _Response:
        try:
            return rpc(request, timeout=self._timeout if timeout is None else timeout)
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def _error(self, exc: grpc.RpcError) -> CreditNetError:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
        domain = domain_code(exc)
        if domain is ErrorCode.UNAVAILABLE:  # the node answered: a city it asked did not
            return UnavailableError(details)
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED and not refused_by_quota(exc):
            return InvalidInputError(
                f"a message was larger than this client or the node accepts: {details}",
                hint="send fewer items at once, or raise [limits] max_message_bytes",
            )
        error = _ERROR_FOR.get(code) if code is not None else None
        if error is not None:
            return error(details)
        if code is grpc.StatusCode.UNAVAILABLE:
            return UnavailableError(
                f"the node {self._config.city_code} is not answering on "
                f"{client_target(self._config)}",
                hint=f"is it running? start it with: credit-node serve --dir {self._config.home}",
            )
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return UnavailableError(
                f"the node {self._config.city_code} did not answer in time",
                hint="it may be busy; try again (list changes are idempotent)",
            )
        name = code.name if code is not None else "error"
        return UnavailableError(f"the node refused the request ({name}): {details}")


def _day(value: str | dt.date) -> str:
    return value.isoformat() if isinstance(value, dt.date) else value
