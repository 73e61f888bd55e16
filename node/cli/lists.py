"""``credit-node list``: the city platform's command line for sanction and reward lists.

Every verb talks to the running node through its client API (``--dir`` names the node
directory, for the address, certificate and token). Changes: ``add``, ``amend``,
``remove``, ``object`` and ``import`` (a CSV or JSON Lines file, streamed in batches; see
:mod:`node.imports` for the columns). Reading: ``status`` (one subject across the
federation), ``export``, ``history``; sync: ``sync`` and ``resume``.

Exit codes: 0 done (a change applied, or already recorded); 2 a change or some imported rows
were rejected, or the input is invalid; 1 any other error (e.g. the node is not running).
A resident ID number is only ever shown masked, except in ``export``, which is the
platform's own access to its data and outputs identifiers as the node returns them.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO

from creditnet.v1 import client_pb2, lists_pb2, subject_pb2
from federation.clock import format_utc
from federation.errors import CreditNetError, InvalidInputError
from federation.sanctions import ListKind
from federation.subjects import mask_resident_id
from node.cli.table import ago, render_table
from node.client import MAX_PAGE_SIZE, NodeClient
from node.config import load_config
from node.imports import (
    REMOVAL_REASONS,
    ParsedRow,
    RowReader,
    entry_change,
    format_for,
    objection_change,
    removal_change,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REJECTED = 2

MAX_BATCH = 1000
DEFAULT_BATCH = 500
#: The node accepts requests up to gRPC's default 4 MiB; long texts could make 1000 rows
#: larger than that, so a batch is also cut by size.
MAX_BATCH_BYTES = 3 * 1024 * 1024

EXPORT_COLUMNS = (
    "origin",
    "entry_id",
    "active",
    "why",
    "objection_pending",
    "list_kind",
    "subject_kind",
    "subject_id",
    "subject_name",
    "reason",
    "legal_basis",
    "authority",
    "decision_no",
    "listed_on",
    "publicity_end",
    "measures",
    "appeal",
)

_SUBJECT_KIND = {
    subject_pb2.SUBJECT_KIND_USCC: "uscc",
    subject_pb2.SUBJECT_KIND_RESIDENT_ID: "resident-id",
}
_REASON_SLUG = {wire: reason.value for reason, wire in REMOVAL_REASONS.items()}
_OBJECTION_PENDING = "异议处理中 (objection pending)"


# --- the parser ----------------------------------------------------------------------------


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "list",
        help="record and read sanction and reward lists",
        description="Record this city's list decisions (严重失信主体名单, 红名单 ...) and read "
        "every city's entries, through the running node.",
    )
    verbs = parser.add_subparsers(dest="list_command", required=True, metavar="VERB")
    node_dir = argparse.ArgumentParser(add_help=False)
    node_dir.add_argument("--dir", type=Path, required=True, help="the node directory")

    for verb, action, text in (
        ("add", "add", "list a subject (列入): record a decision of this city"),
        ("amend", "amend", "replace a listing with corrected content (same decision)"),
    ):
        sub = verbs.add_parser(verb, parents=[node_dir], help=text, description=text)
        _entry_flags(sub)
        sub.set_defaults(handler=run_entry_change, action=action)

    remove = verbs.add_parser(
        "remove",
        parents=[node_dir],
        help="remove a listing (移出)",
        description="Remove a listing of this city. Credit repair (repair) is only possible "
        "after the minimum publicity period; expiry only after the end of publicity.",
    )
    _decision_flags(remove)
    remove.add_argument(
        "--reason",
        required=True,
        choices=[reason.value for reason in REMOVAL_REASONS],
        help="why the entry leaves the list",
    )
    remove.add_argument("--on", required=True, metavar="YYYY-MM-DD", help="the removal date")
    remove.add_argument("--by", required=True, metavar="AUTHORITY", help="who decided it")
    remove.add_argument("--note", default="", help="a free-text note")
    remove.set_defaults(handler=run_remove)

    objection = verbs.add_parser(
        "object",
        parents=[node_dir],
        help="open or close an objection (异议) to a listing",
        description="Open or close an objection to a listing of this city; while it is "
        "open the entry is served with the flag 异议处理中 (objection pending).",
    )
    _decision_flags(objection)
    objection.add_argument("--on", required=True, metavar="YYYY-MM-DD", help="the date")
    state = objection.add_mutually_exclusive_group(required=True)
    state.add_argument("--open", action="store_true", help="an objection was lodged")
    state.add_argument("--close", action="store_true", help="the objection was decided")
    objection.add_argument("--note", default="", help="a free-text note")
    objection.set_defaults(handler=run_objection)

    imports = verbs.add_parser(
        "import",
        parents=[node_dir],
        help="record the decisions of a CSV or JSON Lines file",
        description="Read a file row by row and send it to the node in batches. Good rows "
        "go in; each rejected row is written to the rejects file as row,reason (row = "
        "1-based data row; the CSV header is not a row). Importing a file again is safe: "
        "decisions already recorded come back as duplicates. CSV columns: list_kind, "
        "subject_id, subject_name, reason, legal_basis, authority, decision_no, listed_on, "
        "and optionally publicity_end, measures (separated by ;), appeal, action (add or "
        "amend). Exit status 0 if every row went in, 2 if some were rejected.",
    )
    imports.add_argument("file", type=Path, metavar="FILE")
    imports.add_argument(
        "--format", choices=["csv", "jsonl"], help="default: from the file's extension"
    )
    imports.add_argument(
        "--rejects", type=Path, metavar="REJECTS.csv", help="default: FILE.rejects.csv"
    )
    imports.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"rows per request (1-{MAX_BATCH}, default {DEFAULT_BATCH})",
    )
    imports.set_defaults(handler=run_import)

    export = verbs.add_parser(
        "export",
        parents=[node_dir],
        help="write out the entries this node holds",
        description="Write every entry this node holds (its own and other cities'), one row "
        "each: origin, entry_id, active, why, objection_pending and the entry's fields. "
        "Identifiers are written as the node holds them: treat the output as personal "
        "data (a file given with --out is created readable by its owner only).",
    )
    export.add_argument("--origin", metavar="CITY", default="", help="only this city's entries")
    export.add_argument("--kind", metavar="KIND", help="only this list kind")
    export.add_argument("--active-only", action="store_true", help="only entries in force")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--out", type=Path, metavar="FILE", help="default: standard output")
    export.set_defaults(handler=run_export)

    status = verbs.add_parser(
        "status",
        parents=[node_dir],
        help="one subject's entries across the federation",
        description="Show every city's entries about a subject (USCC or resident ID) and how "
        "fresh each city's replica is. The identifier is shown masked.",
    )
    status.add_argument("subject", metavar="SUBJECT_ID")
    status.add_argument(
        "--all", action="store_true", help="also entries no longer in force (removed, expired)"
    )
    status.set_defaults(handler=run_status)

    history = verbs.add_parser(
        "history",
        parents=[node_dir],
        help="the events of one entry",
        description="Show the events of an entry in its city's log, oldest first.",
    )
    history.add_argument("origin", metavar="ORIGIN")
    history.add_argument("entry_id", metavar="ENTRY_ID")
    history.set_defaults(handler=run_history)

    sync = verbs.add_parser(
        "sync",
        parents=[node_dir],
        help="how far this node's copy of each city's list is behind",
        description="Per city: events verified and seen, lag, last success, and whether "
        "sync is blocked (a split view: the city showed two histories).",
    )
    sync.set_defaults(handler=run_sync)

    resume = verbs.add_parser(
        "resume",
        parents=[node_dir],
        help="start sync from a city again after a split view",
        description="Let sync from CITY start again once the split view has been looked at.",
    )
    resume.add_argument("city", metavar="CITY")
    resume.set_defaults(handler=run_resume)


def _decision_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--authority", required=True, help="作出决定机关: who decided")
    parser.add_argument(
        "--decision", required=True, metavar="NO", help="决定书文号: the decision document number"
    )


def _entry_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", required=True, help="list kind: slug or Chinese name")
    parser.add_argument("--subject", required=True, metavar="ID", help="USCC or resident ID")
    parser.add_argument("--name", required=True, help="the subject's name")
    parser.add_argument("--reason", required=True, metavar="TEXT", help="列入事由")
    parser.add_argument("--basis", required=True, metavar="TEXT", help="认定依据")
    _decision_flags(parser)
    parser.add_argument("--listed-on", required=True, metavar="YYYY-MM-DD", help="列入日期")
    parser.add_argument(
        "--publicity-end",
        default="",
        metavar="YYYY-MM-DD",
        help="last day of publicity (default: the list kind's maximum period)",
    )
    parser.add_argument(
        "--measure",
        action="append",
        default=[],
        metavar="TEXT",
        help="a measure (惩戒措施); repeat for several",
    )
    parser.add_argument("--appeal", default="", metavar="TEXT", help="权利救济: how to appeal")


# --- single changes ------------------------------------------------------------------------


def _submit_one(args: argparse.Namespace, change: lists_pb2.ListChange) -> int:
    with NodeClient(load_config(args.dir)) as client:
        response = client.submit([change])
    (result,) = response.results
    if result.outcome == client_pb2.CHANGE_OUTCOME_APPLIED:
        print(f"applied: entry {result.entry_id} at log index {result.log_index}")
        return EXIT_OK
    if result.outcome == client_pb2.CHANGE_OUTCOME_DUPLICATE:
        print(f"duplicate: entry {result.entry_id} already records this; nothing changed")
        return EXIT_OK
    print(f"rejected: {result.reason}")
    return EXIT_REJECTED


def run_entry_change(args: argparse.Namespace) -> int:
    fields = {
        "list_kind": args.kind,
        "subject_id": args.subject,
        "subject_name": args.name,
        "reason": args.reason,
        "legal_basis": args.basis,
        "authority": args.authority,
        "decision_no": args.decision,
        "listed_on": args.listed_on,
        "publicity_end": args.publicity_end,
        "appeal": args.appeal,
    }
    return _submit_one(args, entry_change(fields, args.measure, action=args.action))


def run_remove(args: argparse.Namespace) -> int:
    change = removal_change(
        authority=args.authority,
        decision_no=args.decision,
        reason=args.reason,
        on=args.on,
        by=args.by,
        note=args.note,
    )
    return _submit_one(args, change)


def run_objection(args: argparse.Namespace) -> int:
    change = objection_change(
        authority=args.authority,
        decision_no=args.decision,
        open_=bool(args.open),
        on=args.on,
        note=args.note,
    )
    return _submit_one(args, change)


# --- import --------------------------------------------------------------------------------


@dataclass
class Counts:
    rows: int = 0
    applied: int = 0
    duplicates: int = 0
    rejected: int = 0

    def __str__(self) -> str:
        return (
            f"{self.rows} rows, {self.applied} applied, {self.duplicates} duplicates, "
            f"{self.rejected} rejected"
        )


class Progress:
    """A progress line on a terminal (a bar redrawn in place), a periodic line otherwise."""

    BAR_WIDTH = 24

    def __init__(
        self,
        stream: TextIO,
        *,
        total: int,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._total = total
        try:
            self._tty = stream.isatty()
        except (AttributeError, ValueError):
            self._tty = False
        self._interval = interval_s if interval_s is not None else (0.1 if self._tty else 5.0)
        self._clock = clock
        self._last = clock()
        self._open_line = False

    def update(self, done: int, counts: Counts, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        if self._tty:
            fraction = min(1.0, done / self._total) if self._total else 1.0
            filled = int(fraction * self.BAR_WIDTH)
            bar = "#" * filled + "." * (self.BAR_WIDTH - filled)
            self._stream.write(f"\r[{bar}] {int(fraction * 100):3d}%  {counts}\x1b[K")
            self._open_line = True
        else:
            self._stream.write(f"{counts}\n")
        self._stream.flush()

    def close(self) -> None:
        """End the line a terminal bar is drawn on."""
        if self._open_line:
            self._stream.write("\n")
            self._stream.flush()
            self._open_line = False


class RejectsFile:
    """``row,reason`` lines, created on the first reject or when the import completes (so a
    header error leaves an earlier rejects file alone). UTF-8 with a byte order mark, so
    that Excel shows the Chinese reasons. Readable by its owner only, like an export: a
    reason may be about a person."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._writer: Any = None

    def _open(self) -> None:
        if self._file is None:
            try:
                descriptor = os.open(
                    self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600
                )
            except OSError as exc:
                raise InvalidInputError(f"cannot write {self.path}: {exc.strerror}") from None
            # The mode applies to a new file only: narrow one an earlier import left wider.
            os.fchmod(descriptor, 0o600)
            self._file = os.fdopen(descriptor, "w", encoding="utf-8-sig", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["row", "reason"])

    def write(self, row: int, reason: str) -> None:
        self._open()
        self._writer.writerow([row, reason])

    def finish(self) -> None:
        self._open()
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _check_batch(value: int) -> int:
    if not 1 <= value <= MAX_BATCH:
        raise InvalidInputError(f"--batch {value} is out of range 1-{MAX_BATCH}")
    return value


def _send(client: NodeClient, batch: list[ParsedRow], counts: Counts, rejects: RejectsFile) -> None:
    if not batch:
        return
    response = client.submit([row.change for row in batch if row.change is not None])
    for result in response.results:
        if result.outcome == client_pb2.CHANGE_OUTCOME_APPLIED:
            counts.applied += 1
        elif result.outcome == client_pb2.CHANGE_OUTCOME_DUPLICATE:
            counts.duplicates += 1
        else:
            counts.rejected += 1
            rejects.write(batch[result.index].row, result.reason)
    batch.clear()


def run_import(args: argparse.Namespace) -> int:
    batch_size = _check_batch(args.batch)
    file_format = format_for(args.file, args.format)
    rejects_path: Path = args.rejects or Path(f"{args.file}.rejects.csv")
    config = load_config(args.dir)
    counts = Counts()
    last_row = 0
    with (
        RowReader(args.file, file_format) as reader,
        NodeClient(config) as client,
        contextlib.closing(RejectsFile(rejects_path)) as rejects,
    ):
        progress = Progress(sys.stderr, total=reader.size)
        batch: list[ParsedRow] = []
        batch_bytes = 0
        try:
            for parsed in reader:
                counts.rows += 1
                if parsed.change is None:
                    counts.rejected += 1
                    rejects.write(parsed.row, parsed.reason)
                else:
                    batch.append(parsed)
                    batch_bytes += parsed.change.ByteSize()
                    if len(batch) >= batch_size or batch_bytes >= MAX_BATCH_BYTES:
                        _send(client, batch, counts, rejects)
                        last_row, batch_bytes = parsed.row, 0
                progress.update(reader.bytes_read, counts)
            _send(client, batch, counts, rejects)
            progress.update(reader.bytes_read, counts, force=True)
            rejects.finish()
        except CreditNetError:
            progress.close()
            if counts.rows:
                sent = f"rows up to {last_row} were sent" if last_row else "no row was sent"
                print(
                    f"import {args.file}: stopped after {counts} ({sent}); "
                    "importing the file again is safe: recorded rows come back as duplicates",
                    file=sys.stderr,
                )
            raise
        finally:
            progress.close()
    where = f"; rejected rows in {rejects_path}" if counts.rejected else ""
    print(f"import {args.file}: {counts}{where}")
    return EXIT_REJECTED if counts.rejected else EXIT_OK


# --- export --------------------------------------------------------------------------------


def export_row(view: lists_pb2.EntryView) -> dict[str, Any]:
    """One exported entry, keyed as :data:`EXPORT_COLUMNS`."""
    entry = view.entry
    return {
        "origin": view.origin,
        "entry_id": view.entry_id,
        "active": view.active,
        "why": view.why,
        "objection_pending": view.objection_pending,
        "list_kind": entry.list_kind,
        "subject_kind": _SUBJECT_KIND.get(entry.subject.kind, ""),
        "subject_id": entry.subject.id,
        "subject_name": entry.subject.name,
        "reason": entry.reason,
        "legal_basis": entry.legal_basis,
        "authority": entry.authority,
        "decision_no": entry.decision_no,
        "listed_on": entry.listed_on,
        "publicity_end": entry.publicity_end,
        "measures": list(entry.measures),
        "appeal": entry.appeal,
    }


def _csv_cell(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(value)
    return str(value)


def _write_entries(views: Iterator[lists_pb2.EntryView], out: TextIO, file_format: str) -> int:
    count = 0
    if file_format == "csv":
        writer = csv.writer(out)
        writer.writerow(EXPORT_COLUMNS)
        for view in views:
            row = export_row(view)
            writer.writerow([_csv_cell(row[column]) for column in EXPORT_COLUMNS])
            count += 1
    else:
        for view in views:
            out.write(json.dumps(export_row(view), ensure_ascii=False) + "\n")
            count += 1
    return count


@contextlib.contextmanager
def _private_output(path: Path, *, bom: bool) -> Iterator[TextIO]:
    """A new file readable by its owner only (exports hold personal data), written under a
    temporary name and renamed when complete, so that a failed export leaves no half file."""
    partial = path.with_name(path.name + ".part")
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise InvalidInputError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(
            descriptor, "w", encoding="utf-8-sig" if bom else "utf-8", newline=""
        ) as handle:
            yield handle
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def run_export(args: argparse.Namespace) -> int:
    kind = ListKind.parse(args.kind).value if args.kind else ""
    config = load_config(args.dir)
    with NodeClient(config) as client:
        views = client.export(
            origin=args.origin,
            list_kind=kind,
            active_only=args.active_only,
            page_size=MAX_PAGE_SIZE,
        )
        if args.out is None:
            _write_entries(views, sys.stdout, args.format)
            sys.stdout.flush()
            return EXIT_OK
        # Excel needs the byte order mark to read a CSV file as UTF-8.
        with _private_output(args.out, bom=args.format == "csv") as out:
            count = _write_entries(views, out, args.format)
    print(f"exported {count} entries to {args.out}", file=sys.stderr)
    return EXIT_OK


# --- status, history, sync -----------------------------------------------------------------


def _kind_name(slug: str) -> str:
    try:
        return ListKind(slug).name_zh
    except ValueError:
        return slug


def masked_subject(subject: lists_pb2.Subject) -> str:
    """The display form of an entry's subject: a resident ID (or anything shaped like one)
    keeps its first 6 and last 4 characters."""
    value = subject.id
    body = value[:-1] if value.endswith("X") else value
    if subject.kind == subject_pb2.SUBJECT_KIND_RESIDENT_ID or (body.isascii() and body.isdigit()):
        return mask_resident_id(value) if len(value) > 10 else "*" * len(value)
    return value


def _city_names(client: NodeClient) -> dict[str, str]:
    return {m.city_code: m.name for m in client.status().members}


def _city(code: str, names: dict[str, str]) -> str:
    name = names.get(code)
    return f"{code} {name}" if name else code


def format_subject_status(
    response: client_pb2.GetSubjectStatusResponse,
    *,
    names: dict[str, str],
    self_city: str,
    include_inactive: bool,
    now: dt.datetime,
) -> str:
    kind = _SUBJECT_KIND.get(response.kind, "subject")
    active = sum(1 for view in response.entries if view.active)
    lines = [
        f"subject {response.masked_subject} ({kind}): {len(response.entries)} "
        f"{'entries' if include_inactive else 'entries in force'}, {active} active"
    ]
    if response.entries:
        rows = [
            [
                _city(view.origin, names),
                _kind_name(view.entry.list_kind),
                f"{view.entry.authority} {view.entry.decision_no}",
                view.entry.listed_on,
                "active" if view.active else "inactive",
                view.why,
                _OBJECTION_PENDING if view.objection_pending else "",
                view.entry_id,
            ]
            for view in response.entries
        ]
        header = ["CITY", "LIST", "DECISION", "LISTED ON", "STATUS", "WHY", "OBJECTION", "ENTRY"]
        lines.append(render_table(header, rows))
    lines.append("freshness (an answer is only as current as each city's copy):")
    for fresh in response.origins:
        if fresh.origin == self_city:
            lines.append(f"  {_city(fresh.origin, names)}: this node, {fresh.verified_size} events")
            continue
        lag = fresh.latest_seen_size - fresh.verified_size
        last = (
            ago(fresh.last_sync.ToDatetime(dt.UTC), now) if fresh.HasField("last_sync") else "never"
        )
        lines.append(
            f"  {_city(fresh.origin, names)}: verified {fresh.verified_size} of "
            f"{fresh.latest_seen_size} events, lag {lag}, last sync {last}"
        )
    return "\n".join(lines)


def run_status(args: argparse.Namespace) -> int:
    config = load_config(args.dir)
    with NodeClient(config) as client:
        response = client.subject_status(args.subject, include_inactive=args.all)
        names = _city_names(client)
    print(
        format_subject_status(
            response,
            names=names,
            self_city=config.city_code,
            include_inactive=args.all,
            now=dt.datetime.now(dt.UTC),
        )
    )
    return EXIT_OK


def _event_detail(event: client_pb2.HistoryEvent) -> str:
    if event.withheld:
        return "(details withheld: this list kind is not shared with this node)"
    if event.event in ("add", "amend"):
        entry = event.entry
        measures = f", measures: {'; '.join(entry.measures)}" if entry.measures else ""
        return (
            f"{_kind_name(entry.list_kind)}, {entry.authority} {entry.decision_no}, "
            f"subject {entry.subject.name} ({masked_subject(entry.subject)}), listed on "
            f"{entry.listed_on}, publicity until {entry.publicity_end}{measures}"
        )
    if event.event == "remove":
        removal = event.removal
        note = f": {removal.note}" if removal.note else ""
        reason = _REASON_SLUG.get(removal.reason, "unspecified")
        return f"removed on {removal.removed_on} ({reason}) by {removal.authority}{note}"
    if event.event == "objection":
        objection = event.objection
        note = f": {objection.note}" if objection.note else ""
        return f"objection {'opened' if objection.open else 'closed'} on {objection.on}{note}"
    return ""


def format_history(
    origin: str, entry_id: str, events: Sequence[client_pb2.HistoryEvent], names: dict[str, str]
) -> str:
    lines = [f"entry {entry_id} of {_city(origin, names)}: {len(events)} events"]
    rows = [
        [
            f"#{event.log_index}",
            format_utc(event.at.ToDatetime(dt.UTC)),
            event.event,
            _event_detail(event),
        ]
        for event in events
    ]
    lines.append(render_table(["INDEX", "AT", "EVENT", "DETAIL"], rows))
    return "\n".join(lines)


def run_history(args: argparse.Namespace) -> int:
    config = load_config(args.dir)
    with NodeClient(config) as client:
        response = client.history(args.origin, args.entry_id)
        names = _city_names(client)
    print(format_history(args.origin, args.entry_id, response.events, names))
    return EXIT_OK


def format_sync(
    response: client_pb2.GetSyncStatusResponse,
    *,
    names: dict[str, str],
    node_dir: Path,
    now: dt.datetime,
) -> str:
    lines = [f"own log: {response.own_log_size} events"]
    rows = []
    for replica in response.replicas:
        last = (
            ago(replica.last_success.ToDatetime(dt.UTC), now)
            if replica.HasField("last_success")
            else "never"
        )
        state = f"BLOCKED: {replica.blocked_reason}" if replica.blocked else "ok"
        rows.append(
            [
                _city(replica.origin, names),
                str(replica.verified_size),
                str(replica.latest_seen_size),
                str(replica.lag),
                last,
                state,
                replica.last_error,
            ]
        )
    header = ["CITY", "VERIFIED", "SEEN", "LAG", "LAST SUCCESS", "SYNC", "LAST ERROR"]
    lines.append(render_table(header, rows))
    if response.split_views:
        lines.append("")
        lines.append("split views (the city showed two histories; sync from it is stopped):")
        for view in response.split_views:
            detected = format_utc(view.detected_at.ToDatetime(dt.UTC))
            lines.append(
                f"  {_city(view.origin, names)}: detected {detected}, reported by "
                f"{view.reported_by or view.origin}: {view.reason}"
            )
        lines.append(
            f"after investigating, resume with: credit-node list resume CITY --dir {node_dir}"
        )
    return "\n".join(lines)


def run_sync(args: argparse.Namespace) -> int:
    config = load_config(args.dir)
    with NodeClient(config) as client:
        response = client.sync_status()
        names = _city_names(client)
    print(format_sync(response, names=names, node_dir=args.dir, now=dt.datetime.now(dt.UTC)))
    return EXIT_OK


def run_resume(args: argparse.Namespace) -> int:
    with NodeClient(load_config(args.dir)) as client:
        client.resume(args.city)
    print(f"sync from {args.city} resumed")
    return EXIT_OK
