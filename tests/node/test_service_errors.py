"""The one place where domain errors become gRPC status codes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest

from federation import errors
from federation.errors import CreditNetError, ErrorCode, InvalidInputError
from node.service.errors import (
    ERROR_CODE_KEY,
    STATUS_FOR,
    domain_code,
    refused_by_quota,
    translate_errors,
    translate_stream_errors,
)


class FakeContext:
    """The part of ``grpc.aio.ServicerContext`` that ``translate_errors`` uses."""

    def __init__(self) -> None:
        self.aborted: list[tuple[grpc.StatusCode, str]] = []
        self.trailing: list[tuple[tuple[str, str], ...]] = []

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.aborted.append((code, details))
        self.trailing.append(trailing_metadata)
        raise grpc.aio.AbortError()


class Servicer:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error

    @translate_errors
    async def Echo(self, request: str, context: Any) -> str:  # gRPC method names are CamelCase
        if self.error is not None:
            raise self.error
        return request.upper()

    @translate_errors
    async def Refuse(self, request: str, context: Any) -> str:
        await context.abort(grpc.StatusCode.OUT_OF_RANGE, "out of range")
        return "unreachable"


def call(servicer: Servicer, method: str = "Echo") -> tuple[FakeContext, Any]:
    context = FakeContext()
    try:
        result = asyncio.run(getattr(servicer, method)("ping", context))
    except grpc.aio.AbortError:
        return context, None
    return context, result


def test_every_error_code_has_a_status() -> None:
    assert set(STATUS_FOR) == set(ErrorCode)


def test_normal_return_passes_through() -> None:
    context, result = call(Servicer())
    assert result == "PING"
    assert context.aborted == []


def test_wrapper_keeps_the_method_name() -> None:
    assert Servicer.Echo.__name__ == "Echo"


def every_error_class() -> list[type[CreditNetError]]:
    found = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, CreditNetError)
    ]
    assert len(found) > 10
    return found


@pytest.mark.parametrize("error_class", every_error_class(), ids=lambda c: c.__name__)
def test_domain_error_becomes_its_status_with_its_message(
    error_class: type[CreditNetError],
) -> None:
    error = error_class("member 370600 is not in the manifest", hint="run federation sync")
    context, result = call(Servicer(error))
    assert result is None
    assert context.aborted == [
        (STATUS_FOR[error_class.code], "member 370600 is not in the manifest")
    ]
    # The refusal says it is one, so a caller can tell it from gRPC's own status codes.
    assert context.trailing == [((ERROR_CODE_KEY, error_class.code.name),)]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInputError("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFoundError("bad"), grpc.StatusCode.NOT_FOUND),
        (errors.SignatureError("bad"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.ExpiredManifestError("bad"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.StorageError("bad"), grpc.StatusCode.UNAVAILABLE),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None,
)
def test_known_mappings(error: CreditNetError, status: grpc.StatusCode) -> None:
    context, _ = call(Servicer(error))
    assert context.aborted == [(status, "bad")]


def test_unexpected_exception_becomes_internal_without_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "password=hunter2 at db.internal:5432"
    with caplog.at_level(logging.ERROR, logger="node.service.errors"):
        context, result = call(Servicer(RuntimeError(secret)))
    assert result is None
    ((status, details),) = context.aborted
    assert status == grpc.StatusCode.INTERNAL
    assert "reference" in details
    assert secret not in details
    assert "hunter2" not in details
    assert "RuntimeError" not in details
    assert context.trailing == [()]
    # The details go to the log, under the same reference.
    reference = details.rsplit(" ", 1)[-1].rstrip(")")
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.fields == {"reference": reference}  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert secret in str(record.exc_info[1])


def test_references_differ_between_calls() -> None:
    first, _ = call(Servicer(KeyError("x")))
    second, _ = call(Servicer(KeyError("x")))
    assert first.aborted[0][1] != second.aborted[0][1]


def test_abort_inside_the_method_passes_through() -> None:
    context, result = call(Servicer(), "Refuse")
    assert result is None
    assert context.aborted == [(grpc.StatusCode.OUT_OF_RANGE, "out of range")]


def test_cancellation_is_not_turned_into_internal() -> None:
    context = FakeContext()
    servicer = Servicer(asyncio.CancelledError())

    async def main() -> object:
        return await servicer.Echo("ping", cast(Any, context))

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert context.aborted == []


# --- streaming methods ---------------------------------------------------------------------


class Streamer:
    def __init__(self, error: BaseException | None = None, *, after: int = 2) -> None:
        self.error, self.after = error, after

    @translate_stream_errors
    async def Count(self, request: str, context: Any) -> AsyncIterator[int]:
        for number in range(5):
            if number == self.after and self.error is not None:
                raise self.error
            yield number


def stream(streamer: Streamer) -> tuple[FakeContext, list[int]]:
    context, received = FakeContext(), []

    async def main() -> None:
        async for number in streamer.Count("ping", cast(Any, context)):
            received.append(number)

    with contextlib.suppress(grpc.aio.AbortError):
        asyncio.run(main())
    return context, received


def test_a_stream_passes_its_messages_through() -> None:
    context, received = stream(Streamer())
    assert (context.aborted, received) == ([], [0, 1, 2, 3, 4])
    assert Streamer.Count.__name__ == "Count"


@pytest.mark.parametrize("after", [0, 2])
def test_a_domain_error_in_a_stream_ends_it_with_its_status(after: int) -> None:
    context, received = stream(Streamer(InvalidInputError("start is past the end"), after=after))
    assert received == list(range(after))
    assert context.aborted == [(grpc.StatusCode.INVALID_ARGUMENT, "start is past the end")]


def test_an_unexpected_error_in_a_stream_becomes_internal_without_details() -> None:
    secret = "UNIQUE constraint failed: 11010519491231002X"
    context, received = stream(Streamer(RuntimeError(secret)))
    assert received == [0, 1]
    ((status, details),) = context.aborted
    assert status == grpc.StatusCode.INTERNAL
    assert "reference" in details and secret not in details


# --- telling a node's refusal from gRPC's own status codes --------------------------------


class FailedCall(grpc.RpcError):
    """What a client holds after a failed call: its code and trailing metadata."""

    def __init__(
        self, status: grpc.StatusCode, *metadata: tuple[str, str | bytes], details: str = ""
    ) -> None:
        self.status, self.metadata, self.text = status, metadata, details

    def code(self) -> grpc.StatusCode:
        return self.status

    def details(self) -> str:
        return self.text

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self.metadata


@pytest.mark.parametrize("code", list(ErrorCode))
def test_a_refusal_is_read_back_as_its_domain_code(code: ErrorCode) -> None:
    assert domain_code(FailedCall(STATUS_FOR[code], (ERROR_CODE_KEY, code.name))) is code


@pytest.mark.parametrize(
    "call",
    [
        # gRPC's own RESOURCE_EXHAUSTED (a message over the size limit) is no quota refusal.
        FailedCall(grpc.StatusCode.RESOURCE_EXHAUSTED),
        FailedCall(grpc.StatusCode.RESOURCE_EXHAUSTED, ("other-key", "RESOURCE_EXHAUSTED")),
        FailedCall(grpc.StatusCode.UNAVAILABLE, (ERROR_CODE_KEY, "NO_SUCH_CODE")),
        FailedCall(grpc.StatusCode.UNAVAILABLE, (ERROR_CODE_KEY, b"UNAVAILABLE")),
        # A mark that does not go with the status code is not believed.
        FailedCall(grpc.StatusCode.UNAVAILABLE, (ERROR_CODE_KEY, "RESOURCE_EXHAUSTED")),
    ],
)
def test_without_a_matching_mark_there_is_no_domain_code(call: FailedCall) -> None:
    assert domain_code(call) is None


def test_an_error_without_a_call_has_no_domain_code() -> None:
    assert domain_code(grpc.RpcError()) is None


QUOTA = "370600 has used 50000 of its 50000 subjects probed per day at 370200"


@pytest.mark.parametrize(
    ("call", "quota"),
    [
        (
            FailedCall(grpc.StatusCode.RESOURCE_EXHAUSTED, (ERROR_CODE_KEY, "RESOURCE_EXHAUSTED")),
            True,
        ),
        # gRPC's own refusal of a message over the size limit carries no mark.
        (
            FailedCall(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                details="Sent message larger than max (6583587 vs. 4194304)",
            ),
            False,
        ),
        (
            FailedCall(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                details="Received message larger than max (6583587 vs. 262144)",
            ),
            False,
        ),
        # A node from before the mark refuses over quota without it.
        (FailedCall(grpc.StatusCode.RESOURCE_EXHAUSTED, details=QUOTA), True),
        (FailedCall(grpc.StatusCode.UNAVAILABLE, (ERROR_CODE_KEY, "UNAVAILABLE")), False),
        (FailedCall(grpc.StatusCode.UNAVAILABLE, details=QUOTA), False),
    ],
)
def test_a_quota_refusal_is_told_from_a_message_over_the_size_limit(
    call: FailedCall, quota: bool
) -> None:
    assert refused_by_quota(call) is quota
