"""``credit-node demo``: five node processes, the scenarios, and nothing left behind."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _processes_under(root: Path) -> list[str]:
    """Command lines of live processes that mention ``root`` (node processes of that demo)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(root) in cmdline and "serve" in cmdline:
            found.append(cmdline)
    return found


def _demo(root: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "node.cli.main",
        "demo",
        "--dir",
        str(root),
        "--paillier-bits",
        "1024",
    ]


def test_demo_runs_five_cities_and_stops_them(tmp_path: Path) -> None:
    result = subprocess.run(_demo(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "5 of 5 members reachable" in out
    for city in ("370200", "370600", "370700", "371000", "371100"):
        assert f"{city}" in out
    assert out.count("sees 5/5 members") == 5
    assert "refused at the TLS handshake" in out
    assert "adopted v2" in out
    # The report holds the company's listing, its rating, and Qingdao's licence and commitment.
    assert re.search(r"issues report 370200-\d{8}-\d{6} .*: 1 list entries, 1 ratings, "
                     r"1 licence, 1 commitment;", out), out  # fmt: skip
    assert "all 5 nodes stopped cleanly" in out
    assert out.rstrip().endswith("demo finished: OK")
    assert _processes_under(tmp_path) == []


def test_demo_interrupted_leaves_no_process_behind(tmp_path: Path) -> None:
    demo = subprocess.Popen(_demo(tmp_path), stdout=subprocess.PIPE, text=True)
    assert demo.stdout is not None
    for line in demo.stdout:
        if "connected and healthy" in line:
            break
    assert len(_processes_under(tmp_path)) == 5
    demo.send_signal(signal.SIGTERM)
    demo.communicate(timeout=60)
    assert demo.returncode != 0
    deadline = time.monotonic() + 10
    while _processes_under(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_under(tmp_path) == []
