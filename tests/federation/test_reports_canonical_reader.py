"""The one-pass reader of canonical report files against the general strict reader.

``SignedReport.from_bytes`` reads a canonical file with ``_read_canonical_file`` and falls
back to ``SignedReport._read_strict`` for anything else. The two must accept the same
files and give the same report: whatever the strict reader refuses, the one-pass reader
declines (returns ``None``); whatever it accepts, the one-pass reader gives the same
report with the same signed bytes, or declines.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import sys
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation import reports
from federation.clock import format_utc
from federation.errors import CreditNetError
from federation.reports import (
    CreditReport,
    ManifestEpoch,
    ReportRating,
    SignedReport,
    sign_report,
    verify_offline,
)
from federation.sanctions import Subject
from federation.signing import SigningKey
from federation.subjects import SubjectKind, resident_id_check_char
from tests.federation.fixtures.reports import (
    FIXED_KEY,
    ISSUED,
    full_report,
    list_entry,
    minimal_report,
)
from tests.federation.test_reports import CHAIN, KEY, NOW

read_canonical = reports._read_canonical_file
read_strict = SignedReport._read_strict


def canonical(document: Any) -> bytes:
    """Canonical JSON of anything, floats and NaN included (``canonical_bytes`` refuses
    them, but a file may hold them)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def document_of(report: CreditReport) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(sign_report(report, KEY).to_bytes())
    return loaded


def agree(data: bytes) -> SignedReport | None:
    """Check that both readers agree on ``data``; the one-pass reader's answer."""
    fast = read_canonical(data)
    try:
        strict = read_strict(data)
    except CreditNetError:
        assert fast is None
        return None
    if fast is not None:
        assert fast == strict
        assert fast.report.signed_bytes() == strict.report.signed_bytes()
        assert fast.to_bytes() == strict.to_bytes() == data
        assert fast.verification_code == strict.verification_code
        for name in ("registration", "list_entries", "penalties", "licences", "ratings"):
            assert type(getattr(fast.report, name)) is tuple
        assert fast.report._issued_at_text == format_utc(fast.report.issued_at)
        assert fast.report._valid_until_text == format_utc(fast.report.valid_until)
    elif data == strict.to_bytes() and b"\\" not in data:
        pytest.fail("a canonical file without escapes was not read in one pass")
    return fast


PERSON_RATING = ReportRating(
    issuer="税务局",
    scale="纳税信用等级",
    grade="A",
    common_grade=None,
    issued_on=dt.date(2026, 1, 2),
    valid_until=dt.date(2027, 1, 1),
)
REPORTS = {
    "full": full_report(),
    "minimal": minimal_report(),
    "superseding": full_report(supersedes="370200-20260501-000003", status_index=0),
    "rating without common grade": dataclasses.replace(minimal_report(), ratings=(PERSON_RATING,)),
    "middle dot and spaces": full_report(
        subject=Subject(SubjectKind.USCC, "91110000600037341L", "买买提·艾力 贸易 有限公司"),
        registration=(("名称", "a b"), ("英文名称", "Mai Mai Ti Trading Co. Ltd.")),
    ),
    "many entries": full_report(
        list_entries=tuple(list_entry(decision_no=f"烟发改信〔2026〕{i}号") for i in range(30))
    ),
}


@pytest.mark.parametrize("report", REPORTS.values(), ids=REPORTS.keys())
def test_canonical_files_are_read_in_one_pass_as_the_strict_reader_reads_them(
    report: CreditReport,
) -> None:
    document = sign_report(report, KEY)
    data = document.to_bytes()
    fast = agree(data)
    assert fast is not None
    assert fast == document
    assert SignedReport.from_bytes(data) == document
    assert SignedReport.from_bytes(bytearray(data)) == document  # type: ignore[arg-type]
    assert fast.report == report
    assert fast.report.signed_bytes() == report.signed_bytes()
    verdict, expected = (
        verify_offline(fast, chain=CHAIN, now=NOW),
        verify_offline(document, chain=CHAIN, now=NOW),
    )
    assert verdict == expected
    assert verdict.state == "valid"


SECTIONS = ("registration", "list_entries", "penalties", "licences", "ratings", "commitments")


def test_the_sections_are_made_when_first_read_and_then_kept() -> None:
    report = full_report()
    signed = read_canonical(sign_report(report, KEY).to_bytes())
    assert signed is not None
    held = signed.report.__dict__
    # Checked whole, but a verdict reads only the header: the sections are not made yet.
    assert verify_offline(signed, chain=CHAIN, now=NOW).state == "valid"
    assert not set(SECTIONS) & set(held)
    entries = signed.report.list_entries
    assert entries == report.list_entries != ()
    assert set(SECTIONS) <= set(held)  # all made at once, and kept
    assert signed.report.list_entries is entries
    assert all(getattr(signed.report, name) == getattr(report, name) for name in SECTIONS)
    assert dataclasses.replace(signed.report, supersedes=None) == report
    assert CreditReport.list_entries == ()  # the class still gives the field's default
    copied = read_canonical(sign_report(report, KEY).to_bytes())
    assert copied is not None
    assert dataclasses.replace(copied.report) == report  # replace reads them too


def test_the_regression_fixture_is_read_in_one_pass() -> None:
    data = sign_report(full_report(), FIXED_KEY).to_bytes()
    assert agree(data) is not None


def test_the_grammars_white_space_is_what_str_strip_removes_less_the_controls() -> None:
    # A text must not start or end with what str.strip removes; the file has no control
    # character (checked before the grammar), so the grammar names the others.
    spaces = re.compile(f"[{reports._SPACES}]")
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        expected = char.isspace() and unicodedata.category(char) != "Cc"
        assert (spaces.fullmatch(char) is not None) == expected, f"U+{code:04X}"


def test_key_orders_are_those_of_canonical_json_and_of_the_fields() -> None:
    def fields(cls: type[Any]) -> tuple[str, ...]:
        return tuple(sorted(f.name for f in dataclasses.fields(cls)))

    def keys(values: dict[str, str]) -> tuple[str, ...]:
        return tuple(values)  # the grammar's keys, in its order

    assert tuple(sorted(keys(reports._FILE_VALUES))) == keys(reports._FILE_VALUES)
    assert tuple(sorted(reports._REPORT_FIELDS)) == keys(reports._REPORT_VALUES)
    assert tuple(sorted(Subject(**_subject()).to_json())) == keys(reports._SUBJECT_VALUES)
    assert fields(reports.ReportListEntry) == keys(reports._LIST_ENTRY_VALUES)
    assert fields(reports.ReportPenalty) == keys(reports._PENALTY_VALUES)
    assert fields(reports.ReportLicence) == keys(reports._LICENCE_VALUES)
    assert fields(reports.ReportRating) == keys(reports._RATING_VALUES)
    assert fields(reports.ReportCommitment) == keys(reports._COMMITMENT_VALUES)
    assert keys(reports._REGISTRATION_VALUES) == ("label", "value")
    sections = tuple(k for k, v in reports._REPORT_VALUES.items() if v == reports._SECTION)
    assert tuple(reports._SECTION_READERS) == sections == tuple(sorted(SECTIONS))


def test_a_section_reader_checks_the_fields_it_is_given() -> None:
    def nothing(rows: Any, day: Any) -> None:
        return None

    values = reports._PENALTY_VALUES
    reader = reports._SectionReader(values, ("decided_on",), nothing, tuple)
    assert (reader.checking.groups, reader.reading.groups) == (1, len(values))
    for wrong in (("summary", "decided_on"), ("decided_on", "decided"), ("decided_on", "x")):
        with pytest.raises(ValueError, match="does not capture exactly"):
            reports._SectionReader(values, wrong, nothing, tuple)


def _subject() -> dict[str, Any]:
    return {"kind": SubjectKind.USCC, "id": "91110000600037341L", "name": "x"}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


def value_at(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


BASE = document_of(full_report())
BASE_BYTES = canonical(BASE)


def changed(path: tuple[Any, ...], value: Any, base: Any = BASE) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(base))
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


R = ("report",)
ENTRY = (*R, "list_entries", 1)
TRICKY = [
    ((*R, "issuer_name"), " 青岛"),
    ((*R, "issuer_name"), "青岛\u3000"),
    ((*R, "issuer_name"), "青岛\u00a0"),
    ((*R, "issuer_name"), ""),
    ((*R, "issuer_name"), "青岛\x7f中心"),
    ((*R, "issuer_name"), "青岛\x85中心"),
    ((*R, "issuer_name"), "青岛\n中心"),
    ((*R, "issuer_name"), "x" * 201),
    ((*R, "issuer_name"), "x" * 200),
    ((*R, "issuer_name"), ["青岛"]),
    ((*R, "issuer_name"), None),
    ((*R, "issuer_name"), 17),
    ((*R, "issued_at"), "2026-06-01T06:30:00.000Z"),
    ((*R, "issued_at"), "2026-06-01T06:30:00+00:00"),
    ((*R, "issued_at"), "2026-06-01 06:30:00Z"),
    ((*R, "issued_at"), "2026-06-01T06:30Z"),
    ((*R, "issued_at"), "2026-06-01T14:30:00+08:00"),
    ((*R, "issued_at"), "1969-12-31T23:59:59Z"),
    ((*R, "issued_at"), "2026-06-31T06:30:00Z"),
    ((*R, "issued_at"), "２０２６-06-01T06:30:00Z"),
    ((*R, "valid_until"), "2026-06-01T06:30:00Z"),
    ((*R, "valid_until"), "9001-01-01T00:00:00Z"),
    ((*R, "status_index"), 0),
    ((*R, "status_index"), 17.0),
    ((*R, "status_index"), 1e1),
    ((*R, "status_index"), True),
    ((*R, "status_index"), float("nan")),
    ((*R, "status_index"), 2**23),
    ((*R, "status_index"), 10**400),
    ((*R, "manifest_version"), 0),
    ((*R, "manifest_version"), False),
    ((*R, "supersedes"), "370200-20260601-000017"),
    ((*R, "supersedes"), "370600-20260501-000001"),
    ((*R, "supersedes"), "370200-20260230-000001"),
    ((*R, "supersedes"), "370200-20260501-000000"),
    ((*R, "report_no"), "370200-20260601-000000"),
    ((*R, "report_no"), "370200-20260602-000017"),
    ((*R, "type"), "creditnet.checkpoint/v1"),
    ((*R, "subject", "kind"), "resident-id"),
    ((*R, "subject", "kind"), ["uscc"]),
    ((*R, "subject", "id"), "91110000600037341l"),
    ((*R, "subject", "id"), " 91110000600037341L"),
    ((*R, "subject", "name"), "青岛 "),
    ((*R, "registration"), [{"label": "名称", "value": "a"}, {"label": "名称", "value": "b"}]),
    ((*R, "registration"), [[["label", "名称"], ["value", "a"]]]),
    ((*R, "registration"), [{"label": "名称", "value": "a", "extra": "b"}]),
    ((*R, "registration"), [{"label": "名称"}]),
    ((*R, "registration"), [{}]),
    ((*R, "registration"), [{"label": f"l{i}", "value": "v"} for i in range(51)]),
    ((*R, "registration"), {"名称": "a"}),
    ((*R, "registration"), [{"label": "x" * 51, "value": "a"}]),
    ((*R, "registration"), [{"label": "x" * 50, "value": "a" * 500}]),
    ((*R, "registration"), [{"label": "x", "value": "a" * 501}]),
    ((*R, "penalties"), [{}]),
    ((*R, "penalties"), [[]]),
    ((*R, "penalties"), "x"),
    ((*R, "licences"), [None]),
    ((*R, "commitments"), [{"made_on": "2026-06-02", "content": "x"}]),
    ((*R, "commitments"), [{"made_on": "2026-06-01", "content": "x"}]),
    ((*R, "ratings", 0, "common_grade"), None),
    ((*R, "ratings", 0, "grade"), "x" * 32),
    ((*R, "ratings", 0, "grade"), "x" * 33),
    ((*R, "ratings", 0, "scale"), "x" * 101),
    ((*R, "ratings", 0, "issuer"), "x" * 201),
    ((*R, "ratings", 0, "common_grade"), ""),
    ((*R, "ratings", 0, "common_grade"), "x" * 17),
    ((*R, "ratings", 0, "valid_until"), "2026-03-31"),
    ((*R, "ratings", 0, "issued_on"), "2026-06-02"),
    ((*ENTRY, "listed_on"), "2026-1-10"),
    ((*ENTRY, "listed_on"), "20250506"),
    ((*ENTRY, "listed_on"), "2025050612"),
    ((*ENTRY, "listed_on"), "2025-W19-2"),
    ((*ENTRY, "listed_on"), "2025-02-29"),
    ((*ENTRY, "listed_on"), "2025-11-21"),
    ((*ENTRY, "listed_on"), None),
    ((*ENTRY, "publicity_end"), "2025-05-06"),
    ((*ENTRY, "removed_on"), None),
    ((*ENTRY, "removed_on"), "2025-05-05"),
    ((*ENTRY, "removed_on"), "2026-06-02"),
    ((*ENTRY, "removal_reason"), None),
    ((*ENTRY, "removal_reason"), "x" * 4100),
    ((*ENTRY, "removal_reason"), "x" * 4101),
    ((*ENTRY, "active"), True),
    ((*ENTRY, "active"), 0),
    ((*ENTRY, "list_kind"), "x"),
    ((*ENTRY, "list_kind"), {}),
    ((*ENTRY, "origin"), "070200"),
    ((*ENTRY, "origin"), 370200),
    ((*ENTRY, "reason"), "第一行\n第二行"),
    ((*ENTRY, "reason"), "x" * 4000),
    ((*ENTRY, "reason"), "x" * 4001),
    ((*ENTRY, "decision_no"), "x" * 101),
    (("keyid",), "AB" * 32),
    (("signature",), "%%%"),
    (("signature",), ""),
    (("signature",), BASE["signature"].rstrip("=")),
    (("signature",), BASE["signature"] + "=="),
    (("signature",), " " + BASE["signature"]),
    (("signature",), "A" * 1400),
    (("report",), []),
    (("report",), None),
]


DATE_FIELDS = {
    "listed_on",
    "publicity_end",
    "removed_on",
    "decided_on",
    "issued_on",
    "valid_until",
    "made_on",
}
# Every date of the report: later than the issue date, and in the other forms that
# date.fromisoformat reads (compact, week date, trailing digits).
for path in _paths(BASE):
    text = value_at(BASE, path)
    if path[-1:] and path[-1] in DATE_FIELDS and isinstance(text, str) and path[-2] != "report":
        compact = text.replace("-", "")
        TRICKY += [
            (path, "2026-06-02"),
            (path, compact),
            (path, compact + "01"),
            (path, text[:4] + "-W01-1"),
            (path, "2026-6-1"),
        ]
TRICKY += [
    ((*R, "penalties", 0, "decided_on"), "2026-06-01"),
    ((*R, "report_no"), "370200-20260601-17"),
    ((*R, "report_no"), "370200-20260601-0000017"),
    ((*R, "report_no"), "370200-20260601-00001x"),
    ((*R, "report_no"), "370200-20260601-000017-1"),
    ((*R, "issuer"), "37020"),
    ((*R, "issuer"), 370200),
    # JSON's punctuation inside texts: the grammar reads strings, not structure.
    ((*R, "issuer_name"), '}],"issued_at":{['),
    ((*ENTRY, "reason"), '],"manifest_version":1,"penalties":[{'),
    ((*R, "registration"), [{"label": "名称", "value": '{"label":"x","value":"y"},'}]),
    # One character; a space inside; white space that is not at the edges; U+200B is
    # format (Cf), not white space; U+2028 is white space; U+0085 is a control.
    ((*R, "issuer_name"), "青"),
    ((*R, "issuer_name"), "青 岛"),
    ((*R, "issuer_name"), "青\u3000岛"),
    ((*R, "issuer_name"), "\u200b青岛"),
    ((*R, "issuer_name"), "青岛\u2028"),
    ((*R, "issuer_name"), "\u2028"),
    ((*R, "issuer_name"), "青\u0085岛"),
    ((*R, "subject", "name"), "\u00a0青岛"),
    ((*R, "subject", "name"), "x" * 201),
    ((*R, "subject", "name"), "x" * 200),
    ((*ENTRY, "why"), "x\u1680"),
    ((*R, "ratings", 0, "grade"), "\u3000"),
]


@pytest.mark.parametrize(("path", "value"), TRICKY, ids=[repr(case) for case in TRICKY])
def test_both_readers_agree_on_a_changed_field(path: tuple[Any, ...], value: Any) -> None:
    agree(canonical(changed(path, value)))


def test_a_subject_born_after_the_issue_date_is_refused_by_both() -> None:
    # A resident ID valid in itself, but its holder is born after the issue date.
    born_later = "11010520260602001"
    subject_id = born_later + resident_id_check_char(born_later)
    document = changed((*R, "subject"), {"kind": "resident-id", "id": subject_id, "name": "王五"})
    assert agree(canonical(document)) is None


def test_a_field_that_needs_an_escape_is_left_to_the_strict_reader() -> None:
    report = full_report(list_entries=(list_entry(reason="第一行\n第二行"),))
    data = sign_report(report, KEY).to_bytes()
    assert b"\\n" in data
    assert read_canonical(data) is None
    assert SignedReport.from_bytes(data).report == report


LAYOUTS = {
    "leading space": b" " + BASE_BYTES,
    "trailing newline": BASE_BYTES + b"\n",
    "byte order mark": b"\xef\xbb\xbf" + BASE_BYTES,
    "space after a colon": BASE_BYTES.replace(b'"status_index":', b'"status_index": ', 1),
    "space before a comma": BASE_BYTES.replace(b'"status_index":17', b'"status_index":17 ', 1),
    "space in an array": BASE_BYTES.replace(b'"penalties":[', b'"penalties":[ ', 1),
    "tab": BASE_BYTES.replace(b'"status_index":', b'"status_index":\t', 1),
    "minus zero": canonical(changed((*R, "status_index"), 0)).replace(
        b'"status_index":0', b'"status_index":-0', 1
    ),
    "exponent": BASE_BYTES.replace(b'"status_index":17', b'"status_index":1.7e1', 1),
    "escaped digit": BASE_BYTES.replace(b'"issuer":"370200"', b'"issuer":"\\u003370200"', 1),
    "escaped slash": BASE_BYTES.replace(
        b"creditnet.credit-report/v1", b"creditnet.credit-report\\/v1", 1
    ),
    "pretty": json.dumps(BASE, sort_keys=True, indent=1, ensure_ascii=False).encode(),
    "ascii escapes": json.dumps(BASE, sort_keys=True, separators=(",", ":")).encode(),
    "keys out of order": json.dumps(
        {"signature": BASE["signature"], "keyid": BASE["keyid"], "report": BASE["report"]},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode(),
    "report keys out of order": json.dumps(
        {**BASE, "report": dict(reversed(BASE["report"].items()))},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode(),
    "repeated report key": BASE_BYTES.replace(
        b'"status_index":17,', b'"status_index":17,"status_index":17,', 1
    ),
    "repeated entry key": BASE_BYTES.replace(
        b'{"active":true,', b'{"active":true,"active":true,', 1
    ),
    "repeated file key": BASE_BYTES[:-1] + b',"signature":"' + BASE["signature"].encode() + b'"}',
    "lone surrogate": BASE_BYTES.replace(b'"issuer_name":"', b'"issuer_name":"\\ud800', 1),
    "not utf-8": BASE_BYTES.replace("青岛".encode(), "青岛".encode("gb18030"), 1),
    "truncated": BASE_BYTES[:-1],
    "two documents": BASE_BYTES + BASE_BYTES,
    # No space in any text: only the end of the first document tells.
    "two documents without spaces": canonical(document_of(minimal_report())) * 2,
    "array": b"[" + BASE_BYTES + b"]",
}


@pytest.mark.parametrize("data", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_other_layouts_are_left_to_the_strict_reader(data: bytes) -> None:
    assert data != BASE_BYTES
    assert agree(data) is None


def test_what_the_strict_reader_accepts_in_another_layout_is_the_same_report() -> None:
    document = read_strict(BASE_BYTES)
    for name in ("pretty", "ascii escapes", "keys out of order", "space after a colon"):
        assert SignedReport.from_bytes(LAYOUTS[name]) == document
    minus_zero = SignedReport.from_bytes(LAYOUTS["minus zero"])
    assert minus_zero.report.status_index == 0
    assert b'"status_index":0,' in minus_zero.report.signed_bytes()


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["2026-01-10", "2026-06-01T06:30:00Z", "370200", " x", "x ", "x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


PATHS = _paths(BASE)[1:]
SOURCES = [BASE, document_of(minimal_report()), document_of(REPORTS["superseding"])]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SOURCES), st.data(), JSON_VALUES)
def test_both_readers_agree_on_any_field_replaced_by_any_json_value(
    source: dict[str, Any], data: st.DataObject, value: Any
) -> None:
    path = data.draw(st.sampled_from(_paths(source)[1:]))
    agree(canonical(changed(path, value, source)))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(BASE_BYTES) - 1), st.binary(min_size=0, max_size=3))
def test_both_readers_agree_on_any_bytes_changed(position: int, replacement: bytes) -> None:
    agree(BASE_BYTES[:position] + replacement + BASE_BYTES[position + 1 :])


def test_an_expired_report_read_in_one_pass_gives_the_same_reasons() -> None:
    data = sign_report(full_report(), KEY).to_bytes()
    fast = read_canonical(data)
    assert fast is not None
    later = ISSUED + dt.timedelta(days=400)
    chain = (ManifestEpoch(CHAIN[0].manifest, None),)
    verdict = verify_offline(fast, chain=chain, now=later)
    assert verdict == verify_offline(read_strict(data), chain=chain, now=later)
    assert verdict.state == "expired"
    assert verdict.reasons[-1] == (
        "expired: valid until 2026-08-30T06:30:00Z, now 2027-07-06T06:30:00Z"
    )


def test_an_sm2_signed_file_is_read_in_one_pass() -> None:
    document = sign_report(full_report(), SigningKey.generate("sm2-sm3"))
    fast = agree(document.to_bytes())
    assert fast == document
