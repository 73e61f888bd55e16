"""``credit-node report`` and ``credit-node rating``: the clerk's and operator's command line
for signed public credit reports and mutually recognised ratings.

Every verb talks to the running node through its client API (``--dir`` names the node
directory, for the address, certificate and token).

``report issue`` writes the signed report exactly as the node returned it (the canonical
JSON document the issuer signed) and the printable HTML next to it; ``report verify`` sends a
file to the node as it is and prints the node's verdict; ``report revoke`` revokes a report
of this city. ``rating add`` records a rating of this city in one of its local scales;
``rating show`` lists every city's ratings of a subject on the federation's common scale.

Exit codes of ``report verify`` (the verdict):

* 0 VALID: signature valid, issuer a member, within validity, and the issuer (or its signed
  status list held here) says the report stands;
* 3 REVOKED, SUPERSEDED, EXPIRED or INVALID: the report must not be relied on;
* 4 STATUS_UNKNOWN: the signature is valid but whether it was revoked is not known
  (``--offline``, or the issuer unreachable and no status list held here);
* 1 an error, e.g. the file cannot be read or the node is not running.

Other verbs exit 0 when done, 2 for invalid input and 1 for any other error. A resident ID
number is never printed in clear: subjects are shown as the node masks them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import stat
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from creditnet.v1 import client_pb2, reports_pb2
from federation.clock import format_utc
from federation.errors import (
    AlreadyExistsError,
    CreditNetError,
    FailedPreconditionError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from federation.ratings import MAX_POINTS
from federation.reports import same_verification_code
from node.cli.table import render_table
from node.client import NodeClient
from node.config import load_config
from node.reporting import MAX_VALID_DAYS

EXIT_OK = 0
EXIT_ERROR = 1
#: The report must not be relied on: revoked, superseded, expired or invalid.
EXIT_NOT_VALID = 3
#: The signature is valid, the report's status is not known.
EXIT_STATUS_UNKNOWN = 4

#: gRPC refuses messages over 4 MiB; a signed report is a few kilobytes.
MAX_REPORT_BYTES = 4 * 1024 * 1024 - 1024

VERDICT_NAMES: Mapping[int, str] = {
    reports_pb2.REPORT_VERDICT_VALID: "VALID",
    reports_pb2.REPORT_VERDICT_REVOKED: "REVOKED",
    reports_pb2.REPORT_VERDICT_SUPERSEDED: "SUPERSEDED",
    reports_pb2.REPORT_VERDICT_EXPIRED: "EXPIRED",
    reports_pb2.REPORT_VERDICT_INVALID: "INVALID",
    reports_pb2.REPORT_VERDICT_STATUS_UNKNOWN: "STATUS_UNKNOWN",
}

_VERIFY_EXIT_CODES = f"""exit status:
  {EXIT_OK}  VALID: the report stands (signature, issuer, validity and status checked)
  {EXIT_NOT_VALID}  REVOKED, SUPERSEDED, EXPIRED or INVALID: do not rely on the report
  {EXIT_STATUS_UNKNOWN}  STATUS_UNKNOWN: signature valid, but whether it was revoked is not known
  {EXIT_ERROR}  an error (the file cannot be read, the node is not running...)"""


def verdict_exit_code(verdict: int) -> int:
    """The exit status of ``report verify`` for a verdict (anything unknown is not valid)."""
    if verdict == reports_pb2.REPORT_VERDICT_VALID:
        return EXIT_OK
    if verdict == reports_pb2.REPORT_VERDICT_STATUS_UNKNOWN:
        return EXIT_STATUS_UNKNOWN
    return EXIT_NOT_VALID


# --- the parsers ---------------------------------------------------------------------------


def register(commands: argparse._SubParsersAction[Any]) -> None:
    node_dir = argparse.ArgumentParser(add_help=False)
    node_dir.add_argument("--dir", type=Path, required=True, help="the node directory")
    _register_report(commands, node_dir)
    _register_rating(commands, node_dir)


def _register_report(
    commands: argparse._SubParsersAction[Any], node_dir: argparse.ArgumentParser
) -> None:
    parser = commands.add_parser(
        "report",
        help="issue, verify and revoke signed credit reports",
        description="Issue signed public credit reports (公共信用报告) of this city, verify "
        "any member city's report, revoke reports of this city, and record the licences and "
        "commitments its reports show, through the running node. "
        f"report verify exits {EXIT_OK} for VALID, {EXIT_NOT_VALID} for REVOKED, SUPERSEDED, "
        f"EXPIRED or INVALID, {EXIT_STATUS_UNKNOWN} for STATUS_UNKNOWN and {EXIT_ERROR} on "
        "errors.",
    )
    verbs = parser.add_subparsers(dest="report_command", required=True, metavar="VERB")

    issue = verbs.add_parser(
        "issue",
        parents=[node_dir],
        help="issue a signed report about a subject",
        description="Issue a signed report about a subject (USCC or resident ID) with every "
        "city's list entries, penalties and ratings the node holds, and this city's licences "
        "and commitments of the subject. The signed document is "
        "written to FILE exactly as the node returned it, and the printable A4 HTML to FILE "
        "with the suffix .html; both files are readable by their owner only (they hold "
        "the subject's identifier). Existing files are only replaced with --force.",
    )
    issue.add_argument("subject", metavar="SUBJECT_ID", help="USCC or resident ID")
    issue.add_argument(
        "--name", default="", help="the registered name (default: from a list entry held here)"
    )
    issue.add_argument(
        "--valid-days", type=int, default=0, metavar="N", help="validity in days (default 30)"
    )
    issue.add_argument(
        "--supersedes", default="", metavar="REPORT_NO", help="an earlier report it replaces"
    )
    issue.add_argument("--out", type=Path, required=True, metavar="FILE", help="the signed report")
    issue.add_argument("--force", action="store_true", help="replace existing files")
    issue.set_defaults(handler=run_issue)

    verify = verbs.add_parser(
        "verify",
        parents=[node_dir],
        help="verify a report handed in by an applicant",
        # Raw, for the exit status table: the description is wrapped here instead.
        description=textwrap.fill(
            "Send a report file to the node as it is and print its verdict: first the "
            "verdict and a one-line summary, then every check made, then the report's "
            "number, issuer, subject (masked for a person), validity and where its status "
            "came from. With --offline only the signature, membership and validity are "
            "checked, so the verdict of a good report is STATUS_UNKNOWN.",
            width=79,
        ),
        epilog=_VERIFY_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("file", type=Path, metavar="FILE", help="the signed report")
    verify.add_argument(
        "--offline", action="store_true", help="no status lookup (revocation not checked)"
    )
    verify.add_argument(
        "--code",
        metavar="CODE",
        help="the verification code printed on the paper report: checks that the paper and "
        "the file are the same report (not VALID if they are not)",
    )
    verify.set_defaults(handler=run_verify)

    revoke = verbs.add_parser(
        "revoke",
        parents=[node_dir],
        help="revoke a report of this city",
        description="Revoke a report this city issued; every city sees it once it asks the "
        "issuer again or holds the new status list.",
    )
    revoke.add_argument("report_no", metavar="REPORT_NO")
    revoke.add_argument("--reason", required=True, metavar="TEXT", help="why (shown to verifiers)")
    revoke.set_defaults(handler=run_revoke)

    licence = verbs.add_parser(
        "licence",
        parents=[node_dir],
        help="record an administrative licence (行政许可) of a subject for this city's reports",
        description="Record a licence one of this city's authorities granted a subject; the "
        "reports this city issues about the subject show it. Not replicated.",
    )
    licence.add_argument("subject", metavar="SUBJECT_ID", help="USCC or resident ID")
    licence.add_argument("--authority", required=True, metavar="NAME", help="许可机关")
    licence.add_argument("--number", required=True, metavar="NO", help="the licence number")
    licence.add_argument("--issued-on", required=True, metavar="YYYY-MM-DD", help="许可日期")
    licence.add_argument("--summary", required=True, metavar="TEXT", help="what it permits")
    licence.set_defaults(handler=run_licence)

    commitment = verbs.add_parser(
        "commitment",
        parents=[node_dir],
        help="record a credit commitment (信用承诺) of a subject for this city's reports",
        description="Record a credit commitment a subject made to this city; the reports this "
        "city issues about the subject show it. Not replicated.",
    )
    commitment.add_argument("subject", metavar="SUBJECT_ID", help="USCC or resident ID")
    commitment.add_argument("--made-on", required=True, metavar="YYYY-MM-DD", help="承诺日期")
    commitment.add_argument("--content", required=True, metavar="TEXT", help="承诺内容")
    commitment.set_defaults(handler=run_commitment)


def _register_rating(
    commands: argparse._SubParsersAction[Any], node_dir: argparse.ArgumentParser
) -> None:
    parser = commands.add_parser(
        "rating",
        help="record and read credit ratings",
        description="Record this city's ratings (e.g. 纳税信用等级) in its local scales and "
        "read every city's ratings of a subject on the federation's common scale.",
    )
    verbs = parser.add_subparsers(dest="rating_command", required=True, metavar="VERB")

    add = verbs.add_parser(
        "add",
        parents=[node_dir],
        help="record a rating of this city",
        description="Record and sign a rating of this city in one of its scales ([ratings."
        "scales] in node.toml, or a preset). For a points scale give --points; the grade "
        "follows from them.",
    )
    add.add_argument("subject", metavar="SUBJECT_ID", help="USCC or resident ID")
    add.add_argument("--name", required=True, help="the subject's registered name")
    add.add_argument("--scale", required=True, metavar="SCALE_ID", help="one of this city's scales")
    value = add.add_mutually_exclusive_group(required=True)
    value.add_argument("--grade", metavar="G", help="the grade in the scale")
    value.add_argument("--points", type=int, metavar="N", help="the points (points scales)")
    add.add_argument(
        "--issued-on", default="", metavar="YYYY-MM-DD", help="rating date (default: today)"
    )
    add.add_argument("--valid-until", required=True, metavar="YYYY-MM-DD", help="last valid day")
    add.add_argument("--evidence", required=True, metavar="REF", help="the decision or document")
    add.set_defaults(handler=run_rating_add)

    show = verbs.add_parser(
        "show",
        parents=[node_dir],
        help="every city's ratings of a subject",
        description="One line per rating: city, scale, local grade (and points), grade on "
        "the common scale, whether this node's recognition policy accepts it, and why.",
    )
    show.add_argument("subject", metavar="SUBJECT_ID", help="USCC or resident ID")
    show.set_defaults(handler=run_rating_show)


# --- files ---------------------------------------------------------------------------------


def html_path(out: Path) -> Path:
    """Where the printable HTML of a report written to ``out`` goes."""
    html = out.with_suffix(".html")
    if html == out:
        raise InvalidInputError(
            f"--out {out}: the printable HTML goes to FILE with the suffix .html; "
            "give the signed report another name (e.g. .json)"
        )
    return html


def _check_writable(paths: list[Path], *, force: bool) -> None:
    """Refuse before anything is issued: a refused write after issuing would waste a report
    number and leave a report nobody holds."""
    for path in paths:
        if path.exists() and not force:
            raise AlreadyExistsError(
                f"{path} already exists", hint="choose another --out, or replace it with --force"
            )
        if path.is_dir():
            raise FailedPreconditionError(f"{path} is a directory")
        parent = path.parent
        if not parent.is_dir():
            raise NotFoundError(f"cannot write {path}: the directory {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionDeniedError(f"cannot write {path}: {parent} is not writable")


def write_private(path: Path, data: bytes, *, force: bool) -> None:
    """Write ``data`` to a new file readable by its owner only, complete or not at all:
    written under a temporary name, then renamed (``--force``) or linked, which fails
    rather than replace a file that appeared meanwhile."""
    partial = path.with_name(f".{path.name}.part")
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        if force:
            partial.replace(path)
        else:
            os.link(partial, path)
    except FileExistsError:
        raise AlreadyExistsError(
            f"{path} already exists", hint="choose another --out, or replace it with --force"
        ) from None
    except OSError as exc:
        raise FailedPreconditionError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)


def read_report_file(path: Path) -> bytes:
    """The bytes of a report file, exactly; a file that cannot be read is an error (exit 1)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise FailedPreconditionError(f"{path} is not a file")
        if info.st_size > MAX_REPORT_BYTES:
            raise FailedPreconditionError(
                f"{path} is {info.st_size} bytes: too large to be a signed credit report"
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except PermissionError:
        raise PermissionDeniedError(f"{path}: permission denied") from None
    except OSError as exc:
        raise FailedPreconditionError(f"cannot read {path}: {exc.strerror}") from None


# --- report --------------------------------------------------------------------------------


def run_issue(args: argparse.Namespace) -> int:
    out: Path = args.out
    html = html_path(out)
    if not 0 <= args.valid_days <= MAX_VALID_DAYS:
        raise InvalidInputError(
            f"--valid-days {args.valid_days} is out of range: give 1 to {MAX_VALID_DAYS} "
            "(or leave it out for the node's default)"
        )
    _check_writable([out, html], force=args.force)
    with NodeClient(load_config(args.dir)) as client:
        issued = client.issue_report(
            args.subject,
            subject_name=args.name,
            valid_days=args.valid_days,
            supersedes=args.supersedes,
        )
    write_private(out, issued.report.document, force=args.force)
    write_private(html, issued.html.encode("utf-8"), force=args.force)
    print(f"report {issued.report_no} issued")
    print(f"verification code: {issued.verification_code}")
    print(f"signed report: {out}")
    print(f"printable:     {html}")
    return EXIT_OK


def _city(code: str, names: Mapping[str, str]) -> str:
    name = names.get(code)
    return f"{code} {name}" if name else code


def _time(stamp: Any, present: bool) -> str:
    return format_utc(stamp.ToDatetime(dt.UTC)) if present else "-"


def format_verdict(
    answer: client_pb2.VerifyReportResponse, *, names: Mapping[str, str], offline: bool
) -> str:
    """The verdict a clerk reads: verdict and summary first, every check, then the report."""
    name = VERDICT_NAMES.get(answer.verdict, "INVALID")
    summary = answer.summary
    # The node's summaries often start with the verdict ("revoked: 信息有误"): said once.
    head, _, rest = summary.partition(": ")
    if rest and head.replace("-", "_").upper() == name:
        summary = rest
    lines = [f"{name}: {summary}" if summary else name]
    lines.extend(f"  - {reason}" for reason in answer.reasons)
    if answer.report_no:
        if answer.status_source:
            source = {
                "issuer": "the issuer",
                "replica": "the issuer's signed status list held by this node",
            }.get(answer.status_source, answer.status_source)
        else:
            source = "not checked (--offline)" if offline else "none available"
        rows = [
            ("report no", answer.report_no),
            ("issuer", _city(answer.issuer, names)),
            ("subject", answer.masked_subject),
            ("issued", _time(answer.issued_at, answer.HasField("issued_at"))),
            ("valid until", _time(answer.valid_until, answer.HasField("valid_until"))),
            ("status source", source),
            ("status as of", _time(answer.status_as_of, answer.HasField("status_as_of"))),
        ]
        if answer.superseded_by:
            rows.append(("superseded by", answer.superseded_by))
        if answer.verification_code:
            rows.append(("code", answer.verification_code))
        lines.extend(f"{label + ':':<15}{value}" for label, value in rows)
    return "\n".join(lines)


def run_verify(args: argparse.Namespace) -> int:
    document = read_report_file(args.file)
    with NodeClient(load_config(args.dir)) as client:
        answer = client.verify_report(document, offline_only=args.offline)
        names = _city_names(client) if answer.issuer else {}
    print(format_verdict(answer, names=names, offline=args.offline))
    code = verdict_exit_code(answer.verdict)
    if args.code is not None:
        if not answer.verification_code:
            print("code on paper: cannot be compared, the file is not a report")
        elif same_verification_code(args.code, answer.verification_code):
            print("code on paper: matches this file")
        else:
            print(
                f"code on paper: DOES NOT MATCH this file's {answer.verification_code}: the "
                "paper is not a print of this file"
            )
            return code if code != EXIT_OK else EXIT_NOT_VALID
    return code


def _city_names(client: NodeClient) -> dict[str, str]:
    """Member names for display; the verdict stands without them."""
    try:
        return {m.city_code: m.name for m in client.status().members}
    except CreditNetError:
        return {}


def run_revoke(args: argparse.Namespace) -> int:
    with NodeClient(load_config(args.dir)) as client:
        answer = client.revoke_report(args.report_no, args.reason)
    print(f"report {args.report_no} revoked: status list version {answer.status_list_version}")
    return EXIT_OK


def run_licence(args: argparse.Namespace) -> int:
    with NodeClient(load_config(args.dir)) as client:
        client.record_licence(
            args.subject,
            authority=args.authority,
            licence_no=args.number,
            issued_on=args.issued_on,
            summary=args.summary,
        )
    print(f"licence {args.number} recorded: it shows in this city's reports on the subject")
    return EXIT_OK


def run_commitment(args: argparse.Namespace) -> int:
    with NodeClient(load_config(args.dir)) as client:
        client.record_commitment(args.subject, made_on=args.made_on, content=args.content)
    print(f"commitment of {args.made_on} recorded: it shows in this city's reports on the subject")
    return EXIT_OK


# --- rating --------------------------------------------------------------------------------


def run_rating_add(args: argparse.Namespace) -> int:
    if args.points is not None and not -MAX_POINTS <= args.points <= MAX_POINTS:
        raise InvalidInputError(
            f"--points {args.points} is out of range: give -{MAX_POINTS} to {MAX_POINTS}"
        )
    with NodeClient(load_config(args.dir)) as client:
        answer = client.submit_rating(
            args.subject,
            args.name,
            args.scale,
            grade=args.grade or "",
            points=args.points,
            issued_on=args.issued_on,
            valid_until=args.valid_until,
            evidence_ref=args.evidence,
        )
    print(f"rating recorded: sequence {answer.sequence}")
    return EXIT_OK


def _grade(view: reports_pb2.RatingView) -> str:
    return f"{view.grade} ({view.points} points)" if view.points else view.grade


def format_ratings(
    answer: client_pb2.GetSubjectRatingsResponse, *, names: Mapping[str, str]
) -> str:
    """A header with the masked subject and the common scale, then one line per rating with
    its reasons indented below it."""
    count = len(answer.ratings)
    scale = " > ".join(answer.common_scale) or "(none)"
    lines = [
        f"subject {answer.masked_subject}: {count} rating{'' if count == 1 else 's'}; "
        f"common scale (best first): {scale}"
    ]
    if not answer.ratings:
        return "\n".join(lines)
    header = ["CITY", "SCALE", "GRADE", "COMMON", "RECOGNISED", "ISSUED", "VALID UNTIL", "EVIDENCE"]
    rows = [
        [
            _city(view.issuer, names),
            f"{view.scale_id} ({view.scale_name})" if view.scale_name else view.scale_id,
            _grade(view),
            view.common_grade or "-",
            "yes" if view.recognised else "no",
            view.issued_on,
            view.valid_until,
            view.evidence_ref,
        ]
        for view in answer.ratings
    ]
    table = render_table(header, rows).split("\n")
    lines.append(table[0])
    for view, line in zip(answer.ratings, table[1:], strict=True):
        lines.append(line)
        lines.extend(f"    {reason}" for reason in view.reasons)
    return "\n".join(lines)


def run_rating_show(args: argparse.Namespace) -> int:
    with NodeClient(load_config(args.dir)) as client:
        answer = client.subject_ratings(args.subject)
        names = _city_names(client)
    print(format_ratings(answer, names=names))
    return EXIT_OK
