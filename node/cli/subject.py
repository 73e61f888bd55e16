"""``credit-node subject``: work with subject identifiers (USCC, resident ID numbers).

``subject check ID...`` validates identifiers offline, one output line each; ``-`` reads
identifiers from standard input, one a line. A resident ID number is only ever printed
masked (``110105********002X``); so is a USCC that is shaped like one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from federation.errors import InvalidInputError
from federation.subjects import SubjectCheck, SubjectKind, check_subject

EXIT_ALL_VALID = 0
EXIT_SOME_INVALID = 2
_KIND_WIDTH = max(len("invalid"), *(len(kind.value) for kind in SubjectKind))


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser(
        "subject",
        help="work with subject identifiers (USCC, resident ID numbers)",
        description="Work with subject identifiers: USCC (GB 32100) and resident ID (GB 11643).",
    )
    verbs = parser.add_subparsers(dest="subject_command", required=True, metavar="VERB")
    check = verbs.add_parser(
        "check",
        help="validate identifiers",
        description=(
            "Normalise and validate identifiers. Prints one line per identifier: kind "
            "(uscc, resident-id or invalid), normalised form, masked form, then the reason "
            "or warnings. Resident ID numbers are only ever shown masked. Exit status 0 if "
            "all are valid, 2 otherwise."
        ),
    )
    check.add_argument(
        "identifiers",
        nargs="+",
        metavar="ID",
        help="an identifier, or - to read identifiers from standard input, one a line",
    )
    check.add_argument(
        "--json",
        action="store_true",
        help="print a JSON array of objects (valid, kind, normalized, masked, reason, "
        "warnings); normalized is null where only the masked form may be shown",
    )
    check.set_defaults(handler=run_check)


def _stdin_lines() -> Iterator[str]:
    try:
        for line in sys.stdin:
            if line.strip():
                yield line
    except UnicodeDecodeError:
        raise InvalidInputError(
            "standard input is not valid text", hint="pipe identifiers as UTF-8, one a line"
        ) from None


def _expand(arguments: Iterable[str]) -> Iterator[str]:
    for argument in arguments:
        if argument == "-":
            yield from _stdin_lines()
        else:
            yield argument


def _shown_normalized(result: SubjectCheck) -> str | None:
    """The clear normalised form, where it may be shown at all."""
    if result.valid and result.normalized == result.masked:
        return result.normalized
    return None


def _kind_label(result: SubjectCheck) -> str:
    return result.kind.value if result.valid and result.kind else "invalid"


def _notes(result: SubjectCheck) -> str:
    notes = [result.reason] if result.reason else []
    notes += [f"warning: {w}" for w in result.warnings]
    return "; ".join(notes)


def _as_json(result: SubjectCheck) -> dict[str, Any]:
    return {
        "valid": result.valid,
        "kind": _kind_label(result),
        "normalized": _shown_normalized(result),
        "masked": result.masked,
        "reason": result.reason,
        "warnings": list(result.warnings),
    }


def _as_text(results: list[SubjectCheck]) -> Iterator[str]:
    rows = []
    for result in results:
        masked = result.masked or "-"
        rows.append((_kind_label(result), _shown_normalized(result) or masked, masked))
    width = max((len(row[1]) for row in rows), default=0)
    for (kind, shown, masked), result in zip(rows, results, strict=True):
        line = f"{kind:<{_KIND_WIDTH}}  {shown:<{width}}  {masked:<{width}}  {_notes(result)}"
        yield line.rstrip()


def run_check(args: argparse.Namespace) -> int:
    results = [check_subject(text) for text in _expand(args.identifiers)]
    if args.json:
        print(json.dumps([_as_json(r) for r in results], ensure_ascii=False, indent=2))
    else:
        for line in _as_text(results):
            print(line)
    return EXIT_ALL_VALID if all(r.valid for r in results) else EXIT_SOME_INVALID
