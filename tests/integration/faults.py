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
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from federation.checkpoint import SignedCheckpoint
from federation.clock import CHINA_TZ, SystemClock
from federation.manifest import build_manifest
from federation.merkle import range_hash
from node.config import NodeConfig, load_config
from node.demo import DemoNode, sign
from node.identity import init_node
from node.keystore import load_node_keys
from node.ledger import AddEntry, Outcome, OwnLog
from node.logstore import LogStore
from node.samples import sample_entry
from node.storage.database import Database, open_database
from node.storage.lists import EntryRepository, LogRepository, ReplicaRepository, SplitView
from node.trust import install_manifest
from tests.integration.conftest import Federation
from tests.processes import children, still_running

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
        changes = [
            AddEntry(sample_entry(config.city_code, s, listed_on=LISTED_ON)) for s in serials
        ]
        results = own.submit(changes)
    assert all(r.outcome is Outcome.APPLIED for r in results), "a sample entry was refused"


@dataclasses.dataclass(frozen=True)
class LogState:
    """What a node stores of one city's log, read in one snapshot."""

    size: int  # the head: verified size
    root: bytes | None
    checkpoint_size: int | None  # size of the signed checkpoint kept with the head
    leaves: int  # rows of log_leaves for the origin
    max_index: int | None
    entries: int  # rows of list_entries for the origin

    def consistent(self) -> bool:
        """The head, the leaves and the entry states agree (every leaf here is an add of
        its own entry); leaf indexes are unique by the primary key."""
        top = self.size - 1 if self.size else None
        return self.leaves == self.size == self.entries and self.max_index == top


def sqlite_path(config: NodeConfig) -> Path:
    prefix = "sqlite:///"
    assert config.database_url.startswith(prefix), config.database_url
    return Path(config.database_url[len(prefix) :])


def log_state(config: NodeConfig, origin: str) -> LogState:
    """Read with plain sqlite3 in one explicit read transaction: SQLAlchemy's pysqlite
    connections run each SELECT in its own snapshot, and a node may commit in between."""
    connection = sqlite3.connect(sqlite_path(config), timeout=10, isolation_level=None)
    try:
        connection.execute("BEGIN")
        head = connection.execute(
            "SELECT size, root, checkpoint FROM log_heads WHERE origin = ?", (origin,)
        ).fetchone()
        leaves, top = connection.execute(
            "SELECT count(*), max(idx) FROM log_leaves WHERE origin = ?", (origin,)
        ).fetchone()
        (entries,) = connection.execute(
            "SELECT count(*) FROM list_entries WHERE origin = ?", (origin,)
        ).fetchone()
        connection.execute("COMMIT")
    finally:
        connection.close()
    if head is None:
        return LogState(0, None, None, leaves, top, entries)
    size, root, checkpoint = head
    signed = SignedCheckpoint.from_bytes(bytes(checkpoint)) if checkpoint else None
    return LogState(
        size=size,
        root=bytes(root),
        checkpoint_size=signed.checkpoint.size if signed else None,
        leaves=leaves,
        max_index=top,
        entries=entries,
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
    """SIGKILL the node; the processes it started (its matching pool) must not outlive it."""
    assert node.process is not None and node.process.poll() is None
    started = children(node.process.pid)
    os.kill(node.process.pid, signal.SIGKILL)
    assert node.process.wait(timeout=10) == -signal.SIGKILL
    left = still_running(started, 20)
    assert not left, f"processes {sorted(left)} outlived the killed node"


def terminate(node: DemoNode) -> int:
    """SIGTERM and wait for the exit code (0 for a clean stop)."""
    assert node.process is not None
    if node.process.poll() is None:
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
    """Copy a (closed) SQLite database with its WAL files; ``target``'s old files go."""
    for old in db_files(target):
        old.unlink(missing_ok=True)
    for src, dst in zip(db_files(source), db_files(target), strict=True):
        if src.exists():
            shutil.copy2(src, dst)


class CuttingProxy:
    """Forwards TCP connections to ``target``; connection number ``i`` (from 0, counting
    those the target accepted) is cut, both ways, once ``cut_after[i]`` bytes have gone from
    the target back to the client. Later connections pass untouched. TLS goes through as
    opaque bytes."""

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
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                # The target is not listening yet: not a connection that counts.
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                number = self.connections
                self.connections += 1
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
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # SHUT_RD wakes the other pump's recv() without sending a FIN.
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


# --- federations and processes ----------------------------------------------------------


def form(root: Path, cities: Sequence[str], *, proxied: str | None = None) -> Federation:
    """Installed (not started) nodes of a federation of ``cities``. The ``proxied`` city
    advertises one port in its member card and listens on another: the test puts a proxy
    between them (``member.endpoint`` -> ``config.peer_listen``)."""
    ports = free_ports(2 * len(cities) + 1)
    members = []
    for number, city in enumerate(cities):
        peer, client = ports[2 * number], ports[2 * number + 1]
        listen = f"127.0.0.1:{peer}"
        members.append(
            init_node(
                root / city,
                city_code=city,
                endpoint=f"127.0.0.1:{ports[-1]}" if city == proxied else listen,
                peer_listen=listen,
                client_listen=f"127.0.0.1:{client}",
                paillier_bits=1024,
            )
        )
    nodes = [DemoNode(m, load_config(root / m.city_code, env={})) for m in members]
    manifest = build_manifest(
        federation_id="jiaodong",
        federation_name="胶东经济圈",
        members=members,
        threshold=min(2, len(nodes)),
        expires=SystemClock().now() + dt.timedelta(days=7),
    )
    signed = sign(manifest, nodes[: manifest.threshold])
    for node in nodes:
        install_manifest(node.config, signed.to_bytes(), clock=SystemClock())
    return Federation(root, nodes, signed)


def free_ports(count: int) -> list[int]:
    # All bound at once, so that no two are the same.
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def database_named(config: NodeConfig, name: str) -> NodeConfig:
    """The node's config pointing at another database file in its home."""
    return dataclasses.replace(config, database_url=f"sqlite:///{config.home / name}")


def alternative_database(config: NodeConfig, name: str, manifest: bytes) -> NodeConfig:
    """The node's config pointing at a new database file in its home, with the federation
    manifest installed there: a second history to swap in later."""
    other = database_named(config, name)
    install_manifest(other, manifest, clock=SystemClock())
    return other


def swap_in(node: DemoNode, replacement: NodeConfig, *, keep_as: str) -> NodeConfig:
    """Replace the (stopped) node's database by ``replacement``'s; the current one is
    kept under ``keep_as``. Returns the config pointing at the kept one."""
    assert node.process is None or node.process.poll() is not None, "stop the node first"
    current = sqlite_path(node.config)
    kept = database_named(node.config, keep_as)
    move_database(current, sqlite_path(kept))
    move_database(sqlite_path(replacement), current)
    return kept


def until(
    what: str,
    check: Callable[[], bool],
    *,
    watch: Sequence[DemoNode] = (),
    timeout_s: float = 30.0,
    interval_s: float = 0.1,
) -> float:
    """Poll ``check`` until it holds; fails early if a watched node process exits."""
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        if check():
            return time.monotonic() - began
        for node in watch:
            if node.process is not None and node.process.poll() is not None:
                raise AssertionError(
                    f"node {node.member.city_code} exited ({node.process.returncode}) while "
                    f"waiting until {what}"
                )
        time.sleep(interval_s)
    raise AssertionError(f"not reached within {timeout_s}s: {what}")


@contextlib.contextmanager
def running(nodes: Sequence[DemoNode]) -> Iterator[None]:
    """On exit, stop the nodes still running; each must exit cleanly (code 0)."""
    try:
        yield
    finally:
        alive = [n for n in nodes if n.process is not None and n.process.poll() is None]
        for node in alive:
            assert node.process is not None
            node.process.send_signal(signal.SIGTERM)  # all at once: their grace runs together
        # Waited for, not signalled twice: a second SIGTERM during shutdown may end the
        # process without its clean-up.
        codes = {n.member.city_code: n.process.wait(timeout=20) for n in alive if n.process}
        assert all(code == 0 for code in codes.values()), f"unclean exits: {codes}"
