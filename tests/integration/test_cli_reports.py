"""``credit-node report ...`` and ``credit-node rating ...`` against two real nodes: list and
issue at Qingdao, rate and verify at Yantai."""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from creditnet.v1 import client_pb2, lists_pb2
from federation.clock import CHINA_TZ
from federation.subjects import resident_id_check_char
from node.cli.main import main
from node.client import NodeClient
from node.demo import TAX_CREDIT_MAPPING, all_reachable, start, stop
from node.report_html import NONE_RECORDED
from node.samples import sample_entry
from node.service.convert import entry_to_wire
from tests.integration.conftest import Federation, form_federation, wait_for

pytestmark = pytest.mark.integration

QINGDAO, YANTAI = "370200", "370600"
TODAY = dt.datetime.now(CHINA_TZ).date()
VALID_UNTIL = (TODAY + dt.timedelta(days=300)).isoformat()
RESIDENT_BODY = "37060219850505123"
RESIDENT = RESIDENT_BODY + resident_id_check_char(RESIDENT_BODY)
RESIDENT_MASKED = RESIDENT[:6] + "********" + RESIDENT[-4:]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = form_federation(tmp_path_factory.mktemp("cli-reports"), [QINGDAO, YANTAI])
    yantai = federation.node(YANTAI).config.config_path
    yantai.write_text(yantai.read_text() + TAX_CREDIT_MAPPING)
    os.environ["CREDIT_NODE_FEDERATION_SYNC_INTERVAL_S"] = "1"
    try:
        for node in federation.nodes:
            start(node)
    finally:
        del os.environ["CREDIT_NODE_FEDERATION_SYNC_INTERVAL_S"]
    try:
        wait_for(lambda: all_reachable(federation.nodes, 1), timeout_s=60)
        yield federation
    finally:
        codes = stop(federation.nodes)
        assert codes == [0, 0], f"nodes did not stop cleanly: {codes}"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert RESIDENT not in out + err
    return code, out, err


def node_dir(fed: Federation, city: str) -> str:
    return str(fed.node(city).config.home)


@pytest.fixture(scope="module")
def company(fed: Federation) -> tuple[str, str]:
    """A company Qingdao lists: its USCC and its decision number."""
    entry = sample_entry(QINGDAO, 41, listed_on=TODAY - dt.timedelta(days=100))
    with NodeClient(fed.node(QINGDAO).config) as client:
        answer = client.submit([lists_pb2.ListChange(add=entry_to_wire(entry))])
    assert answer.results[0].outcome == client_pb2.CHANGE_OUTCOME_APPLIED
    return entry.subject.id, entry.decision_no


def rating_argv(fed: Federation, subject: str, *value: str) -> list[str]:
    return [
        "rating",
        "add",
        subject,
        "--dir",
        node_dir(fed, YANTAI),
        "--name",
        "示例贸易有限公司41",
        "--scale",
        value[0],
        *value[1:],
        "--issued-on",
        (TODAY - dt.timedelta(days=40)).isoformat(),
        "--valid-until",
        VALID_UNTIL,
        "--evidence",
        "烟税评〔2026〕12号",
    ]


def test_rating_add_then_show_on_the_common_scale_at_both_cities(
    fed: Federation, company: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    subject, _ = company
    code, out, _ = run(capsys, *rating_argv(fed, subject, "tax-credit", "--grade", "M"))
    assert code == 0 and re.fullmatch(r"rating recorded: sequence \d+\n", out)
    code, out, _ = run(capsys, *rating_argv(fed, subject, "weihai-haibei", "--points", "1000"))
    assert code == 0 and re.fullmatch(r"rating recorded: sequence \d+\n", out)

    def shown_at_qingdao() -> bool:
        code, out, _ = run(capsys, "rating", "show", subject, "--dir", node_dir(fed, QINGDAO))
        return code == 0 and " 2 ratings;" in out

    wait_for(shown_at_qingdao, timeout_s=20)
    _, out, _ = run(capsys, "rating", "show", subject, "--dir", node_dir(fed, QINGDAO))
    lines = out.splitlines()
    assert lines[0] == f"subject {subject}: 2 ratings; common scale (best first): A > B > C > D"
    assert lines[1].split()[:5] == ["CITY", "SCALE", "GRADE", "COMMON", "RECOGNISED"]
    rows = {line.split()[2]: i for i, line in enumerate(lines) if not line.startswith(" ")}
    tax, haibei = rows["tax-credit"], rows["weihai-haibei"]
    assert re.match(rf"{YANTAI} \S+\s+tax-credit \(纳税信用等级\)\s+M\s+C\s+yes\s", lines[tax])
    assert VALID_UNTIL in lines[tax] and "烟税评〔2026〕12号" in lines[tax]
    assert lines[tax + 1].startswith("    ") and "recognised" in lines[tax + 1]
    # No mapping of that scale here: no common grade, so not recognised, and it says why.
    assert re.search(r"\sA \(1000 points\)\s+-\s+no\s", lines[haibei])
    assert lines[haibei + 1].startswith("    ")


def test_rating_errors_exit_non_zero_with_the_reason(
    fed: Federation, company: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    subject, _ = company
    code, out, err = run(capsys, *rating_argv(fed, subject, "no-such-scale", "--grade", "A"))
    assert (code, out) == (1, "")
    assert err.startswith("credit-node: error: scale 'no-such-scale' is not one of")
    argv = rating_argv(fed, subject, "tax-credit", "--grade", "A")
    argv[argv.index("--valid-until") + 1] = "2026-02-30"
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert "valid_until: '2026-02-30' is not a date" in err


def issue(
    fed: Federation,
    capsys: pytest.CaptureFixture[str],
    subject: str,
    out: Path,
    *extra: str,
) -> tuple[int, str, str]:
    return run(
        capsys, "report", "issue", subject, "--dir", node_dir(fed, QINGDAO), "--out", str(out),
        *extra,
    )  # fmt: skip


def verify(
    fed: Federation, capsys: pytest.CaptureFixture[str], path: Path, *extra: str
) -> tuple[int, str, str]:
    return run(capsys, "report", "verify", str(path), "--dir", node_dir(fed, YANTAI), *extra)


def test_issue_verify_tamper_revoke(
    fed: Federation,
    company: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    subject, decision_no = company
    report = tmp_path / "report.json"
    code, out, _ = issue(fed, capsys, subject, report)
    assert code == 0, out
    printed = re.fullmatch(
        r"report (370200-\d{8}-\d+) issued\nverification code: (\S{19})\n"
        r"signed report: (.+)\nprintable:     (.+)\n",
        out,
    )
    assert printed is not None, out
    report_no, code_text = printed.group(1), printed.group(2)
    html = tmp_path / "report.html"
    assert (printed.group(3), printed.group(4)) == (str(report), str(html))
    assert decision_no.encode() in report.read_bytes()
    page = html.read_text(encoding="utf-8")
    assert report_no in page and code_text in page
    for path in (report, html):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json"]

    code, out, _ = verify(fed, capsys, report)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("VALID: signature verified")
    assert "report no:     " + report_no in lines
    assert f"issuer:        {QINGDAO} " in out and f"subject:       {subject}" in lines
    assert "status source: the issuer" in lines
    assert re.search(r"^status as of:  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", out, re.M)
    assert re.search(r"^valid until:   \d{4}-", out, re.M)
    assert f"code:          {code_text}" in lines

    # The code on the paper ties it to this file; a clerk may type it any way.
    typed = code_text.lower().replace("-", " ")
    code, out, _ = verify(fed, capsys, report, "--code", typed)
    assert code == 0 and out.splitlines()[-1] == "code on paper: matches this file"
    other = ("A" if code_text[0] != "A" else "B") + code_text[1:]
    code, out, _ = verify(fed, capsys, report, "--code", other)
    assert code == 3 and out.startswith("VALID: ")
    assert out.splitlines()[-1] == (
        f"code on paper: DOES NOT MATCH this file's {code_text}: the paper is not a print of "
        "this file"
    )

    tampered = tmp_path / "tampered.json"
    altered = decision_no.replace("信惩", "信罚")
    tampered.write_bytes(report.read_bytes().replace(decision_no.encode(), altered.encode(), 1))
    code, out, _ = verify(fed, capsys, tampered)
    assert code == 3 and out.startswith("INVALID: ") and "signature" in out

    code, out, _ = verify(fed, capsys, report, "--offline")
    assert code == 4, out
    assert out.startswith("STATUS_UNKNOWN: signature valid, status unknown")
    assert "status source: not checked (--offline)" in out.splitlines()

    code, out, _ = run(
        capsys, "report", "revoke", report_no, "--reason", "信息有误",
        "--dir", node_dir(fed, QINGDAO),
    )  # fmt: skip
    assert code == 0
    assert re.fullmatch(rf"report {report_no} revoked: status list version \d+\n", out)

    def revoked_at_yantai() -> bool:
        code, out, _ = verify(fed, capsys, report)
        return code == 3 and out.startswith("REVOKED: 信息有误\n")

    # Yantai reuses the issuer's answer for up to 10 s.
    wait_for(revoked_at_yantai, timeout_s=30)


def test_licences_and_commitments_recorded_here_show_in_the_report(
    fed: Federation,
    company: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    subject, _ = company
    qingdao = node_dir(fed, QINGDAO)
    licence = [
        "report", "licence", subject, "--authority", "青岛市行政审批服务局",
        "--number", "JY13702000012345", "--issued-on", "2025-03-01",
        "--summary", "食品经营许可", "--dir", qingdao,
    ]  # fmt: skip
    code, out, _ = run(capsys, *licence)
    assert (code, out) == (
        0,
        "licence JY13702000012345 recorded: it shows in this city's reports on the subject\n",
    )
    code, out, _ = run(
        capsys, "report", "commitment", subject, "--made-on", "2025-03-02",
        "--content", "承诺所提交材料真实有效。", "--dir", qingdao,
    )  # fmt: skip
    assert code == 0
    # Recorded once: the same licence again is refused, saying so.
    code, out, err = run(capsys, *licence)
    assert (code, out) == (1, "")
    assert "licence JY13702000012345 of that authority is recorded for the subject already" in err
    code, out, err = run(
        capsys, "report", "commitment", subject, "--made-on", "2999-01-01",
        "--content", "x", "--dir", qingdao,
    )  # fmt: skip
    assert (code, out) == (2, "") and "made_on: 2999-01-01 is after today" in err

    report = tmp_path / "report.json"
    assert issue(fed, capsys, subject, report)[0] == 0
    page = report.with_suffix(".html").read_text(encoding="utf-8")
    for text in ("JY13702000012345", "食品经营许可", "2025-03-01", "承诺所提交材料真实有效。"):
        assert text in page
    assert NONE_RECORDED not in page


def test_issue_refuses_to_overwrite_without_force(
    fed: Federation,
    company: tuple[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    subject, _ = company
    report = tmp_path / "r.json"
    report.write_bytes(b"keep me")
    code, out, err = issue(fed, capsys, subject, report)
    assert (code, out) == (1, "")
    assert err.startswith(f"credit-node: error: {report} already exists\n  hint: ")
    assert "--force" in err
    assert report.read_bytes() == b"keep me" and not report.with_suffix(".html").exists()

    # The HTML file counts too: nothing is issued when either would be overwritten.
    report.unlink()
    report.with_suffix(".html").write_text("old")
    code, out, err = issue(fed, capsys, subject, report)
    assert code == 1 and "r.html already exists" in err and not report.exists()

    code, out, _ = issue(fed, capsys, subject, report, "--force")
    assert code == 0 and report.read_bytes().startswith(b"{")
    assert report.with_suffix(".html").read_text(encoding="utf-8") != "old"

    code, out, err = issue(fed, capsys, subject, tmp_path / "same.html")
    assert (code, out) == (2, "") and "suffix .html" in err


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"", "empty"), (os.urandom(300), "not a signed credit report")],
    ids=["empty", "random"],
)
def test_a_file_that_is_no_report_is_invalid(
    fed: Federation,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    words: str,
) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    code, out, _ = verify(fed, capsys, path, "--code", "ABCD-EFGH-IJKL-MNOP")
    assert code == 3 and out.startswith("INVALID: ") and words in out
    assert "report no:" not in out
    assert out.splitlines()[-1] == "code on paper: cannot be compared, the file is not a report"


def test_an_unreadable_file_is_an_error(
    fed: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = verify(fed, capsys, tmp_path / "missing.json")
    assert (code, out) == (1, "")
    assert err == f"credit-node: error: {tmp_path / 'missing.json'}: no such file\n"
    code, out, err = verify(fed, capsys, tmp_path)
    assert (code, out) == (1, "") and "is not a file" in err


def test_a_person_is_only_ever_shown_masked(
    fed: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "person.json"
    code, out, err = issue(fed, capsys, RESIDENT, report, "--name", "张三")
    assert code == 0, err
    code, out, _ = verify(fed, capsys, report)
    assert code == 0 and f"subject:       {RESIDENT_MASKED}" in out.splitlines()

    argv = rating_argv(fed, RESIDENT, "tax-credit", "--grade", "B")
    code, out, _ = run(capsys, *argv)
    assert code == 0
    code, out, _ = run(capsys, "rating", "show", RESIDENT, "--dir", node_dir(fed, YANTAI))
    assert code == 0 and out.startswith(f"subject {RESIDENT_MASKED}: 1 rating;")

    # A mistyped resident ID is refused without being echoed.
    wrong = RESIDENT[:-1] + ("0" if RESIDENT[-1] != "0" else "1")
    code, out, err = run(capsys, "rating", "show", wrong, "--dir", node_dir(fed, YANTAI))
    assert code == 2 and wrong not in err
