"""The node's storage layer, run on SQLite and on a real PostgreSQL (``database_url``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import multiprocessing
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, insert, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from federation.errors import (
    AlreadyExistsError,
    CreditNetError,
    FailedPreconditionError,
    StorageError,
)
from node.storage import (
    Database,
    EventRepository,
    ManifestRepository,
    PeerContactRepository,
    StoredManifest,
    head_revision,
    open_database,
)
from node.storage.schema import PEER_ERROR_MAX_CHARS, events, metadata
from tests.pg_server import create_database

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 12, 2, 14, 30, 15, 123456, tzinfo=SHANGHAI)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.close()


def manifest(version: int, *, at: dt.datetime = T0, source: str = "operator") -> StoredManifest:
    document = f'{{"version":{version}}}'.encode()
    return StoredManifest(
        version=version,
        federation_id="jiaodong",
        document=document,
        sha256=hashlib.sha256(document).hexdigest(),
        expires=at + dt.timedelta(days=90),
        adopted_at=at,
        source=source,
    )


# --- opening and migrating --------------------------------------------------------------


def test_fresh_database_is_migrated_to_head(db: Database) -> None:
    assert head_revision() == "0006"
    assert db.schema_revision() == head_revision()
    tables = set(inspect(db.engine).get_table_names())
    assert {"alembic_version", "manifests", "peer_contacts", "events"} <= tables


def test_opening_twice_keeps_the_data(database_url: str) -> None:
    with open_database(database_url) as first:
        ManifestRepository(first).append(manifest(1))
    with open_database(database_url) as second:
        assert second.schema_revision() == head_revision()
        assert [m.version for m in ManifestRepository(second).chain()] == [1]


def _open_in_child(url: str, start: Callable[[], object], results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    start()
    try:
        with open_database(url) as database:
            results.put(database.schema_revision())
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(f"{type(exc).__name__}: {exc}")


def test_concurrent_first_open_by_several_processes_is_safe(database_url: str) -> None:
    # The node and the CLI may both open a brand-new database: only one may migrate.
    context = multiprocessing.get_context("fork")
    start = context.Event()
    results = context.Queue()
    children = [
        context.Process(target=_open_in_child, args=(database_url, start.wait, results))
        for _ in range(4)
    ]
    for child in children:
        child.start()
    start.set()
    outcomes = sorted(str(results.get(timeout=30)) for _ in children)
    for child in children:
        child.join(timeout=30)
    assert outcomes == [head_revision()] * len(children)


def _held_new_sqlite_file(path: Path) -> sqlite3.Connection:
    """A new database file (rollback journal) with another connection's write lock on it."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other_program (x)")
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_new_sqlite_file_switches_to_wal_once_another_writer_lets_go(tmp_path: Path) -> None:
    # SQLite refuses the switch to WAL at once, not after the busy timeout, while another
    # connection holds a write lock: that is how a second process opening a brand-new
    # database found it "locked".
    holder = _held_new_sqlite_file(tmp_path / "node.db")
    release = threading.Timer(0.3, holder.execute, ("ROLLBACK",))
    release.start()
    try:
        with open_database(f"sqlite:///{tmp_path / 'node.db'}") as database:
            assert database.schema_revision() == head_revision()
            with database.read() as connection:
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        release.join()
        holder.close()


def test_a_writer_that_never_lets_go_is_reported_after_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("node.storage.database.SQLITE_BUSY_TIMEOUT_MS", 200)
    holder = _held_new_sqlite_file(tmp_path / "node.db")
    try:
        with pytest.raises(StorageError, match="database is locked"):
            open_database(f"sqlite:///{tmp_path / 'node.db'}")
    finally:
        holder.close()


def test_migrations_match_the_models(db: Database) -> None:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, metadata) == []


def test_sqlite_file_is_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "node.db"
    with open_database(f"sqlite:///{path}") as database, database.read() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    # Checked from outside: WAL is a property of the file, not of our connections.
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_a_file_that_is_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    path.write_bytes(b"not sqlite at all " * 100)
    with pytest.raises(StorageError, match="file is not a database") as caught:
        open_database(f"sqlite:///{path}")
    assert caught.value.hint is not None and "read and write" in caught.value.hint


def test_in_memory_sqlite_works() -> None:
    with open_database("sqlite://") as database:
        EventRepository(database).record(T0, "manifest.adopted", "v1")
        assert [e.detail for e in EventRepository(database).recent()] == ["v1"]


# --- errors a user can cause --------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "malformed database URL"),
        ("mysql://alice:s3cret-pw@db.example/credit", "unsupported database URL scheme"),
        ("postgresql+asyncpg://alice:s3cret-pw@db.example/x", "unsupported database URL"),
        ("postgresql://alice:s3cret-pw@127.0.0.1:1/credit", "cannot open database"),
        ("postgresql://alice:s3cret-pw@127.0.0.1:notaport/credit", "database URL"),
        ("sqlite:////proc/no/such/dir/node.db", "cannot create the directory"),
    ],
    ids=["not-a-url", "mysql", "asyncpg", "unreachable", "bad-port", "sqlite-no-dir"],
)
def test_bad_urls_raise_storage_error_without_password(url: str, expected: str) -> None:
    with pytest.raises(StorageError) as caught:
        open_database(url)
    assert expected in caught.value.message
    assert "s3cret-pw" not in caught.value.diagnostics()
    assert caught.value.__cause__ is None  # no driver traceback chained to a user's error


@pytest.mark.postgres
def test_missing_postgres_database_is_a_storage_error(postgres_url: str) -> None:
    url = make_url(postgres_url).set(database="no_such_db", password="s3cret-pw")
    with pytest.raises(StorageError, match="no_such_db") as caught:
        open_database(url.render_as_string(hide_password=False))
    assert "s3cret-pw" not in caught.value.diagnostics()
    assert "***" in caught.value.message


@pytest.mark.postgres
def test_database_vanishing_under_a_running_node_is_a_storage_error(postgres_url: str) -> None:
    url = create_database(postgres_url)
    database = open_database(url)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            name = make_url(url).database
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        with pytest.raises(StorageError, match="failed"):
            EventRepository(database).recent()
    finally:
        admin.dispose()
        database.close()


def test_schema_newer_than_the_code_is_refused(database_url: str) -> None:
    with open_database(database_url) as database, database.transaction() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(StorageError, match="schema this node does not know") as caught:
        open_database(database_url)
    assert caught.value.hint is not None and "upgrade" in caught.value.hint


def test_transactions_commit_on_success_and_roll_back_on_error(db: Database) -> None:
    row = {"at": T0, "kind": "manifest.adopted", "detail": "kept"}
    with db.session() as session:
        session.execute(insert(events).values(**row))
    with pytest.raises(RuntimeError), db.session() as session:
        session.execute(insert(events).values(**{**row, "detail": "session rolled back"}))
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError), db.transaction() as connection:
        connection.execute(insert(events).values(**{**row, "detail": "core rolled back"}))
        raise RuntimeError("boom")
    assert [e.detail for e in EventRepository(db).recent()] == ["kept"]


# --- the manifest chain -------------------------------------------------------------------


def test_manifest_chain_append_latest_after(db: Database) -> None:
    repository = ManifestRepository(db)
    assert repository.latest() is None
    assert repository.chain() == []
    stored = [manifest(v, at=T0 + dt.timedelta(hours=v)) for v in (3, 4, 5)]
    for item in stored:
        repository.append(item)
    assert repository.latest() == stored[-1]
    assert repository.chain() == stored
    assert repository.after(3) == stored[1:]
    assert repository.after(5) == []
    assert repository.after(0) == stored


@pytest.mark.parametrize(
    ("version", "error"),
    [(2, AlreadyExistsError), (1, AlreadyExistsError), (4, FailedPreconditionError)],
    ids=["duplicate-latest", "rollback", "gap"],
)
def test_append_refuses_anything_but_the_next_version(
    db: Database, version: int, error: type[CreditNetError]
) -> None:
    repository = ManifestRepository(db)
    repository.append(manifest(1))
    repository.append(manifest(2))
    with pytest.raises(error):
        repository.append(manifest(version))
    assert [m.version for m in repository.chain()] == [1, 2]


def test_append_many_is_all_or_nothing(db: Database) -> None:
    repository = ManifestRepository(db)
    repository.append(manifest(1))
    with pytest.raises(FailedPreconditionError):
        repository.append_many([manifest(2), manifest(3), manifest(5)])
    assert [m.version for m in repository.chain()] == [1]
    repository.append_many([manifest(2), manifest(3)])
    assert [m.version for m in repository.chain()] == [1, 2, 3]


def test_concurrent_appenders_cannot_both_win(database_url: str) -> None:
    databases = [open_database(database_url) for _ in range(4)]
    ManifestRepository(databases[0]).append(manifest(1))
    barrier = threading.Barrier(len(databases))
    outcomes: list[str] = []

    def append(database: Database) -> None:
        barrier.wait()
        try:
            ManifestRepository(database).append(manifest(2, source=f"peer:{id(database)}"))
            outcomes.append("stored")
        except AlreadyExistsError:
            outcomes.append("refused")

    threads = [threading.Thread(target=append, args=(d,)) for d in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        assert sorted(outcomes) == ["refused"] * 3 + ["stored"]
        assert [m.version for m in ManifestRepository(databases[0]).chain()] == [1, 2]
    finally:
        for database in databases:
            database.close()


def test_datetimes_come_back_aware_utc(db: Database) -> None:
    ManifestRepository(db).append(manifest(1, at=T0))
    latest = ManifestRepository(db).latest()
    assert latest is not None
    for value in (latest.adopted_at, latest.expires):
        assert value.tzinfo is dt.UTC
    assert latest.adopted_at == T0  # same instant, microseconds kept
    assert latest.adopted_at.hour == 6  # 14:30 in Shanghai is 06:30 UTC


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        dataclasses.replace(manifest(1), adopted_at=dt.datetime(2026, 1, 1))


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    at=st.datetimes(
        min_value=dt.datetime(1970, 1, 2),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.sampled_from([dt.UTC, SHANGHAI, dt.timezone(dt.timedelta(hours=-9.5))]),
    ),
    detail=st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")),
)
def test_events_round_trip_any_time_and_text(db: Database, at: dt.datetime, detail: str) -> None:
    repository = EventRepository(db)
    event_id = repository.record(at, "peer.refused", detail)
    newest = repository.recent(1)[0]
    assert (newest.id, newest.at, newest.detail) == (event_id, at, detail)
    assert newest.at.tzinfo is dt.UTC


# --- peer contacts and events ---------------------------------------------------------


def test_peer_contact_upserts(db: Database) -> None:
    repository = PeerContactRepository(db)
    t = [T0 + dt.timedelta(minutes=i) for i in range(5)]
    repository.record_failure("370600", t[0], "connection refused")
    repository.record_success("370200", t[0], 3)
    repository.record_failure("370200", t[1], "deadline exceeded")
    repository.record_failure("370200", t[2], "x" * 2000)

    contacts = repository.all()
    assert list(contacts) == ["370200", "370600"]
    qingdao = contacts["370200"]
    assert (qingdao.last_attempt, qingdao.last_success) == (t[2], t[0])
    assert qingdao.manifest_version == 3  # a failure keeps what the last success learnt
    assert qingdao.consecutive_failures == 2
    assert qingdao.last_error is not None and len(qingdao.last_error) == PEER_ERROR_MAX_CHARS
    assert qingdao.last_error.endswith("…")
    yantai = contacts["370600"]
    assert (yantai.last_success, yantai.manifest_version) == (None, None)
    assert (yantai.consecutive_failures, yantai.last_error) == (1, "connection refused")

    repository.record_success("370200", t[3], 4)
    qingdao = repository.all()["370200"]
    assert (qingdao.last_success, qingdao.manifest_version) == (t[3], 4)
    assert (qingdao.consecutive_failures, qingdao.last_error) == (0, None)


def test_events_recent_is_newest_first_and_limited(db: Database) -> None:
    repository = EventRepository(db)
    ids = [
        repository.record(T0 + dt.timedelta(seconds=i), kind, f"v{i}")
        for i, kind in enumerate(["manifest.adopted", "peer.refused", "manifest.rejected"])
    ]
    assert ids == sorted(ids)
    assert [e.detail for e in repository.recent()] == ["v2", "v1", "v0"]
    assert [e.kind for e in repository.recent(limit=2)] == ["manifest.rejected", "peer.refused"]
    assert repository.recent(limit=0) == []


def test_a_database_error_does_not_carry_the_statements_values(db: Database) -> None:
    """Statements carry subjects' identifiers and names; database errors get logged."""
    resident = "11010519491231002X"
    with pytest.raises(DBAPIError) as caught, db.transaction() as connection:
        # Two rows with one primary key: the driver refuses the second.
        connection.execute(
            insert(events),
            [
                {"id": 1, "at": T0, "kind": "test", "detail": resident},
                {"id": 1, "at": T0, "kind": "test", "detail": resident},
            ],
        )
    assert resident not in str(caught.value)
    assert "hidden" in str(caught.value)
