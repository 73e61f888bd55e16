"""``credit-node list ...`` against two real nodes: record at one city, read at the other."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from federation.clock import CHINA_TZ
from federation.subjects import resident_id_check_char, uscc_check_char
from node.cli.main import main
from node.demo import all_reachable, create_nodes, start, stop
from tests.integration.conftest import Federation, form_federation, wait_for

pytestmark = pytest.mark.integration

QINGDAO, YANTAI = "370200", "370600"
TODAY = dt.datetime.now(CHINA_TZ).date()
# Long enough ago that the minimum publicity period has passed: repair is allowed.
LISTED_ON = (TODAY - dt.timedelta(days=400)).isoformat()
AUTHORITY = "青岛市市场监督管理局"
RESIDENT_BODY = "37020219800101123"
RESIDENT = RESIDENT_BODY + resident_id_check_char(RESIDENT_BODY)
RESIDENT_MASKED = RESIDENT[:6] + "********" + RESIDENT[-4:]


def uscc(serial: int) -> str:
    body = f"91370200MA{serial:07d}"
    return body + uscc_check_char(body)


def decision(serial: int) -> str:
    return f"青市监信〔2026〕{serial}号"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    federation = form_federation(tmp_path_factory.mktemp("cli-lists"), [QINGDAO, YANTAI])
    for node in federation.nodes:
        start(node)
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
    return code, out, err


def node_dir(fed: Federation, city: str) -> str:
    return str(fed.node(city).config.home)


def add_argv(fed: Federation, serial: int, *, subject: str | None = None) -> list[str]:
    return [
        "list",
        "add",
        "--dir",
        node_dir(fed, QINGDAO),
        "--kind",
        "严重失信主体名单",
        "--subject",
        subject or uscc(serial),
        "--name",
        f"青岛某某公司{serial}",
        "--reason",
        "拒不履行法定义务",
        "--basis",
        "《失信行为纠正后的信用信息修复管理办法》",
        "--authority",
        AUTHORITY,
        "--decision",
        decision(serial),
        "--listed-on",
        LISTED_ON,
        "--measure",
        "限制参与政府采购",
        "--measure",
        "限制乘坐飞机",
        "--appeal",
        "可于60日内申请行政复议",
    ]


def test_add_then_the_same_again_then_seen_at_the_other_city(
    fed: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, *add_argv(fed, 1))
    assert code == 0
    applied = re.fullmatch(r"applied: entry ([0-9a-f]{32}) at log index (\d+)\n", out)
    assert applied is not None, out
    entry_id = applied.group(1)

    code, out, _ = run(capsys, *add_argv(fed, 1))
    assert (code, out) == (
        0,
        f"duplicate: entry {entry_id} already records this; nothing changed\n",
    )

    def seen_in_yantai() -> bool:
        code, out, _ = run(capsys, "list", "status", uscc(1), "--dir", node_dir(fed, YANTAI))
        return code == 0 and entry_id in out

    wait_for(seen_in_yantai, timeout_s=10)
    _, out, _ = run(capsys, "list", "status", uscc(1), "--dir", node_dir(fed, YANTAI))
    assert out.startswith(f"subject {uscc(1)} (uscc): 1 entries in force, 1 active\n")
    (line,) = [line for line in out.splitlines() if entry_id in line]
    assert line.startswith(QINGDAO) and "严重失信主体名单" in line and decision(1) in line
    assert LISTED_ON in line and " active " in line
    assert re.search(
        rf"^  {QINGDAO} .*: verified \d+ of \d+ events, lag \d+, last sync ", out, re.M
    )
    assert re.search(rf"^  {YANTAI} .*: this node, \d+ events$", out, re.M)


def test_a_rejected_change_exits_2_with_the_reason(
    fed: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = uscc(2)[:-1] + ("0" if uscc(2)[-1] != "0" else "1")
    code, out, _ = run(capsys, *add_argv(fed, 2, subject=wrong))
    assert code == 2 and out.startswith("rejected: subject.id: ") and "check" in out

    argv = add_argv(fed, 3)
    argv[argv.index("--listed-on") + 1] = "2025-02-30"
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("credit-node: error: listed_on: '2025-02-30' is not a date")


def test_a_node_that_is_not_running_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (idle,) = create_nodes(tmp_path, ["371000"], paillier_bits=1024)
    code, out, err = run(capsys, "list", "sync", "--dir", str(idle.config.home))
    assert (code, out) == (1, "")
    assert "the node 371000 is not answering on" in err and "credit-node serve --dir" in err


def import_rows() -> tuple[list[dict[str, str]], dict[int, str]]:
    """53 rows: 50 good ones and 3 bad ones (rows 5, 20, 53) with a word of their reason."""
    rows = []
    for n in range(1, 54):
        rows.append(
            {
                "list_kind": "serious-dishonesty",
                "subject_id": uscc(100 + n),
                "subject_name": f"烟台某某公司{n}, 分公司",
                "reason": "拒不履行\n法定义务",
                "legal_basis": "《失信行为纠正后的信用信息修复管理办法》",
                "authority": AUTHORITY,
                "decision_no": decision(100 + n),
                "listed_on": LISTED_ON,
                "publicity_end": "",
                "measures": "限制参与政府采购;限制乘坐飞机",
                "appeal": "",
            }
        )
    rows[4]["listed_on"] = "2025-13-01"  # refused locally: never sent
    rows[19]["subject_id"] = uscc(120)[:-1] + ("0" if uscc(120)[-1] != "0" else "1")
    rows[52]["listed_on"] = (TODAY + dt.timedelta(days=3)).isoformat()
    return rows, {5: "listed_on", 20: "subject.id", 53: "future"}


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_rejects(path: Path) -> dict[int, str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == ["row", "reason"]
        return {int(row): reason for row, reason in reader}


def test_import_then_export_then_remove_then_history(
    fed: Federation, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rows, bad = import_rows()
    source = tmp_path / "决定.csv"
    write_csv(source, rows)
    qingdao = node_dir(fed, QINGDAO)

    code, out, _ = run(capsys, "list", "import", str(source), "--dir", qingdao, "--batch", "7")
    assert code == 2
    rejects_path = Path(f"{source}.rejects.csv")
    assert out == (
        f"import {source}: 53 rows, 50 applied, 0 duplicates, 3 rejected; "
        f"rejected rows in {rejects_path}\n"
    )
    rejects = read_rejects(rejects_path)
    assert sorted(rejects) == sorted(bad)
    for row, word in bad.items():
        assert word in rejects[row], rejects[row]
    assert stat.S_IMODE(rejects_path.stat().st_mode) == 0o600  # reasons may be about people

    # Again: idempotent, into a rejects file of our choosing (one an older import left
    # readable by all is replaced, and narrowed).
    chosen = tmp_path / "again.csv"
    chosen.write_text("row,reason\n1,old\n")
    chosen.chmod(0o644)
    code, out, _ = run(
        capsys, "list", "import", str(source), "--dir", qingdao, "--rejects", str(chosen)
    )
    assert code == 2 and "53 rows, 0 applied, 50 duplicates, 3 rejected" in out
    assert sorted(read_rejects(chosen)) == sorted(bad)
    assert stat.S_IMODE(chosen.stat().st_mode) == 0o600

    lines = tmp_path / "more.jsonl"
    document = {**rows[0], "subject_id": uscc(160), "decision_no": decision(160), "measures": []}
    lines.write_text(json.dumps(document, ensure_ascii=False) + "\n{broken\n", encoding="utf-8")
    code, out, _ = run(capsys, "list", "import", str(lines), "--dir", qingdao)
    assert code == 2 and "2 rows, 1 applied, 0 duplicates, 1 rejected" in out
    assert list(read_rejects(Path(f"{lines}.rejects.csv"))) == [2]

    code, _, err = run(capsys, "list", "import", str(source), "--dir", qingdao, "--batch", "0")
    assert code == 2 and "--batch 0 is out of range 1-1000" in err

    exported = tmp_path / "export.csv"
    code, _, err = run(
        capsys,
        "list",
        "export",
        "--dir",
        qingdao,
        "--origin",
        QINGDAO,
        "--format",
        "csv",
        "--out",
        str(exported),
    )
    assert code == 0 and err.startswith("exported ")
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    with exported.open(encoding="utf-8-sig", newline="") as handle:
        table = {row["decision_no"]: row for row in csv.DictReader(handle)}
    good = [row for n, row in enumerate(rows, start=1) if n not in bad]
    assert {row["decision_no"] for row in good} <= set(table)
    sample = table[decision(101)]
    assert sample["origin"] == QINGDAO and sample["active"] == "true"
    assert sample["subject_id"] == uscc(101) and sample["subject_name"] == "烟台某某公司1, 分公司"
    assert sample["reason"] == "拒不履行\n法定义务"
    assert sample["measures"] == "限制参与政府采购;限制乘坐飞机"
    assert sample["objection_pending"] == "false"

    code, out, _ = run(
        capsys,
        "list",
        "remove",
        "--dir",
        qingdao,
        "--authority",
        AUTHORITY,
        "--decision",
        decision(101),
        "--reason",
        "repair",
        "--on",
        TODAY.isoformat(),
        "--by",
        "青岛市发展和改革委员会",
        "--note",
        "已完成信用修复",
    )
    assert code == 0 and out.startswith("applied: "), out
    entry_id = sample["entry_id"]

    code, out, _ = run(capsys, "list", "history", QINGDAO, entry_id, "--dir", qingdao)
    assert code == 0
    events = [line.split()[2] for line in out.splitlines()[2:]]
    assert events == ["add", "remove"]
    assert f"removed on {TODAY.isoformat()} (repair) by 青岛市发展和改革委员会" in out

    code, out, _ = run(capsys, "list", "status", uscc(101), "--dir", qingdao)
    assert code == 0 and "0 entries in force, 0 active" in out
    code, out, _ = run(capsys, "list", "status", uscc(101), "--all", "--dir", qingdao)
    assert "inactive" in out and "repair" in out

    code, out, _ = run(
        capsys, "list", "export", "--dir", qingdao, "--kind", "严重失信主体名单", "--active-only"
    )
    assert code == 0
    documents = [json.loads(line) for line in out.splitlines()]
    assert all(d["active"] and d["list_kind"] == "serious-dishonesty" for d in documents)
    decisions = {d["decision_no"] for d in documents}
    assert decision(102) in decisions and decision(101) not in decisions


def test_sync_shows_lag_0_eventually(fed: Federation, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, *add_argv(fed, 4))

    def caught_up() -> bool:
        code, out, _ = run(capsys, "list", "sync", "--dir", node_dir(fed, YANTAI))
        line = next(line for line in out.splitlines() if line.startswith(QINGDAO))
        numbers = re.search(r"\s(\d+)\s+(\d+)\s+(\d+)\s", line)
        assert numbers is not None, line
        verified, seen, lag = (int(n) for n in numbers.groups())
        return code == 0 and verified == seen > 0 and lag == 0 and line.rstrip().endswith("ok")

    wait_for(caught_up, timeout_s=15)
    code, out, _ = run(capsys, "list", "sync", "--dir", node_dir(fed, YANTAI))
    assert code == 0
    assert out.splitlines()[1].split() == [
        "CITY",
        "VERIFIED",
        "SEEN",
        "LAG",
        "LAST",
        "SUCCESS",
        "SYNC",
        "LAST",
        "ERROR",
    ]
    assert "split views" not in out


def test_a_resident_id_is_never_shown_in_clear(
    fed: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = add_argv(fed, 5, subject=RESIDENT)
    argv[argv.index("--name") + 1] = "张三"
    code, out, _ = run(capsys, *argv)
    assert code == 0 and out.startswith("applied: "), out
    entry_id = out.split()[2]

    def listed_in_yantai() -> bool:
        _, out, _ = run(capsys, "list", "status", RESIDENT, "--dir", node_dir(fed, YANTAI))
        return entry_id in out

    wait_for(listed_in_yantai, timeout_s=10)
    shown = []
    for city in (QINGDAO, YANTAI):
        for extra in ([], ["--all"]):
            code, out, err = run(
                capsys, "list", "status", RESIDENT, *extra, "--dir", node_dir(fed, city)
            )
            assert code == 0
            shown.append(out + err)
            assert out.startswith(f"subject {RESIDENT_MASKED} (resident-id): 1 entries")
    code, out, err = run(
        capsys, "list", "history", QINGDAO, entry_id, "--dir", node_dir(fed, YANTAI)
    )
    assert code == 0 and f"张三 ({RESIDENT_MASKED})" in out
    shown.append(out + err)
    wrong = RESIDENT[:-1] + ("0" if RESIDENT[-1] != "0" else "1")
    code, out, err = run(capsys, "list", "status", wrong, "--dir", node_dir(fed, QINGDAO))
    assert code == 2 and "check character" in err
    shown.append(out + err)
    for text in shown:
        assert RESIDENT not in text and wrong not in text
        assert RESIDENT_BODY[:14] not in text
