"""Helpers shared by the benchmarks: progress output, timing, memory, results files, and
a throwaway PostgreSQL server.

The PostgreSQL server is the one the test suite uses (:mod:`tests.pg_server`): a fresh
cluster in a temporary directory, found on the machine or installed with apt-get when
running as root, or an existing server named by ``CREDIT_NODE_TEST_PG_URL``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.pg_server import create_database, postgres_server

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "RESULTS_DIR",
    "BenchmarkFailedError",
    "Stopwatch",
    "create_database",
    "interrupt_on_termination",
    "machine_info",
    "peak_rss_mb",
    "percentile",
    "postgres_server",
    "say",
    "write_results",
]


class BenchmarkFailedError(Exception):
    """What the benchmark measured is wrong (lost entries, wrong root, a crashed node):
    there is no figure to report."""


_STARTED = time.monotonic()


def say(message: str) -> None:
    """A progress line, prefixed with the time since the benchmark started."""
    elapsed = time.monotonic() - _STARTED
    print(f"[{int(elapsed // 60):3d}:{elapsed % 60:04.1f}] {message}", flush=True)


class Stopwatch:
    """Durations of the named phases of a run, in seconds, in the order they ran."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(time.monotonic() - start, 3)


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (``VmHWM``) of a running process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            kib = int(line.split()[1])
            return round(kib / 1024, 1)
    raise BenchmarkFailedError(f"/proc/{pid}/status has no VmHWM line")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _memory_total_mb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024)
    return None


def _git(*args: str) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(
            ["git", *args],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        if result.returncode == 0:
            return result.stdout.strip()
    return None


def machine_info() -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "cpu_count": os.cpu_count(),
        "memory_mb": _memory_total_mb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "commit": _git("rev-parse", "HEAD"),
        # Uncommitted changes to tracked files: the code measured is not exactly the commit.
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        # Other work on the machine shares its cores with the processes measured.
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
    }


def cpu_steal_jiffies() -> int | None:
    """Time the hypervisor ran others on this machine's virtual CPUs, all CPUs together,
    in clock ticks since boot (``steal`` in ``/proc/stat``); ``None`` where not known."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        return int(fields[8])  # cpu user nice system idle iowait irq softirq steal ...
    except (OSError, IndexError, ValueError):
        return None


def write_results(path: Path, figures: dict[str, Any], run: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"figures": figures, "run": run}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return path


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def interrupt_on_termination() -> None:
    """Make SIGTERM and SIGHUP end the run through its clean-up code, like Ctrl-C."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)


def format_figures(title: str, figures: dict[str, Any], *, skip: Sequence[str] = ()) -> str:
    """The figures and the targets (pass/FAIL) as an aligned text summary."""
    width = max(len(key) for key in figures) + 2
    lines = [title]
    for key, value in figures.items():
        if key not in ("targets", *skip):
            lines.append(f"  {key:{width}} {value:>12,}")
    lines.append("targets:")
    for key, target in figures["targets"].items():
        verdict = "pass" if target["pass"] else "FAIL"
        lines.append(
            f"  {key:{width}} {target['value']:>12,} (target {target['target']}) {verdict}"
        )
    return "\n".join(lines)
