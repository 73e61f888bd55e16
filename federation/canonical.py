"""Canonical JSON: the one byte form of every signed document.

Keys sorted, no insignificant whitespace, UTF-8, and no floats (their text form is
not unique). Two parties that build the same document get the same bytes, so a
signature over those bytes is a signature over the document.
"""

from __future__ import annotations

import json
from typing import Any

from federation.errors import InvalidInputError

JSONValue = Any
MAX_DOCUMENT_BYTES = 1024 * 1024


def _check(value: JSONValue, path: str) -> None:
    if isinstance(value, float):
        raise InvalidInputError(f"{path}: floats are not allowed in signed documents")
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{path}: object keys must be strings")
            _check_text(key, path)
            _check(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
    elif value is not None and not isinstance(value, str | int | bool):
        raise InvalidInputError(f"{path}: {type(value).__name__} is not a JSON value")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(f"{path}: text is not valid Unicode (lone surrogate)") from None


def canonical_bytes(value: JSONValue) -> bytes:
    """Encode ``value`` in canonical JSON."""
    _check(value, "$")
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"cannot encode document: {exc}") from None
    return text.encode("utf-8")


def parse_document(data: bytes, *, what: str = "document") -> dict[str, JSONValue]:
    """Parse a JSON object, with a clear error for anything else."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidInputError(f"{what} is {len(data)} bytes, more than {MAX_DOCUMENT_BYTES}")
    try:
        value = json.loads(
            data.decode("utf-8"),
            parse_float=_refuse_float,
            parse_constant=_refuse_float,
            object_pairs_hook=_unique_keys,
        )
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{what} is not UTF-8 text: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidInputError(f"{what} is nested too deeply") from None
    except ValueError as exc:
        raise InvalidInputError(f"{what}: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a JSON object")
    _check(value, "$")
    return value


def _unique_keys(pairs: list[tuple[str, JSONValue]]) -> dict[str, JSONValue]:
    # A key given twice would let two readers see two different documents.
    value: dict[str, JSONValue] = {}
    for key, item in pairs:
        if key in value:
            raise ValueError(f"key {key!r} appears twice in one object")
        value[key] = item
    return value


def _refuse_float(text: str) -> float:
    raise ValueError(f"floats are not allowed in signed documents (found {text})")
