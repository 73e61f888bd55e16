"""The node's database schema, as SQLAlchemy Core tables.

This is the *current* shape of the schema; Alembic migrations in
:mod:`node.storage.migrations` are what creates and changes it in a real database, and a
test checks that both agree (``alembic.autogenerate.compare_metadata`` finds no
difference). Change a table here only together with a new migration.

Times are stored as UTC. PostgreSQL has ``timestamp with time zone``; SQLite has no time
type at all, so :class:`UTCDateTime` normalises to UTC on the way in and hands back aware
UTC datetimes on the way out on both engines.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

# Explicit constraint names: PostgreSQL and SQLite would otherwise name them differently,
# and a later migration must be able to drop or alter a constraint by name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Longest operator-facing error text kept per peer: enough to diagnose, bounded in size.
PEER_ERROR_MAX_CHARS = 500


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware datetime, stored as UTC, returned as aware UTC on every engine."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            # A naive time is ambiguous (local? UTC?); refusing it here catches the bug
            # where it is made rather than months later in an expiry check.
            raise ValueError("refusing to store a naive datetime; pass an aware one")
        utc = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            # SQLite stores text without an offset; everything in it is UTC by this rule.
            return utc.replace(tzinfo=None)
        return utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


manifests = Table(
    "manifests",
    metadata,
    # Not a surrogate key: the manifest's own version, so the chain cannot hold two of one.
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("federation_id", String(100), nullable=False),
    Column("document", LargeBinary, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    Column("adopted_at", UTCDateTime, nullable=False),
    # "operator" or "peer:<city code>"
    Column("source", String(40), nullable=False),
    CheckConstraint("version >= 1", name="version_positive"),
)

peer_contacts = Table(
    "peer_contacts",
    metadata,
    Column("city_code", String(6), primary_key=True),
    Column("last_attempt", UTCDateTime, nullable=False),
    Column("last_success", UTCDateTime, nullable=True),
    Column("manifest_version", Integer, nullable=True),
    Column("last_error", String(PEER_ERROR_MAX_CHARS), nullable=True),
    Column("consecutive_failures", Integer, nullable=False),
    CheckConstraint("consecutive_failures >= 0", name="failures_not_negative"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    # e.g. "manifest.adopted", "manifest.rejected", "peer.refused"
    Column("kind", String(64), nullable=False),
    Column("detail", Text, nullable=False),
)

__all__ = [
    "PEER_ERROR_MAX_CHARS",
    "UTCDateTime",
    "events",
    "manifests",
    "metadata",
    "peer_contacts",
]
