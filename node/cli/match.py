"""``credit-node match``: private matching against other cities' non-public lists.

Every verb talks to the running node through its client API. ``one ID`` asks every other
city at once (or those named with ``--city``) whether a subject is on one of its non-public
lists; no city learns which subject was asked about. ``batch FILE --peer CITY`` screens the
subjects of a file against one city (a progress bar on standard error; ``--out`` writes the
hits to a CSV file), ``count FILE --peer CITY`` only says how many are listed there.
After a hit, ``disclose`` asks the city for the entry's details, naming the subject and the
purpose (audited on both sides). ``status`` shows the matching tables held.

FILE is either a CSV file (``.csv``) with a header row naming a ``subject_id`` column (other
columns are ignored), or a text file with one identifier a line; UTF-8, with or without a
byte order mark. Rows are numbered as in ``credit-node list import``: 1-based data rows
(the CSV header is not a row), blank rows counted. Rows whose identifier is not valid are
reported on standard error and left out.

Exit codes: 0 the query ran (whatever it found); 2 invalid input (or some rows of FILE were
left out); 1 any other error (the node is not running, the city refused or did not answer).
Resident ID numbers are printed masked; the ``--out`` file holds identifiers in clear (the
platform's own data) and is created readable by its owner only.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from creditnet.v1 import matching_pb2
from federation.clock import china_date
from federation.errors import CreditNetError, InvalidInputError
from federation.member import check_city_code
from federation.sanctions import ListKind
from federation.subjects import mask_resident_id, parse_subject
from node.cli.lists import _private_output
from node.cli.table import ago, render_table
from node.client import NodeClient
from node.config import load_config

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_SKIPPED = 2

ID_COLUMN = "subject_id"
#: Subjects per MatchBatch call: the node's limit per request.
MAX_CALL_SUBJECTS = 100_000
MAX_LISTED_INVALID = 20
_BOM = "\ufeff"

_OUTCOME = {
    matching_pb2.CityMatch.OUTCOME_HIT: "HIT",
    matching_pb2.CityMatch.OUTCOME_NO_HIT: "no hit",
    matching_pb2.CityMatch.OUTCOME_UNAVAILABLE: "unavailable",
    matching_pb2.CityMatch.OUTCOME_REFUSED: "REFUSED",
}


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "match",
        help="check subjects privately against other cities' non-public lists",
        description="Check subjects against other cities' non-public lists without telling "
        "them which subjects (Paillier private matching; docs/private-matching.md).",
    )
    verbs = parser.add_subparsers(dest="match_command", required=True, metavar="VERB")
    node_dir = argparse.ArgumentParser(add_help=False)
    node_dir.add_argument("--dir", type=Path, required=True, help="the node directory")

    one = verbs.add_parser(
        "one",
        parents=[node_dir],
        help="one subject against every city at once",
        description="Ask every other city (or those given with --city) at once whether a "
        "subject is on one of its non-public lists: one answer per city (HIT with the lists, "
        "no hit, unavailable, or REFUSED when over quota).",
    )
    one.add_argument("subject", metavar="ID", help="USCC or resident ID")
    one.add_argument(
        "--city",
        action="append",
        default=[],
        metavar="CODE",
        help="ask only this city; repeat for several (default: every other member)",
    )
    one.set_defaults(handler=run_one)

    for verb, text in (
        ("batch", "screen a file of subjects against one city: which are listed there"),
        ("count", "how many subjects of a file are listed at one city (not which)"),
    ):
        sub = verbs.add_parser(verb, parents=[node_dir], help=text, description=text + ".")
        sub.add_argument("file", type=Path, metavar="FILE")
        sub.add_argument("--peer", required=True, metavar="CITY", help="the city to ask")
        if verb == "batch":
            sub.add_argument(
                "--out",
                type=Path,
                metavar="RESULT.csv",
                help="write the hits (row, subject_id, city, list kinds) to this CSV file",
            )
        sub.set_defaults(handler=run_batch, count_only=verb == "count")

    disclose = verbs.add_parser(
        "disclose",
        parents=[node_dir],
        help="ask a city for an entry's details after a hit (audited)",
        description="After a hit, ask the city for its entries about the subject. The "
        "subject is named in clear to that city, with the purpose; both sides audit it.",
    )
    disclose.add_argument("subject", metavar="ID")
    disclose.add_argument("--peer", required=True, metavar="CITY", help="the city that hit")
    disclose.add_argument(
        "--request",
        required=True,
        metavar="REQUEST_ID_HEX",
        help="the match request id shown with the hit",
    )
    disclose.add_argument("--purpose", required=True, metavar="TEXT", help="why it is asked")
    disclose.add_argument("--legal-basis", default="", metavar="TEXT", help="on what basis")
    disclose.add_argument("--by", default="", metavar="NAME", help="who asks (for the audit)")
    disclose.set_defaults(handler=run_disclose)

    status = verbs.add_parser(
        "status",
        parents=[node_dir],
        help="the matching tables this node publishes and holds",
        description="Per city: table id, epoch, bins, age, and the precomputed randomness "
        "ready for probes to it.",
    )
    status.set_defaults(handler=run_status)


# --- helpers -------------------------------------------------------------------------------


def _names(client: NodeClient) -> dict[str, str]:
    return {m.city_code: m.name for m in client.status().members}


def _city(code: str, names: dict[str, str]) -> str:
    name = names.get(code)
    return f"{code} {name}" if name else code


def _kinds(slugs: Sequence[str]) -> str:
    names = []
    for slug in slugs:
        try:
            names.append(f"{ListKind(slug).name_zh} ({slug})")
        except ValueError:
            names.append(slug)
    return ", ".join(names)


def _masked(value: str) -> str:
    """A subject for the screen: resident IDs (and anything shaped like one) masked."""
    try:
        return parse_subject(value).masked
    except CreditNetError:
        return mask_resident_id(value) if len(value) > 10 else "*" * len(value)


# --- one -----------------------------------------------------------------------------------


def format_one(masked: str, response: matching_pb2.MatchOneResponse, names: dict[str, str]) -> str:
    hits = [c for c in response.cities if c.outcome == matching_pb2.CityMatch.OUTCOME_HIT]
    lines = [
        f"subject {masked}: "
        + (
            f"HIT at {len(hits)} of {len(response.cities)} cities"
            if hits
            else f"no hit at {len(response.cities)} cities"
        )
    ]
    rows = [
        [
            _city(c.city_code, names),
            _OUTCOME.get(c.outcome, "?"),
            _kinds(c.list_kinds),
            c.match_request_id.hex() if c.outcome == matching_pb2.CityMatch.OUTCOME_HIT else "",
            c.detail,
        ]
        for c in response.cities
    ]
    lines.append(render_table(["CITY", "OUTCOME", "LISTS", "REQUEST", "DETAIL"], rows))
    unknown = [c for c in response.cities if c.outcome != matching_pb2.CityMatch.OUTCOME_NO_HIT]
    if len(unknown) > len(hits):
        lines.append("a city that is unavailable or refused said nothing about the subject")
    if hits:
        lines.append(
            "details of an entry: credit-node match disclose ID --peer CITY --request REQUEST "
            "--purpose TEXT --dir DIR"
        )
    return "\n".join(lines)


def run_one(args: argparse.Namespace) -> int:
    subject = parse_subject(args.subject)
    cities = [check_city_code(c) for c in args.city]
    with NodeClient(load_config(args.dir)) as client:
        response = client.match_one(args.subject, cities)
        names = _names(client)
    print(format_one(subject.masked, response, names))
    return EXIT_OK


# --- batch and count -----------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    row: int
    identifier: str


@dataclass
class SubjectFile:
    subjects: list[Subject]
    invalid: list[tuple[int, str]]


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"{path.name} is not UTF-8 text", hint="save the file as UTF-8 (Excel: CSV UTF-8)"
        ) from None
    return text.removeprefix(_BOM).splitlines(keepends=True)


def _cells(path: Path) -> Iterator[tuple[int, str]]:
    """(row, identifier text) of a CSV file with a subject_id column, or of a text file."""
    lines = _lines(path)
    if path.suffix.lower() != ".csv":
        for row, line in enumerate(lines, start=1):
            yield row, line.strip()
        return
    reader = csv.reader(lines)
    header = [cell.strip().lower() for cell in next(reader, [])]
    if ID_COLUMN not in header:
        raise InvalidInputError(
            f"{path.name}: the header row has no {ID_COLUMN} column",
            hint=f"name the column of identifiers {ID_COLUMN}, or give a text file with one "
            "identifier a line",
        )
    column = header.index(ID_COLUMN)
    for row, cells in enumerate(reader, start=1):
        yield row, cells[column].strip() if column < len(cells) else ""


def read_subjects(path: Path) -> SubjectFile:
    """The identifiers of FILE, each checked; the invalid ones with their row and reason."""
    subjects: list[Subject] = []
    invalid: list[tuple[int, str]] = []
    today = china_date(dt.datetime.now(dt.UTC))
    for row, text in _cells(path):
        if not text:
            continue
        try:
            subjects.append(Subject(row, parse_subject(text, today=today).value))
        except CreditNetError as exc:
            invalid.append((row, exc.message))
    return SubjectFile(subjects, invalid)


class Progress:
    """A bar redrawn in place on a terminal, a line now and then otherwise (as ``list import``)."""

    BAR_WIDTH = 24

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        try:
            self._tty = stream.isatty()
        except (AttributeError, ValueError):
            self._tty = False
        self._interval = 0.1 if self._tty else 5.0
        self._clock = clock
        self._last = clock()
        self._open = False

    def update(self, done: int, total: int, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        fraction = min(1.0, done / total) if total else 1.0
        text = f"{done} of {total} subjects screened"
        if self._tty:
            filled = int(fraction * self.BAR_WIDTH)
            bar = "#" * filled + "." * (self.BAR_WIDTH - filled)
            self._stream.write(f"\r[{bar}] {int(fraction * 100):3d}%  {text}\x1b[K")
            self._open = True
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._open:
            self._stream.write("\n")
            self._stream.flush()
            self._open = False


@dataclass
class Screening:
    total: int
    hits: list[tuple[Subject, tuple[str, ...]]]
    hit_count: int


def screen(
    client: NodeClient,
    subjects: Sequence[Subject],
    city: str,
    *,
    count_only: bool,
    progress: Progress,
) -> Screening:
    result = Screening(total=len(subjects), hits=[], hit_count=0)
    for start in range(0, len(subjects), MAX_CALL_SUBJECTS):
        part = subjects[start : start + MAX_CALL_SUBJECTS]
        ids = [s.identifier for s in part]
        for message in client.match_batch(ids, city, count_only=count_only):
            progress.update(start + message.done_subjects, len(subjects), force=message.done)
            if message.done:
                result.hit_count += message.hit_count
                result.hits.extend((part[h.index], tuple(h.list_kinds)) for h in message.hits)
    return result


def _write_hits(path: Path, city: str, hits: Sequence[tuple[Subject, tuple[str, ...]]]) -> None:
    with _private_output(path, bom=True) as out:
        writer = csv.writer(out)
        writer.writerow(["row", ID_COLUMN, "city", "list_kinds"])
        for subject, kinds in hits:
            writer.writerow([subject.row, subject.identifier, city, ";".join(kinds)])


def _report_invalid(path: Path, invalid: Sequence[tuple[int, str]]) -> None:
    for row, reason in invalid[:MAX_LISTED_INVALID]:
        print(f"{path.name}: row {row}: {reason}", file=sys.stderr)
    if len(invalid) > MAX_LISTED_INVALID:
        print(
            f"{path.name}: ... and {len(invalid) - MAX_LISTED_INVALID} more invalid rows",
            file=sys.stderr,
        )


def run_batch(args: argparse.Namespace) -> int:
    city = check_city_code(args.peer)
    loaded = read_subjects(args.file)
    _report_invalid(args.file, loaded.invalid)
    if not loaded.subjects:
        raise InvalidInputError(f"{args.file.name}: no valid identifier to screen")
    config = load_config(args.dir)
    started = time.monotonic()
    with NodeClient(config) as client:
        names = _names(client)
        progress = Progress(sys.stderr)
        try:
            result = screen(
                client, loaded.subjects, city, count_only=args.count_only, progress=progress
            )
        finally:
            progress.close()
    took = time.monotonic() - started
    skipped = f"; {len(loaded.invalid)} invalid rows left out" if loaded.invalid else ""
    where = _city(city, names)
    if args.count_only:
        distinct = len({s.identifier for s in loaded.subjects})
        print(
            f"count {args.file.name}: {result.hit_count} of {distinct} distinct subjects are on "
            f"a non-public list of {where} ({took:.1f}s{skipped})"
        )
    else:
        print(
            f"batch {args.file.name}: {len(result.hits)} of {result.total} subjects are on a "
            f"non-public list of {where} ({took:.1f}s{skipped})"
        )
        if args.out is not None:
            _write_hits(args.out, city, result.hits)
            print(f"hits written to {args.out}")
        elif result.hits:
            rows = [[str(s.row), _masked(s.identifier), _kinds(kinds)] for s, kinds in result.hits]
            print(render_table(["ROW", "SUBJECT", "LISTS"], rows))
    return EXIT_SKIPPED if loaded.invalid else EXIT_OK


# --- disclose ------------------------------------------------------------------------------


def _entry_lines(entry: matching_pb2.DisclosedEntry) -> list[str]:
    try:
        value = json.loads(entry.entry)
    except ValueError:
        return [f"  {entry.entry_id}: (the entry is not readable JSON)"]
    if not isinstance(value, dict):
        return [f"  {entry.entry_id}: (the entry is not a JSON object)"]
    raw_subject = value.get("subject")
    subject: dict[str, Any] = raw_subject if isinstance(raw_subject, dict) else {}
    measures = value.get("measures") or []
    lines = [
        f"  entry {entry.entry_id}: {_kinds([entry.list_kind])}",
        f"    subject      {subject.get('name', '')} ({_masked(str(subject.get('id', '')))})",
        f"    decision     {value.get('authority', '')} {value.get('decision_no', '')}",
        f"    listed on    {value.get('listed_on', '')}, publicity until "
        f"{value.get('publicity_end', '')}",
        f"    reason       {value.get('reason', '')}",
        f"    legal basis  {value.get('legal_basis', '')}",
    ]
    if measures:
        lines.append(f"    measures     {'; '.join(str(m) for m in measures)}")
    if value.get("appeal"):
        lines.append(f"    appeal       {value['appeal']}")
    return lines


def run_disclose(args: argparse.Namespace) -> int:
    city = check_city_code(args.peer)
    subject = parse_subject(args.subject)
    try:
        request_id = bytes.fromhex(args.request)
    except ValueError:
        raise InvalidInputError("--request: give the match request id as hex digits") from None
    with NodeClient(load_config(args.dir)) as client:
        answer = client.disclose(
            city,
            args.subject,
            match_request_id=request_id,
            purpose=args.purpose,
            legal_basis=args.legal_basis,
            requested_by=args.by,
        )
        names = _names(client)
    print(
        f"{_city(city, names)} disclosed {len(answer.entries)} entries about {subject.masked} "
        f"(disclosure {answer.disclosure_id})"
    )
    for entry in answer.entries:
        print("\n".join(_entry_lines(entry)))
    return EXIT_OK


# --- status --------------------------------------------------------------------------------


def format_matching_status(
    response: matching_pb2.GetMatchingStatusResponse,
    *,
    names: dict[str, str],
    self_city: str,
    now: dt.datetime,
) -> str:
    rows = []
    for table in response.tables:
        own = table.city_code == self_city
        rows.append(
            [
                _city(table.city_code, names),
                "own (published)" if own else "held",
                table.table_id[:8],
                str(table.epoch),
                str(table.bins),
                ago(table.issued_at.ToDatetime(dt.UTC), now),
                "-" if own else str(table.pooled_residues),
                "-" if table.quota_left < 0 else str(table.quota_left),
            ]
        )
    header = ["CITY", "TABLE", "ID", "EPOCH", "BINS", "ISSUED", "POOLED", "QUOTA LEFT"]
    held = sum(1 for t in response.tables if t.city_code != self_city)
    return f"{held} peer tables held\n" + render_table(header, rows)


def run_status(args: argparse.Namespace) -> int:
    config = load_config(args.dir)
    with NodeClient(config) as client:
        response = client.matching_status()
        names = _names(client)
    print(
        format_matching_status(
            response, names=names, self_city=config.city_code, now=dt.datetime.now(dt.UTC)
        )
    )
    return EXIT_OK
