"""The matching process pool's workers do not outlive the node that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from node.matching.pool import PARENT_CHECK_S
from tests.processes import alive, still_running

# A stand-in for a node: starts a one-worker pool, prints the worker's pid, waits.
NODE = """
import asyncio, os, sys
from node.matching.pool import MatchingPool

pool = MatchingPool(workers=1)
asyncio.run(pool.querier_residues(3233, 1))  # the worker exists once it has done a job
print(pool._pool().submit(os.getpid).result(), flush=True)
sys.stdin.read()
"""


def start_node() -> tuple[subprocess.Popen[str], int]:
    node = subprocess.Popen(
        [sys.executable, "-c", NODE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert node.stdout is not None
    worker = int(node.stdout.readline())
    assert worker != node.pid and alive(worker)
    return node, worker


def test_workers_exit_when_the_node_is_killed() -> None:
    node, worker = start_node()
    try:
        os.kill(node.pid, signal.SIGKILL)
        assert node.wait(timeout=10) == -signal.SIGKILL
        # Within a few checks: a liveness deadline, not a performance figure.
        left = still_running([worker], 10 * PARENT_CHECK_S + 10)
        assert not left, f"worker {worker} outlived its node"
    finally:
        if alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_workers_keep_working_while_the_node_lives() -> None:
    node, worker = start_node()
    try:
        time.sleep(3 * PARENT_CHECK_S)
        assert alive(worker)
        assert node.stdin is not None
        node.stdin.close()  # the stand-in's normal exit: the pool shuts down with it
        assert node.wait(timeout=30) == 0
        assert not still_running([worker], 30)
    finally:
        if node.poll() is None:
            node.kill()
        if alive(worker):
            os.kill(worker, signal.SIGKILL)
