"""Repositories for sanction-list logs: leaves, block hashes, heads, entry states, replicas.

Every city's list events form an append-only Merkle log (RFC 9162 leaves and nodes; see the
issue-3 design). This node stores its own log and a verified replica of every other
member's log in the same tables, keyed by ``origin`` (the owner's city code). Nothing here
checks hashes or signatures: the caller verifies a batch, then hands it to
:meth:`LogRepository.append`, which stores it all-or-nothing. The only rules enforced are
structural: a log grows only at its end, without gaps, and a batch carries exactly the
block hashes it completes.

Writes are SQLAlchemy Core ``executemany`` (one statement, many parameter sets): a replica
ingests a million leaves in batches of about a thousand, and per-row round trips would
make that take hours. Leaves are never deleted, and their envelopes and hashes never
rewritten; only the body of a leaf may be cleared, when a replica withdraws an entry its
origin no longer shares with it (see :meth:`LogRepository.append`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Connection, and_, case, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import Executable

from federation.errors import FailedPreconditionError
from node.storage.database import Database, PlannerStatistics, in_chunks
from node.storage.repositories import truncate
from node.storage.schema import (
    LOG_BLOCK_LEAVES,
    PEER_ERROR_MAX_CHARS,
    list_entries,
    log_blocks,
    log_heads,
    log_leaves,
    replica_status,
    split_views,
)

HASH_SIZE: Final = 32  # SHA-256


def _require_aware(name: str, value: dt.datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _check_range(start: int, end: int) -> None:
    if start < 0 or end < start:
        raise ValueError(f"invalid range [{start}, {end})")


# --- rows -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StoredLeaf:
    """One leaf of a city's list-event log, as stored."""

    origin: str
    idx: int
    entry_id: str
    event: str  # add | amend | remove | objection
    list_kind: str
    leaf_hash: bytes  # SHA-256(0x00 || envelope)
    envelope: bytes  # canonical envelope JSON: the leaf bytes
    body: bytes | None  # None when the origin does not (or no longer) share this kind with us


@dataclasses.dataclass(frozen=True, slots=True)
class LogHead:
    """How far a city's log is stored and verified here."""

    origin: str
    size: int
    root: bytes
    frontier: bytes  # concatenated hashes of the compact range [0, size)
    checkpoint: bytes | None  # the latest verified signed checkpoint covering ``size``
    updated_at: dt.datetime

    def __post_init__(self) -> None:
        _require_aware("updated_at", self.updated_at)


@dataclasses.dataclass(frozen=True, slots=True)
class EntryRow:
    """The current state of one list entry, derived from its events in the log."""

    origin: str
    entry_id: str
    list_kind: str
    subject_kind: str
    subject_id: str
    subject_name: str
    authority: str
    decision_no: str
    listed_on: dt.date
    publicity_end: dt.date
    removed_on: dt.date | None
    removal_reason: str | None
    objection_open: bool
    entry: str  # SanctionEntry JSON
    removal: str | None  # removal JSON
    objection: str | None  # latest objection JSON
    last_index: int  # log index of the latest event of this entry
    updated_at: dt.datetime

    def __post_init__(self) -> None:
        _require_aware("updated_at", self.updated_at)


@dataclasses.dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """Sync bookkeeping for one other city's log."""

    origin: str
    latest_seen_size: int | None
    latest_seen_checkpoint: bytes | None
    last_attempt: dt.datetime | None
    last_success: dt.datetime | None
    last_error: str | None
    consecutive_failures: int
    blocked: bool  # sync from this origin is stopped (e.g. after a split view)
    blocked_reason: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class SplitView:
    """Evidence that a city showed two histories that cannot both be true."""

    id: int
    origin: str
    detected_at: dt.datetime
    first_checkpoint: bytes
    second_checkpoint: bytes
    reason: str
    reported_by: str  # the city the second checkpoint came from
    resolved_at: dt.datetime | None


_LEAF_COLUMNS: Final = tuple(f.name for f in dataclasses.fields(StoredLeaf))
_ENTRY_COLUMNS: Final = tuple(f.name for f in dataclasses.fields(EntryRow))


def _leaf(row: Any) -> StoredLeaf:
    body = row.body
    return StoredLeaf(
        origin=row.origin,
        idx=row.idx,
        entry_id=row.entry_id,
        event=row.event,
        list_kind=row.list_kind,
        leaf_hash=bytes(row.leaf_hash),
        envelope=bytes(row.envelope),
        body=None if body is None else bytes(body),
    )


def _head(row: Any) -> LogHead:
    return LogHead(
        origin=row.origin,
        size=row.size,
        root=bytes(row.root),
        frontier=bytes(row.frontier),
        checkpoint=None if row.checkpoint is None else bytes(row.checkpoint),
        updated_at=row.updated_at,
    )


def _entry(row: Any) -> EntryRow:
    return EntryRow(**{name: row._mapping[name] for name in _ENTRY_COLUMNS})


# --- logs -------------------------------------------------------------------------------


class LogRepository:
    """Every city's list-event log as stored here: leaves, block hashes and heads."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # Replication fills these tables far faster than autovacuum re-analyses them.
        self._statistics = PlannerStatistics(db, (log_leaves, log_blocks, list_entries))
        entry_upsert = db.dialect_insert(list_entries)
        self._upsert_entries = entry_upsert.on_conflict_do_update(
            index_elements=[list_entries.c.origin, list_entries.c.entry_id],
            set_={
                name: entry_upsert.excluded[name]
                for name in _ENTRY_COLUMNS
                if name not in ("origin", "entry_id")
            },
        )
        head_upsert = db.dialect_insert(log_heads)
        self._upsert_head = head_upsert.on_conflict_do_update(
            index_elements=[log_heads.c.origin],
            set_={
                name: head_upsert.excluded[name]
                for name in ("size", "root", "frontier", "checkpoint", "updated_at")
            },
        )

    def head(self, origin: str) -> LogHead | None:
        with self._db.read() as connection:
            row = connection.execute(
                select(log_heads).where(log_heads.c.origin == origin)
            ).one_or_none()
        return None if row is None else _head(row)

    def heads(self) -> dict[str, LogHead]:
        with self._db.read() as connection:
            rows = connection.execute(select(log_heads).order_by(log_heads.c.origin)).all()
        return {row.origin: _head(row) for row in rows}

    def append(
        self,
        *,
        origin: str,
        expected_size: int,
        leaves: Sequence[StoredLeaf],
        blocks: Sequence[tuple[int, bytes]],
        head: LogHead,
        entries: Sequence[EntryRow],
        withdrawn: Sequence[str] = (),
    ) -> None:
        """Store a verified batch at the end of ``origin``'s log, all of it or nothing.

        Refused (:class:`FailedPreconditionError`) unless the stored size is
        ``expected_size`` (0 when nothing is stored), the leaves are exactly indexes
        ``expected_size .. expected_size + len(leaves) - 1``, ``head.size`` is the new size
        and ``blocks`` are exactly the blocks of 256 leaves this batch completes.

        The entries ``withdrawn`` lose their state and the bodies of the leaves stored
        before this batch (envelopes and hashes stay, so the tree still verifies); then
        entry states are upserted, and when one entry appears twice, the later row wins.
        """
        _check_batch(origin, expected_size, leaves, blocks, head, entries)
        # getattr rather than dataclasses.asdict: asdict deep-copies every value.
        leaf_rows = [{name: getattr(leaf, name) for name in _LEAF_COLUMNS} for leaf in leaves]
        block_rows = [{"origin": origin, "idx": idx, "hash": value} for idx, value in blocks]
        # One row per entry: no wasted writes, and safe should rows ever be sent as one
        # multi-row upsert (PostgreSQL refuses one that touches a row twice).
        latest = {entry.entry_id: entry for entry in entries}
        entry_rows = [
            {name: getattr(entry, name) for name in _ENTRY_COLUMNS} for entry in latest.values()
        ]
        head_row = dataclasses.asdict(head)
        try:
            with self._db.transaction() as connection:
                stored = _stored_size(connection, origin, lock=True)
                if stored != expected_size:
                    raise _size_mismatch(origin, expected_size, stored)
                # Before the batch is inserted: what is withdrawn is what was stored before.
                for chunk in in_chunks(list(dict.fromkeys(withdrawn))):
                    _withdraw(connection, origin, chunk)
                if leaf_rows:
                    connection.execute(insert(log_leaves), leaf_rows)
                if block_rows:
                    connection.execute(insert(log_blocks), block_rows)
                if entry_rows:
                    connection.execute(self._upsert_entries, entry_rows)
                connection.execute(self._upsert_head, [head_row])
        except IntegrityError:
            # On PostgreSQL two writers can both read the same size; the primary keys let
            # only one of them commit. Anything else is a malformed batch: re-raised as is.
            with self._db.read() as connection:
                stored = _stored_size(connection, origin, lock=False)
            if stored != expected_size:
                raise _size_mismatch(origin, expected_size, stored) from None
            raise
        self._statistics.added(len(leaf_rows))

    def set_checkpoint(self, origin: str, size: int, checkpoint: bytes) -> None:
        """Record the signed checkpoint covering the stored head (sizes must match)."""
        with self._db.transaction() as connection:
            result = connection.execute(
                update(log_heads)
                .where(log_heads.c.origin == origin, log_heads.c.size == size)
                .values(checkpoint=checkpoint)
            )
            if result.rowcount != 1:
                stored = _stored_size(connection, origin, lock=False)
                raise FailedPreconditionError(
                    f"the checkpoint of {origin} covers {size} leaves but {stored} are stored",
                    hint="store the leaves it covers first",
                )

    def leaves(self, origin: str, start: int, end: int) -> list[StoredLeaf]:
        """Stored leaves with index in ``[start, end)``, by index (fewer past the head)."""
        _check_range(start, end)
        with self._db.read() as connection:
            rows = connection.execute(
                select(*(log_leaves.c[name] for name in _LEAF_COLUMNS))
                .where(log_leaves.c.origin == origin, log_leaves.c.idx >= start)
                .where(log_leaves.c.idx < end)
                .order_by(log_leaves.c.idx)
            ).all()
        return [_leaf(row) for row in rows]

    def leaf_hashes(self, origin: str, start: int, end: int) -> list[bytes]:
        """Leaf hashes with index in ``[start, end)``, by index."""
        _check_range(start, end)
        with self._db.read() as connection:
            values = connection.execute(
                select(log_leaves.c.leaf_hash)
                .where(log_leaves.c.origin == origin, log_leaves.c.idx >= start)
                .where(log_leaves.c.idx < end)
                .order_by(log_leaves.c.idx)
            ).scalars()
            return [bytes(value) for value in values]

    def blocks(self, origin: str, start: int, end: int) -> list[bytes]:
        """Hashes of the complete blocks with index in ``[start, end)``, by index."""
        _check_range(start, end)
        with self._db.read() as connection:
            values = connection.execute(
                select(log_blocks.c.hash)
                .where(log_blocks.c.origin == origin, log_blocks.c.idx >= start)
                .where(log_blocks.c.idx < end)
                .order_by(log_blocks.c.idx)
            ).scalars()
            return [bytes(value) for value in values]

    def with_bodies(self, origin: str, entry_ids: Sequence[str]) -> set[str]:
        """The entries among ``entry_ids`` of which a leaf is stored with its body."""
        found: set[str] = set()
        with self._db.read() as connection:
            for chunk in in_chunks(list(dict.fromkeys(entry_ids))):
                found.update(
                    connection.execute(
                        select(log_leaves.c.entry_id)
                        .distinct()
                        .where(log_leaves.c.origin == origin, log_leaves.c.entry_id.in_(chunk))
                        .where(log_leaves.c.body.is_not(None))
                    ).scalars()
                )
        return found

    def entry_leaves(self, origin: str, entry_id: str) -> list[StoredLeaf]:
        """Every event of one entry (its history), in log order."""
        with self._db.read() as connection:
            rows = connection.execute(
                select(*(log_leaves.c[name] for name in _LEAF_COLUMNS))
                .where(log_leaves.c.origin == origin, log_leaves.c.entry_id == entry_id)
                .order_by(log_leaves.c.idx)
            ).all()
        return [_leaf(row) for row in rows]


def _check_batch(
    origin: str,
    expected_size: int,
    leaves: Sequence[StoredLeaf],
    blocks: Sequence[tuple[int, bytes]],
    head: LogHead,
    entries: Sequence[EntryRow],
) -> None:
    # Structural checks before the transaction: cheap in Python, and a refused batch
    # never reaches the database.
    if expected_size < 0:
        raise ValueError("expected_size must not be negative")
    new_size = expected_size + len(leaves)
    for position, leaf in enumerate(leaves, start=expected_size):
        if leaf.origin != origin or leaf.idx != position:
            raise FailedPreconditionError(
                f"leaf {leaf.origin}/{leaf.idx} is not the next leaf of {origin}'s log "
                f"(expected index {position})"
            )
        if len(leaf.leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf {leaf.idx} has a {len(leaf.leaf_hash)}-byte hash")
    expected_blocks = range(expected_size // LOG_BLOCK_LEAVES, new_size // LOG_BLOCK_LEAVES)
    if [idx for idx, _ in blocks] != list(expected_blocks):
        raise FailedPreconditionError(
            f"a batch growing {origin}'s log from {expected_size} to {new_size} leaves must "
            f"carry the hashes of blocks {list(expected_blocks)}, not "
            f"{[idx for idx, _ in blocks]}"
        )
    if any(len(value) != HASH_SIZE for _, value in blocks):
        raise ValueError("a block hash is not 32 bytes")
    if head.origin != origin or head.size != new_size:
        raise FailedPreconditionError(
            f"the new head ({head.origin}, size {head.size}) does not match {origin}'s log "
            f"after this batch (size {new_size})"
        )
    for entry in entries:
        if entry.origin != origin:
            raise FailedPreconditionError(
                f"entry {entry.origin}/{entry.entry_id} is not from {origin}'s log"
            )


def _withdraw(connection: Connection, origin: str, entry_ids: Sequence[str]) -> None:
    connection.execute(
        delete(list_entries).where(
            list_entries.c.origin == origin, list_entries.c.entry_id.in_(entry_ids)
        )
    )
    connection.execute(
        update(log_leaves)
        .where(log_leaves.c.origin == origin, log_leaves.c.entry_id.in_(entry_ids))
        .where(log_leaves.c.body.is_not(None))
        .values(body=None)
    )


def _stored_size(connection: Connection, origin: str, *, lock: bool) -> int:
    query = select(log_heads.c.size).where(log_heads.c.origin == origin)
    if lock:
        # PostgreSQL: a second writer waits here and then reads the new size; SQLite
        # ignores FOR UPDATE (its write transaction already holds the database lock).
        query = query.with_for_update()
    size: int | None = connection.execute(query).scalar_one_or_none()
    return 0 if size is None else size


def _size_mismatch(origin: str, expected: int, stored: int) -> FailedPreconditionError:
    return FailedPreconditionError(
        f"{origin}'s log holds {stored} leaves here, not {expected}",
        hint="another writer appended first; reload the head and resume from there",
    )


# --- entry states ------------------------------------------------------------------------


class EntryRepository:
    """The current state of every list entry (all origins), for queries and sweeps."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, origin: str, entry_id: str) -> EntryRow | None:
        with self._db.read() as connection:
            row = connection.execute(
                select(list_entries).where(
                    list_entries.c.origin == origin, list_entries.c.entry_id == entry_id
                )
            ).one_or_none()
        return None if row is None else _entry(row)

    def get_many(self, origin: str, entry_ids: Sequence[str]) -> dict[str, EntryRow]:
        """The stored ones among ``entry_ids`` (missing ids are simply absent)."""
        unique = list(dict.fromkeys(entry_ids))
        found: dict[str, EntryRow] = {}
        with self._db.read() as connection:
            for chunk in in_chunks(unique):
                rows = connection.execute(
                    select(list_entries).where(
                        list_entries.c.origin == origin, list_entries.c.entry_id.in_(chunk)
                    )
                )
                found.update((row.entry_id, _entry(row)) for row in rows)
        return found

    def by_subject(self, subject_id: str) -> list[EntryRow]:
        """Every entry about one subject, in any state, from every origin."""
        with self._db.read() as connection:
            rows = connection.execute(
                select(list_entries)
                .where(list_entries.c.subject_id == subject_id)
                .order_by(*_PAGE_KEY)
            ).all()
        return [_entry(row) for row in rows]

    def page(
        self,
        *,
        origin: str | None,
        list_kind: str | None,
        after: tuple[str, str, str] | None,
        limit: int,
    ) -> list[EntryRow]:
        """Up to ``limit`` entries in (origin, list_kind, entry_id) order, after ``after``.

        Keyset pagination: pass the key of the last row of a page to get the next one;
        rows written meanwhile never make a page skip or repeat what was already read.
        """
        if limit < 1:
            return []
        query = select(list_entries)
        if origin is not None:
            query = query.where(list_entries.c.origin == origin)
        if list_kind is not None:
            query = query.where(list_entries.c.list_kind == list_kind)
        if after is not None:
            query = query.where(tuple_(*_PAGE_KEY) > tuple_(*after))
        with self._db.read() as connection:
            rows = connection.execute(query.order_by(*_PAGE_KEY).limit(limit)).all()
        return [_entry(row) for row in rows]

    def not_removed(self, origin: str, publicity_end_before: dt.date) -> list[EntryRow]:
        """Entries of ``origin`` not removed whose publicity ended before the given date."""
        with self._db.read() as connection:
            rows = connection.execute(
                select(list_entries)
                .where(
                    list_entries.c.origin == origin,
                    list_entries.c.publicity_end < publicity_end_before,
                    list_entries.c.removed_on.is_(None),
                )
                .order_by(list_entries.c.publicity_end, list_entries.c.entry_id)
            ).all()
        return [_entry(row) for row in rows]

    def count(self, origin: str | None = None) -> int:
        query = select(func.count()).select_from(list_entries)
        if origin is not None:
            query = query.where(list_entries.c.origin == origin)
        with self._db.read() as connection:
            total: int = connection.execute(query).scalar_one()
        return total


_PAGE_KEY: Final = (list_entries.c.origin, list_entries.c.list_kind, list_entries.c.entry_id)


# --- replica sync status and split views --------------------------------------------------


class ReplicaRepository:
    """Per-origin sync bookkeeping, and the evidence of split views."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def status(self, origin: str) -> ReplicaStatus | None:
        with self._db.read() as connection:
            row = connection.execute(
                select(replica_status).where(replica_status.c.origin == origin)
            ).one_or_none()
        return None if row is None else _status(row)

    def all(self) -> dict[str, ReplicaStatus]:
        with self._db.read() as connection:
            rows = connection.execute(
                select(replica_status).order_by(replica_status.c.origin)
            ).all()
        return {row.origin: _status(row) for row in rows}

    def record_seen(self, origin: str, size: int, checkpoint: bytes) -> None:
        """Remember a verified checkpoint; the largest size seen is kept (ties: the newer)."""
        if size < 0:
            raise ValueError("a log size is never negative")
        statement = self._new_row(
            origin, {"latest_seen_size": size, "latest_seen_checkpoint": checkpoint}
        )
        stored = replica_status.c
        offered = statement.excluded
        larger = or_(
            stored.latest_seen_size.is_(None),
            offered.latest_seen_size >= stored.latest_seen_size,
        )
        self._execute(
            statement.on_conflict_do_update(
                index_elements=[stored.origin],
                set_={
                    "latest_seen_size": case(
                        (larger, offered.latest_seen_size), else_=stored.latest_seen_size
                    ),
                    "latest_seen_checkpoint": case(
                        (larger, offered.latest_seen_checkpoint),
                        else_=stored.latest_seen_checkpoint,
                    ),
                },
            )
        )

    def record_success(self, origin: str, at: dt.datetime) -> None:
        _require_aware("at", at)
        values = {
            "last_attempt": at,
            "last_success": at,
            "last_error": None,
            "consecutive_failures": 0,
        }
        self._upsert(origin, values, values)

    def record_failure(self, origin: str, at: dt.datetime, error: str) -> None:
        _require_aware("at", at)
        message = truncate(error, PEER_ERROR_MAX_CHARS)
        self._upsert(
            origin,
            {"last_attempt": at, "last_error": message, "consecutive_failures": 1},
            {
                "last_attempt": at,
                "last_error": message,
                "consecutive_failures": replica_status.c.consecutive_failures + 1,
            },
        )

    def block(self, origin: str, reason: str) -> None:
        """Stop syncing from ``origin`` until an operator unblocks it."""
        values = {"blocked": True, "blocked_reason": reason}
        self._upsert(origin, values, values)

    def unblock(self, origin: str) -> None:
        values = {"blocked": False, "blocked_reason": None}
        self._upsert(origin, values, values)

    def add_split_view(
        self,
        *,
        origin: str,
        detected_at: dt.datetime,
        first_checkpoint: bytes,
        second_checkpoint: bytes,
        reason: str,
        reported_by: str,
    ) -> int:
        """Keep the evidence of a split view; returns its id."""
        _require_aware("detected_at", detected_at)
        with self._db.transaction() as connection:
            result = connection.execute(
                insert(split_views).values(
                    origin=origin,
                    detected_at=detected_at,
                    first_checkpoint=first_checkpoint,
                    second_checkpoint=second_checkpoint,
                    reason=reason,
                    reported_by=reported_by,
                    resolved_at=None,
                )
            )
            key = result.inserted_primary_key
        if key is None:  # pragma: no cover - both engines report the new row id
            raise RuntimeError("the database did not report the new split view's id")
        split_id: int = key[0]
        return split_id

    def split_views(
        self, origin: str | None = None, include_resolved: bool = False
    ) -> list[SplitView]:
        """Recorded split views, oldest first (unresolved only unless asked)."""
        query = select(split_views).order_by(split_views.c.id)
        if origin is not None:
            query = query.where(split_views.c.origin == origin)
        if not include_resolved:
            query = query.where(split_views.c.resolved_at.is_(None))
        with self._db.read() as connection:
            rows = connection.execute(query).all()
        return [
            SplitView(
                id=row.id,
                origin=row.origin,
                detected_at=row.detected_at,
                first_checkpoint=bytes(row.first_checkpoint),
                second_checkpoint=bytes(row.second_checkpoint),
                reason=row.reason,
                reported_by=row.reported_by,
                resolved_at=row.resolved_at,
            )
            for row in rows
        ]

    def resolve_split_views(self, origin: str, at: dt.datetime) -> int:
        """Mark every open split view of ``origin`` resolved; returns how many."""
        _require_aware("at", at)
        with self._db.transaction() as connection:
            result = connection.execute(
                update(split_views)
                .where(and_(split_views.c.origin == origin, split_views.c.resolved_at.is_(None)))
                .values(resolved_at=at)
            )
            count: int = result.rowcount
        return count

    def _upsert(
        self, origin: str, insert_values: dict[str, Any], update_values: dict[str, Any]
    ) -> None:
        statement = self._new_row(origin, insert_values).on_conflict_do_update(
            index_elements=[replica_status.c.origin], set_=update_values
        )
        self._execute(statement)

    def _new_row(self, origin: str, values: dict[str, Any]) -> postgresql.Insert | sqlite.Insert:
        # A new row starts from neutral values; only the named columns change on conflict.
        row = {
            "origin": origin,
            "latest_seen_size": None,
            "latest_seen_checkpoint": None,
            "last_attempt": None,
            "last_success": None,
            "last_error": None,
            "consecutive_failures": 0,
            "blocked": False,
            "blocked_reason": None,
            **values,
        }
        return self._db.dialect_insert(replica_status).values(**row)

    def _execute(self, statement: Executable) -> None:
        with self._db.transaction() as connection:
            connection.execute(statement)


def _status(row: Any) -> ReplicaStatus:
    checkpoint = row.latest_seen_checkpoint
    return ReplicaStatus(
        origin=row.origin,
        latest_seen_size=row.latest_seen_size,
        latest_seen_checkpoint=None if checkpoint is None else bytes(checkpoint),
        last_attempt=row.last_attempt,
        last_success=row.last_success,
        last_error=row.last_error,
        consecutive_failures=row.consecutive_failures,
        blocked=row.blocked,
        blocked_reason=row.blocked_reason,
    )


__all__ = [
    "HASH_SIZE",
    "EntryRepository",
    "EntryRow",
    "LogHead",
    "LogRepository",
    "ReplicaRepository",
    "ReplicaStatus",
    "SplitView",
    "StoredLeaf",
]
