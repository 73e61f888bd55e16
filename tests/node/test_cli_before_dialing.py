"""What the commands that talk to a node say before they dial it: arguments out of range
and a node directory with a broken certificate, each in a line or two, never a traceback.

No node runs here: every case is refused before a connection is made.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from node.cli.main import EXIT_ERROR, EXIT_USAGE, main

COMPANY = "91350100M000100Y43"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert out == ""
    return code, err


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("cli") / "qingdao"
    assert main(["init", "--city", "370200", "--dir", str(home), "--paillier-bits", "1024"]) == 0
    return home


@pytest.fixture
def node_dir(initialised: Path, tmp_path: Path) -> Path:
    """A fresh copy of an initialised node directory, for a test to break."""
    home = tmp_path / "qingdao"
    shutil.copytree(initialised, home)
    return home


@pytest.mark.parametrize("days", ["-1", "367", "99999999999"])
def test_report_issue_refuses_valid_days_out_of_range(
    capsys: pytest.CaptureFixture[str], node_dir: Path, days: str
) -> None:
    out = node_dir / "report.json"
    argv = ["report", "issue", "--dir", str(node_dir), "--out", str(out), "--valid-days", days]
    code, err = run(capsys, *argv, COMPANY)
    assert code == EXIT_USAGE
    assert err == (
        f"credit-node: error: --valid-days {days} is out of range: give 1 to 366 "
        "(or leave it out for the node's default)\n"
    )
    assert not out.exists()


@pytest.mark.parametrize("points", ["1000000001", "-1000000001", "99999999999999999999999"])
def test_rating_add_refuses_points_out_of_range(
    capsys: pytest.CaptureFixture[str], node_dir: Path, points: str
) -> None:
    code, err = run(
        capsys,
        "rating",
        "add",
        "--dir",
        str(node_dir),
        "--name",
        "某某公司",
        "--scale",
        "weihai-haibei",
        "--points",
        points,
        "--valid-until",
        "2027-01-01",
        "--evidence",
        "威信〔2026〕1号",
        COMPANY,
    )
    assert code == EXIT_USAGE
    assert err == (
        f"credit-node: error: --points {points} is out of range: give -1000000000 to 1000000000\n"
    )


def test_a_missing_certificate_is_named(capsys: pytest.CaptureFixture[str], node_dir: Path) -> None:
    certificate = node_dir / "keys" / "tls.crt"
    certificate.unlink()
    code, err = run(capsys, "status", "--dir", str(node_dir))
    assert code == EXIT_ERROR
    assert err.startswith(f"credit-node: error: TLS certificate {certificate} is missing\n")
    assert "hint: " in err


def test_a_directory_in_place_of_the_certificate_is_named(
    capsys: pytest.CaptureFixture[str], node_dir: Path
) -> None:
    certificate = node_dir / "keys" / "tls.crt"
    certificate.unlink()
    certificate.mkdir()
    code, err = run(capsys, "status", "--dir", str(node_dir))
    assert code == EXIT_ERROR
    assert err == (
        f"credit-node: error: cannot read TLS certificate {certificate}: Is a directory\n"
        "  hint: it must be a file the operator can read; restore it from a backup of the "
        "node directory\n"
    )
