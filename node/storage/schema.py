"""The node's database schema, as SQLAlchemy Core tables.

This is the *current* shape of the schema; Alembic migrations in
:mod:`node.storage.migrations` are what creates and changes it in a real database, and a
test checks that both agree (``alembic.autogenerate.compare_metadata`` finds no
difference). Change a table here only together with a new migration.

The sanction-list tables (``log_*``, ``list_entries``, ``replica_status``, ``split_views``)
hold every city's append-only list-event log as this node knows it: its own log and its
verified replicas of the others (RFC 9162-style Merkle trees, see the issue-3 design), the
current state of every list entry derived from those logs, and the sync bookkeeping.

The report and rating tables (``issued_reports``, ``status_lists``, ``report_status_checks``,
``rating_statements``, ``scale_mappings``) keep signed documents verbatim (canonical JSON,
exactly as signed and verified) next to the few columns the node looks them up by.

Times are stored as UTC. PostgreSQL has ``timestamp with time zone``; SQLite has no time
type at all, so :class:`UTCDateTime` normalises to UTC on the way in and hands back aware
UTC datetimes on the way out on both engines.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
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

# Leaves per stored block hash: a block is the perfect subtree of height 8 over leaves
# [idx * 256, (idx + 1) * 256), so a proof over a million leaves reads ~4,000 block
# hashes instead of a million leaf hashes.
LOG_BLOCK_LEAVES = 256


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


# --- sanction-list logs (issue 3) -----------------------------------------------------------

log_leaves = Table(
    "log_leaves",
    metadata,
    Column("origin", String(6), nullable=False),  # city code of the log's owner
    Column("idx", BigInteger, nullable=False, autoincrement=False),
    Column("entry_id", String(32), nullable=False),
    Column("event", String(16), nullable=False),  # add | amend | remove | objection
    Column("list_kind", String(32), nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),  # SHA-256(0x00 || envelope)
    Column("envelope", LargeBinary, nullable=False),  # the canonical envelope = leaf bytes
    # NULL when the origin does not share this list kind with us, or stopped sharing it
    # (the entry was withdrawn here): we hold the envelope and hash only.
    Column("body", LargeBinary, nullable=True),
    PrimaryKeyConstraint("origin", "idx"),
    CheckConstraint("idx >= 0", name="idx_not_negative"),
    # An entry's history (every event of one entry, in log order).
    Index("ix_log_leaves_origin_entry_id", "origin", "entry_id"),
)

log_blocks = Table(
    "log_blocks",
    metadata,
    Column("origin", String(6), nullable=False),
    Column("idx", BigInteger, nullable=False, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    PrimaryKeyConstraint("origin", "idx"),
    CheckConstraint("idx >= 0", name="idx_not_negative"),
)

log_heads = Table(
    "log_heads",
    metadata,
    Column("origin", String(6), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    # The compact range of [0, size): at most 64 hashes, enough to extend the tree.
    Column("frontier", LargeBinary, nullable=False),
    # The latest verified signed checkpoint covering exactly ``size`` (NULL until signed).
    Column("checkpoint", LargeBinary, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("size >= 0", name="size_not_negative"),
)

list_entries = Table(
    "list_entries",
    metadata,
    Column("origin", String(6), nullable=False),
    Column("entry_id", String(32), nullable=False),
    Column("list_kind", String(32), nullable=False),
    Column("subject_kind", String(16), nullable=False),  # uscc | resident-id
    Column("subject_id", String(32), nullable=False),
    # Free text from decisions: Text, so that PostgreSQL and SQLite accept the same values.
    Column("subject_name", Text, nullable=False),
    Column("authority", Text, nullable=False),
    Column("decision_no", Text, nullable=False),
    Column("listed_on", Date, nullable=False),
    Column("publicity_end", Date, nullable=False),
    Column("removed_on", Date, nullable=True),
    Column("removal_reason", String(32), nullable=True),
    Column("objection_open", Boolean, nullable=False),
    Column("entry", Text, nullable=False),  # the current SanctionEntry JSON
    Column("removal", Text, nullable=True),  # the removal JSON once removed
    Column("objection", Text, nullable=True),  # the latest objection JSON
    Column("last_index", BigInteger, nullable=False),  # log index of the latest event
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("origin", "entry_id"),
    # Keyset pagination in (origin, list_kind, entry_id) order.
    Index("ix_list_entries_page", "origin", "list_kind", "entry_id"),
    Index("ix_list_entries_subject_id", "subject_id"),
    # Expiry sweeps: entries of one origin whose publicity has ended.
    Index("ix_list_entries_publicity_end", "origin", "publicity_end"),
)

replica_status = Table(
    "replica_status",
    metadata,
    Column("origin", String(6), primary_key=True),
    Column("latest_seen_size", BigInteger, nullable=True),
    Column("latest_seen_checkpoint", LargeBinary, nullable=True),
    # NULL while the row only records a checkpoint seen or a block, before any attempt.
    Column("last_attempt", UTCDateTime, nullable=True),
    Column("last_success", UTCDateTime, nullable=True),
    Column("last_error", String(PEER_ERROR_MAX_CHARS), nullable=True),
    Column("consecutive_failures", Integer, nullable=False),
    Column("blocked", Boolean, nullable=False),
    Column("blocked_reason", Text, nullable=True),
    CheckConstraint("consecutive_failures >= 0", name="failures_not_negative"),
)

split_views = Table(
    "split_views",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("origin", String(6), nullable=False),
    Column("detected_at", UTCDateTime, nullable=False),
    # The two signed checkpoints that cannot both be true: the evidence, kept verbatim.
    Column("first_checkpoint", LargeBinary, nullable=False),
    Column("second_checkpoint", LargeBinary, nullable=False),
    Column("reason", Text, nullable=False),
    Column("reported_by", String(6), nullable=False),  # where the second checkpoint came from
    Column("resolved_at", UTCDateTime, nullable=True),
    Index("ix_split_views_origin", "origin"),
)


# --- credit reports and ratings (issue 4) ---------------------------------------------------

issued_reports = Table(
    "issued_reports",
    metadata,
    Column("report_no", String(40), primary_key=True),  # CITY-YYYYMMDD-NNNNNN
    # The report's bit in this node's status list: never reused, or a revocation would
    # silently apply to two reports.
    Column("status_index", BigInteger, nullable=False, unique=True),
    Column("subject_id", String(32), nullable=False, index=True),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("valid_until", UTCDateTime, nullable=False),
    Column("supersedes", String(40), nullable=True),
    Column("document", LargeBinary, nullable=False),  # canonical signed report JSON
    CheckConstraint("status_index >= 0", name="status_index_not_negative"),
)

# What this city's authorities record about a subject for its own reports, and never
# replicate: administrative licences (行政许可) and credit commitments (信用承诺).
licences = Table(
    "licences",
    metadata,
    Column("subject_id", String(32), nullable=False),
    Column("authority", Text, nullable=False),
    Column("licence_no", String(100), nullable=False),
    Column("issued_on", Date, nullable=False),
    Column("summary", Text, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    # The digest of the authority: a licence number is unique within its authority.
    Column("authority_digest", String(64), nullable=False),
    PrimaryKeyConstraint("subject_id", "authority_digest", "licence_no"),
)

commitments = Table(
    "commitments",
    metadata,
    Column("subject_id", String(32), nullable=False),
    Column("made_on", Date, nullable=False),
    Column("content", Text, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    # SHA-256 of the content: the same commitment recorded twice is one (texts are too long
    # for a unique index on PostgreSQL).
    Column("content_digest", String(64), nullable=False),
    PrimaryKeyConstraint("subject_id", "made_on", "content_digest"),
)

status_lists = Table(
    "status_lists",
    metadata,
    # One row per issuer: only the newest signed list is worth keeping.
    Column("issuer", String(6), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),  # the issuer's time, from the list
    Column("document", LargeBinary, nullable=False),  # canonical signed status list JSON
    Column("received_at", UTCDateTime, nullable=False),
    CheckConstraint("version >= 1", name="version_positive"),
)

report_status_checks = Table(
    "report_status_checks",
    metadata,
    Column("report_no", String(40), primary_key=True),
    Column("issuer", String(6), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("superseded_by", String(40), nullable=True),
    Column("status_at", UTCDateTime, nullable=False),  # the issuer's time of the answer
    Column("checked_at", UTCDateTime, nullable=False),  # our time: the cache's age
    CheckConstraint("state IN ('valid', 'revoked', 'superseded')", name="state_known"),
)

rating_statements = Table(
    "rating_statements",
    metadata,
    Column("issuer", String(6), nullable=False),
    # The issuer's own numbering, from 1 without gaps: what replicas sync by.
    Column("sequence", BigInteger, nullable=False, autoincrement=False),
    Column("subject_id", String(32), nullable=False, index=True),
    Column("scale_id", String(64), nullable=False),
    Column("issued_on", Date, nullable=False),
    Column("valid_until", Date, nullable=False),
    Column("document", LargeBinary, nullable=False),  # canonical signed statement JSON
    Column("received_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("issuer", "sequence"),
    CheckConstraint("sequence >= 1", name="sequence_positive"),
)

scale_mappings = Table(
    "scale_mappings",
    metadata,
    Column("issuer", String(6), nullable=False),
    Column("scale_id", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("document", LargeBinary, nullable=False),  # canonical signed mapping JSON
    Column("received_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("issuer", "scale_id"),
    CheckConstraint("version >= 1", name="version_positive"),
)

# --- private matching (issue 5) -----------------------------------------------------------

# Every probe and disclosure, received (a peer asked this node) or sent (this node asked a
# peer). Never an identifier: counts, outcomes, and for a disclosure a salted hash and a
# masked form of the subject.
match_audit = Table(
    "match_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("direction", String(8), nullable=False),  # received | sent
    Column("peer", String(6), nullable=False),  # the other city
    Column("request_id", String(32), nullable=False),  # hex of the 16-byte request id
    Column("mode", String(16), nullable=False),  # membership | count | disclose
    Column("subjects", Integer, nullable=False),
    Column("ciphertexts", Integer, nullable=False),
    # Sent side: subjects that hit (membership) or the count (count mode); NULL if unknown.
    Column("hits", Integer, nullable=True),
    Column("outcome", String(16), nullable=False),  # answered | refused | failed | ...
    Column("reason", Text, nullable=True),  # why it was refused or failed
    # Disclosures: a salted hash of the subject (never the identifier itself).
    Column("subject_ref", String(64), nullable=True),
    Column("detail", Text, nullable=True),  # disclosures: masked subject, purpose, basis
    # SHA-256 of the previous row's link and this row (node.storage.matching.audit_link):
    # the rows form a hash chain. Always written; NULL only in a row put in by hand.
    Column("chain", String(64), nullable=True),
    CheckConstraint("direction IN ('received', 'sent')", name="direction_known"),
    CheckConstraint("subjects >= 0 AND ciphertexts >= 0", name="counts_not_negative"),
    Index("ix_match_audit_peer_at", "peer", "at"),
    Index("ix_match_audit_at", "at"),
)

# Request ids of probes and disclosures received, remembered for the replay window.
match_seen_requests = Table(
    "match_seen_requests",
    metadata,
    Column("peer", String(6), nullable=False),
    Column("request_id", String(32), nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("peer", "request_id"),
    Index("ix_match_seen_requests_expires_at", "expires_at"),
)

# What each peer used of its daily allowance (UTC days).
match_quota = Table(
    "match_quota",
    metadata,
    Column("peer", String(6), nullable=False),
    Column("day", Date, nullable=False),
    Column("probes", BigInteger, nullable=False),  # subjects probed
    Column("disclosures", BigInteger, nullable=False),
    PrimaryKeyConstraint("peer", "day"),
    CheckConstraint("probes >= 0 AND disclosures >= 0", name="counts_not_negative"),
)

__all__ = [
    "LOG_BLOCK_LEAVES",
    "PEER_ERROR_MAX_CHARS",
    "UTCDateTime",
    "commitments",
    "events",
    "issued_reports",
    "licences",
    "list_entries",
    "log_blocks",
    "log_heads",
    "log_leaves",
    "manifests",
    "match_audit",
    "match_quota",
    "match_seen_requests",
    "metadata",
    "peer_contacts",
    "rating_statements",
    "replica_status",
    "report_status_checks",
    "scale_mappings",
    "split_views",
    "status_lists",
]
