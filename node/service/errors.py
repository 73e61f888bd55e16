"""The one place where domain errors become gRPC status codes.

Servicer methods are wrapped with :func:`translate_errors` (streaming ones with
:func:`translate_stream_errors`): a :class:`CreditNetError` becomes its status code with
its message (messages are written to be safe to show); anything else becomes INTERNAL
with a generic message and a reference, while the details go to the log.

A refusal by this code also carries its domain code in the trailing metadata
(:data:`ERROR_CODE_KEY`): a caller can tell a peer's refusal, such as its daily quota, from
the same status code raised by gRPC itself, such as RESOURCE_EXHAUSTED for a message over the
size limit (:func:`domain_code`).
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar, cast

import grpc

from federation.errors import CreditNetError, ErrorCode

log = logging.getLogger(__name__)

STATUS_FOR: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_INPUT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}

#: Trailing metadata key: the :class:`ErrorCode` name of a domain refusal.
ERROR_CODE_KEY = "credit-error"

Request = TypeVar("Request")
Response = TypeVar("Response")
Context = grpc.aio.ServicerContext[Request, Response]
Method = Callable[[Any, Request, Context[Request, Response]], Awaitable[Response]]
StreamMethod = Callable[[Any, Request, Context[Request, Response]], AsyncIterator[Response]]


def translate_errors(method: Method[Request, Response]) -> Method[Request, Response]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Request, context: Context[Request, Response]) -> Response:
        try:
            return await method(self, request, context)
        except Exception as exc:  # each kind is answered in _abort
            await _abort(method.__name__, exc, context)
        raise AssertionError("unreachable: context.abort raises")

    return wrapper


def translate_stream_errors(
    method: StreamMethod[Request, Response],
) -> StreamMethod[Request, Response]:
    """:func:`translate_errors` for a method that streams its answer: an error after some
    messages were sent ends the stream with the same status codes."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Request, context: Context[Request, Response]
    ) -> AsyncIterator[Response]:
        try:
            async for message in method(self, request, context):
                yield message
        except Exception as exc:  # each kind is answered in _abort
            await _abort(method.__name__, exc, context)

    return wrapper


async def _abort(rpc: str, exc: Exception, context: Context[Any, Any]) -> None:
    if isinstance(exc, grpc.aio.AbortError):
        raise exc
    if isinstance(exc, CreditNetError):
        log.info("request refused", extra={"fields": {"rpc": rpc, "error": exc.code.value}})
        await context.abort(
            STATUS_FOR[exc.code], exc.message, trailing_metadata=((ERROR_CODE_KEY, exc.code.name),)
        )
    reference = secrets.token_hex(4)
    log.exception("internal error", extra={"fields": {"reference": reference}}, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (reference {reference})")


def domain_code(exc: grpc.RpcError) -> ErrorCode | None:
    """The domain error a node refused a call with (:data:`ERROR_CODE_KEY`), or ``None`` when
    gRPC itself ended the call: an unreachable node, a message over the size limit."""
    trailing = getattr(exc, "trailing_metadata", None)
    code = getattr(exc, "code", None)
    if not callable(trailing) or not callable(code):
        return None
    # (key, value) pairs: grpc.aio.Metadata, or a tuple of pairs from the blocking API.
    pairs = cast(Iterable[tuple[str, object]], trailing() or ())
    for key, value in pairs:
        if key == ERROR_CODE_KEY and isinstance(value, str) and value in ErrorCode.__members__:
            found = ErrorCode[value]
            return found if STATUS_FOR[found] is code() else None
    return None


#: How gRPC words its own refusal of a message over the size limit ("Sent message larger
#: than max (N vs. M)", "Received message larger than max ...").
_GRPC_SIZE_REFUSAL = "message larger than max"


def refused_by_quota(exc: grpc.RpcError) -> bool:
    """Whether a call ended in RESOURCE_EXHAUSTED because the node's quota refused it, and not
    because gRPC itself refused a message over the size limit.

    A node older than the :data:`ERROR_CODE_KEY` mark sends no mark: its RESOURCE_EXHAUSTED is
    taken for its quota unless the details are gRPC's own ("... message larger than max").
    """
    marked = domain_code(exc)
    if marked is not None:
        return marked is ErrorCode.RESOURCE_EXHAUSTED
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if not callable(code) or code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
        return False
    return not callable(details) or _GRPC_SIZE_REFUSAL not in (details() or "")
