"""Opening the node's database: SQLite (WAL) by default, PostgreSQL by URL.

:func:`open_database` creates the SQLAlchemy 2 engine, migrates the schema to the newest
Alembic revision shipped with this code, and returns a :class:`Database`. Two processes
of one node (the service and the CLI) may open the same database at the same time: the
migration runs under a lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory lock), so the
second one waits and then finds nothing to do.

Every failure a user can cause (malformed URL, server down, unknown schema revision)
becomes a :class:`~federation.errors.StorageError` whose message shows the URL with its
password hidden.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, create_engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from federation.canonical import MAX_STORED_INTEGER
from federation.errors import InvalidInputError, StorageError

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

# How long a SQLite writer waits for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS: Final = 5000
# How long to wait for a PostgreSQL server to answer before calling it unreachable.
POSTGRES_CONNECT_TIMEOUT_S: Final = 10
# Any fixed 64-bit number: the PostgreSQL advisory lock that serialises migrations.
_MIGRATION_LOCK_KEY: Final = 0x63726564_69746E65  # "creditne"
#: The largest integer a column holds: SQLite's INTEGER and PostgreSQL's BIGINT are signed
#: 64-bit, while a protobuf uint64 goes up to 2**64 - 1.
MAX_INTEGER: Final = MAX_STORED_INTEGER
# Execution option read by the SQLite "begin" hook below.
_SQLITE_BEGIN: Final = "credit_node_sqlite_begin"

log = logging.getLogger(__name__)

_URL_HINT: Final = "use sqlite:///path/to/node.db or postgresql://user:password@host:5432/database"


T = TypeVar("T")

#: Keys per ``IN (...)`` list: far below SQLite's bound-parameter limit on every version.
_IN_CHUNK: Final = 500


def in_chunks(keys: Sequence[T]) -> Iterator[Sequence[T]]:
    """``keys`` in slices small enough for one ``IN (...)`` query each."""
    for start in range(0, len(keys), _IN_CHUNK):
        yield keys[start : start + _IN_CHUNK]


def check_storable(value: int, *, field: str, what: str) -> int:
    """``value``, a uint64 from the wire that a query compares with or stores in a column.

    Refused with :class:`InvalidInputError` when no column could hold it: the driver would
    raise OverflowError, which a caller would see as an internal error.
    """
    if not 0 <= value <= MAX_INTEGER:
        raise InvalidInputError(f"{field} {value} is out of range: {what} is 0 to {MAX_INTEGER}")
    return value


class Database:
    """An open database of one node: the engine plus transaction helpers."""

    def __init__(self, engine: Engine, *, display_url: str) -> None:
        self._engine = engine
        # Serialised writers on SQLite: a read-then-write transaction started with a plain
        # BEGIN can fail with SQLITE_BUSY when it upgrades its lock, whatever the timeout.
        self._writer = engine.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"})
        self.url = display_url

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def dialect_insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT into ``table`` in this database's dialect, which can say what to do
        ON CONFLICT: the same SQL on SQLite (>= 3.24) and PostgreSQL, but each dialect
        module builds its own statement."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection inside a write transaction, committed when the block ends cleanly.

        On SQLite the transaction takes the write lock up front, so two processes that
        read and then write (append the next version) are serialised instead of failing.
        """
        with self._translate_outage(), self._writer.begin() as connection:
            yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection inside a read transaction (a consistent snapshot on SQLite WAL)."""
        with (
            self._translate_outage(),
            self._engine.connect() as connection,
            connection.begin(),
        ):
            yield connection

    @contextmanager
    def session(self) -> Iterator[Session]:
        """An ORM session inside a write transaction, committed when the block ends cleanly."""
        with self._translate_outage(), Session(self._writer) as session, session.begin():
            yield session

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (``None`` before any migration)."""
        with self.read() as connection:
            return _current_revision(connection)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.url!r})"

    @contextmanager
    def _translate_outage(self) -> Iterator[None]:
        # Only connection-level failures: IntegrityError and friends are the caller's to
        # interpret (the repositories turn them into domain errors).
        try:
            yield
        except DBAPIError as exc:
            if exc.connection_invalidated or _is_operational(exc):
                raise StorageError(
                    f"database {self.url} failed: {_first_line(exc.orig, self._engine.url)}",
                    hint="check that the database server is running and reachable",
                ) from exc
            raise


class PlannerStatistics:
    """Keeps PostgreSQL's planner statistics of tables that grow in bulk up to date.

    PostgreSQL plans each query from the statistics ``ANALYZE`` gathers, and autovacuum
    gathers them again only after a table has grown by a tenth, on its own schedule. A
    replica filling an empty table from a peer outgrows them within seconds: until the
    next automatic ``ANALYZE`` the planner (and the generic plans of psycopg's prepared
    statements) takes the table for empty, and the lookup of a batch's 1,000 entries by
    primary key read the whole table: at 60,000 rows it took 1.7 s instead of 17 ms, and
    replication fell to a few hundred entries per second.

    A writer reports the rows it added to the first table; once that table has doubled
    since it was last analysed (and grown by at least ``first_after`` rows), all the
    tables are analysed again: about ten times on the way to a million rows. Nothing
    is done on SQLite, whose planner uses the primary key without statistics. A failed
    ``ANALYZE`` is logged and tried again later: the rows are committed by then, and
    statistics only make queries faster.
    """

    _RUNNING: Final = sys.maxsize

    def __init__(self, db: Database, tables: Sequence[Table], *, first_after: int = 1_000) -> None:
        if not tables:
            raise ValueError("PlannerStatistics needs at least one table")
        self._db = db
        self._tables = tuple(tables)
        self._first_after = first_after
        self._enabled = db.dialect == "postgresql"
        self._lock = threading.Lock()
        self._added = 0
        # Rows to add before the next ANALYZE. The first comes soon whatever the table
        # holds (the server's estimate may be stale), the later ones once it has doubled.
        self._due = first_after

    def added(self, rows: int) -> None:
        """Count ``rows`` new rows of the first table; analyse the tables when due.

        Never raises for the database's sake: the caller's rows are committed already.
        """
        if not self._enabled or rows <= 0:
            return
        with self._lock:
            self._added += rows
            if self._added < self._due:
                return
            self._added, self._due = 0, self._RUNNING  # one ANALYZE at a time
        due = self._first_after
        try:
            self._analyze()
            due = self._next_due()
        except (DBAPIError, StorageError) as exc:
            log.warning(
                "could not refresh the planner statistics",
                extra={"fields": {"tables": [t.name for t in self._tables], "error": str(exc)}},
            )
        finally:
            with self._lock:
                self._due = due

    def _analyze(self) -> None:
        with self._db.transaction() as connection:
            quote = connection.dialect.identifier_preparer.quote
            connection.execute(text("ANALYZE " + ", ".join(quote(t.name) for t in self._tables)))

    def _next_due(self) -> int:
        """As many rows as the first table holds, by the estimate just gathered (at least
        ``first_after``): the table doubles before it is analysed again."""
        with self._db.read() as connection:
            estimate = connection.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"),
                {"name": self._tables[0].name},
            ).scalar_one_or_none()
        return max(self._first_after, int(estimate or 0))


def open_database(url: str, *, upgrade: bool = True) -> Database:
    """Open (and create, for SQLite) the database at ``url`` and migrate it to head.

    With ``upgrade=False`` (a tool that reads a node's database while the node may run)
    the database must be at head already: upgrading it under a running node of an older
    version would have that node write rows of the old schema into the new one.
    """
    parsed = _parse_url(url)
    display = parsed.render_as_string(hide_password=True)
    try:
        engine = _create_engine(parsed)
    except (ArgumentError, NoSuchModuleError, TypeError, ValueError) as exc:
        raise StorageError(f"cannot use database URL {display}: {exc}", hint=_URL_HINT) from None
    try:
        if upgrade:
            _migrate(engine)
        else:
            _require_head(engine, display)
    except StorageError:
        engine.dispose()
        raise
    except CommandError as exc:
        engine.dispose()
        raise StorageError(
            f"database {display} has a schema this node does not know ({exc})",
            hint="it was probably migrated by a newer credit-node; upgrade this node",
        ) from None
    except SQLAlchemyError as exc:
        engine.dispose()
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        hint = (
            "check that the file is a credit-node database and that this user may read "
            "and write it and its directory"
            if parsed.get_backend_name() == "sqlite"
            else "check that the database server is running and reachable, and that the "
            "database and credentials in the URL are right"
        )
        raise StorageError(
            f"cannot open database {display}: {_first_line(orig, parsed)}", hint=hint
        ) from None
    return Database(engine, display_url=display)


def head_revision() -> str:
    """The newest schema revision this code ships (what :func:`open_database` migrates to)."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise StorageError("no database migrations are installed with this node")
    return head


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StorageError(
            f"malformed database URL {_hide_password(url)!r}", hint=_URL_HINT
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        # psycopg 3 is the driver this node ships with; plain postgresql:// means it.
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        return parsed
    raise StorageError(
        f"unsupported database URL scheme {parsed.drivername!r}",
        hint=_URL_HINT,
    )


#: A database error's text leaves out the statement's parameters: they hold subjects'
#: identifiers and names, and such errors are logged.
HIDE_PARAMETERS: Final = True


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        return _create_sqlite_engine(url)
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
    # pre_ping: a long-running node outlives server restarts and idle-connection reaping.
    return create_engine(
        url, connect_args=connect_args, pool_pre_ping=True, hide_parameters=HIDE_PARAMETERS
    )


def _create_sqlite_engine(url: URL) -> Engine:
    database = url.database or ":memory:"
    in_memory = database == ":memory:" or url.query.get("mode") == "memory"
    if in_memory:
        # One shared connection, or every checkout would see a different empty database.
        engine = create_engine(
            url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            hide_parameters=HIDE_PARAMETERS,
        )
    else:
        try:
            Path(database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create the directory for database {database}: {exc.strerror}"
            ) from None
        engine = create_engine(url, hide_parameters=HIDE_PARAMETERS)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # Take BEGIN away from the sqlite3 module (it defers it and skips it for DDL) so the
        # "begin" hook below decides; this is SQLAlchemy's documented recipe.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not in_memory:
                # WAL: readers never block the writer, so the CLI can read while the node
                # writes. NORMAL sync is durable across application crashes in WAL mode.
                _switch_to_wal(cursor)
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get(_SQLITE_BEGIN, "BEGIN"))

    return engine


def _switch_to_wal(cursor: Any) -> None:
    """Put the database in WAL mode (once per file: the mode is kept in the file).

    The switch needs the whole file to itself, and while another process holds a write
    lock (a second process migrating a brand-new database) SQLite refuses it at once
    with "database is locked", without waiting out the busy timeout (it would deadlock).
    So it is tried again until that timeout has passed.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _migrate(engine: Engine) -> None:
    config = _alembic_config()
    with engine.connect() as connection:
        connection.execution_options(**{_SQLITE_BEGIN: "BEGIN IMMEDIATE"})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                # Held until commit: a second process waits here, then sees head.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")


def _current_revision(connection: Connection) -> str | None:
    revision: str | None = MigrationContext.configure(connection).get_current_revision()
    return revision


def _require_head(engine: Engine, display: str) -> None:
    with engine.connect() as connection:
        found = _current_revision(connection)
    if found != head_revision():
        raise StorageError(
            f"database {display} is at schema revision {found or 'none'}, not "
            f"{head_revision()}, the one this credit-node reads",
            hint="start the node with this version of credit-node (credit-node serve) once: "
            "it upgrades the database",
        )


def _alembic_config() -> Config:
    config = Config()
    # ConfigParser interpolation: a literal % in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def _is_operational(exc: DBAPIError) -> bool:
    return isinstance(exc, (OperationalError, InterfaceError))


def _first_line(error: BaseException | None, url: URL) -> str:
    message = str(error).strip().splitlines()[0] if error is not None and str(error) else ""
    message = message or type(error).__name__
    if url.password:
        # Drivers rarely echo the password, but a message must never carry it.
        message = message.replace(str(url.password), "***")
    return message


def _hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


__all__ = ["MIGRATIONS_DIR", "Database", "head_revision", "open_database"]
