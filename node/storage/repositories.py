"""Repositories: thin typed adapters between the node's tables and plain dataclasses.

No domain rules live here (signature thresholds, expiry and the like belong to
:mod:`federation`); the only rule enforced is structural: the manifest chain has no gaps
and no two entries for one version, checked in one transaction so that two processes
appending at once cannot both win.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.exc import IntegrityError

from federation.errors import AlreadyExistsError, FailedPreconditionError
from node.storage.database import Database
from node.storage.schema import PEER_ERROR_MAX_CHARS, events, manifests, peer_contacts


def _require_aware(name: str, value: dt.datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be a timezone-aware datetime")


# --- the federation manifest chain ------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StoredManifest:
    """One accepted version of the federation manifest, as the node stored it."""

    version: int
    federation_id: str
    document: bytes  # the canonical signed manifest, exactly as verified
    sha256: str  # hex digest of ``document``
    expires: dt.datetime
    adopted_at: dt.datetime
    source: str  # "operator" or "peer:<city code>"

    def __post_init__(self) -> None:
        _require_aware("expires", self.expires)
        _require_aware("adopted_at", self.adopted_at)


class ManifestRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def latest(self) -> StoredManifest | None:
        with self._db.read() as connection:
            row = connection.execute(
                select(manifests).order_by(manifests.c.version.desc()).limit(1)
            ).one_or_none()
        return None if row is None else _manifest(row._mapping)

    def chain(self) -> list[StoredManifest]:
        """Every stored version, oldest first."""
        return self.after(0)

    def after(self, version: int) -> list[StoredManifest]:
        """The stored versions newer than ``version``, oldest first."""
        with self._db.read() as connection:
            rows = connection.execute(
                select(manifests).where(manifests.c.version > version).order_by(manifests.c.version)
            ).all()
        return [_manifest(row._mapping) for row in rows]

    def append(self, manifest: StoredManifest) -> None:
        """Store the next version; refuses anything but latest + 1 (any version when empty)."""
        self.append_many([manifest])

    def append_many(self, chain: Sequence[StoredManifest]) -> None:
        """Store consecutive next versions all together, or none of them."""
        if not chain:
            return
        try:
            with self._db.transaction() as connection:
                expected = _latest_version(connection)
                for manifest in chain:
                    if expected is not None:
                        _check_next(manifest.version, expected)
                    connection.execute(insert(manifests).values(**dataclasses.asdict(manifest)))
                    expected = manifest.version
        except IntegrityError:
            # Another writer stored this version between our read and our insert
            # (PostgreSQL, read committed); the primary key made sure only one won.
            raise AlreadyExistsError(
                f"federation manifest version {chain[0].version} is already stored",
                hint="another process adopted it at the same time; reload the chain",
            ) from None


def _latest_version(connection: Connection) -> int | None:
    latest: int | None = connection.execute(select(func.max(manifests.c.version))).scalar()
    return latest


def _check_next(version: int, latest: int) -> None:
    if version <= latest:
        raise AlreadyExistsError(
            f"federation manifest version {version} is not newer than the stored version {latest}"
        )
    if version != latest + 1:
        raise FailedPreconditionError(
            f"federation manifest version {version} would leave a gap after the stored "
            f"version {latest}",
            hint=f"versions {latest + 1}..{version - 1} must be adopted first",
        )


def _manifest(row: Any) -> StoredManifest:
    return StoredManifest(
        version=row["version"],
        federation_id=row["federation_id"],
        document=bytes(row["document"]),
        sha256=row["sha256"],
        expires=row["expires"],
        adopted_at=row["adopted_at"],
        source=row["source"],
    )


# --- peer contacts -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PeerContact:
    """How the last attempts to reach one peer city went (for status and back-off)."""

    city_code: str
    last_attempt: dt.datetime
    last_success: dt.datetime | None
    manifest_version: int | None  # the manifest version the peer reported last time
    last_error: str | None
    consecutive_failures: int


class PeerContactRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record_success(self, city: str, at: dt.datetime, manifest_version: int | None) -> None:
        _require_aware("at", at)
        values = {
            "last_attempt": at,
            "last_success": at,
            "manifest_version": manifest_version,
            "last_error": None,
            "consecutive_failures": 0,
        }
        self._upsert(city, insert_values=values, update_values=values)

    def record_failure(self, city: str, at: dt.datetime, error: str) -> None:
        _require_aware("at", at)
        message = truncate(error, PEER_ERROR_MAX_CHARS)
        self._upsert(
            city,
            insert_values={
                "last_attempt": at,
                "last_success": None,
                "manifest_version": None,
                "last_error": message,
                "consecutive_failures": 1,
            },
            # last_success and manifest_version keep what the last success recorded.
            update_values={
                "last_attempt": at,
                "last_error": message,
                "consecutive_failures": peer_contacts.c.consecutive_failures + 1,
            },
        )

    def all(self) -> dict[str, PeerContact]:
        with self._db.read() as connection:
            rows = connection.execute(select(peer_contacts).order_by(peer_contacts.c.city_code))
            return {
                row.city_code: PeerContact(
                    city_code=row.city_code,
                    last_attempt=row.last_attempt,
                    last_success=row.last_success,
                    manifest_version=row.manifest_version,
                    last_error=row.last_error,
                    consecutive_failures=row.consecutive_failures,
                )
                for row in rows
            }

    def _upsert(
        self, city: str, *, insert_values: dict[str, Any], update_values: dict[str, Any]
    ) -> None:
        # INSERT ... ON CONFLICT DO UPDATE: atomic without a read first.
        statement = self._db.dialect_insert(peer_contacts).values(city_code=city, **insert_values)
        statement = statement.on_conflict_do_update(
            index_elements=[peer_contacts.c.city_code], set_=update_values
        )
        with self._db.transaction() as connection:
            connection.execute(statement)


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the operator event journal ------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One entry of the node's event journal (what an operator sees in ``status``)."""

    id: int
    at: dt.datetime
    kind: str  # e.g. "manifest.adopted", "manifest.rejected", "peer.refused"
    detail: str


class EventRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, at: dt.datetime, kind: str, detail: str) -> int:
        """Append one event; returns its id."""
        _require_aware("at", at)
        with self._db.transaction() as connection:
            result = connection.execute(insert(events).values(at=at, kind=kind, detail=detail))
            key = result.inserted_primary_key
        if key is None:  # pragma: no cover - both engines report the new row id
            raise RuntimeError("the database did not report the new event's id")
        event_id: int = key[0]
        return event_id

    def recent(self, limit: int = 50) -> list[Event]:
        """The ``limit`` newest events, newest first."""
        if limit < 1:
            return []
        with self._db.read() as connection:
            rows = connection.execute(select(events).order_by(events.c.id.desc()).limit(limit))
            return [Event(id=row.id, at=row.at, kind=row.kind, detail=row.detail) for row in rows]


__all__ = [
    "Event",
    "EventRepository",
    "ManifestRepository",
    "PeerContact",
    "PeerContactRepository",
    "StoredManifest",
    "truncate",
]
