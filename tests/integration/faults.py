"""Tools for fault tests with real node processes: logs written behind a node's back, its
stored state read while it runs, a TCP proxy that cuts streams, hard kills.

A node's SQLite database is in WAL mode, so the test process can read it while the node
writes; what it reads is always a committed transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from sqlalchemy import func, select

from federation.clock import SystemClock
from federation.merkle import range_hash
from federation.subjects import CHINA_TZ
from node.config import NodeConfig
from node.demo import DemoNode
from node.keystore import load_node_keys
from node.ledger import AddEntry, OwnLog, Outcome
from node.logstore import LogStore
from node.samples import sample_entry
from node.storage.database import Database, open_database
from node.storage.lists import EntryRepository, LogRepository, ReplicaRepository, SplitView
from node.storage.schema import log_leaves

#: Old enough to be inside every public kind's publicity window, recent enough to be active.
LISTED_ON = dt.datetime.now(CHINA_TZ).date() - dt.timedelta(days=30)


@contextlib.contextmanager
def database(config: NodeConfig) -> Iterator[Database]:
    db = open_database(config.database_url)
    try:
        yield db
    finally:
        db.close()


def populate(config: NodeConfig, serials: Sequence[int]) -> None:
    """Record an add of one sample entry per serial in the node's own log (node stopped)."""
    clock = SystemClock()
    with database(config) as db:
        entries = EntryRepository(db)
        own = OwnLog(
            store=LogStore(config.city_code, LogRepository(db), entries, clock),
            entries=entries,
            signing_key=load_node_keys(config).signing_key,
            policies=config.list_policies,
            clock=clock,
        )
        changes = [AddEntry(sample_entry(config.city_code, s, listed_on=LISTED_ON)) for s in serials]
        results = own.submit(changes)
    assert all(r.outcome is Outcome.APPLIED for r in results), "a sample entry was refused"


@dataclasses.dataclass(frozen=True)
class LogState:
    """What a node stores of one city's log, read in one go."""

    size: int  # the head: verified size
    root: bytes | None
    leaves: int  # rows of log_leaves for the origin
    distinct_indexes: int
    max_index: int | None
    entries: int  # rows of list_entries for the origin
    checkpoint_size: int | None  # size of the signed checkpoint kept with the head

    def consistent(self) -> bool:
        """The head, the leaves and the entry states agree (every leaf here is an add)."""
        return (
            self.leaves == self.size == self.distinct_indexes == self.entries
            and self.max_index == (self.size - 1 if self.size else None)
        )


def log_state(config: NodeConfig, origin: str) -> LogState:
    from federation.checkpoint import SignedCheckpoint

    with database(config) as db:
        head = LogRepository(db).head(origin)
        with db.read() as connection:
            leaves, distinct, top = connection.execute(
                select(
                    func.count(), func.count(func.distinct(log_leaves.c.idx)), func.max(log_leaves.c.idx)
                ).where(log_leaves.c.origin == origin)
            ).one()
        entries = EntryRepository(db).count(origin)
    checkpoint = (
        SignedCheckpoint.from_bytes(head.checkpoint).checkpoint.size
        if head is not None and head.checkpoint
        else None
    )
    return LogState(
        size=head.size if head else 0,
        root=head.root if head else None,
        leaves=leaves,
        distinct_indexes=distinct,
        max_index=top,
        entries=entries,
        checkpoint_size=checkpoint,
    )


def prefix_root(config: NodeConfig, origin: str, size: int) -> bytes:
    """The root of the first ``size`` leaves of ``origin``'s log as ``config``'s node holds it."""
    with database(config) as db:
        store = LogStore(origin, LogRepository(db), EntryRepository(db), SystemClock())
        return range_hash(0, size, store.tree())


def split_views(config: NodeConfig, origin: str) -> list[SplitView]:
    with database(config) as db:
        return ReplicaRepository(db).split_views(origin)


def blocked(config: NodeConfig, origin: str) -> bool:
    with database(config) as db:
        status = ReplicaRepository(db).status(origin)
    return status is not None and status.blocked


def messages(node: DemoNode) -> list[dict[str, object]]:
    """The node's JSON log lines (from every run), parsed."""
    path = node.config.home / "node.log"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    parsed = []
    for line in lines:
        with contextlib.suppress(ValueError):
            parsed.append(json.loads(line))
    return parsed


def logged(node: DemoNode, msg: str) -> list[dict[str, object]]:
    return [m for m in messages(node) if m.get("msg") == msg]


def kill9(node: DemoNode) -> None:
    assert node.process is not None and node.process.poll() is None
    os.kill(node.process.pid, signal.SIGKILL)
    assert node.process.wait(timeout=10) == -signal.SIGKILL


def terminate(node: DemoNode) -> int:
    assert node.process is not None
    node.process.send_signal(signal.SIGTERM)
    return node.process.wait(timeout=20)


def db_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def move_database(source: Path, target: Path) -> None:
    """Move a (closed) SQLite database with its WAL files; ``target``'s old files go."""
    for old in db_files(target):
        old.unlink(missing_ok=True)
    for src, dst in zip(db_files(source), db_files(target), strict=True):
        if src.exists():
            shutil.move(src, dst)


def copy_database(source: Path, target: Path) -> None:
    for src, dst in zip(db_files(source), db_files(target), strict=True):
        if src.exists():
            shutil.copy2(src, dst)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class CuttingProxy:
    """Forwards TCP connections to ``target``; connection number ``i`` (from 0) is cut, both
    ways, once ``cut_after[i]`` bytes have gone from the target back to the client. Later
    connections pass untouched. TLS goes through as opaque bytes."""

    def __init__(self, listen_port: int, target: tuple[str, int], cut_after: Sequence[int]):
        self.target = target
        self.cut_after = list(cut_after)
        self.connections = 0
        self.cuts: list[int] = []  # bytes forwarded downstream when each cut happened
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", listen_port))
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                _close(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                number = self.connections
                self.connections += 1
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            limit = self.cut_after[number] if number < len(self.cut_after) else None
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, limit), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) > limit:
                    # Forward up to the limit, then drop the connection: the receiver sees
                    # the stream end in the middle of a TLS record and a gRPC message.
                    sink.sendall(data[: limit - sent])
                    with self._lock:
                        self.cuts.append(limit)
                    _reset(source)
                    _reset(sink)
                    return
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        _close(sink)


def _reset(sock: socket.socket) -> None:
    # SO_LINGER 0: close with a RST, as a broken network path or a dead middlebox would.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
