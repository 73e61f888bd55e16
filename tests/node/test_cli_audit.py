"""`credit-node audit show|verify` through the real entry point, on a node's own database."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Executable, delete, update

from node.cli.main import main
from node.config import load_config
from node.storage import Database, open_database
from node.storage.database import head_revision
from node.storage.matching import MatchAuditRepository
from node.storage.schema import match_audit
from tests.node.migrating import migrate

T0 = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.UTC)
PEER, OTHER = "370600", "371000"


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("audit") / "qingdao"
    argv = ["init", "--city", "370200", "--dir", str(home), "--endpoint", "127.0.0.1:7600"]
    assert main([*argv, "--paillier-bits", "1024"]) == 0
    return home


@pytest.fixture
def home(initialised: Path, tmp_path: Path) -> Path:
    """A node directory of its own, with an empty audit (the database is made on first use)."""
    copy = tmp_path / "qingdao"
    copy.mkdir()
    for path in initialised.iterdir():
        target = copy / path.name
        if path.is_dir():
            target.mkdir(mode=0o700)
            for inner in path.iterdir():
                (target / inner.name).write_bytes(inner.read_bytes())
                (target / inner.name).chmod(inner.stat().st_mode)
        elif path.suffix != ".db":
            target.write_bytes(path.read_bytes())
    database_of(copy).close()  # the node made its database when it first started
    return copy


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def database_of(home: Path) -> Database:
    return open_database(load_config(home, env={}).database_url)


def fill(home: Path) -> list[int]:
    database = database_of(home)
    audit = MatchAuditRepository(database)
    ids = [
        audit.record("sent", PEER, bytes([1]) * 16, "membership", 10, 10, 2, "answered", at=T0),
        audit.record(
            "received",
            OTHER,
            bytes([2]) * 16,
            "disclose",
            1,
            0,
            None,
            "refused",
            at=T0 + dt.timedelta(minutes=1),
            reason="over the day's quota",
            detail="subject 370202********123X, purpose 贷款审查",
        ),
        audit.record("sent", OTHER, bytes([3]) * 16, "count", 5, 5, 1, "answered", at=T0),
    ]
    database.close()
    return ids


def tamper(home: Path, statement: Executable) -> None:
    database = database_of(home)
    with database.transaction() as connection:
        connection.execute(statement)
    database.close()


def test_show_lists_the_newest_rows_with_their_reasons(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["audit", "show", "--dir", str(home)], capsys)[1] == "no audit rows\n"
    ids = fill(home)
    code, out, err = run(["audit", "show", "--dir", str(home)], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == [
        "id", "at", "(UTC)", "direction", "peer", "mode", "subjects", "hits", "outcome"
    ]  # fmt: skip
    newest = [str(ids[2]), "2026-12-03T08:00:00Z", "sent", OTHER, "count", "5", "1", "answered"]
    assert lines[1].split() == newest
    assert lines[2].split()[-4:] == ["disclose", "1", "-", "refused"]
    assert lines[3].strip() == "over the day's quota"
    assert "370202********123X" in lines[4]
    code, out, _ = run(
        ["audit", "show", "--dir", str(home), "--direction", "sent", "--peer", PEER], capsys
    )
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == [str(ids[0])]
    code, out, _ = run(["audit", "show", "--dir", str(home), "--limit", "1"], capsys)
    assert len(out.splitlines()) == 2


def test_verify_prints_the_head_and_finds_it_again(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(home)
    code, out, _ = run(["audit", "verify", "--dir", str(home)], capsys)
    assert code == 0 and out.startswith("intact: 3 rows, head ")
    head = out.split()[-1]
    fill(home)
    code, out, _ = run(["audit", "verify", "--dir", str(home), "--head", head.upper()], capsys)
    assert code == 0
    assert out.splitlines()[1] == f"the recorded head {head} is in the chain"


def test_verify_names_the_row_that_was_changed(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = fill(home)
    tamper(home, update(match_audit).where(match_audit.c.id == ids[1]).values(outcome="answered"))
    code, out, _ = run(["audit", "verify", "--dir", str(home)], capsys)
    assert code == 1
    assert out.splitlines()[:2] == [
        "BROKEN: 1 of 3 rows break the chain",
        f"  row {ids[1]}: its link does not hold: this row was changed or given another id, "
        "or the row before it removed",
    ]
    assert out.splitlines()[2].startswith("head ")


def test_the_commands_leave_upgrading_the_database_to_the_node(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(home)
    database = database_of(home)
    migrate(database, "downgrade", "0004")  # as an older node left it
    database.close()
    for verb in ("show", "verify"):
        code, out, err = run(["audit", verb, "--dir", str(home)], capsys)
        assert (code, out) == (1, "")
        assert f"is at schema revision 0004, not {head_revision()}" in err
        assert "start the node with this version of credit-node" in err


def test_verify_shows_newest_rows_removed_against_a_recorded_head(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = fill(home)
    head = run(["audit", "verify", "--dir", str(home)], capsys)[1].split()[-1]
    tamper(home, delete(match_audit).where(match_audit.c.id == ids[-1]))
    code, out, _ = run(["audit", "verify", "--dir", str(home)], capsys)
    assert code == 0 and out.startswith("intact: 2 rows")  # alone, a shorter chain holds
    code, out, _ = run(["audit", "verify", "--dir", str(home), "--head", head], capsys)
    assert code == 1
    assert f"NOT FOUND: the head {head} is not in the chain" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "--limit", "0"], "--limit must be from 1 to 10000, not 0"),
        (["show", "--peer", "qingdao"], "--peer must be a city code of 6 digits, not 'qingdao'"),
        (["verify", "--head", "abc"], "--head must be 64 hex digits"),
    ],
)
def test_bad_arguments_are_refused_with_what_is_wrong(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(["audit", argv[0], "--dir", str(home), *argv[1:]], capsys)
    assert (code, out) == (2, "")
    assert message in err
