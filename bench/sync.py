"""Sanction-list sync benchmark: ``python -m bench.sync [--quick] [--entries N]
[--databases sqlite,postgresql]``.

Measures, in one run on one machine (real ``credit-node serve`` processes, loopback, TLS):

1. **Replication throughput.** Qingdao (370200) publishes a log of N entries (recorded
   beforehand with :class:`node.ledger.OwnLog`, untimed); Yantai (370600) starts with an
   empty database and pulls, verifies and stores all of it. entries/s = N / (time from
   starting the receiver until its replica holds N leaves). The replica must then have
   the publisher's root, N leaves, N block-aligned subtree hashes and N entries, or the
   run fails: a broken sync has no throughput.
2. **The local limit.** The same rows the receiver stored (read back from its database)
   are bulk-inserted into a fresh database of the same schema with SQLAlchemy Core
   ``executemany``, one transaction per 1,000 leaves as replication does. Only the write
   transactions are timed. The figure is replication / raw: how close sync comes to the
   cost of just storing the data.
3. **Propagation latency.** Five Jiaodong nodes, all connected; K single adds are
   submitted at Qingdao and each is timed until all four peers serve it from their
   client API (``GetSubjectStatus``).
4. **Receiver memory.** Peak RSS (``VmHWM``) of the receiving node process.

1, 2 and 4 run per database (SQLite, and PostgreSQL on a throwaway server started here);
the publisher stays on SQLite. Results go to ``bench/results/sync.json`` (``--quick``:
``sync-quick.json``). Every node process is stopped and every temporary directory
removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite

from bench.common import (
    RESULTS_DIR,
    BenchmarkFailedError,
    Stopwatch,
    create_database,
    format_figures,
    interrupt_on_termination,
    machine_info,
    peak_rss_mb,
    percentile,
    postgres_server,
    say,
    write_results,
)
from creditnet.v1 import client_pb2, lists_pb2
from federation.clock import CHINA_TZ, SystemClock
from federation.errors import CreditNetError
from federation.manifest import SignedManifest, build_manifest
from federation.presets import preset
from federation.sanctions import ListKind
from node.client import NodeClient
from node.config import SETTINGS, load_config, render_config
from node.demo import DemoNode, all_reachable, create_nodes, matching_ready, sign, start, stop
from node.keystore import load_node_keys
from node.ledger import AddEntry, Outcome, OwnLog
from node.logstore import LogStore
from node.samples import sample_entry
from node.service.convert import entry_to_wire
from node.storage.database import Database, open_database
from node.storage.lists import EntryRepository, LogHead, LogRepository
from node.storage.schema import (
    LOG_BLOCK_LEAVES,
    list_entries,
    log_blocks,
    log_heads,
    log_leaves,
    replica_status,
    split_views,
)
from node.trust import install_manifest
from tests.pg_server import PostgresUnavailableError

PUBLISHER = "370200"  # 青岛
RECEIVER = "370600"  # 烟台
FEDERATION = "jiaodong"
PROPAGATION_THRESHOLD = 3
PAILLIER_BITS = 1024  # the benchmark does not use Paillier; small keys start quickly
LISTED_DAYS_AGO = 400  # inside every public kind's maximum publicity: entries are active

# Leaves per transaction: what OwnLog and the replicator use.
BATCH = 1000
# Keys per IN (...) list when reading entries back.
IN_CHUNK = 500

SYNC_POLL_S = 0.1
PROPAGATION_POLL_S = 0.002
PROGRESS_EVERY_S = 10.0
READY_TIMEOUT_S = 90.0
# A replica that does not grow for this long has stalled: the run fails.
STALL_TIMEOUT_S = 180.0
PROPAGATION_TIMEOUT_S = 30.0
API_PROBE_EVERY_S = 1.0
API_PROBE_TIMEOUT_S = 60.0

RATIO_TARGET = 0.5
PROPAGATION_P95_TARGET_MS = 500.0
RSS_TARGET_MB = 500.0

FULL_ENTRIES = 1_000_000
FULL_CHANGES = 50
QUICK_ENTRIES = 5_000
QUICK_CHANGES = 5
DATABASES = ("sqlite", "postgresql")


@dataclasses.dataclass(frozen=True)
class Settings:
    entries: int
    changes: int
    databases: tuple[str, ...]
    quick: bool
    output: Path
    keep: bool


@dataclasses.dataclass(frozen=True)
class Replication:
    seconds: float
    first_leaf_s: float | None  # receiver start -> first verified batch stored
    peak_rss_mb: float
    url: str
    api: dict[str, Any]  # how the receiver's client API answered meanwhile

    def entries_per_s(self, entries: int) -> float:
        return entries / self.seconds


@dataclasses.dataclass(frozen=True)
class RawInsert:
    write_s: float  # time inside the write transactions
    total_s: float  # including reading the rows back from the receiver

    def entries_per_s(self, entries: int) -> float:
        return entries / self.write_s


# --- node processes and their logs -------------------------------------------------------------


class NodeLogs:
    """Reads what node processes logged since :meth:`mark`; errors fail the run."""

    def __init__(self, nodes: Sequence[DemoNode]) -> None:
        self._nodes = list(nodes)
        self._offsets: dict[Path, int] = {}

    def _path(self, node: DemoNode) -> Path:
        return node.config.home / "node.log"

    def mark(self) -> None:
        for node in self._nodes:
            path = self._path(node)
            self._offsets[path] = path.stat().st_size if path.exists() else 0

    def new_lines(self, node: DemoNode) -> list[str]:
        path = self._path(node)
        if not path.exists():
            return []
        with path.open("rb") as handle:
            handle.seek(self._offsets.get(path, 0))
            return handle.read().decode("utf-8", errors="replace").splitlines()

    def tail(self, node: DemoNode, lines: int = 15) -> str:
        return "\n".join(f"    {line[:400]}" for line in self.new_lines(node)[-lines:])

    def check(self, what: str) -> dict[str, int]:
        """Raise on error lines or tracebacks; returns warning counts by message."""
        errors: list[str] = []
        warnings: collections.Counter[str] = collections.Counter()
        for node in self._nodes:
            code = node.member.city_code
            for line in self.new_lines(node):
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if not isinstance(record, dict):
                    # Not the node's logging: a traceback, or gRPC's C core on stderr.
                    if "Traceback" in line or "Error" in line:
                        errors.append(f"{code}: {line[:1000]}")
                    elif line.strip():
                        warnings[f"{code}: other output: {line[:80]}"] += 1
                    continue
                level = record.get("level")
                if level in ("error", "critical") or "exception" in record:
                    errors.append(f"{code}: {line[:1000]}")
                elif level == "warning":
                    reason = str(record.get("reason", ""))[:60]
                    key = f"{code}: {record.get('msg')}" + (f" ({reason})" if reason else "")
                    warnings[key] += 1
        if errors:
            listing = "\n".join(f"  {e}" for e in errors[:20])
            raise BenchmarkFailedError(f"node logs show errors during {what}:\n{listing}")
        return dict(warnings)

    def describe(self) -> str:
        return "\n".join(
            f"  {node.member.city_code} {self._path(node)}:\n{self.tail(node)}"
            for node in self._nodes
        )


def check_alive(nodes: Sequence[DemoNode], logs: NodeLogs, what: str) -> None:
    for node in nodes:
        if node.process is not None and node.process.poll() is not None:
            raise BenchmarkFailedError(
                f"node {node.member.city_code} exited with code {node.process.returncode} "
                f"during {what}; its log:\n{logs.tail(node, 30)}"
            )


def wait_until(
    what: str,
    check: Callable[[], bool],
    nodes: Sequence[DemoNode],
    logs: NodeLogs,
    timeout_s: float = READY_TIMEOUT_S,
) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        with contextlib.suppress(CreditNetError):
            if check():
                return time.monotonic() - started
        check_alive(nodes, logs, what)
        time.sleep(0.1)
    raise BenchmarkFailedError(
        f"timed out after {timeout_s:.0f}s waiting until {what}:\n{logs.describe()}"
    )


def responds(node: DemoNode) -> bool:
    node.status()
    return True


def form(
    root: Path, cities: list[str], threshold: int, *, paillier_bits: int = PAILLIER_BITS
) -> tuple[list[DemoNode], SignedManifest]:
    """Node identities, a manifest signed by ``threshold`` of them, installed at each."""
    clock = SystemClock()
    nodes = create_nodes(root, cities, paillier_bits=paillier_bits)
    manifest = build_manifest(
        federation_id=FEDERATION,
        federation_name=preset(FEDERATION).name,
        members=[n.member for n in nodes],
        threshold=threshold,
        expires=clock.now() + dt.timedelta(days=7),
    )
    signed = sign(manifest, nodes[:threshold])
    for node in nodes:
        install_manifest(node.config, signed.to_bytes(), clock=clock)
    return nodes, signed


def listed_on() -> dt.date:
    return (SystemClock().now().astimezone(CHINA_TZ) - dt.timedelta(days=LISTED_DAYS_AGO)).date()


# --- 1. replication ----------------------------------------------------------------------------


def populate(
    node: DemoNode,
    count: int,
    *,
    kind: ListKind = ListKind.SERIOUS_DISHONESTY,
    day: dt.date | None = None,
) -> None:
    """Record ``count`` adds in the (stopped) node's own log, as its own node would."""
    config = node.config
    clock = SystemClock()
    database = open_database(config.database_url)
    try:
        logs, entries = LogRepository(database), EntryRepository(database)
        own = OwnLog(
            store=LogStore(config.city_code, logs, entries, clock),
            entries=entries,
            signing_key=load_node_keys(config).signing_key,
            policies=config.list_policies,
            clock=clock,
        )
        if own.store.size:
            raise BenchmarkFailedError(f"the publisher's log is not empty ({own.store.size})")
        day = day or listed_on()
        started = last_report = time.monotonic()
        for begin in range(0, count, BATCH):
            changes = [
                AddEntry(
                    sample_entry(
                        config.city_code,
                        serial,
                        kind=kind,
                        listed_on=day,
                        policies=config.list_policies,
                    )
                )
                for serial in range(begin, min(begin + BATCH, count))
            ]
            refused = [r for r in own.submit(changes) if r.outcome is not Outcome.APPLIED]
            if refused:
                raise BenchmarkFailedError(
                    f"OwnLog.submit did not apply {len(refused)} sample entries, e.g. "
                    f"{refused[0].outcome.value}: {refused[0].reason}"
                )
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY_S:
                last_report = now
                done = own.store.size
                say(
                    f"  populated {done:,}/{count:,} "
                    f"({done / (now - started):,.0f} entries/s, {100 * done / count:.0f}%)"
                )
        if own.store.size != count:
            raise BenchmarkFailedError(f"the publisher's log holds {own.store.size} of {count}")
    finally:
        database.close()


def use_database(node: DemoNode, url: str, manifest: SignedManifest) -> None:
    """Point ``node`` at a fresh database (its node.toml) and install the manifest there."""
    config = dataclasses.replace(node.config, database_url=url)
    config.config_path.write_text(render_config(config))
    node.config = load_config(config.home, env={})
    if node.config.database_url != url:
        raise BenchmarkFailedError(f"{config.config_path} does not point at {url}")
    install_manifest(node.config, manifest.to_bytes(), clock=SystemClock())


class ApiProbe:
    """Asks the receiver for its sync status once a second while it replicates, and keeps
    how long each answer took: a node busy syncing must still answer its clients."""

    def __init__(self, node: DemoNode) -> None:
        self._node = node
        self._stop = threading.Event()
        self.latencies_ms: list[float] = []
        self.failures: list[str] = []
        self._thread = threading.Thread(target=self._run, name="api-probe", daemon=True)

    def __enter__(self) -> ApiProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=API_PROBE_TIMEOUT_S + 5)

    def _run(self) -> None:
        answered = False
        with NodeClient(self._node.config, timeout_s=API_PROBE_TIMEOUT_S) as client:
            while not self._stop.is_set():
                asked = time.monotonic()
                try:
                    client.sync_status()
                except CreditNetError as exc:
                    # Before the first answer the node is still starting: not counted.
                    if answered:
                        self.failures.append(exc.message[:200])
                else:
                    answered = True
                    self.latencies_ms.append((time.monotonic() - asked) * 1000)
                self._stop.wait(API_PROBE_EVERY_S)

    def summary(self) -> dict[str, Any]:
        values = self.latencies_ms
        return {
            "answers": len(values),
            "failures": len(self.failures),
            "first_failure": self.failures[0] if self.failures else None,
            "p50_ms": round(percentile(values, 50), 1) if values else None,
            "max_ms": round(max(values), 1) if values else None,
        }


def replicate(
    publisher: DemoNode, receiver: DemoNode, count: int, logs: NodeLogs, label: str
) -> Replication:
    """Start the publisher, then the receiver; time until the receiver holds ``count``."""
    nodes = [publisher, receiver]
    logs.mark()
    # Progress is read from the receiver's database (a committed head is a verified,
    # stored batch), not from its client API: see ApiProbe for why.
    replica = open_database(receiver.config.database_url)
    try:
        start(publisher)
        wait_until("the publisher answers", lambda: responds(publisher), nodes, logs)
        started = time.monotonic()
        start(receiver)
        with ApiProbe(receiver) as probe:
            done_at, first_at = _wait_replicated(replica, started, count, nodes, logs, label)
        assert receiver.process is not None
        rss = peak_rss_mb(receiver.process.pid)
    finally:
        replica.close()
        codes = stop(nodes)
        for node in nodes:
            node.process = None
    if any(codes):
        raise BenchmarkFailedError(
            f"nodes did not stop cleanly after replication (exit codes {codes}):\n{logs.describe()}"
        )
    return Replication(
        seconds=done_at - started,
        first_leaf_s=None if first_at is None else round(first_at - started, 3),
        peak_rss_mb=rss,
        url=receiver.config.database_url,
        api=probe.summary(),
    )


def _replica_state(replica: Database) -> tuple[int, Any, int]:
    """Verified size of the publisher's log, its sync status row, open split views."""
    with replica.read() as connection:
        size = connection.execute(
            select(log_heads.c.size).where(log_heads.c.origin == PUBLISHER)
        ).scalar()
        status = connection.execute(
            select(replica_status).where(replica_status.c.origin == PUBLISHER)
        ).one_or_none()
        views = _count(connection, split_views, split_views.c.resolved_at.is_(None))
    return int(size or 0), status, views


def _wait_replicated(
    replica: Database,
    started: float,
    count: int,
    nodes: Sequence[DemoNode],
    logs: NodeLogs,
    label: str,
) -> tuple[float, float | None]:
    size, grew_at, first_at = 0, started, None
    last_report = started
    while True:
        check_alive(nodes, logs, f"replication ({label})")
        stored, status, views = _replica_state(replica)
        now = time.monotonic()
        last_error = status.last_error if status is not None else None
        if views:
            raise BenchmarkFailedError(
                f"the receiver recorded {views} split view(s):\n{logs.describe()}"
            )
        if status is not None and status.blocked:
            raise BenchmarkFailedError(f"sync from {PUBLISHER} is blocked: {status.blocked_reason}")
        if stored > count:
            raise BenchmarkFailedError(f"the replica holds {stored} leaves; the log has {count}")
        if stored > size:
            size, grew_at = stored, now
            if first_at is None:
                first_at = now
        if size == count:
            return now, first_at
        if now - grew_at > STALL_TIMEOUT_S:
            raise BenchmarkFailedError(
                f"sync stalled: the replica stayed at {size:,} of {count:,} leaves for "
                f"{STALL_TIMEOUT_S:.0f}s (last sync error: {last_error or 'none'}):\n"
                f"{logs.describe()}"
            )
        if now - last_report >= PROGRESS_EVERY_S:
            last_report = now
            rate = size / (now - started)
            say(f"  replicated {size:,}/{count:,} ({rate:,.0f} entries/s so far)")
        time.sleep(SYNC_POLL_S)


def _count(connection: Any, table: Any, *conditions: Any) -> int:
    value = connection.execute(select(func.count()).select_from(table).where(*conditions)).scalar()
    return int(value or 0)


def head_of(url: str, origin: str) -> LogHead | None:
    database = open_database(url)
    try:
        return LogRepository(database).head(origin)
    finally:
        database.close()


def verify_replica(publisher_url: str, receiver_url: str, count: int) -> None:
    """The replica must be the publisher's log, whole: fail loudly otherwise."""
    published, replicated = head_of(publisher_url, PUBLISHER), head_of(receiver_url, PUBLISHER)
    if published is None or replicated is None:
        raise BenchmarkFailedError(
            f"no log head of {PUBLISHER} (publisher: {published is not None}, "
            f"receiver: {replicated is not None})"
        )
    if published.size != count or replicated.size != count:
        raise BenchmarkFailedError(
            f"log sizes: publisher {published.size}, receiver {replicated.size}, expected {count}"
        )
    if published.root != replicated.root:
        raise BenchmarkFailedError(
            f"the replica's root {replicated.root.hex()} is not the publisher's "
            f"{published.root.hex()} at size {count}"
        )
    database = open_database(receiver_url)
    try:
        with database.read() as connection:
            origin = log_leaves.c.origin == PUBLISHER
            found = {
                "log_leaves": _count(connection, log_leaves, origin),
                "log_leaves without body": _count(
                    connection, log_leaves, origin, log_leaves.c.body.is_(None)
                ),
                "log_blocks": _count(connection, log_blocks, log_blocks.c.origin == PUBLISHER),
                "list_entries": _count(
                    connection, list_entries, list_entries.c.origin == PUBLISHER
                ),
            }
    finally:
        database.close()
    expected = {
        "log_leaves": count,
        "log_leaves without body": 0,
        "log_blocks": count // LOG_BLOCK_LEAVES,
        "list_entries": count,
    }
    if found != expected:
        raise BenchmarkFailedError(f"the receiver stored {found}, expected {expected}")


# --- 2. the local limit: raw bulk insert of the same rows -------------------------------------


def _head_upsert(database: Database) -> Any:
    dialect = postgresql if database.dialect == "postgresql" else sqlite
    statement = dialect.insert(log_heads)
    return statement.on_conflict_do_update(
        index_elements=[log_heads.c.origin],
        set_={name: statement.excluded[name] for name in ("size", "root", "frontier")},
    )


def _read_batch(
    source: Database, begin: int, end: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    with source.read() as connection:
        leaves = [
            dict(row._mapping)
            for row in connection.execute(
                select(log_leaves)
                .where(log_leaves.c.origin == PUBLISHER)
                .where(log_leaves.c.idx >= begin, log_leaves.c.idx < end)
                .order_by(log_leaves.c.idx)
            )
        ]
        # The blocks of 256 leaves this batch completes, as the replicator stores them.
        blocks = [
            dict(row._mapping)
            for row in connection.execute(
                select(log_blocks)
                .where(log_blocks.c.origin == PUBLISHER)
                .where(
                    log_blocks.c.idx >= begin // LOG_BLOCK_LEAVES,
                    log_blocks.c.idx < end // LOG_BLOCK_LEAVES,
                )
                .order_by(log_blocks.c.idx)
            )
        ]
        ids = sorted({leaf["entry_id"] for leaf in leaves})
        entries: list[dict[str, Any]] = []
        for at in range(0, len(ids), IN_CHUNK):
            entries.extend(
                dict(row._mapping)
                for row in connection.execute(
                    select(list_entries).where(
                        list_entries.c.origin == PUBLISHER,
                        list_entries.c.entry_id.in_(ids[at : at + IN_CHUNK]),
                    )
                )
            )
    return leaves, blocks, entries


def raw_insert(source_url: str, target_url: str, count: int) -> RawInsert:
    """Insert the receiver's rows into a fresh database, 1,000 leaves per transaction."""
    source, target = open_database(source_url), open_database(target_url)
    try:
        head = LogRepository(source).head(PUBLISHER)
        if head is None:
            raise BenchmarkFailedError(f"the receiver holds no log of {PUBLISHER}")
        upsert = _head_upsert(target)
        started = last_report = time.monotonic()
        write_s = 0.0
        for begin in range(0, count, BATCH):
            end = min(begin + BATCH, count)
            leaves, blocks, entries = _read_batch(source, begin, end)
            if len(leaves) != end - begin or len(entries) != end - begin:
                raise BenchmarkFailedError(
                    f"reading back [{begin}, {end}) from the receiver gave {len(leaves)} "
                    f"leaves and {len(entries)} entries"
                )
            # The head a replica records with every batch (its root is the final one:
            # only the cost of the write matters here).
            head_row = {
                "origin": PUBLISHER,
                "size": end,
                "root": head.root,
                "frontier": head.frontier,
                "checkpoint": head.checkpoint,
                "updated_at": head.updated_at,
            }
            write_started = time.perf_counter()
            with target.transaction() as connection:
                connection.execute(insert(log_leaves), leaves)
                if blocks:
                    connection.execute(insert(log_blocks), blocks)
                connection.execute(insert(list_entries), entries)
                connection.execute(upsert, [head_row])
            write_s += time.perf_counter() - write_started
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY_S:
                last_report = now
                say(f"  inserted {end:,}/{count:,} ({end / write_s:,.0f} entries/s writing)")
        with target.read() as connection:
            stored = _count(connection, log_leaves, log_leaves.c.origin == PUBLISHER)
        if stored != count:
            raise BenchmarkFailedError(f"the raw insert stored {stored} of {count} leaves")
        return RawInsert(write_s=write_s, total_s=time.monotonic() - started)
    finally:
        source.close()
        target.close()


# --- 3. propagation -----------------------------------------------------------------------------


def _served_at(
    client: NodeClient, city: str, subject_id: str, decision_no: str, cancel: threading.Event
) -> float:
    """Poll one peer until it serves the entry; the monotonic time it first did."""
    deadline = time.monotonic() + PROPAGATION_TIMEOUT_S
    last_error = ""
    while not cancel.is_set():
        try:
            answer = client.subject_status(subject_id)
        except CreditNetError as exc:
            last_error = exc.message
        else:
            if any(
                e.origin == PUBLISHER and e.entry.decision_no == decision_no for e in answer.entries
            ):
                return time.monotonic()
        if time.monotonic() > deadline:
            raise BenchmarkFailedError(
                f"{city} did not serve a change of {PUBLISHER} within "
                f"{PROPAGATION_TIMEOUT_S:.0f}s (last error: {last_error or 'none'})"
            )
        time.sleep(PROPAGATION_POLL_S)
    raise BenchmarkFailedError(f"polling {city} was cancelled")


def measure_propagation(root: Path, changes: int) -> tuple[list[float], dict[str, int]]:
    """Latencies (ms) from submitting an add at Qingdao until all four peers serve it."""
    cities = [city.code for city in preset(FEDERATION).cities]
    say(f"propagation: forming a federation of {len(cities)} nodes ({', '.join(cities)})")
    nodes, _ = form(root, cities, PROPAGATION_THRESHOLD)
    logs = NodeLogs(nodes)
    logs.mark()
    publisher = next(n for n in nodes if n.member.city_code == PUBLISHER)
    peers = [n for n in nodes if n is not publisher]
    latencies: list[float] = []
    cancel = threading.Event()
    clients: list[NodeClient] = []
    try:
        for node in nodes:
            start(node)
        took = wait_until(
            "every node reaches every other", lambda: all_reachable(nodes, 1), nodes, logs
        )
        # Each node encrypts its private-matching table at start-up: not what is measured.
        took += wait_until(
            "the matching tables are built", lambda: matching_ready(nodes), nodes, logs
        )
        say(f"propagation: all {len(nodes)} nodes connected after {took:.1f}s")
        submitter = NodeClient(publisher.config, timeout_s=10.0)
        clients.append(submitter)
        watchers = [NodeClient(peer.config, timeout_s=5.0) for peer in peers]
        clients.extend(watchers)
        day = listed_on()
        with ThreadPoolExecutor(max_workers=len(peers)) as pool:
            try:
                for serial in range(changes):
                    entry = sample_entry(PUBLISHER, serial, listed_on=day)
                    change = lists_pb2.ListChange(add=entry_to_wire(entry))
                    submitted = time.monotonic()
                    polls: list[Future[float]] = [
                        pool.submit(
                            _served_at,
                            client,
                            peer.member.city_code,
                            entry.subject.id,
                            entry.decision_no,
                            cancel,
                        )
                        for client, peer in zip(watchers, peers, strict=True)
                    ]
                    answer = submitter.submit([change])
                    outcome = answer.results[0].outcome
                    if outcome != client_pb2.CHANGE_OUTCOME_APPLIED:
                        raise BenchmarkFailedError(
                            f"Qingdao did not apply change {serial}: "
                            f"{client_pb2.ChangeOutcome.Name(outcome)} {answer.results[0].reason}"
                        )
                    last = max(poll.result() for poll in polls)
                    latencies.append((last - submitted) * 1000)
            finally:
                cancel.set()
        warnings = logs.check("propagation")
    finally:
        for client in clients:
            client.close()
        codes = stop(nodes)
    if any(codes):
        raise BenchmarkFailedError(
            f"nodes did not stop cleanly after propagation (exit codes {codes}):\n{logs.describe()}"
        )
    return latencies, warnings


# --- the run ------------------------------------------------------------------------------------


def _prefix(database: str) -> str:
    return "" if database == "sqlite" else f"{database}_"


def _target(value: float, target: str, passed: bool) -> dict[str, Any]:
    return {"value": value, "target": target, "pass": passed}


def run(settings: Settings, root: Path, stack: contextlib.ExitStack) -> dict[str, Any]:
    watch = Stopwatch()
    figures: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    details: dict[str, Any] = {}
    server_url = ""
    if "postgresql" in settings.databases:
        with watch.phase("postgresql_server_start"):
            say("starting a throwaway PostgreSQL server")
            server_url, _ = stack.enter_context(postgres_server())

    with watch.phase("propagation"):
        latencies, warnings = measure_propagation(root / "five", settings.changes)
    figures["propagation_p50_ms"] = round(percentile(latencies, 50), 1)
    figures["propagation_p95_ms"] = round(percentile(latencies, 95), 1)
    figures["propagation_max_ms"] = round(max(latencies), 1)
    targets["propagation_p95_ms"] = _target(
        figures["propagation_p95_ms"],
        f"< {PROPAGATION_P95_TARGET_MS:.0f}",
        figures["propagation_p95_ms"] < PROPAGATION_P95_TARGET_MS,
    )
    details["propagation"] = {
        "changes": settings.changes,
        "latencies_ms": [round(v, 1) for v in latencies],
        "node_warnings": warnings,
    }
    say(
        f"propagation: {len(latencies)} changes, p50 {figures['propagation_p50_ms']} ms, "
        f"p95 {figures['propagation_p95_ms']} ms, max {figures['propagation_max_ms']} ms"
    )

    with watch.phase("setup_pair"):
        say(f"replication: creating the publisher {PUBLISHER} and the receiver {RECEIVER}")
        (publisher, receiver), manifest = form(root / "pair", [PUBLISHER, RECEIVER], 2)
    logs = NodeLogs([publisher, receiver])
    with watch.phase("populate"):
        say(f"replication: recording {settings.entries:,} entries in {PUBLISHER}'s log (untimed)")
        populate(publisher, settings.entries)
    say(f"replication: the publisher's log holds {settings.entries:,} entries")

    for database in settings.databases:
        prefix = _prefix(database)
        if database == "sqlite":
            receiver_url = f"sqlite:///{receiver.config.home / 'replica.db'}"
            raw_url = f"sqlite:///{root / 'raw-insert.db'}"
        else:
            receiver_url, raw_url = create_database(server_url), create_database(server_url)
        use_database(receiver, receiver_url, manifest)
        say(f"replication [{database}]: starting both nodes; the receiver's database is empty")
        with watch.phase(f"replication_{database}"):
            replication = replicate(publisher, receiver, settings.entries, logs, database)
        warnings = logs.check(f"replication ({database})")
        verify_replica(publisher.config.database_url, receiver_url, settings.entries)
        rate = replication.entries_per_s(settings.entries)
        say(
            f"replication [{database}]: {settings.entries:,} entries in "
            f"{replication.seconds:.1f}s = {rate:,.0f} entries/s; root and counts verified; "
            f"receiver peak RSS {replication.peak_rss_mb} MB"
        )
        api = replication.api
        say(
            f"replication [{database}]: meanwhile the receiver's client API answered "
            f"{api['answers']} status requests (median {api['p50_ms']} ms, slowest "
            f"{api['max_ms']} ms) and failed {api['failures']}"
        )
        say(f"raw insert [{database}]: the same rows into a fresh database")
        with watch.phase(f"raw_insert_{database}"):
            raw = raw_insert(receiver_url, raw_url, settings.entries)
        raw_rate = raw.entries_per_s(settings.entries)
        ratio = rate / raw_rate
        say(f"raw insert [{database}]: {raw_rate:,.0f} entries/s; ratio {ratio:.3f}")
        figures[f"{prefix}replication_entries_per_s"] = round(rate)
        figures[f"{prefix}raw_insert_entries_per_s"] = round(raw_rate)
        figures[f"{prefix}replication_ratio_to_raw_insert"] = round(ratio, 3)
        figures[f"{prefix}replication_peak_rss_mb"] = replication.peak_rss_mb
        targets[f"{prefix}replication_ratio_to_raw_insert"] = _target(
            round(ratio, 3), f">= {RATIO_TARGET}", ratio >= RATIO_TARGET
        )
        targets[f"{prefix}replication_peak_rss_mb"] = _target(
            replication.peak_rss_mb,
            f"< {RSS_TARGET_MB:.0f}",
            replication.peak_rss_mb < RSS_TARGET_MB,
        )
        details[f"replication_{database}"] = {
            "seconds": round(replication.seconds, 3),
            "receiver_start_to_first_batch_s": replication.first_leaf_s,
            "receiver_client_api_during_replication": replication.api,
            "raw_insert_write_s": round(raw.write_s, 3),
            "raw_insert_total_s_including_reads": round(raw.total_s, 3),
            "node_warnings": warnings,
        }
        if database == "postgresql":
            details["postgresql_version"] = _server_version(server_url)

    figures["entries"] = settings.entries
    figures["targets"] = targets
    return {"figures": figures, "details": details, "phases": watch.phases}


def _server_version(url: str) -> str:
    database = open_database(url)
    try:
        with database.read() as connection:
            return str(connection.execute(text("SHOW server_version")).scalar())
    finally:
        database.close()


def summary(figures: dict[str, Any]) -> str:
    return format_figures(
        f"sanction-list sync, {figures['entries']:,} entries", figures, skip=("entries",)
    )


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sync", description="Sanction-list sync benchmark."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_ENTRIES:,} entries, {QUICK_CHANGES} propagation samples, SQLite only "
        "unless --databases says otherwise (under a minute)",
    )
    parser.add_argument("--entries", type=int, help=f"log size (default {FULL_ENTRIES:,})")
    parser.add_argument("--changes", type=int, help=f"propagation samples (default {FULL_CHANGES})")
    parser.add_argument(
        "--databases",
        help="comma-separated receiver databases: sqlite,postgresql (default both; "
        "--quick: sqlite)",
    )
    parser.add_argument("--output", type=Path, help="results file (default bench/results/)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the node directories (for debugging)"
    )
    args = parser.parse_args(argv)
    entries = args.entries or (QUICK_ENTRIES if args.quick else FULL_ENTRIES)
    changes = args.changes or (QUICK_CHANGES if args.quick else FULL_CHANGES)
    if entries < 1 or changes < 1:
        parser.error("--entries and --changes must be positive")
    if args.databases:
        databases = tuple(d.strip() for d in args.databases.split(",") if d.strip())
    else:
        databases = ("sqlite",) if args.quick else DATABASES
    unknown = [d for d in databases if d not in DATABASES]
    if unknown or not databases or len(set(databases)) != len(databases):
        parser.error(f"--databases takes a comma-separated subset of {','.join(DATABASES)}")
    output = args.output or RESULTS_DIR / ("sync-quick.json" if args.quick else "sync.json")
    return Settings(entries, changes, databases, args.quick, output, args.keep)


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    interrupt_on_termination()
    # The node processes inherit this environment: a CREDIT_NODE_STORAGE_URL set for
    # something else would point every node at one database.
    for setting in SETTINGS:
        os.environ.pop(setting.env_name, None)
    started = time.monotonic()
    load_at_start = [round(v, 2) for v in os.getloadavg()]
    root = Path(tempfile.mkdtemp(prefix="credit-bench-sync-"))
    say(
        f"bench.sync: {settings.entries:,} entries, {settings.changes} propagation samples, "
        f"databases {', '.join(settings.databases)}; working in {root}"
    )
    try:
        with contextlib.ExitStack() as stack:
            result = run(settings, root, stack)
    except BenchmarkFailedError as exc:
        print(f"bench.sync: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except (CreditNetError, PostgresUnavailableError) as exc:
        message = exc.message if isinstance(exc, CreditNetError) else str(exc)
        print(f"bench.sync: FAILED: {message}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("bench.sync: interrupted; nodes stopped", file=sys.stderr, flush=True)
        return 130
    finally:
        if settings.keep:
            say(f"node directories kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    run_info = {
        **machine_info(),
        "load_average_at_start": load_at_start,
        "command": "python -m bench.sync " + " ".join(sys.argv[1:] if argv is None else argv),
        "entries": settings.entries,
        "quick": settings.quick,
        "databases": list(settings.databases),
        "durations_s": {**result["phases"], "total": round(time.monotonic() - started, 3)},
        **result["details"],
    }
    path = write_results(settings.output, result["figures"], run_info)
    print()
    print(summary(result["figures"]))
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
