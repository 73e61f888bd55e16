"""Reading list decisions from files (CSV, JSON Lines) into ``ListChange`` messages.

A city platform exports its decisions from a spreadsheet or a database and hands the file to
``credit-node list import``. This module turns the file into changes, row by row (a file is
never held in memory), and says precisely which rows cannot be read and why; deciding whether
a change is acceptable stays with the node.

CSV (RFC 4180, as Excel writes it): UTF-8 with or without a byte order mark, a header row,
then one decision per record. Columns, in any order (names are case-insensitive):

- required: ``list_kind`` (slug or Chinese name), ``subject_id``, ``subject_name``,
  ``reason``, ``legal_basis``, ``authority``, ``decision_no``, ``listed_on``;
- optional (the column may be left out, a cell may be empty): ``publicity_end``,
  ``measures`` (separated by ``;``), ``appeal``, ``action`` (``add``, the default, or
  ``amend``).

An unknown column is an error naming it (a misspelt column must not be dropped silently).
JSON Lines: one object per line with the same keys, ``measures`` a list of strings; an
optional key may be absent or null.

Row numbers are 1-based data rows (the CSV header is not a row; in JSON Lines the row is the
line number); blank rows are skipped but counted, so that row N is where a spreadsheet or an
editor shows it. Dates are ``YYYY-MM-DD``; ``YYYY/M/D`` (how Excel shows dates in a Chinese
locale) is accepted too. No value that could be a personal identifier is echoed in a reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from creditnet.v1 import lists_pb2
from federation.errors import CreditNetError, InvalidInputError, ListEntryError
from federation.sanctions import ListKind, RemovalReason
from federation.subjects import shown

REQUIRED_COLUMNS = (
    "list_kind",
    "subject_id",
    "subject_name",
    "reason",
    "legal_basis",
    "authority",
    "decision_no",
    "listed_on",
)
OPTIONAL_COLUMNS = ("publicity_end", "measures", "appeal", "action")
COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
MEASURE_SEPARATOR = ";"

ACTIONS = ("add", "amend")

REMOVAL_REASONS: Mapping[RemovalReason, lists_pb2.RemovalReason.ValueType] = {
    RemovalReason.REPAIR: lists_pb2.REMOVAL_REASON_REPAIR,
    RemovalReason.EXPIRY: lists_pb2.REMOVAL_REASON_EXPIRY,
    RemovalReason.OBJECTION_UPHELD: lists_pb2.REMOVAL_REASON_OBJECTION_UPHELD,
    RemovalReason.DECISION_REVOKED: lists_pb2.REMOVAL_REASON_DECISION_REVOKED,
}

_DATE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")
_BOM = "\ufeff"


class ImportFormat(enum.StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


def format_for(path: Path, explicit: str | None = None) -> ImportFormat:
    """The format given, or the one the file name's extension says."""
    if explicit:
        try:
            return ImportFormat(explicit.lower())
        except ValueError:
            raise InvalidInputError(f"unknown format {explicit!r}; give csv or jsonl") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return ImportFormat.CSV
    if suffix in (".jsonl", ".ndjson"):
        return ImportFormat.JSONL
    raise InvalidInputError(
        f"cannot tell the format of {path.name} from its extension",
        hint="name it .csv or .jsonl, or give --format csv|jsonl",
    )


@dataclass(frozen=True)
class ParsedRow:
    """One data row: the change to send, or why it cannot be read (``change`` is None)."""

    row: int
    change: lists_pb2.ListChange | None
    reason: str = ""


# --- fields to messages ----------------------------------------------------------------------


def parse_date(text: str, field: str) -> str:
    """``YYYY-MM-DD`` (or ``YYYY/M/D``) as an ISO date string."""
    match = _DATE.fullmatch(text.strip())
    if match is None:
        raise ListEntryError(f"{field}: {shown(text)} is not a date YYYY-MM-DD")
    try:
        return dt.date(*(int(part) for part in match.groups())).isoformat()
    except ValueError:
        raise ListEntryError(f"{field}: {shown(text)} is not a date of the calendar") from None


def entry_change(
    fields: Mapping[str, str], measures: Iterable[str] = (), *, action: str = "add"
) -> lists_pb2.ListChange:
    """An add or amend change from text fields named as the CSV columns.

    Required fields must not be blank; dates and the list kind are checked here, the rest
    (identifier, lengths, publicity period) by the node, which has the policies.
    """
    for name in REQUIRED_COLUMNS:
        if not fields.get(name, "").strip():
            raise ListEntryError(f"{name}: is empty")
    verb = action.strip().lower() or "add"
    if verb not in ACTIONS:
        raise ListEntryError(f"action: {shown(action)} is not one of {', '.join(ACTIONS)}")
    try:
        kind = ListKind.parse(fields["list_kind"])
    except CreditNetError as exc:
        raise ListEntryError(f"list_kind: {exc.message}") from None
    publicity_end = fields.get("publicity_end", "")
    entry = lists_pb2.ListEntry(
        list_kind=kind.value,
        subject=lists_pb2.Subject(id=fields["subject_id"], name=fields["subject_name"]),
        reason=fields["reason"],
        legal_basis=fields["legal_basis"],
        authority=fields["authority"],
        decision_no=fields["decision_no"],
        listed_on=parse_date(fields["listed_on"], "listed_on"),
        publicity_end=parse_date(publicity_end, "publicity_end") if publicity_end.strip() else "",
        measures=[m for m in measures if m.strip()],
        appeal=fields.get("appeal", ""),
    )
    if verb == "amend":
        return lists_pb2.ListChange(amend=entry)
    return lists_pb2.ListChange(add=entry)


def removal_change(
    *, authority: str, decision_no: str, reason: str, on: str, by: str, note: str = ""
) -> lists_pb2.ListChange:
    """A remove change (移出) for the decision (``authority``, ``decision_no``)."""
    try:
        why = RemovalReason(reason.strip().lower())
    except ValueError:
        known = ", ".join(r.value for r in RemovalReason)
        raise ListEntryError(f"reason: {shown(reason)} is not one of {known}") from None
    return lists_pb2.ListChange(
        remove=lists_pb2.RemoveEntry(
            entry=lists_pb2.EntryRef(authority=authority, decision_no=decision_no),
            removal=lists_pb2.Removal(
                removed_on=parse_date(on, "on"),
                reason=REMOVAL_REASONS[why],
                authority=by,
                note=note,
            ),
        )
    )


def objection_change(
    *, authority: str, decision_no: str, open_: bool, on: str, note: str = ""
) -> lists_pb2.ListChange:
    """An objection (异议) opened or closed on the decision (``authority``, ``decision_no``)."""
    return lists_pb2.ListChange(
        objection=lists_pb2.ObjectEntry(
            entry=lists_pb2.EntryRef(authority=authority, decision_no=decision_no),
            objection=lists_pb2.Objection(open=open_, on=parse_date(on, "on"), note=note),
        )
    )


def split_measures(cell: str) -> list[str]:
    return [m.strip() for m in cell.split(MEASURE_SEPARATOR) if m.strip()]


# --- CSV ---------------------------------------------------------------------------------------


def _strip_bom(lines: Iterable[str]) -> Iterator[str]:
    first = True
    for line in lines:
        if first and line.startswith(_BOM):
            line = line[1:]
        first = False
        yield line


def _check_header(cells: list[str]) -> list[str]:
    header = [cell.strip().lower() for cell in cells]
    if any(not name for name in header):
        raise InvalidInputError("the header row has an empty column name")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise InvalidInputError(f"the header names the column {shown(name)} twice")
        seen.add(name)
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        raise InvalidInputError(
            f"unknown column{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(shown(u) for u in unknown)}",
            hint=f"known columns: {', '.join(COLUMNS)}",
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in seen]
    if missing:
        raise InvalidInputError(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
            hint=f"the header row must name at least: {', '.join(REQUIRED_COLUMNS)}",
        )
    return header


def parse_csv(lines: Iterable[str]) -> Iterator[ParsedRow]:
    """Rows of a CSV file given as lines with their line endings (``newline=""``).

    A broken header raises :class:`InvalidInputError`; a broken record is a rejected row.
    """
    reader = csv.reader(_strip_bom(lines), strict=True)
    try:
        first = next(reader, None)
    except csv.Error as exc:
        raise InvalidInputError(f"the header row is not valid CSV: {exc}") from None
    if not first:
        raise InvalidInputError(
            "the file is empty", hint=f"the first row names the columns: {', '.join(COLUMNS)}"
        )
    header = _check_header(first)
    row = 0
    while True:
        row += 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield ParsedRow(row, None, f"not valid CSV: {exc}")
            continue
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(header):
            yield ParsedRow(
                row, None, f"has {len(record)} cells, the header has {len(header)} columns"
            )
            continue
        values = dict(zip(header, record, strict=True))
        try:
            change = entry_change(
                values, split_measures(values.get("measures", "")), action=values.get("action", "")
            )
        except CreditNetError as exc:
            yield ParsedRow(row, None, exc.message)
            continue
        yield ParsedRow(row, change)


# --- JSON Lines --------------------------------------------------------------------------------


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ListEntryError(f"the key {shown(key)} appears twice")
        document[key] = value
    return document


def _json_fields(document: object) -> tuple[dict[str, str], list[str], str]:
    """Text fields, measures and action of one JSON object, types checked."""
    if not isinstance(document, dict):
        raise ListEntryError("a line must be a JSON object")
    unknown = [key for key in document if key not in COLUMNS]
    if unknown:
        raise ListEntryError(
            f"unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(shown(u) for u in unknown)}; known keys: {', '.join(COLUMNS)}"
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in document]
    if missing:
        raise ListEntryError(f"missing key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    fields: dict[str, str] = {}
    for name in (*REQUIRED_COLUMNS, "publicity_end", "appeal", "action"):
        value = document.get(name)
        if value is None and name not in REQUIRED_COLUMNS:
            value = ""
        if not isinstance(value, str):
            raise ListEntryError(f"{name}: must be a string, not {_json_type(value)}")
        fields[name] = value
    measures = document.get("measures")
    if measures is None:
        measures = []
    if not isinstance(measures, list) or not all(isinstance(m, str) for m in measures):
        raise ListEntryError("measures: must be a list of strings")
    return fields, measures, fields.pop("action")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_jsonl(lines: Iterable[str]) -> Iterator[ParsedRow]:
    """Rows of a JSON Lines file; row N is line N."""
    for row, line in enumerate(_strip_bom(lines), start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line.rstrip("\r\n"), object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            yield ParsedRow(row, None, f"not valid JSON: {exc.msg} (column {exc.colno})")
            continue
        except (CreditNetError, RecursionError) as exc:
            message = exc.message if isinstance(exc, CreditNetError) else "nested too deeply"
            yield ParsedRow(row, None, f"not valid JSON: {message}")
            continue
        try:
            fields, measures, action = _json_fields(document)
            change = entry_change(fields, measures, action=action)
        except CreditNetError as exc:
            yield ParsedRow(row, None, exc.message)
            continue
        yield ParsedRow(row, change)


# --- files -------------------------------------------------------------------------------------


class RowReader:
    """The rows of a file, read lazily; ``bytes_read`` of ``size`` tells the progress.

    The file is read as bytes and decoded line by line (a newline byte never occurs inside a
    UTF-8 sequence), which keeps count of the bytes consumed for a progress bar and names
    the line where a file stops being UTF-8.
    """

    def __init__(self, path: Path, file_format: ImportFormat) -> None:
        self.path = path
        self.format = file_format
        try:
            self._file: IO[bytes] = path.open("rb")
            self.size = path.stat().st_size
        except OSError as exc:
            raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from None
        self.bytes_read = 0

    def __enter__(self) -> RowReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def _lines(self) -> Iterator[str]:
        for number, raw in enumerate(self._file, start=1):
            self.bytes_read += len(raw)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInputError(
                    f"{self.path.name}: line {number} is not UTF-8 text",
                    hint="save the file as UTF-8 (Excel: CSV UTF-8)",
                ) from None

    def __iter__(self) -> Iterator[ParsedRow]:
        if self.format is ImportFormat.CSV:
            return parse_csv(self._lines())
        return parse_jsonl(self._lines())


__all__ = [
    "COLUMNS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "ImportFormat",
    "ParsedRow",
    "RowReader",
    "entry_change",
    "format_for",
    "objection_change",
    "parse_csv",
    "parse_date",
    "parse_jsonl",
    "removal_change",
    "shown",
    "split_measures",
]
