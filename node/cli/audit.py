"""``credit-node audit``: read and check the audit of private matching.

Every probe and disclosure, asked of this node or asked by it, is a row of the audit
(``node.storage.matching``), without identifiers. ``audit show`` lists the newest rows;
``audit verify`` walks the rows' hash chain and prints its head, which an operator
records elsewhere and gives back later with ``--head`` to show that no row was removed
since. Both read the node's database directly, so they work whether the node runs or not;
they do not upgrade its schema (the node does, when it starts).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from federation.clock import format_utc
from federation.errors import InvalidInputError
from federation.member import CITY_CODE
from node.cli.table import render_table
from node.config import load_config
from node.storage import Database, open_database
from node.storage.matching import DIRECTIONS, AuditRecord, MatchAuditRepository

EXIT_INTACT = 0
EXIT_BROKEN = 1
MAX_ROWS = 10_000
MAX_BREAKS_SHOWN = 20
_HEAD = re.compile(r"[0-9a-fA-F]{64}")


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "audit",
        help="read and check the audit of private matching",
        description="Read the audit of private matching (every probe and disclosure, "
        "received or sent, without identifiers) and check its hash chain.",
    )
    verbs = parser.add_subparsers(dest="audit_command", required=True, metavar="VERB")
    show = verbs.add_parser("show", help="list the newest audit rows")
    show.add_argument("--dir", type=Path, required=True, help="the node directory")
    show.add_argument("--direction", choices=DIRECTIONS, help="only rows of this direction")
    show.add_argument("--peer", metavar="CITY", help="only rows about this city (6 digits)")
    show.add_argument(
        "--limit", type=int, default=50, help=f"how many rows (default 50, at most {MAX_ROWS})"
    )
    show.set_defaults(handler=show_audit)
    verify = verbs.add_parser(
        "verify",
        help="check the audit's hash chain",
        description="Walk the audit from its first row and check each row's link. Prints "
        "the number of rows and the head; exit code 1 if a row was changed, removed or put "
        "in by hand, or if the head given with --head is no longer in the chain.",
    )
    verify.add_argument("--dir", type=Path, required=True, help="the node directory")
    verify.add_argument(
        "--head",
        metavar="HASH",
        help="a head printed by an earlier verify: check that the chain still holds it",
    )
    verify.set_defaults(handler=verify_audit)


def show_audit(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= MAX_ROWS:
        raise InvalidInputError(f"--limit must be from 1 to {MAX_ROWS}, not {args.limit}")
    if args.peer is not None and not CITY_CODE.fullmatch(args.peer):
        raise InvalidInputError(f"--peer must be a city code of 6 digits, not {args.peer!r}")
    database = _open(args.dir)
    try:
        rows = MatchAuditRepository(database).recent(
            direction=args.direction, peer=args.peer, limit=args.limit
        )
    finally:
        database.close()
    print(format_audit(rows) if rows else "no audit rows")
    return 0


def format_audit(rows: Sequence[AuditRecord]) -> str:
    """The rows as a table, newest first; a row's reason or detail on the line below it."""
    header = ["id", "at (UTC)", "direction", "peer", "mode", "subjects", "hits", "outcome"]
    lines = []
    for row in rows:
        hits = "-" if row.hits is None else str(row.hits)
        cells = [str(row.id), format_utc(row.at), row.direction, row.peer, row.mode]
        lines.append([*cells, str(row.subjects), hits, row.outcome])
        for text in (row.reason, row.detail):
            if text:
                lines.append(["", f"  {text}", *[""] * (len(header) - 2)])
    return render_table(header, lines)


def verify_audit(args: argparse.Namespace) -> int:
    if args.head is not None and not _HEAD.fullmatch(args.head.strip()):
        raise InvalidInputError("--head must be 64 hex digits, as audit verify prints it")
    database = _open(args.dir)
    try:
        check = MatchAuditRepository(database).verify(recorded_head=args.head)
    finally:
        database.close()
    if check.breaks:
        print(f"BROKEN: {len(check.breaks)} of {check.rows} rows break the chain")
        for row_id, problem in check.breaks[:MAX_BREAKS_SHOWN]:
            print(f"  row {row_id}: {problem}")
        if len(check.breaks) > MAX_BREAKS_SHOWN:
            print(f"  ... and {len(check.breaks) - MAX_BREAKS_SHOWN} more")
        print(f"head {check.head}")
    else:
        print(f"intact: {check.rows} rows, head {check.head}")
    if check.head_found is False:
        print(
            f"NOT FOUND: the head {args.head.strip().lower()} is not in the chain: rows "
            "were removed, or the chain rewritten, since it was recorded"
        )
    elif check.head_found:
        print(f"the recorded head {args.head.strip().lower()} is in the chain")
    return EXIT_INTACT if check.intact else EXIT_BROKEN


def _open(home: Path) -> Database:
    """The node's database, read as it is: upgrading its schema is the node's to do."""
    return open_database(load_config(home).database_url, upgrade=False)
