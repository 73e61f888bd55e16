"""What a test needs to know about processes on this (Linux) machine, read from /proc."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited: only its parent's wait is missing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> set[int]:
    """The processes ``pid`` has started (any of its threads) that have not been reaped."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            found.update(int(child) for child in (task / "children").read_text().split())
    return found


def still_running(pids: Iterable[int], seconds: float) -> set[int]:
    """Those of ``pids`` that still run after waiting up to ``seconds`` for them to exit."""
    deadline = time.monotonic() + seconds
    while (left := {pid for pid in pids if alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
