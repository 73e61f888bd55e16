"""The peer API servicer: thin, identifies the calling member, answers from the trust store."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from creditnet.v1 import (
    lists_pb2,
    manifest_pb2,
    matching_pb2,
    peer_pb2,
    peer_pb2_grpc,
    reports_pb2,
)
from federation.clock import Clock
from federation.errors import (
    FailedPreconditionError,
    InvalidInputError,
    PermissionDeniedError,
    UnavailableError,
)
from federation.member import Member
from federation.merkle import PerfectSubtrees, consistency_proof, decompose
from federation.reports import REPORT_DIGEST_BYTES, check_report_no
from node.ledger import OwnLog
from node.matching.holder import (
    BadTime,
    DisclosureQuery,
    EvaluationQuery,
    MatchHolder,
    ProbeMode,
    ProbeQuery,
    TablePart,
)
from node.matching.querier import MatchQuerier
from node.peers import PeerLinks
from node.ratings_desk import RatingDesk
from node.replication import Replicator
from node.reporting import ReportOffice
from node.service.errors import translate_errors, translate_stream_errors
from node.service.tls import peer_fingerprint
from node.storage.database import check_storable
from node.storage.lists import LogRepository
from node.storage.repositories import PeerContactRepository
from node.trust import TrustStore

MAX_MANIFESTS_PER_ANSWER = 64
DEFAULT_BATCH = 1000
MAX_BATCH = 1000
Context = grpc.aio.ServicerContext[Any, Any]


class PeerApi(peer_pb2_grpc.PeerServiceServicer):
    def __init__(
        self,
        *,
        city_code: str,
        trust: TrustStore,
        links: PeerLinks,
        contacts: PeerContactRepository,
        own_log: OwnLog,
        replicator: Replicator,
        logs: LogRepository,
        reports: ReportOffice,
        ratings: RatingDesk,
        clock: Clock,
        match_holder: MatchHolder | None = None,
        match_querier: MatchQuerier | None = None,
    ) -> None:
        self._match_holder = match_holder
        self._match_querier = match_querier
        self._reports = reports
        self._ratings = ratings
        self._city_code = city_code
        self._trust = trust
        self._links = links
        self._contacts = contacts
        self._own = own_log
        self._replicator = replicator
        self._logs = logs
        self._clock = clock

    def _caller(self, context: grpc.aio.ServicerContext[object, object]) -> Member:
        """The member whose pinned certificate the caller presented; fail closed otherwise."""
        manifest = self._trust.check_current()
        fingerprint = peer_fingerprint(context.auth_context())  # type: ignore[arg-type]
        member = manifest.member_by_fingerprint(fingerprint) if fingerprint else None
        if member is None or member.city_code == self._city_code:
            raise PermissionDeniedError(
                f"the caller's certificate is not a member of federation manifest "
                f"v{manifest.version}"
            )
        return member

    @translate_errors
    async def Hello(
        self,
        request: peer_pb2.HelloRequest,
        context: grpc.aio.ServicerContext[peer_pb2.HelloRequest, peer_pb2.HelloResponse],
    ) -> peer_pb2.HelloResponse:
        caller = self._caller(context)  # type: ignore[arg-type]
        manifest = self._trust.current
        if request.federation_id != manifest.federation_id:
            raise FailedPreconditionError(
                f"this node belongs to federation {manifest.federation_id!r}, "
                f"not {request.federation_id!r}"
            )
        version = check_storable(
            request.manifest_version, field="manifest_version", what="a manifest version"
        )
        now = self._clock.now()
        self._contacts.record_success(caller.city_code, now, version)
        if version > manifest.version:
            self._links.schedule_pull(caller.city_code)
        server_time = Timestamp()
        server_time.FromDatetime(now)
        return peer_pb2.HelloResponse(
            city_code=self._city_code,
            federation_id=manifest.federation_id,
            manifest_version=manifest.version,
            server_time=server_time,
        )

    @translate_errors
    async def GetManifests(
        self,
        request: peer_pb2.GetManifestsRequest,
        context: grpc.aio.ServicerContext[
            peer_pb2.GetManifestsRequest, peer_pb2.GetManifestsResponse
        ],
    ) -> peer_pb2.GetManifestsResponse:
        self._caller(context)  # type: ignore[arg-type]
        after = check_storable(
            request.after_version, field="after_version", what="a manifest version"
        )
        documents = self._trust.documents_after(after)[:MAX_MANIFESTS_PER_ANSWER]
        return peer_pb2.GetManifestsResponse(
            manifests=[manifest_pb2.SignedManifest(document=d) for d in documents]
        )

    @translate_errors
    async def GetCheckpoint(  # gRPC method name
        self, request: peer_pb2.GetCheckpointRequest, context: Context
    ) -> peer_pb2.GetCheckpointResponse:
        self._caller(context)
        document = self._own.store.checkpoint or b""
        return peer_pb2.GetCheckpointResponse(
            checkpoint=lists_pb2.SignedCheckpoint(document=document)
        )

    @translate_errors
    async def GetConsistencyProof(
        self, request: peer_pb2.GetConsistencyProofRequest, context: Context
    ) -> peer_pb2.GetConsistencyProofResponse:
        self._caller(context)
        size = self._own.store.size
        if not request.first <= request.second <= size:
            raise InvalidInputError(
                f"a consistency proof needs first <= second <= {size} (the log size); got "
                f"first={request.first}, second={request.second}"
            )
        proof = consistency_proof(request.first, request.second, self._own.store.tree())
        return peer_pb2.GetConsistencyProofResponse(hashes=proof)

    @translate_stream_errors
    async def StreamLog(
        self, request: peer_pb2.StreamLogRequest, context: Context
    ) -> AsyncIterator[peer_pb2.StreamLogResponse]:
        caller = self._caller(context)
        store = self._own.store
        if not request.start < request.end <= store.size:
            raise InvalidInputError(
                f"a log range needs start < end <= {store.size} (the log size); got "
                f"start={request.start}, end={request.end}"
            )
        batch = min(request.max_batch or DEFAULT_BATCH, MAX_BATCH)
        shared = {
            kind
            for kind, policy in self._own.policies.items()
            if policy.replicates_to(caller.city_code)
        }
        tree = CachedTree(store.tree())
        stop = min(request.end, request.start + request.count) if request.count else request.end
        for begin in range(request.start, stop, batch):
            end = min(begin + batch, stop)
            rows = self._logs.leaves(self._city_code, begin, end)
            leaves = [
                lists_pb2.LogLeaf(
                    envelope=row.envelope,
                    body=row.body if row.body is not None and row.list_kind in shared else b"",
                )
                for row in rows
            ]
            right = [tree.perfect(level, index) for level, index in decompose(end, request.end)]
            yield peer_pb2.StreamLogResponse(start=begin, leaves=leaves, right_hashes=right)

    @translate_errors
    async def ExchangeCheckpoints(
        self, request: peer_pb2.ExchangeCheckpointsRequest, context: Context
    ) -> peer_pb2.ExchangeCheckpointsResponse:
        caller = self._caller(context)
        if len(request.checkpoints) > len(self._trust.current.members):
            raise InvalidInputError("more checkpoints than members")
        self._replicator.receive_checkpoints(
            [c.document for c in request.checkpoints], reported_by=caller.city_code
        )
        return peer_pb2.ExchangeCheckpointsResponse(
            checkpoints=[
                lists_pb2.SignedCheckpoint(document=d) for d in self._replicator.held_checkpoints()
            ]
        )

    @translate_errors
    async def NotifyAppended(
        self, request: peer_pb2.NotifyAppendedRequest, context: Context
    ) -> peer_pb2.NotifyAppendedResponse:
        caller = self._caller(context)
        self._replicator.receive_checkpoints(
            [request.checkpoint.document], reported_by=caller.city_code
        )
        self._replicator.schedule(caller.city_code)
        if self._match_querier is not None:
            # A change of its lists may change its matching table: fetch it soon.
            self._match_querier.notice(caller.city_code)
        return peer_pb2.NotifyAppendedResponse()

    @translate_errors
    async def GetReportStatus(
        self, request: peer_pb2.GetReportStatusRequest, context: Context
    ) -> peer_pb2.GetReportStatusResponse:
        self._caller(context)
        digest = request.report_digest
        if len(digest) not in (0, REPORT_DIGEST_BYTES):
            raise InvalidInputError(
                f"report_digest must be {REPORT_DIGEST_BYTES} bytes (SHA-256) or empty, "
                f"not {len(digest)}"
            )
        status = self._reports.own_status(check_report_no(request.report_no), digest)
        answer = peer_pb2.GetReportStatusResponse(
            state=_REPORT_STATE[status.state],
            reason=status.reason,
            superseded_by=status.superseded_by or "",
        )
        answer.at.FromDatetime(status.at)
        return answer

    @translate_errors
    async def GetStatusList(
        self, request: peer_pb2.GetStatusListRequest, context: Context
    ) -> peer_pb2.GetStatusListResponse:
        self._caller(context)
        return peer_pb2.GetStatusListResponse(
            status_list=reports_pb2.SignedStatusList(document=self._reports.signed_status_list())
        )

    @translate_errors
    async def GetRatings(
        self, request: peer_pb2.GetRatingsRequest, context: Context
    ) -> peer_pb2.GetRatingsResponse:
        self._caller(context)
        return self._ratings.publications(request.after_sequence, request.limit)

    # --- private matching (thin adapters over MatchHolder) ---------------------------------

    def _holder(self) -> MatchHolder:
        if self._match_holder is None:
            raise UnavailableError(f"private matching is not enabled on {self._city_code}")
        return self._match_holder

    @translate_stream_errors
    async def GetMatchTable(
        self, request: matching_pb2.GetMatchTableRequest, context: Context
    ) -> AsyncIterator[matching_pb2.GetMatchTableResponse]:
        self._caller(context)
        for part in self._holder().table_parts(request.table_id, request.epoch):
            yield _table_part_to_wire(part)

    @translate_errors
    async def EvaluateSubjects(
        self, request: matching_pb2.EvaluateSubjectsRequest, context: Context
    ) -> matching_pb2.EvaluateSubjectsResponse:
        caller = self._caller(context)
        evaluated = await self._holder().evaluate(
            caller.city_code,
            EvaluationQuery(
                request_id=request.request_id,
                sent_at=_sent_at(request),
                blinded=request.blinded,
            ),
        )
        return matching_pb2.EvaluateSubjectsResponse(evaluated=evaluated)

    @translate_errors
    async def Probe(
        self, request: matching_pb2.ProbeRequest, context: Context
    ) -> matching_pb2.ProbeResponse:
        caller = self._caller(context)
        answer = await self._holder().probe(
            caller.city_code,
            ProbeQuery(
                request_id=request.request_id,
                sent_at=_sent_at(request),
                table_id=request.table_id,
                epoch=request.epoch,
                mode=_PROBE_MODE.get(request.mode),
                subjects=request.subjects,
                ciphertexts=request.ciphertexts,
                blinded_expected=request.blinded_expected,
            ),
        )
        return matching_pb2.ProbeResponse(
            answers=answer.answers,
            twice_blinded=answer.twice_blinded,
            holder_blinded=answer.holder_blinded,
        )

    @translate_errors
    async def Disclose(
        self, request: matching_pb2.DiscloseRequest, context: Context
    ) -> matching_pb2.DiscloseResponse:
        caller = self._caller(context)
        disclosure = self._holder().disclose(
            caller.city_code,
            DisclosureQuery(
                request_id=request.request_id,
                sent_at=_sent_at(request),
                subject_id=request.subject_id,
                match_request_id=request.match_request_id,
                purpose=request.purpose,
                legal_basis=request.legal_basis,
                requested_by=request.requested_by,
            ),
        )
        return matching_pb2.DiscloseResponse(
            entries=[
                matching_pb2.DisclosedEntry(
                    list_kind=e.list_kind, entry=e.entry, entry_id=e.entry_id
                )
                for e in disclosure.entries
            ],
            disclosure_id=disclosure.disclosure_id,
        )


_PROBE_MODE = {
    matching_pb2.MATCH_MODE_MEMBERSHIP: ProbeMode.MEMBERSHIP,
    matching_pb2.MATCH_MODE_COUNT: ProbeMode.COUNT,
}


def _sent_at(
    request: (
        matching_pb2.ProbeRequest
        | matching_pb2.DiscloseRequest
        | matching_pb2.EvaluateSubjectsRequest
    ),
) -> dt.datetime | BadTime | None:
    """The request's time; a time that is none goes to the holder as :class:`BadTime`, so
    that it refuses the request and audits the refusal."""
    if not request.HasField("sent_at"):
        return None
    try:
        return request.sent_at.ToDatetime(tzinfo=dt.UTC)
    except ValueError:
        # Seconds outside years 1-9999 or nanos outside 0-999,999,999.
        return BadTime(
            f"sent_at is not a valid time (seconds={request.sent_at.seconds}, "
            f"nanos={request.sent_at.nanos}): send the current UTC time"
        )


def _table_part_to_wire(part: TablePart) -> matching_pb2.GetMatchTableResponse:
    message = matching_pb2.GetMatchTableResponse(
        full=part.full, bins=part.bins, ciphertexts=part.ciphertexts
    )
    if part.header:
        message.header.header = part.header
        message.header.signature = part.signature
    return message


_REPORT_STATE = {
    "valid": reports_pb2.REPORT_STATE_VALID,
    "revoked": reports_pb2.REPORT_STATE_REVOKED,
    "superseded": reports_pb2.REPORT_STATE_SUPERSEDED,
}


class CachedTree:
    """Memoises subtree hashes for one stream: consecutive batches ask for mostly the same
    right-hand subtrees."""

    def __init__(self, tree: PerfectSubtrees) -> None:
        self._tree = tree
        self._cache: dict[tuple[int, int], bytes] = {}

    def perfect(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self._cache:
            self._cache[key] = self._tree.perfect(level, index)
        return self._cache[key]
