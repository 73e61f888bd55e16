"""Canonical JSON: the one byte form of every signed document.

Keys sorted, no insignificant whitespace, UTF-8, and no floats (their text form is
not unique). Two parties that build the same document get the same bytes, so a
signature over those bytes is a signature over the document.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from federation.errors import InvalidInputError

JSONValue = Any
MAX_DOCUMENT_BYTES = 1024 * 1024
#: The largest whole number a signed document may count to where a node stores it: what
#: a signed 64-bit database column holds (versions, log indexes, sequences).
MAX_STORED_INTEGER = 2**63 - 1
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


_SCALARS = (str, int, bool, type(None))


def _check(value: JSONValue, path: str) -> None:
    # Exact type checks, and scalars checked in their container's loop rather than by a
    # call each: this runs over every signed document, on the hot paths of sync and verify.
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidInputError(f"{path}: object keys must be strings")
            if type(item) not in _SCALARS:
                _check(item, f"{path}.{key}")
    elif kind is list:
        for index, item in enumerate(value):
            if type(item) not in _SCALARS:
                _check(item, f"{path}[{index}]")
    elif kind is float:
        raise InvalidInputError(f"{path}: floats are not allowed in signed documents")
    elif kind not in _SCALARS:
        raise InvalidInputError(f"{path}: {kind.__name__} is not a JSON value")


def canonical_bytes(value: JSONValue) -> bytes:
    """Encode ``value`` in canonical JSON."""
    _check(value, "$")
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            "text in the document is not valid Unicode (lone surrogate)"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"cannot encode document: {exc}") from None


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
        problem = exc.msg.removesuffix(" at")  # "Invalid control character at"
        raise InvalidInputError(
            f"{what} is not valid JSON: {problem} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidInputError(f"{what} is nested too deeply") from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            raise InvalidInputError(
                f"{what} has a number of more than {sys.get_int_max_str_digits()} digits"
            ) from None
        raise InvalidInputError(f"{what}: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a JSON object")
    try:
        # A \ud800 escape parses into a lone surrogate that no UTF-8 document can carry
        # (checked only when the text has such an escape at all).
        if _SURROGATE_ESCAPE.search(data):
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        where = _lone_surrogate(value, "$") or "$"
        raise InvalidInputError(f"{what}: {where}: text is not valid Unicode") from None
    return value


def _lone_surrogate(value: JSONValue, path: str) -> str | None:
    """Where the first text that cannot be UTF-8 is (only called once one is known)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
    elif isinstance(value, dict):
        for key, item in value.items():
            found = _lone_surrogate(key, path) or _lone_surrogate(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate(item, f"{path}[{index}]")
            if found:
                return found
    return None


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
