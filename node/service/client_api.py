"""The client API servicer (for the city's own platform) and its token check."""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from creditnet.v1 import client_pb2, client_pb2_grpc, manifest_pb2
from federation.clock import Clock
from federation.errors import InvalidInputError
from federation.subjects import CHINA_TZ, SubjectKind, check_subject
from node.service.errors import translate_errors
from node.storage.repositories import EventRepository, PeerContactRepository
from node.trust import TrustStore

MAX_IDENTIFIERS = 1000
MAX_IDENTIFIER_CHARS = 64

_KIND = {
    SubjectKind.USCC: client_pb2.SUBJECT_KIND_USCC,
    SubjectKind.RESIDENT_ID: client_pb2.SUBJECT_KIND_RESIDENT_ID,
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
        clock: Clock,
        heartbeat_interval_s: float,
        started: dt.datetime,
    ) -> None:
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
            check = check_subject(text, today=self._clock.now().astimezone(CHINA_TZ).date())
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
