"""The heavy Paillier work of private matching, spread over a pool of processes.

Full-size exponentiations dominate the protocol's cost (docs/private-matching.md), and
Python runs one of them per core at a time, so every bulk operation is cut into chunks and
mapped over a process pool (``spawn`` processes: safe beside gRPC's threads). The key
travels with each chunk as plain integers; workers keep the derived CRT values cached.
Workers exit by themselves when the node that started them is gone, killed or not.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from federation.matching import HolderKey, TableLayout, answer_probes, querier_nth_residue

CHUNK = 64
# How often a worker checks that the node process that started it is still there.
PARENT_CHECK_S = 1.0
T = TypeVar("T")


def _exit_with_parent(parent: int) -> None:
    """Worker start-up: exit as soon as ``parent`` (the node) is gone.

    A node killed outright (SIGKILL, the OOM killer) cannot shut its pool down, and its
    workers would wait for work forever: each holds both ends of the pool's queues, so
    none ever reads an end of file. Outside a service manager that kills the whole
    process group, they would outlive the node.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@functools.lru_cache(maxsize=4)
def _holder_key(p: int, q: int) -> HolderKey:
    return HolderKey(p, q)


def _encrypt_chunk(p: int, q: int, plaintexts: Sequence[int]) -> list[int]:
    key = _holder_key(p, q)
    return [key.encrypt(m) for m in plaintexts]


def _holder_residues(p: int, q: int, count: int) -> list[int]:
    key = _holder_key(p, q)
    return [key.random_nth_residue() for _ in range(count)]


def _querier_residues(n: int, count: int) -> list[int]:
    return [querier_nth_residue(n) for _ in range(count)]


def _answer_chunk(
    p: int, q: int, layout: TableLayout, request_id: bytes, ciphertexts: Sequence[int], first: int
) -> list[bytes]:
    return answer_probes(_holder_key(p, q), layout, request_id, ciphertexts, first=first)


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class MatchingPool:
    """A process pool for encryption, randomness and decryption (``workers``: default the cores)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            )
        return self._executor

    def _chunk_size(self, total: int) -> int:
        # Small jobs in small pieces so that every core gets some; large ones in CHUNK pieces.
        return max(1, min(CHUNK, -(-total // self.workers)))

    async def encrypt(self, key: HolderKey, plaintexts: Sequence[int]) -> list[int]:
        """Encrypt table bins with the holder's key (CRT), in order."""
        loop = asyncio.get_running_loop()
        size = self._chunk_size(len(plaintexts))
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(self._pool(), _encrypt_chunk, key.p, key.q, chunk)
                for chunk in _chunks(plaintexts, size)
            )
        )
        return [c for part in parts for c in part]

    async def holder_residues(self, key: HolderKey, count: int) -> list[int]:
        """Fresh ``r^n`` for the holder's own re-encryptions (CRT: a quarter of the price)."""
        return await self._split(count, functools.partial(_holder_residues, key.p, key.q))

    async def querier_residues(self, n: int, count: int) -> list[int]:
        """Fresh ``r^n mod n^2`` for probes to the holder with modulus ``n`` (full price)."""
        return await self._split(count, functools.partial(_querier_residues, n))

    async def _split(self, count: int, job: functools.partial[list[int]]) -> list[int]:
        loop = asyncio.get_running_loop()
        size = self._chunk_size(count)
        sizes = [min(size, count - start) for start in range(0, count, size)]
        parts = await asyncio.gather(*(loop.run_in_executor(self._pool(), job, s) for s in sizes))
        return [r for part in parts for r in part]

    async def answer(
        self, key: HolderKey, layout: TableLayout, request_id: bytes, ciphertexts: Sequence[int]
    ) -> list[bytes]:
        """The holder's per-ciphertext answers to a probe request, in order."""
        loop = asyncio.get_running_loop()
        size = self._chunk_size(len(ciphertexts))
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(
                    self._pool(), _answer_chunk, key.p, key.q, layout, request_id, chunk, start
                )
                for start, chunk in zip(
                    range(0, len(ciphertexts), size), _chunks(ciphertexts, size), strict=True
                )
            )
        )
        return [a for part in parts for a in part]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
