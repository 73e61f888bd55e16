"""Reading list decisions from CSV and JSON Lines files (``node.imports``)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from creditnet.v1 import lists_pb2
from federation.errors import InvalidInputError, ListEntryError
from federation.sanctions import ListKind
from node.cli.lists import Counts, Progress
from node.imports import (
    COLUMNS,
    REQUIRED_COLUMNS,
    ImportFormat,
    ParsedRow,
    RowReader,
    format_for,
    objection_change,
    removal_change,
)

RESIDENT = "11010519491231002X"

GOOD: dict[str, str] = {
    "list_kind": "serious-dishonesty",
    "subject_id": "91370200MA0000001X",
    "subject_name": "青岛某某公司",
    "reason": "拒不履行法定义务",
    "legal_basis": "《失信行为纠正后的信用信息修复管理办法》",
    "authority": "青岛市市场监督管理局",
    "decision_no": "青市监信〔2026〕1号",
    "listed_on": "2025-01-05",
    "publicity_end": "2026-01-05",
    "measures": "限制参与政府采购;限制乘坐飞机",
    "appeal": "可于60日内申请行政复议",
}


def csv_bytes(
    rows: list[dict[str, str]], *, header: list[str] | None = None, bom: bool = False
) -> bytes:
    columns = header if header is not None else list(GOOD)
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(column, "") for column in columns])
    return (("\ufeff" if bom else "") + out.getvalue()).encode()


def read(path: Path, data: bytes, file_format: ImportFormat = ImportFormat.CSV) -> list[ParsedRow]:
    path.write_bytes(data)
    with RowReader(path, file_format) as reader:
        rows = list(reader)
        assert reader.bytes_read == len(data)
    return rows


def read_csv(tmp_path: Path, data: bytes) -> list[ParsedRow]:
    return read(tmp_path / "rows.csv", data)


def read_jsonl(tmp_path: Path, lines: list[str]) -> list[ParsedRow]:
    return read(tmp_path / "rows.jsonl", "\n".join(lines).encode(), ImportFormat.JSONL)


def only_entry(row: ParsedRow, action: str = "add") -> lists_pb2.ListEntry:
    assert row.change is not None, row.reason
    assert row.change.WhichOneof("change") == action
    entry: lists_pb2.ListEntry = getattr(row.change, action)
    return entry


def rejected(rows: list[ParsedRow]) -> dict[int, str]:
    return {row.row: row.reason for row in rows if row.change is None}


# --- CSV -------------------------------------------------------------------------------------


def test_a_full_row_becomes_an_add_change(tmp_path: Path) -> None:
    (row,) = read_csv(tmp_path, csv_bytes([GOOD]))
    entry = only_entry(row)
    assert row.row == 1
    assert entry.list_kind == "serious-dishonesty"
    assert (entry.subject.id, entry.subject.name) == (GOOD["subject_id"], "青岛某某公司")
    assert (entry.authority, entry.decision_no) == (GOOD["authority"], GOOD["decision_no"])
    assert (entry.reason, entry.legal_basis) == (GOOD["reason"], GOOD["legal_basis"])
    assert (entry.listed_on, entry.publicity_end) == ("2025-01-05", "2026-01-05")
    assert list(entry.measures) == ["限制参与政府采购", "限制乘坐飞机"]
    assert entry.appeal == GOOD["appeal"]


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    (row,) = read_csv(tmp_path, csv_bytes([GOOD], bom=True))
    assert only_entry(row).list_kind == "serious-dishonesty"


def test_quoted_cells_keep_commas_quotes_and_newlines(tmp_path: Path) -> None:
    reason = '拒不履行, "法定" 义务\r\n第二行\n第三行'
    data = csv_bytes([{**GOOD, "reason": reason}, {**GOOD, "decision_no": "2号"}])
    first, second = read_csv(tmp_path, data)
    assert only_entry(first).reason == reason
    assert (second.row, only_entry(second).decision_no) == (2, "2号")


@pytest.mark.parametrize(
    ("cell", "measures"),
    [
        ("", []),
        ("限制高消费", ["限制高消费"]),
        (" 限制高消费 ; 限制出境 ", ["限制高消费", "限制出境"]),
        ("a;;b;", ["a", "b"]),
        (";", []),
    ],
)
def test_measures_are_separated_by_semicolons(
    tmp_path: Path, cell: str, measures: list[str]
) -> None:
    (row,) = read_csv(tmp_path, csv_bytes([{**GOOD, "measures": cell}]))
    assert list(only_entry(row).measures) == measures


def test_empty_optional_cells_and_missing_optional_columns(tmp_path: Path) -> None:
    empty = {**GOOD, "publicity_end": "", "measures": "", "appeal": ""}
    (row,) = read_csv(tmp_path, csv_bytes([empty]))
    entry = only_entry(row)
    assert (entry.publicity_end, list(entry.measures), entry.appeal) == ("", [], "")

    (row,) = read_csv(tmp_path, csv_bytes([GOOD], header=list(REQUIRED_COLUMNS)))
    entry = only_entry(row)
    assert (entry.publicity_end, list(entry.measures), entry.appeal) == ("", [], "")


def test_column_names_are_case_and_space_insensitive_and_in_any_order(tmp_path: Path) -> None:
    header = [f" {name.upper()} " for name in reversed(list(GOOD))]
    data = csv_bytes([], header=header).decode()
    values = ",".join(f'"{GOOD[name]}"' for name in reversed(list(GOOD)))
    (row,) = read_csv(tmp_path, (data + values + "\r\n").encode())
    assert only_entry(row).decision_no == GOOD["decision_no"]


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)
def test_a_missing_required_column_is_an_error_naming_it(tmp_path: Path, column: str) -> None:
    header = [name for name in GOOD if name != column]
    with pytest.raises(InvalidInputError, match=f"missing column {column}$"):
        read_csv(tmp_path, csv_bytes([GOOD], header=header))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ([*GOOD, "measure"], "unknown column 'measure'"),
        ([*GOOD, "foo", "bar"], "unknown columns 'foo', 'bar'"),
        ([*GOOD, "reason"], "names the column 'reason' twice"),
        ([*GOOD, ""], "empty column name"),
    ],
)
def test_a_bad_header_is_an_error(tmp_path: Path, header: list[str], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        read_csv(tmp_path, csv_bytes([GOOD], header=header))
    if "unknown" in message:
        assert caught.value.hint is not None and "subject_id" in caught.value.hint


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf"])
def test_an_empty_file_is_an_error(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        read_csv(tmp_path, data)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("listed_on", "2025-13-01", "listed_on: '2025-13-01' is not a date of the calendar"),
        ("listed_on", "2025-02-30", "listed_on: '2025-02-30' is not a date of the calendar"),
        ("listed_on", "05/01/2025", "listed_on: '05/01/2025' is not a date YYYY-MM-DD"),
        ("listed_on", "昨天", "listed_on: '昨天' is not a date YYYY-MM-DD"),
        ("publicity_end", "2026-1-5x", "publicity_end: '2026-1-5x' is not a date YYYY-MM-DD"),
        ("subject_id", "  ", "subject_id: is empty"),
        ("list_kind", "no-such-list", "list_kind: unknown list kind 'no-such-list'"),
        ("action", "delete", "action: 'delete' is not one of add, amend"),
    ],
)
def test_a_bad_cell_rejects_its_row_only(
    tmp_path: Path, field: str, value: str, reason: str
) -> None:
    rows = [GOOD, {**GOOD, field: value}, GOOD]
    parsed = read_csv(tmp_path, csv_bytes(rows, header=[*GOOD, "action"]))
    assert [row.row for row in parsed] == [1, 2, 3]
    assert list(rejected(parsed)) == [2]
    assert parsed[1].reason.startswith(reason)
    assert parsed[0].change is not None and parsed[2].change is not None


@pytest.mark.parametrize(
    ("cell", "iso"),
    [("2025-01-05", "2025-01-05"), ("2025/1/5", "2025-01-05"), (" 2025-1-05 ", "2025-01-05")],
)
def test_dates_as_excel_shows_them_are_accepted(tmp_path: Path, cell: str, iso: str) -> None:
    (row,) = read_csv(tmp_path, csv_bytes([{**GOOD, "listed_on": cell}]))
    assert only_entry(row).listed_on == iso


@pytest.mark.parametrize(
    ("action", "kind"),
    [("", "add"), ("add", "add"), ("amend", "amend"), (" AMEND ", "amend")],
)
def test_the_action_column_chooses_add_or_amend(tmp_path: Path, action: str, kind: str) -> None:
    (row,) = read_csv(tmp_path, csv_bytes([{**GOOD, "action": action}], header=[*GOOD, "action"]))
    assert only_entry(row, kind).decision_no == GOOD["decision_no"]


@pytest.mark.parametrize("name", ["严重失信主体名单", "Serious_Dishonesty", " red-list "])
def test_list_kinds_are_sent_as_slugs(tmp_path: Path, name: str) -> None:
    (row,) = read_csv(tmp_path, csv_bytes([{**GOOD, "list_kind": name}]))
    assert only_entry(row).list_kind == ListKind.parse(name).value


def test_a_row_with_the_wrong_number_of_cells_is_rejected(tmp_path: Path) -> None:
    data = csv_bytes([GOOD]) + b"a,b,c\r\n" + csv_bytes([GOOD]).split(b"\r\n", 1)[1]
    parsed = read_csv(tmp_path, data)
    assert rejected(parsed) == {2: "has 3 cells, the header has 11 columns"}
    assert [row.row for row in parsed] == [1, 2, 3]


def test_blank_rows_are_skipped_but_counted(tmp_path: Path) -> None:
    body = csv_bytes([GOOD]).split(b"\r\n", 1)[1]
    data = csv_bytes([GOOD]) + b"\r\n,,,,,,,,,,\r\n" + body
    parsed = read_csv(tmp_path, data)
    assert [row.row for row in parsed] == [1, 4]
    assert all(row.change is not None for row in parsed)


def test_a_broken_quote_rejects_that_row_and_reading_goes_on(tmp_path: Path) -> None:
    body = csv_bytes([GOOD]).split(b"\r\n", 1)[1]
    data = csv_bytes([GOOD]) + b'"broken"x,b\r\n' + body
    parsed = read_csv(tmp_path, data)
    assert list(rejected(parsed)) == [2]
    assert "not valid CSV" in parsed[1].reason
    assert parsed[2].row == 3 and parsed[2].change is not None


def test_a_file_that_is_not_utf8_is_an_error_naming_the_line(tmp_path: Path) -> None:
    data = csv_bytes([GOOD]) + "青岛".encode("gb18030") + b",x\r\n"
    with pytest.raises(InvalidInputError, match="line 3 is not UTF-8") as caught:
        read_csv(tmp_path, data)
    assert caught.value.hint is not None and "UTF-8" in caught.value.hint


def test_a_resident_id_in_a_wrong_column_is_not_echoed(tmp_path: Path) -> None:
    (row,) = read_csv(tmp_path, csv_bytes([{**GOOD, "listed_on": RESIDENT}]))
    assert row.change is None and "listed_on" in row.reason
    assert RESIDENT not in row.reason and "[hidden]" in row.reason


# --- JSON Lines ------------------------------------------------------------------------------


def json_good(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {**GOOD, "measures": ["限制参与政府采购", "限制乘坐飞机"]}
    document.update(changes)
    return document


def test_a_json_line_becomes_a_change(tmp_path: Path) -> None:
    lines = [
        json.dumps(json_good(), ensure_ascii=False),
        json.dumps(json_good(action="amend", publicity_end=None, appeal=None, measures=None)),
    ]
    first, second = read_jsonl(tmp_path, lines)
    assert list(only_entry(first).measures) == ["限制参与政府采购", "限制乘坐飞机"]
    amended = only_entry(second, "amend")
    assert (amended.publicity_end, amended.appeal, list(amended.measures)) == ("", "", [])


def test_optional_keys_may_be_left_out(tmp_path: Path) -> None:
    document = {name: GOOD[name] for name in REQUIRED_COLUMNS}
    (row,) = read_jsonl(tmp_path, [json.dumps(document)])
    assert only_entry(row).decision_no == GOOD["decision_no"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"list_kind": ', "not valid JSON: Expecting value (column 15)"),
        ("[1, 2]", "a line must be a JSON object"),
        ('"text"', "a line must be a JSON object"),
        (json.dumps(json_good(measures="限制高消费")), "measures: must be a list of strings"),
        (json.dumps(json_good(measures=["a", 1])), "measures: must be a list of strings"),
        (json.dumps(json_good(subject_id=91370200)), "subject_id: must be a string, not a number"),
        (json.dumps(json_good(listed_on=None)), "listed_on: must be a string, not null"),
        (json.dumps(json_good(appeal=True)), "appeal: must be a string, not true/false"),
        (json.dumps(json_good(reason={"a": 1})), "reason: must be a string, not an object"),
        (json.dumps(json_good(measure=["a"])), "unknown key 'measure'; known keys: list_kind"),
        (
            json.dumps({k: v for k, v in json_good().items() if k not in ("reason", "authority")}),
            "missing keys reason, authority",
        ),
        ('{"reason": "a", "reason": "b"}', "not valid JSON: the key 'reason' appears twice"),
        ("[" * 100_000, "not valid JSON"),
    ],
)
def test_a_bad_json_line_rejects_that_row_with_its_line_number(
    tmp_path: Path, line: str, reason: str
) -> None:
    good = json.dumps(json_good())
    parsed = read_jsonl(tmp_path, [good, "", line, good])
    assert [row.row for row in parsed] == [1, 3, 4]
    assert list(rejected(parsed)) == [3]
    assert parsed[1].reason.startswith(reason)


# --- single changes and formats ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "explicit", "expected"),
    [
        ("a.csv", None, ImportFormat.CSV),
        ("A.CSV", None, ImportFormat.CSV),
        ("a.jsonl", None, ImportFormat.JSONL),
        ("a.ndjson", None, ImportFormat.JSONL),
        ("a.txt", "csv", ImportFormat.CSV),
        ("a.csv", "jsonl", ImportFormat.JSONL),
    ],
)
def test_the_format_comes_from_the_flag_or_the_extension(
    name: str, explicit: str | None, expected: ImportFormat
) -> None:
    assert format_for(Path(name), explicit) is expected


def test_an_unknown_extension_needs_the_format_flag() -> None:
    with pytest.raises(InvalidInputError, match="cannot tell the format") as caught:
        format_for(Path("decisions.xlsx"))
    assert caught.value.hint is not None and "--format" in caught.value.hint


def test_a_missing_file_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read"):
        RowReader(tmp_path / "nope.csv", ImportFormat.CSV)


def test_removal_and_objection_changes() -> None:
    change = removal_change(
        authority="局", decision_no="1号", reason="Objection-Upheld", on="2025/3/1", by="委"
    )
    assert change.remove.removal.reason == lists_pb2.REMOVAL_REASON_OBJECTION_UPHELD
    assert (change.remove.removal.removed_on, change.remove.entry.decision_no) == (
        "2025-03-01",
        "1号",
    )
    with pytest.raises(ListEntryError, match="reason: 'forgiven' is not one of repair"):
        removal_change(
            authority="局", decision_no="1号", reason="forgiven", on="2025-03-01", by="委"
        )
    opened = objection_change(authority="局", decision_no="1号", open_=True, on="2025-03-01")
    assert opened.objection.objection.open and opened.objection.objection.on == "2025-03-01"
    with pytest.raises(ListEntryError, match="on: "):
        objection_change(authority="局", decision_no="1号", open_=False, on="soon")


# --- the progress printer ------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_a_periodic_line_elsewhere() -> None:
    now = [0.0]
    counts = Counts(rows=10, applied=8, duplicates=1, rejected=1)

    terminal = FakeTerminal()
    bar = Progress(terminal, total=200, clock=lambda: now[0])
    now[0] = 1.0
    bar.update(100, counts)
    bar.close()
    assert terminal.getvalue().startswith("\r[############............]  50%  10 rows, 8 applied")
    assert terminal.getvalue().endswith("\n")

    log = io.StringIO()
    lines = Progress(log, total=200, clock=lambda: now[0])
    lines.update(50, counts)  # too soon after the start: nothing
    now[0] = 7.0
    lines.update(100, counts)
    lines.update(150, counts)  # too soon after the last line
    lines.close()
    assert log.getvalue() == "10 rows, 8 applied, 1 duplicates, 1 rejected\n"


# --- property: whatever csv.writer writes, the parser reads back -----------------------------

_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30).filter(
    lambda s: s.strip() != ""
)
_measure = _text.map(str.strip).filter(lambda s: ";" not in s and s != "")
_date = st.dates().map(lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}")
_row = st.fixed_dictionaries(
    {
        "list_kind": st.sampled_from([k.value for k in ListKind] + [k.name_zh for k in ListKind]),
        "subject_id": _text,
        "subject_name": _text,
        "reason": _text,
        "legal_basis": _text,
        "authority": _text,
        "decision_no": _text,
        "listed_on": _date.filter(lambda d: d >= "1000"),
        "publicity_end": st.one_of(st.just(""), _date.filter(lambda d: d >= "1000")),
        "measures": st.lists(_measure, max_size=4),
        "appeal": st.one_of(st.just(""), _text),
        "action": st.sampled_from(["", "add", "amend"]),
    }
)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(_row, max_size=6), bom=st.booleans(), crlf=st.booleans())
def test_csv_written_rows_read_back(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[dict[str, Any]],
    bom: bool,
    crlf: bool,
) -> None:
    # csv.writer quotes a carriage return only when it is part of the line terminator: with
    # bare "\n" endings it writes one unquoted, which no CSV reader can take back.
    cells = [
        text
        for row in rows
        for value in row.values()
        for text in (value if isinstance(value, list) else [value])
    ]
    assume(crlf or not any("\r" in text for text in cells))
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([";".join(row[c]) if c == "measures" else row[c] for c in COLUMNS])
    data = (("\ufeff" if bom else "") + out.getvalue()).encode()
    parsed = read(tmp_path_factory.getbasetemp() / "property.csv", data)

    assert [p.row for p in parsed] == list(range(1, len(rows) + 1))
    for written, got in zip(rows, parsed, strict=True):
        entry = only_entry(got, written["action"] or "add")
        assert entry.list_kind == ListKind.parse(written["list_kind"]).value
        assert entry.subject.id == written["subject_id"]
        assert entry.subject.name == written["subject_name"]
        for name in ("reason", "legal_basis", "authority", "decision_no", "listed_on"):
            assert getattr(entry, name) == written[name]
        assert entry.publicity_end == written["publicity_end"]
        assert list(entry.measures) == written["measures"]
        assert entry.appeal == written["appeal"]
