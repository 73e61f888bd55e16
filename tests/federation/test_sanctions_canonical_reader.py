"""The one-pass readers of canonical envelopes and entry bodies against the general readers.

``Envelope.from_bytes`` and ``EventBody.from_bytes`` first try ``_read_canonical_envelope``
and ``_read_canonical_entry_body``, and fall back to the general strict readers
(``_read_strict``) for anything else. The two must accept the same bytes and give the same
objects: whatever the strict reader refuses, the one-pass reader declines (returns
``None``); whatever it accepts, the one-pass reader gives an equal object (with values of
the same types), or declines.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation import sanctions
from federation.canonical import canonical_bytes
from federation.errors import CreditNetError
from federation.sanctions import (
    EventBody,
    EventType,
    SanctionEntry,
    Subject,
    entry_id,
    plan_add,
    seal,
)
from federation.signing import b64encode
from federation.subjects import SubjectKind, resident_id_check_char, uscc_check_char
from tests.federation.test_sanctions import (
    BODIES,
    JSON_VALUES,
    NOW,
    ORIGIN,
    RESIDENT,
    SALT,
    TODAY,
    USCC,
    entries,
    make_entry,
    sealed,
)

read_envelope = sanctions._read_canonical_envelope
read_body = sanctions._read_canonical_entry_body
strict_envelope = sanctions.Envelope._read_strict
strict_body = EventBody._read_strict


def same(fast: object, strict: object) -> None:
    """Equal, and made of values of the same types, all the way down."""
    assert type(fast) is type(strict)
    if dataclasses.is_dataclass(fast):
        for item in dataclasses.fields(fast):
            same(getattr(fast, item.name), getattr(strict, item.name))
    elif isinstance(fast, tuple):
        assert isinstance(strict, tuple) and len(fast) == len(strict)
        for left, right in zip(fast, strict, strict=True):
            same(left, right)
    else:
        assert fast == strict
        if isinstance(fast, dt.datetime):
            assert isinstance(strict, dt.datetime) and fast.utcoffset() == strict.utcoffset()


def agree_envelope(data: bytes) -> sanctions.Envelope | None:
    """The one-pass reader's answer, checked against the strict reader's."""
    fast = read_envelope(data)
    try:
        strict = strict_envelope(data)
    except CreditNetError:
        assert fast is None
        return None
    if fast is not None:
        same(fast, strict)
        assert sanctions.Envelope.from_bytes(data) == strict
    return fast


def agree_body(data: bytes, event: EventType = EventType.ADD) -> EventBody | None:
    fast = read_body(data)
    try:
        strict = strict_body(data, event)
    except CreditNetError:
        assert fast is None
        return None
    if fast is not None:
        same(fast, strict)
        assert EventBody.from_bytes(data, event) == strict
        # The entry's canonical JSON, taken from the body's text, is what encoding gives.
        assert fast.entry is not None and strict.entry is not None
        assert fast.entry.canonical_json == canonical_bytes(strict.entry.to_json()).decode()
    return fast


def envelope_bytes(**changes: Any) -> bytes:
    envelope, _ = sealed(EventType.ADD, EventBody(SALT, entry=make_entry()), index=3)
    document = json.loads(envelope.to_bytes())
    document.update(changes)
    return canonical_bytes(document)


def body_bytes(**changes: Any) -> bytes:
    """An add body (resident-ID subject) with entry fields changed (``subject.x`` too)."""
    document = json.loads(EventBody(SALT, entry=make_entry()).to_bytes())
    for key, value in changes.items():
        target = document["entry"]
        if key == "salt":
            document["salt"] = value
            continue
        if key.startswith("subject."):
            target, key = target["subject"], key.removeprefix("subject.")
        target[key] = value
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: written as an escape, as JSON allows
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


# --- what seal writes is read in one pass -------------------------------------------------------


def test_sealed_events_are_read_in_one_pass() -> None:
    body = EventBody(SALT, entry=make_entry())
    envelope, data = sealed(EventType.ADD, body, index=12)
    assert agree_envelope(envelope.to_bytes()) == envelope
    assert agree_body(data) == body
    for entry in (make_entry(subject_id=USCC), make_entry(measures=()), make_entry(appeal="")):
        assert agree_body(EventBody(SALT, entry=entry).to_bytes()) == EventBody(SALT, entry=entry)


@settings(max_examples=150, deadline=None)
@given(entries(), st.binary(min_size=16, max_size=16), st.integers(0, 2**63 - 1))
def test_valid_events_agree(entry: SanctionEntry, salt: bytes, index: int) -> None:
    planned = plan_add(ORIGIN, None, entry, sanctions.DEFAULT_POLICIES[entry.list_kind], TODAY)
    assert isinstance(planned, sanctions.Planned)
    body = EventBody(salt, entry=entry)
    envelope, data = seal(
        origin=ORIGIN,
        index=index,
        at=NOW,
        event=EventType.AMEND,
        list_kind=entry.list_kind,
        entry_id=planned.entry_id,
        body=body,
    )
    assert agree_envelope(envelope.to_bytes()) == envelope
    read = agree_body(data, EventType.AMEND)
    # Only texts with a quote or a backslash (escaped in JSON) go to the general reader.
    assert (read is None) == (b"\\" in data)


def test_other_payloads_use_the_general_reader() -> None:
    for event in (EventType.REMOVE, EventType.OBJECTION):
        data = BODIES[event].to_bytes()
        assert read_body(data) is None
        assert EventBody.from_bytes(data, event) == BODIES[event]


# --- both readers refuse the same -------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"at": "0999-06-01T06:00:00Z"},  # format_utc writes a 3-digit year
        {"at": "1000-06-01T06:00:00Z"},
        {"at": "9999-12-31T23:59:59Z"},
        {"at": "2026-02-30T06:00:00Z"},
        {"at": "2026-06-01T24:00:00Z"},
        {"at": "2026-06-01T23:59:60Z"},
        {"at": "２026-06-01T06:00:00Z"},
        {"index": 0},
        {"index": 2**63 - 1},
        {"index": 2**63},
        {"index": 10**30},
        {"index": -1},
        {"index": True},
        {"origin": "070200"},
        {"origin": "３70200"},
        {"entry_id": "A" * 32},
        {"body_sha256": "é" * 64},
        {"event": "remove"},
        {"list_kind": "red-list"},
        {"type": "creditnet.list-event/v2"},
        {"extra": "x"},
    ],
)
def test_envelope_edge_cases_agree(changes: dict[str, Any]) -> None:
    agree_envelope(envelope_bytes(**changes))


def test_a_year_before_1000_is_left_to_the_general_reader() -> None:
    assert read_envelope(envelope_bytes(at="0999-06-01T06:00:00Z")) is None
    assert read_envelope(envelope_bytes(at="1000-06-01T06:00:00Z")) is not None


def test_non_canonical_envelopes_are_declined() -> None:
    data = envelope_bytes()
    for variant in (
        data.replace(b",", b", ", 1),
        data.replace(b'"index":3', b'"index":03'),
        data.replace(b'"index":3', b'"index":3.0'),
        data.replace(b'"add"', b'"\\u0061dd"'),
        b" " + data,
        data + b"\n",
        data[:-1] + b',"at":"2026-06-01T06:00:00Z"}',
        bytearray(data),
    ):
        assert read_envelope(variant) is None
        agree_envelope(bytes(variant))


SUBJECT_IDS = [
    USCC,
    RESIDENT,
    RESIDENT.lower(),
    " " + USCC,
    USCC[:-1] + "0",
    "910000000000000000",  # shaped like a resident ID
    "11010519491231002Y",
    "110105202712310020",  # born after the listing date
]


def _all_digit_uscc() -> str:
    # A USCC of digits only: resident-shaped, so detection needs the general rules.
    for serial in range(10_000):
        first17 = f"91370200{serial:09d}"
        value = first17 + uscc_check_char(first17)
        if value.isdigit():
            return value
    raise AssertionError("no all-digit USCC found")


@pytest.mark.parametrize(
    "changes",
    [
        *({"subject.id": value} for value in [*SUBJECT_IDS, _all_digit_uscc()]),
        *(
            {"subject.id": value, "subject.kind": "uscc"}
            for value in [*SUBJECT_IDS, _all_digit_uscc()]
        ),
        {"subject.id": USCC + "0" * 50, "subject.kind": "uscc"},
        {"subject.kind": "person"},
        {"subject.name": ""},
        {"subject.name": " 张三"},
        {"subject.name": "张三\u3000"},
        {"subject.name": "张\u0085三"},
        {"subject.name": "张\x7f三"},
        {"subject.name": "张\u009f三"},
        {"subject.name": "张\u00a0三"},
        {"subject.name": "张\n三"},
        {"subject.name": "张\ud800三"},
        {"subject.name": "张" * 200},
        {"subject.name": "张" * 201},
        {"reason": "第一行\n第二行"},
        {"reason": "理" * 4000},
        {"reason": "理" * 4001},
        {"reason": '"引号"'},
        {"reason": "a\\b"},
        {"authority": "局" * 201},
        {"decision_no": "号" * 100},
        {"decision_no": "号" * 101},
        {"appeal": ""},
        {"appeal": " "},
        {"appeal": "\u2028"},
        {"measures": []},
        {"measures": [""]},
        {"measures": ["a", "a"]},
        {"measures": ["a", " b"]},
        {"measures": ["限" * 500]},
        {"measures": ["限" * 501]},
        {"measures": [str(n) for n in range(50)]},
        {"measures": [str(n) for n in range(51)]},
        {"measures": "限制高消费"},
        {"measures": [1]},
        {"listed_on": "2026-02-30"},
        {"listed_on": "２026-03-01"},
        {"listed_on": "0999-03-01"},
        {"listed_on": "2026-3-1"},
        {"publicity_end": "2026-03-01"},
        {"publicity_end": "2026-02-28"},
        {"publicity_end": "2029-03-01"},  # beyond the policy: not a parsing rule
        {"list_kind": "red-list"},
        {"list_kind": "Red-List"},
        {"salt": b64encode(SALT)[:-3] + "B=="},
        {"salt": b64encode(bytes(15))},
        {"salt": b64encode(bytes(17))},
        {"salt": 1},
    ],
)
def test_body_edge_cases_agree(changes: dict[str, Any]) -> None:
    agree_body(body_bytes(**changes))


def test_invalid_utf8_is_declined() -> None:
    data = body_bytes(**{"subject.name": "张三"})
    for variant in (
        data.replace("张".encode(), "\ud800".encode("utf-8", "surrogatepass")),
        data.replace("张".encode(), b"\xff"),
        data.replace("张".encode(), "张".encode()[:2]),
        data.replace("张".encode(), b"\xc0\xa2"),  # an overlong quote
    ):
        assert read_body(variant) is None
        agree_body(variant)


def test_a_resident_id_entry_keeps_the_listing_date_rule() -> None:
    # Born after the listing date: refused by both readers.
    listed = dt.date(2026, 3, 1)
    first17 = "11010520260302002"
    value = first17 + resident_id_check_char(first17)
    assert agree_body(body_bytes(**{"subject.id": value, "listed_on": listed.isoformat()})) is None
    assert agree_body(body_bytes(**{"subject.id": value, "listed_on": "2026-03-02"})) is not None


def test_the_entry_id_check_still_applies() -> None:
    body = EventBody(SALT, entry=make_entry())
    envelope, data = sealed(EventType.ADD, body, index=1)
    forged = dataclasses.replace(envelope, entry_id=entry_id(ORIGIN, "a", "b"))
    received = sanctions.Envelope.from_bytes(forged.to_bytes())
    assert read_body(data) == body
    with pytest.raises(CreditNetError, match="entry_id"):
        sanctions.open_body(received, data)


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_envelopes_with_bytes_changed_agree(data: st.DataObject) -> None:
    original = envelope_bytes()
    at = data.draw(st.integers(0, len(original) - 1))
    how = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    byte = bytes([data.draw(st.integers(0, 255))])
    changed = {
        "replace": original[:at] + byte + original[at + 1 :],
        "insert": original[:at] + byte + original[at:],
        "delete": original[:at] + original[at + 1 :],
    }[how]
    agree_envelope(changed)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_bodies_with_text_changed_agree(data: st.DataObject) -> None:
    """Valid bodies with a character, anywhere in the text, replaced, added or removed."""
    original = body_bytes(**{"subject.id": data.draw(st.sampled_from([USCC, RESIDENT]))})
    text = original.decode()
    at = data.draw(st.integers(0, len(text) - 1))
    how = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    char = data.draw(st.characters(codec="utf-8") | st.sampled_from(' "\\,:{}[]\x7f\x85\u3000\t0X'))
    changed = {
        "replace": text[:at] + char + text[at + 1 :],
        "insert": text[:at] + char + text[at:],
        "delete": text[:at] + text[at + 1 :],
    }[how]
    agree_body(changed.encode())


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_bodies_with_any_entry_field_replaced_agree(data: st.DataObject) -> None:
    document = json.loads(body_bytes())
    target = document
    while True:
        key = data.draw(st.sampled_from(sorted(target)))
        if isinstance(target[key], dict) and data.draw(st.booleans()):
            target = target[key]
            continue
        target[key] = data.draw(JSON_VALUES)
        break
    agree_body(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())
    agree_body(
        json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_agree(data: bytes) -> None:
    agree_envelope(data)
    agree_body(data)


def test_one_pass_objects_behave_like_checked_ones() -> None:
    body = read_body(EventBody(SALT, entry=make_entry()).to_bytes())
    assert body is not None and body.entry is not None
    assert isinstance(body.entry.subject, Subject)
    assert body.entry.subject.kind is SubjectKind.RESIDENT_ID
    assert RESIDENT not in repr(body.entry.subject)
    assert hash(body.entry.subject) == hash(make_entry().subject)
    with pytest.raises(dataclasses.FrozenInstanceError):
        body.entry.reason = "x"  # type: ignore[misc]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=10))
def test_the_decision_key_is_its_canonical_json(
    authority: str, decision_no: str, origin: str
) -> None:
    key = {"origin": origin, "authority": authority, "decision_no": decision_no}
    assert sanctions._decision_key(origin, authority, decision_no) == canonical_bytes(key)


@pytest.mark.parametrize(
    ("authority", "decision_no"),
    [("a\ud800", "1"), ('"quoted" \\ back', "\n\t\x00\x7f\u2028"), ("", ""), (1, "x"), (None, "x")],
)
def test_the_decision_key_of_unusual_values(authority: Any, decision_no: Any) -> None:
    key = {"origin": ORIGIN, "authority": authority, "decision_no": decision_no}
    try:
        expected: bytes | None = canonical_bytes(key)
    except CreditNetError:
        expected = None
    if expected is None:
        with pytest.raises(CreditNetError):
            sanctions._decision_key(ORIGIN, authority, decision_no)
    else:
        assert sanctions._decision_key(ORIGIN, authority, decision_no) == expected
