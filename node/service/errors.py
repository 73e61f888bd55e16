"""The one place where domain errors become gRPC status codes.

Servicer methods are wrapped with :func:`translate_errors`: a :class:`CreditNetError`
becomes its status code with its message (messages are written to be safe to show);
anything else becomes INTERNAL with a generic message and a reference, while the details
go to the log.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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

Request = TypeVar("Request")
Response = TypeVar("Response")
Method = Callable[[Any, Request, grpc.aio.ServicerContext[Request, Response]], Awaitable[Response]]


def translate_errors(method: Method[Request, Response]) -> Method[Request, Response]:
    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Request, context: grpc.aio.ServicerContext[Request, Response]
    ) -> Response:
        try:
            return await method(self, request, context)
        except CreditNetError as exc:
            log.info(
                "request refused",
                extra={"fields": {"rpc": method.__name__, "error": exc.code.value}},
            )
            await context.abort(STATUS_FOR[exc.code], exc.message)
        except grpc.aio.AbortError:
            raise
        except Exception:
            reference = secrets.token_hex(4)
            log.exception("internal error", extra={"fields": {"reference": reference}})
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error (reference {reference})")
        raise AssertionError("unreachable: context.abort raises")

    return wrapper
