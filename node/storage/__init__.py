"""The node's storage: SQLAlchemy 2 over SQLite (WAL, the embedded default) or PostgreSQL.

:func:`open_database` opens and migrates (Alembic, :mod:`node.storage.migrations`); the
tables are in :mod:`node.storage.schema`; the repositories in
:mod:`node.storage.repositories` are the only code that runs SQL.
"""

from node.storage.database import Database, head_revision, open_database
from node.storage.repositories import (
    Event,
    EventRepository,
    ManifestRepository,
    PeerContact,
    PeerContactRepository,
    StoredManifest,
)

__all__ = [
    "Database",
    "Event",
    "EventRepository",
    "ManifestRepository",
    "PeerContact",
    "PeerContactRepository",
    "StoredManifest",
    "head_revision",
    "open_database",
]
