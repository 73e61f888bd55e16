"""Sanction-list log storage (:mod:`node.storage.lists`) on SQLite and a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from federation.errors import FailedPreconditionError
from node.storage import Database, open_database
from node.storage.lists import (
    EntryRepository,
    EntryRow,
    LogHead,
    LogRepository,
    ReplicaRepository,
    StoredLeaf,
)
from node.storage.schema import (
    LOG_BLOCK_LEAVES,
    PEER_ERROR_MAX_CHARS,
    list_entries,
    log_blocks,
    log_heads,
    log_leaves,
)
from tests.node.migrating import migrate

QINGDAO, YANTAI, WEIHAI = "370200", "370600", "371000"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 12, 2, 14, 30, 15, 123456, tzinfo=SHANGHAI)
KINDS = ("serious-dishonesty", "joint-punishment", "watch-list")


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.close()


# --- builders ---------------------------------------------------------------------------


def entry_id(origin: str, n: int) -> str:
    return hashlib.sha256(f"{origin}/{n}".encode()).hexdigest()[:32]


def leaf(origin: str, idx: int, n: int, *, event: str = "add", hidden: bool = False) -> StoredLeaf:
    """Leaf ``idx`` of ``origin``'s log, an event of entry number ``n``."""
    envelope = f'{{"origin":"{origin}","index":{idx},"entry":{n},"event":"{event}"}}'.encode()
    return StoredLeaf(
        origin=origin,
        idx=idx,
        entry_id=entry_id(origin, n),
        event=event,
        list_kind=KINDS[n % len(KINDS)],
        leaf_hash=hashlib.sha256(b"\x00" + envelope).digest(),
        envelope=envelope,
        body=None if hidden else b'{"salt":"c2FsdA==","n":%d}' % n,
    )


def entry(origin: str, n: int, *, last_index: int, **changes: Any) -> EntryRow:
    row = EntryRow(
        origin=origin,
        entry_id=entry_id(origin, n),
        list_kind=KINDS[n % len(KINDS)],
        subject_kind="uscc",
        subject_id=f"91370200MA{n % 7:08d}",  # seven subjects, several entries each
        subject_name="青岛某某贸易有限公司",
        authority="青岛市市场监督管理局",
        decision_no=f"青市监罚〔2026〕{n}号",
        listed_on=dt.date(2026, 1, 1) + dt.timedelta(days=n % 30),
        publicity_end=dt.date(2027, 1, 1) + dt.timedelta(days=n % 30),
        removed_on=None,
        removal_reason=None,
        objection_open=False,
        entry=f'{{"n":{n}}}',
        removal=None,
        objection=None,
        last_index=last_index,
        updated_at=T0,
    )
    return dataclasses.replace(row, **changes)


def block_hash(origin: str, idx: int) -> bytes:
    return hashlib.sha256(f"block {origin}/{idx}".encode()).digest()


def head(origin: str, size: int) -> LogHead:
    return LogHead(
        origin=origin,
        size=size,
        root=hashlib.sha256(f"root {origin}/{size}".encode()).digest(),
        frontier=hashlib.sha256(f"frontier {size}".encode()).digest() * (size.bit_count()),
        checkpoint=None,
        updated_at=T0 + dt.timedelta(seconds=size),
    )


def blocks_completed(origin: str, start: int, end: int) -> list[tuple[int, bytes]]:
    return [
        (b, block_hash(origin, b))
        for b in range(start // LOG_BLOCK_LEAVES, end // LOG_BLOCK_LEAVES)
    ]


def batch(origin: str, start: int, end: int, *, hidden: bool = False) -> dict[str, Any]:
    """Arguments of ``append`` for leaves [start, end), each adding entry number = its index."""
    return {
        "origin": origin,
        "expected_size": start,
        "leaves": [leaf(origin, i, i, hidden=hidden) for i in range(start, end)],
        "blocks": blocks_completed(origin, start, end),
        "head": head(origin, end),
        "entries": [entry(origin, i, last_index=i) for i in range(start, end)],
    }


def append_new_entries(
    logs: LogRepository, origin: str, start: int, end: int, *, hidden: bool = False
) -> None:
    logs.append(**batch(origin, start, end, hidden=hidden))


def snapshot(db: Database) -> tuple[Any, ...]:
    """Everything an append may write, to show that a refused one wrote nothing."""
    with db.read() as connection:
        counts = tuple(
            connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (log_leaves, log_blocks, list_entries)
        )
        heads = connection.execute(select(log_heads).order_by(log_heads.c.origin)).all()
        entries = connection.execute(
            select(list_entries).order_by(list_entries.c.origin, list_entries.c.entry_id)
        ).all()
    return counts, [tuple(row) for row in heads], [tuple(row) for row in entries]


# --- schema -------------------------------------------------------------------------------


def test_migration_creates_the_tables_and_downgrades_cleanly(db: Database) -> None:
    lists_tables = {
        "log_leaves",
        "log_blocks",
        "log_heads",
        "list_entries",
        "replica_status",
        "split_views",
    }
    assert lists_tables <= set(inspect(db.engine).get_table_names())
    migrate(db, "downgrade", "0001")
    assert not lists_tables & set(inspect(db.engine).get_table_names())
    assert db.schema_revision() == "0001"
    migrate(db, "upgrade", "head")
    assert lists_tables <= set(inspect(db.engine).get_table_names())


# --- appending and reading the log -------------------------------------------------------


def test_a_log_filled_in_bulk_has_current_planner_statistics(db: Database) -> None:
    # PostgreSQL: analysed once 1,000 leaves are in (autovacuum would wait much longer,
    # with the planner taking the tables for empty meanwhile); SQLite: nothing to do.
    logs = LogRepository(db)
    for start in (0, 400, 800):
        append_new_entries(logs, QINGDAO, start, start + 400)
    with db.read() as connection:
        if db.dialect == "postgresql":
            estimates = connection.execute(
                text(
                    "SELECT relname, reltuples FROM pg_class WHERE relname IN "
                    "('log_leaves', 'log_blocks', 'list_entries')"
                )
            ).all()
            assert dict(estimates) == {"log_leaves": 1200, "list_entries": 1200, "log_blocks": 4}
        else:
            assert not connection.execute(
                text("SELECT name FROM sqlite_master WHERE name LIKE 'sqlite_stat%'")
            ).all()


def test_append_and_read_back(db: Database) -> None:
    logs = LogRepository(db)
    assert logs.head(QINGDAO) is None
    assert logs.heads() == {}
    # Batches that cross block boundaries (256, 512) and one that ends exactly on one.
    for start, end in [(0, 100), (100, 300), (300, 512), (512, 600)]:
        append_new_entries(logs, QINGDAO, start, end)
    append_new_entries(logs, YANTAI, 0, 3, hidden=True)

    assert logs.leaves(QINGDAO, 0, 600) == [leaf(QINGDAO, i, i) for i in range(600)]
    assert logs.leaves(QINGDAO, 250, 260) == [leaf(QINGDAO, i, i) for i in range(250, 260)]
    assert logs.leaves(QINGDAO, 595, 1000) == [leaf(QINGDAO, i, i) for i in range(595, 600)]
    assert logs.leaves(QINGDAO, 7, 7) == []
    assert logs.leaf_hashes(QINGDAO, 10, 13) == [
        leaf(QINGDAO, i, i).leaf_hash for i in (10, 11, 12)
    ]
    assert logs.blocks(QINGDAO, 0, 10) == [block_hash(QINGDAO, 0), block_hash(QINGDAO, 1)]
    assert logs.blocks(QINGDAO, 1, 2) == [block_hash(QINGDAO, 1)]
    assert logs.blocks(YANTAI, 0, 10) == []

    hidden = logs.leaves(YANTAI, 0, 3)
    assert [item.body for item in hidden] == [None, None, None]
    assert hidden == [leaf(YANTAI, i, i, hidden=True) for i in range(3)]

    assert logs.head(QINGDAO) == head(QINGDAO, 600)
    assert logs.heads() == {QINGDAO: head(QINGDAO, 600), YANTAI: head(YANTAI, 3)}
    assert EntryRepository(db).count() == 603
    assert EntryRepository(db).count(YANTAI) == 3


def test_entry_history_and_upsert(db: Database) -> None:
    logs = LogRepository(db)
    entries = EntryRepository(db)
    append_new_entries(logs, QINGDAO, 0, 3)
    amended = entry(QINGDAO, 1, last_index=3, entry='{"n":1,"amended":true}', objection_open=True)
    removed = entry(
        QINGDAO,
        1,
        last_index=4,
        entry='{"n":1,"amended":true}',
        removed_on=dt.date(2026, 12, 1),
        removal_reason="repair",
        removal='{"reason":"repair"}',
        objection='{"open":false}',
        updated_at=T0 + dt.timedelta(days=1),
    )
    logs.append(
        origin=QINGDAO,
        expected_size=3,
        leaves=[leaf(QINGDAO, 3, 1, event="amend"), leaf(QINGDAO, 4, 1, event="remove")],
        blocks=[],
        head=head(QINGDAO, 5),
        # Two states of one entry in one batch: the later one wins.
        entries=[amended, removed],
    )
    assert entries.get(QINGDAO, entry_id(QINGDAO, 1)) == removed
    assert entries.get(QINGDAO, entry_id(QINGDAO, 0)) == entry(QINGDAO, 0, last_index=0)
    assert entries.get(YANTAI, entry_id(QINGDAO, 1)) is None
    assert entries.count() == 3
    history = logs.entry_leaves(QINGDAO, entry_id(QINGDAO, 1))
    assert [(item.idx, item.event) for item in history] == [(1, "add"), (3, "amend"), (4, "remove")]
    assert logs.entry_leaves(QINGDAO, "0" * 32) == []


def test_a_withdrawn_entry_loses_its_state_and_bodies_not_its_leaves(db: Database) -> None:
    logs = LogRepository(db)
    entries = EntryRepository(db)
    append_new_entries(logs, QINGDAO, 0, 3)
    ids = [entry_id(QINGDAO, n) for n in range(3)]
    assert logs.with_bodies(QINGDAO, [*ids, "0" * 32]) == set(ids)
    hashes = logs.leaf_hashes(QINGDAO, 0, 3)

    withheld_removal = leaf(QINGDAO, 3, 1, event="remove", hidden=True)
    amended = entry(QINGDAO, 2, last_index=4, entry='{"n":2,"amended":true}')
    logs.append(
        origin=QINGDAO,
        expected_size=3,
        leaves=[withheld_removal, leaf(QINGDAO, 4, 2, event="amend")],
        blocks=[],
        head=head(QINGDAO, 5),
        entries=[amended],
        withdrawn=[ids[1]],
    )

    assert entries.get(QINGDAO, ids[1]) is None
    assert entries.get_many(QINGDAO, ids) == {
        ids[0]: entry(QINGDAO, 0, last_index=0),
        ids[2]: amended,
    }
    assert logs.entry_leaves(QINGDAO, ids[1]) == [
        dataclasses.replace(leaf(QINGDAO, 1, 1), body=None),
        withheld_removal,
    ]
    assert logs.leaves(QINGDAO, 0, 1) == [leaf(QINGDAO, 0, 0)]
    assert logs.leaf_hashes(QINGDAO, 0, 3) == hashes
    assert logs.with_bodies(QINGDAO, ids) == {ids[0], ids[2]}


def test_a_batch_that_fails_in_the_database_withdraws_nothing(db: Database) -> None:
    logs = LogRepository(db)
    append_new_entries(logs, QINGDAO, 0, 3)
    before = snapshot(db)
    # The entries' upsert, after the withdrawal, hits a NOT NULL column.
    broken = dataclasses.replace(entry(QINGDAO, 3, last_index=3), subject_name=cast(str, None))
    with pytest.raises(IntegrityError, match=r"(?i)not null|null value"):
        logs.append(
            **{**batch(QINGDAO, 3, 4), "entries": [broken]}, withdrawn=[entry_id(QINGDAO, 1)]
        )
    assert snapshot(db) == before
    assert logs.leaves(QINGDAO, 0, 3) == [leaf(QINGDAO, i, i) for i in range(3)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: batch(QINGDAO, 99, 299), "holds 100 leaves here, not 99"),
        (lambda b: batch(QINGDAO, 101, 301), "holds 100 leaves here, not 101"),
        (
            lambda b: {**b, "leaves": [*b["leaves"][:2], *b["leaves"][3:]]},
            "expected index 102",
        ),
        (
            lambda b: {**b, "leaves": [b["leaves"][0], b["leaves"][0], *b["leaves"][2:]]},
            "expected index 101",
        ),
        (
            lambda b: {**b, "leaves": [dataclasses.replace(b["leaves"][0], origin=YANTAI)]},
            "not the next leaf",
        ),
        (lambda b: {**b, "blocks": []}, "must carry the hashes of blocks [0]"),
        (lambda b: {**b, "blocks": [*b["blocks"], (1, b"\x01" * 32)]}, "not [0, 1]"),
        (lambda b: {**b, "head": head(QINGDAO, 299)}, "does not match"),
        (lambda b: {**b, "head": head(YANTAI, 300)}, "does not match"),
        (
            lambda b: {**b, "entries": [entry(YANTAI, 100, last_index=100)]},
            "not from 370200's log",
        ),
    ],
    ids=[
        "stale-size",
        "future-size",
        "gap",
        "duplicate-idx",
        "foreign-leaf",
        "missing-block",
        "extra-block",
        "wrong-head-size",
        "wrong-head-origin",
        "foreign-entry",
    ],
)
def test_append_refuses_a_batch_that_does_not_fit(db: Database, change: Any, message: str) -> None:
    logs = LogRepository(db)
    append_new_entries(logs, QINGDAO, 0, 100)
    before = snapshot(db)
    fitting = batch(QINGDAO, 100, 300)
    with pytest.raises(FailedPreconditionError, match=re.escape(message)):
        logs.append(**change(fitting))
    assert snapshot(db) == before
    logs.append(**fitting)  # the unchanged batch still fits
    assert logs.head(QINGDAO) == head(QINGDAO, 300)


def test_first_append_must_start_at_zero(db: Database) -> None:
    logs = LogRepository(db)
    with pytest.raises(FailedPreconditionError, match="holds 0 leaves here, not 5"):
        append_new_entries(logs, QINGDAO, 5, 10)
    assert snapshot(db) == ((0, 0, 0), [], [])


def test_a_database_failure_mid_batch_writes_nothing(db: Database) -> None:
    logs = LogRepository(db)
    append_new_entries(logs, QINGDAO, 0, 100)
    before = snapshot(db)
    # Fails in the database after the leaves and blocks went in: the entries' upsert hits
    # a NOT NULL column. The transaction must take the leaves back out.
    broken = dataclasses.replace(entry(QINGDAO, 250, last_index=250), subject_name=cast(str, None))
    with pytest.raises(IntegrityError, match=r"(?i)not null|null value"):
        logs.append(
            origin=QINGDAO,
            expected_size=100,
            leaves=[leaf(QINGDAO, i, i) for i in range(100, 300)],
            blocks=blocks_completed(QINGDAO, 100, 300),
            head=head(QINGDAO, 300),
            entries=[*(entry(QINGDAO, i, last_index=i) for i in range(100, 250)), broken],
        )
    assert snapshot(db) == before


def test_a_duplicate_leaf_in_the_database_fails_the_whole_batch(db: Database) -> None:
    logs = LogRepository(db)
    append_new_entries(logs, QINGDAO, 0, 100)
    # A stray row at index 150 (only raw SQL can make one): the leaves' executemany fails
    # on its primary key halfway through the batch.
    with db.transaction() as connection:
        connection.execute(insert(log_leaves), [dataclasses.asdict(leaf(QINGDAO, 150, 9))])
    before = snapshot(db)
    with pytest.raises(IntegrityError, match=r"(?i)unique|duplicate"):
        append_new_entries(logs, QINGDAO, 100, 300)
    assert snapshot(db) == before


@pytest.mark.parametrize("existing", [0, 100], ids=["first-batch", "later-batch"])
def test_concurrent_appenders_cannot_both_win(database_url: str, existing: int) -> None:
    databases = [open_database(database_url) for _ in range(3)]
    if existing:
        append_new_entries(LogRepository(databases[0]), QINGDAO, 0, existing)
    barrier = threading.Barrier(len(databases))
    outcomes: list[str] = []

    def append(database: Database) -> None:
        barrier.wait()
        try:
            append_new_entries(LogRepository(database), QINGDAO, existing, existing + 300)
            outcomes.append("stored")
        except FailedPreconditionError:
            outcomes.append("refused")

    threads = [threading.Thread(target=append, args=(d,)) for d in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        assert sorted(outcomes) == ["refused", "refused", "stored"]
        logs = LogRepository(databases[0])
        assert logs.head(QINGDAO) == head(QINGDAO, existing + 300)
        assert len(logs.leaf_hashes(QINGDAO, 0, 10_000)) == existing + 300
    finally:
        for database in databases:
            database.close()


def test_set_checkpoint_only_for_the_stored_size(db: Database) -> None:
    logs = LogRepository(db)
    with pytest.raises(FailedPreconditionError, match="covers 0 leaves but 0 are stored"):
        logs.set_checkpoint(QINGDAO, 0, b"signed")
    append_new_entries(logs, QINGDAO, 0, 10)
    with pytest.raises(FailedPreconditionError, match="covers 11 leaves but 10 are stored"):
        logs.set_checkpoint(QINGDAO, 11, b"signed")
    logs.set_checkpoint(QINGDAO, 10, b"signed checkpoint 10")
    stored = logs.head(QINGDAO)
    assert stored == dataclasses.replace(head(QINGDAO, 10), checkpoint=b"signed checkpoint 10")
    # The next append brings its own head (a checkpoint for the new size, or none).
    append_new_entries(logs, QINGDAO, 10, 12)
    assert logs.head(QINGDAO) == head(QINGDAO, 12)


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (5, 4)])
def test_reads_refuse_a_bad_range(db: Database, start: int, end: int) -> None:
    logs = LogRepository(db)
    for read in (logs.leaves, logs.leaf_hashes, logs.blocks):
        with pytest.raises(ValueError, match="invalid range"):
            read(QINGDAO, start, end)


# --- entry states --------------------------------------------------------------------------


def test_get_many_by_subject_and_expiry_sweep(db: Database) -> None:
    logs = LogRepository(db)
    entries = EntryRepository(db)
    append_new_entries(logs, QINGDAO, 0, 700)
    append_new_entries(logs, YANTAI, 0, 10)

    wanted = [entry_id(QINGDAO, n) for n in range(0, 700, 1)] + ["f" * 32, entry_id(YANTAI, 1)]
    found = entries.get_many(QINGDAO, wanted)  # more ids than one IN chunk
    assert set(found) == {entry_id(QINGDAO, n) for n in range(700)}
    assert found[entry_id(QINGDAO, 5)] == entry(QINGDAO, 5, last_index=5)
    assert entries.get_many(QINGDAO, []) == {}

    subject = entry(QINGDAO, 3, last_index=0).subject_id
    by_subject = entries.by_subject(subject)
    expected = [
        entry(o, n, last_index=n)
        for o, size in ((QINGDAO, 700), (YANTAI, 10))
        for n in range(size)
        if n % 7 == 3
    ]
    key = lambda row: (row.origin, row.list_kind, row.entry_id)  # noqa: E731
    assert by_subject == sorted(expected, key=key)
    assert entries.by_subject("91000000000000000X") == []

    # publicity_end is 2027-01-01 + (n % 30) days; remove one entry that would qualify.
    logs.append(
        origin=YANTAI,
        expected_size=10,
        leaves=[leaf(YANTAI, 10, 0, event="remove")],
        blocks=[],
        head=head(YANTAI, 11),
        entries=[entry(YANTAI, 0, last_index=10, removed_on=T0.date(), removal_reason="expiry")],
    )
    due = entries.not_removed(YANTAI, dt.date(2027, 1, 3))
    assert [row.entry_id for row in due] == [entry_id(YANTAI, 1)]  # ends 01-02; 0 removed
    assert entries.not_removed(YANTAI, dt.date(2027, 1, 1)) == []
    assert len(entries.not_removed(YANTAI, dt.date(2028, 1, 1))) == 9
    due_qingdao = entries.not_removed(QINGDAO, dt.date(2027, 1, 2))
    assert {row.publicity_end for row in due_qingdao} == {dt.date(2027, 1, 1)}
    assert len(due_qingdao) == len(range(0, 700, 30))


@pytest.fixture
def paged(db: Database) -> tuple[EntryRepository, list[EntryRow]]:
    logs = LogRepository(db)
    for origin, size in ((QINGDAO, 90), (YANTAI, 40), (WEIHAI, 1)):
        append_new_entries(logs, origin, 0, size)
    repository = EntryRepository(db)
    every = repository.page(origin=None, list_kind=None, after=None, limit=1000)
    return repository, every


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=20),
    origin=st.sampled_from([None, QINGDAO, YANTAI, WEIHAI, "999999"]),
    kind=st.sampled_from([None, *KINDS]),
)
def test_pagination_covers_every_row_once(
    paged: tuple[EntryRepository, list[EntryRow]],
    sizes: list[int],
    origin: str | None,
    kind: str | None,
) -> None:
    repository, every = paged
    expected = [
        row
        for row in every
        if (origin is None or row.origin == origin) and (kind is None or row.list_kind == kind)
    ]
    seen: list[EntryRow] = []
    after: tuple[str, str, str] | None = None
    for turn in range(1000):
        limit = sizes[turn % len(sizes)]
        page = repository.page(origin=origin, list_kind=kind, after=after, limit=limit)
        assert len(page) <= limit
        if not page:
            break
        seen.extend(page)
        after = (page[-1].origin, page[-1].list_kind, page[-1].entry_id)
    assert seen == expected


def test_page_order_and_limits(paged: tuple[EntryRepository, list[EntryRow]]) -> None:
    repository, every = paged
    assert len(every) == 131 == repository.count()
    keys = [(row.origin, row.list_kind, row.entry_id) for row in every]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert repository.page(origin=None, list_kind=None, after=None, limit=0) == []
    assert repository.page(origin=None, list_kind=None, after=keys[-1], limit=5) == []


def test_dates_and_datetimes_round_trip(db: Database) -> None:
    logs = LogRepository(db)
    row = entry(
        QINGDAO,
        0,
        last_index=0,
        listed_on=dt.date(1999, 12, 31),
        publicity_end=dt.date(2100, 2, 28),
        removed_on=dt.date(2000, 2, 29),
        updated_at=dt.datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=SHANGHAI),
    )
    logs.append(
        origin=QINGDAO,
        expected_size=0,
        leaves=[leaf(QINGDAO, 0, 0)],
        blocks=[],
        head=dataclasses.replace(head(QINGDAO, 1), updated_at=row.updated_at),
        entries=[row],
    )
    stored = EntryRepository(db).get(QINGDAO, row.entry_id)
    assert stored == row
    assert stored is not None and stored.updated_at.tzinfo is dt.UTC
    assert stored.updated_at.year == 2025  # 08:00 on New Year's Day in Shanghai
    assert type(stored.listed_on) is dt.date and stored.objection_open is False
    stored_head = logs.head(QINGDAO)
    assert stored_head is not None and stored_head.updated_at == row.updated_at
    assert stored_head.updated_at.tzinfo is dt.UTC


@pytest.mark.parametrize(
    "make",
    [
        lambda: dataclasses.replace(head(QINGDAO, 1), updated_at=dt.datetime(2026, 1, 1)),
        lambda: entry(QINGDAO, 0, last_index=0, updated_at=dt.datetime(2026, 1, 1)),
    ],
    ids=["head", "entry"],
)
def test_naive_datetimes_are_refused(make: Any) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make()


# --- replica status and split views --------------------------------------------------------


def test_replica_status_upserts(db: Database) -> None:
    replicas = ReplicaRepository(db)
    assert replicas.status(YANTAI) is None
    assert replicas.all() == {}
    t = [T0 + dt.timedelta(minutes=i) for i in range(5)]

    replicas.record_seen(YANTAI, 10, b"cp10")
    fresh = replicas.status(YANTAI)
    assert fresh is not None
    assert (fresh.latest_seen_size, fresh.latest_seen_checkpoint) == (10, b"cp10")
    assert (fresh.last_attempt, fresh.last_success, fresh.last_error) == (None, None, None)
    assert (fresh.consecutive_failures, fresh.blocked, fresh.blocked_reason) == (0, False, None)

    replicas.record_seen(YANTAI, 7, b"cp7")  # older: ignored
    replicas.record_seen(YANTAI, 12, b"cp12")
    replicas.record_seen(YANTAI, 12, b"cp12-later")  # same size, newer document kept
    replicas.record_seen(YANTAI, 11, b"cp11")

    replicas.record_failure(WEIHAI, t[0], "connection refused")
    replicas.record_success(YANTAI, t[0])
    replicas.record_failure(YANTAI, t[1], "deadline exceeded")
    replicas.record_failure(YANTAI, t[2], "x" * 2000)

    statuses = replicas.all()
    assert list(statuses) == [YANTAI, WEIHAI]
    yantai = statuses[YANTAI]
    assert (yantai.latest_seen_size, yantai.latest_seen_checkpoint) == (12, b"cp12-later")
    assert (yantai.last_attempt, yantai.last_success) == (t[2], t[0])
    assert yantai.consecutive_failures == 2
    assert yantai.last_error is not None and len(yantai.last_error) == PEER_ERROR_MAX_CHARS
    weihai = statuses[WEIHAI]
    assert (weihai.last_attempt, weihai.last_success, weihai.latest_seen_size) == (t[0], None, None)
    assert (weihai.consecutive_failures, weihai.last_error) == (1, "connection refused")

    replicas.record_success(YANTAI, t[3])
    yantai = replicas.all()[YANTAI]
    assert (yantai.last_success, yantai.consecutive_failures, yantai.last_error) == (t[3], 0, None)
    assert yantai.latest_seen_size == 12  # a success does not forget what was seen
    assert yantai.last_success is not None and yantai.last_success.tzinfo is dt.UTC


def test_block_and_unblock(db: Database) -> None:
    replicas = ReplicaRepository(db)
    replicas.block(QINGDAO, "split view: two roots for size 40")  # creates the row
    status = replicas.status(QINGDAO)
    assert status is not None
    assert (status.blocked, status.blocked_reason) == (True, "split view: two roots for size 40")
    replicas.record_failure(QINGDAO, T0, "blocked")
    replicas.unblock(QINGDAO)
    status = replicas.status(QINGDAO)
    assert status is not None
    assert (status.blocked, status.blocked_reason) == (False, None)
    assert status.consecutive_failures == 1  # blocking is separate from the failure count
    replicas.unblock(YANTAI)  # unblocking an unknown origin is harmless
    assert replicas.all()[YANTAI].blocked is False


def test_split_views(db: Database) -> None:
    replicas = ReplicaRepository(db)
    assert replicas.split_views() == []
    ids = [
        replicas.add_split_view(
            origin=origin,
            detected_at=T0 + dt.timedelta(hours=n),
            first_checkpoint=f"first {n}".encode(),
            second_checkpoint=f"second {n}".encode(),
            reason=f"reason {n}",
            reported_by=reporter,
        )
        for n, (origin, reporter) in enumerate(
            [(QINGDAO, YANTAI), (WEIHAI, QINGDAO), (QINGDAO, QINGDAO)]
        )
    ]
    assert ids == sorted(ids) and len(set(ids)) == 3
    qingdao = replicas.split_views(QINGDAO)
    assert [view.id for view in qingdao] == [ids[0], ids[2]]
    first = qingdao[0]
    assert (first.first_checkpoint, first.second_checkpoint) == (b"first 0", b"second 0")
    assert (first.reason, first.reported_by, first.resolved_at) == ("reason 0", YANTAI, None)
    assert first.detected_at == T0 and first.detected_at.tzinfo is dt.UTC

    assert replicas.resolve_split_views(QINGDAO, T0 + dt.timedelta(days=1)) == 2
    assert replicas.resolve_split_views(QINGDAO, T0 + dt.timedelta(days=2)) == 0
    assert [view.id for view in replicas.split_views()] == [ids[1]]
    assert replicas.split_views(QINGDAO) == []
    resolved = replicas.split_views(QINGDAO, include_resolved=True)
    assert [view.resolved_at for view in resolved] == [T0 + dt.timedelta(days=1)] * 2
    assert len(replicas.split_views(include_resolved=True)) == 3
