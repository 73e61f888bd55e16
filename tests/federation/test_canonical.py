"""Canonical JSON: one byte form per document, and a parser that refuses anything ambiguous."""

from __future__ import annotations

import contextlib
import decimal
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.canonical import MAX_DOCUMENT_BYTES, canonical_bytes, parse_document
from federation.errors import InvalidInputError

# JSON-like values without floats: what signed documents are made of.
scalars = st.none() | st.booleans() | st.integers() | st.text()
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=5)


# --- canonical_bytes ---------------------------------------------------------------


def test_canonical_bytes_sorts_keys_and_drops_whitespace() -> None:
    assert canonical_bytes({"b": [1, True, None], "a": "青岛"}) == (
        '{"a":"青岛","b":[1,true,null]}'.encode()
    )


def test_canonical_bytes_is_key_order_independent() -> None:
    first = {"z": 1, "a": {"y": 2, "b": 3}}
    second = {"a": {"b": 3, "y": 2}, "z": 1}
    assert list(first) != list(second)
    assert canonical_bytes(first) == canonical_bytes(second)


@given(json_objects, st.randoms(use_true_random=False))
def test_canonical_bytes_ignores_insertion_order(value: dict[str, Any], rnd: Any) -> None:
    def shuffled(item: Any) -> Any:
        if isinstance(item, dict):
            keys = list(item)
            rnd.shuffle(keys)
            return {key: shuffled(item[key]) for key in keys}
        if isinstance(item, list):
            return [shuffled(x) for x in item]
        return item

    assert canonical_bytes(shuffled(value)) == canonical_bytes(value)


@given(json_values)
def test_canonical_bytes_is_deterministic(value: Any) -> None:
    assert canonical_bytes(value) == canonical_bytes(value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param(1.5, "floats", id="float"),
        pytest.param(1.0, "floats", id="integral-float"),
        pytest.param({"a": {"b": [1, 2.5]}}, "$.a.b[1]: floats", id="nested-float"),
        pytest.param([math.nan], "floats", id="nan"),
        pytest.param({"x": math.inf}, "floats", id="inf"),
        pytest.param({1: "a"}, "keys must be strings", id="int-key"),
        pytest.param({"a": {None: 1}}, "keys must be strings", id="nested-none-key"),
        pytest.param((1, 2), "tuple is not a JSON value", id="tuple"),
        pytest.param({"a": b"x"}, "bytes is not a JSON value", id="bytes"),
        pytest.param({"a": {1, 2}}, "set is not a JSON value", id="set"),
        pytest.param({"a": decimal.Decimal("1")}, "Decimal is not a JSON value", id="decimal"),
        pytest.param(object(), "object is not a JSON value", id="object"),
    ],
)
def test_canonical_bytes_refuses(value: Any, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment.replace("[", r"\[").replace("$", r"\$")):
        canonical_bytes(value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"a": "\ud800"}, id="lone-surrogate-value"),
        pytest.param({"\udfff": 1}, id="lone-surrogate-key"),
        pytest.param({"a": 10**5000}, id="int-beyond-str-digits-limit"),
    ],
)
def test_canonical_bytes_refuses_unencodable_values_as_invalid_input(value: Any) -> None:
    # Not UnicodeEncodeError or ValueError: callers catch the CreditNetError family only.
    with pytest.raises(InvalidInputError):
        canonical_bytes(value)


# --- parse_document ----------------------------------------------------------------


def test_parse_document_returns_the_object() -> None:
    assert parse_document('{"a": [1, "青岛", null, false]}'.encode()) == {
        "a": [1, "青岛", None, False]
    }


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        pytest.param(b'{"a": "\xff"}', "not UTF-8", id="not-utf8"),
        pytest.param(b'{"a": 1,\n  "b": }', "not valid JSON: .* at line 2 column 8", id="syntax"),
        pytest.param(b"", "not valid JSON", id="empty"),
        pytest.param(b"[1, 2]", "must be a JSON object", id="array"),
        pytest.param(b'"text"', "must be a JSON object", id="string"),
        pytest.param(b"12", "must be a JSON object", id="number"),
        pytest.param(b"null", "must be a JSON object", id="null"),
        pytest.param(b'{"a": 1, "a": 2}', "'a' appears twice", id="duplicate-key"),
        pytest.param(b'{"x": {"a": 1, "a": 1}}', "'a' appears twice", id="nested-duplicate"),
        pytest.param(b'{"a": 1.5}', r"floats .* \(found 1.5\)", id="float"),
        pytest.param(b'{"a": [1e3]}', "floats", id="exponent"),
        pytest.param(
            b'{"a": "x\ty"}',
            "^document is not valid JSON: Invalid control character at line 1 column 9$",
            id="control-character",
        ),
        pytest.param(
            b'{"a": ' + b"9" * 5000 + b"}",
            r"^document has a number of more than \d+ digits$",
            id="huge-number",
        ),
    ],
)
def test_parse_document_refuses(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        parse_document(data)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_parse_document_refuses_non_finite_constants(constant: str) -> None:
    # Python's json accepts these non-standard literals; they are floats all the same.
    with pytest.raises(InvalidInputError):
        parse_document(f'{{"a": {constant}}}'.encode())


def test_parse_document_refuses_lone_surrogate_escapes() -> None:
    # Such a string cannot be encoded back to UTF-8, so it has no canonical form.
    with pytest.raises(InvalidInputError):
        parse_document(b'{"a": "\\ud800"}')


def test_parse_document_refuses_deep_nesting_as_invalid_input() -> None:
    data = b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    assert len(data) < MAX_DOCUMENT_BYTES
    with pytest.raises(InvalidInputError):
        parse_document(data)


def test_parse_document_names_what_it_parses() -> None:
    with pytest.raises(InvalidInputError, match=r"^member card must be a JSON object$"):
        parse_document(b"[]", what="member card")


def test_parse_document_size_limit() -> None:
    padding = MAX_DOCUMENT_BYTES - len(b'{"a":""}')
    at_limit = b'{"a":"' + b"x" * padding + b'"}'
    assert len(at_limit) == MAX_DOCUMENT_BYTES
    assert parse_document(at_limit) == {"a": "x" * padding}
    with pytest.raises(InvalidInputError, match=f"more than {MAX_DOCUMENT_BYTES}"):
        parse_document(at_limit + b" ")


# --- properties --------------------------------------------------------------------


@given(json_objects)
def test_parse_inverts_canonical_bytes(value: dict[str, Any]) -> None:
    encoded = canonical_bytes(value)
    parsed = parse_document(encoded)
    assert parsed == value
    assert canonical_bytes(parsed) == encoded


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_parse_document_raises_only_invalid_input_on_bytes(data: bytes) -> None:
    with contextlib.suppress(InvalidInputError):
        parse_document(data)


json_tokens = st.sampled_from(
    [
        *["{", "}", "[", "]", ",", ":", "1", "-0", "true", "null", " ", '"', "\\"],
        *['"a"', '"\\ud800"', '"\\u00e9"', "\xff", "1.0", "1e5", "NaN", "Infinity"],
    ]
)


@settings(max_examples=300)
@given(st.lists(json_tokens, max_size=30), st.booleans())
def test_parse_document_raises_only_invalid_input_on_json_like_text(
    tokens: list[str], wrap: bool
) -> None:
    text = "".join(tokens)
    if wrap:  # inside an object, most token soups get past the top-level check
        text = '{"k": ' + text + "}"
    data = text.encode("utf-8", "surrogatepass")
    try:
        parsed = parse_document(data)
    except InvalidInputError:
        return
    # What is accepted must have a canonical form.
    canonical_bytes(parsed)
