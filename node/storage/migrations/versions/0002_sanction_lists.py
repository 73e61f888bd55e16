"""Sanction-list logs: leaves, block hashes, heads, entry states, replica status, split views.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Types are spelled out, as in 0001: a migration is a frozen record of one step.
    op.create_table(
        "log_leaves",
        sa.Column("origin", sa.String(6), nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry_id", sa.String(32), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("list_kind", sa.String(32), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.CheckConstraint("idx >= 0", name="ck_log_leaves_idx_not_negative"),
        sa.PrimaryKeyConstraint("origin", "idx", name="pk_log_leaves"),
    )
    op.create_index("ix_log_leaves_origin_entry_id", "log_leaves", ["origin", "entry_id"])
    op.create_table(
        "log_blocks",
        sa.Column("origin", sa.String(6), nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.CheckConstraint("idx >= 0", name="ck_log_blocks_idx_not_negative"),
        sa.PrimaryKeyConstraint("origin", "idx", name="pk_log_blocks"),
    )
    op.create_table(
        "log_heads",
        sa.Column("origin", sa.String(6), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.Column("checkpoint", sa.LargeBinary(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("size >= 0", name="ck_log_heads_size_not_negative"),
        sa.PrimaryKeyConstraint("origin", name="pk_log_heads"),
    )
    op.create_table(
        "list_entries",
        sa.Column("origin", sa.String(6), nullable=False),
        sa.Column("entry_id", sa.String(32), nullable=False),
        sa.Column("list_kind", sa.String(32), nullable=False),
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(32), nullable=False),
        sa.Column("subject_name", sa.Text(), nullable=False),
        sa.Column("authority", sa.Text(), nullable=False),
        sa.Column("decision_no", sa.Text(), nullable=False),
        sa.Column("listed_on", sa.Date(), nullable=False),
        sa.Column("publicity_end", sa.Date(), nullable=False),
        sa.Column("removed_on", sa.Date(), nullable=True),
        sa.Column("removal_reason", sa.String(32), nullable=True),
        sa.Column("objection_open", sa.Boolean(), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("removal", sa.Text(), nullable=True),
        sa.Column("objection", sa.Text(), nullable=True),
        sa.Column("last_index", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("origin", "entry_id", name="pk_list_entries"),
    )
    op.create_index("ix_list_entries_page", "list_entries", ["origin", "list_kind", "entry_id"])
    op.create_index("ix_list_entries_subject_id", "list_entries", ["subject_id"])
    op.create_index("ix_list_entries_publicity_end", "list_entries", ["origin", "publicity_end"])
    op.create_table(
        "replica_status",
        sa.Column("origin", sa.String(6), nullable=False),
        sa.Column("latest_seen_size", sa.BigInteger(), nullable=True),
        sa.Column("latest_seen_checkpoint", sa.LargeBinary(), nullable=True),
        sa.Column("last_attempt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("blocked_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "consecutive_failures >= 0", name="ck_replica_status_failures_not_negative"
        ),
        sa.PrimaryKeyConstraint("origin", name="pk_replica_status"),
    )
    op.create_table(
        "split_views",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("origin", sa.String(6), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_checkpoint", sa.LargeBinary(), nullable=False),
        sa.Column("second_checkpoint", sa.LargeBinary(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reported_by", sa.String(6), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_split_views"),
    )
    op.create_index("ix_split_views_origin", "split_views", ["origin"])


def downgrade() -> None:
    op.drop_index("ix_split_views_origin", table_name="split_views")
    op.drop_table("split_views")
    op.drop_table("replica_status")
    op.drop_index("ix_list_entries_publicity_end", table_name="list_entries")
    op.drop_index("ix_list_entries_subject_id", table_name="list_entries")
    op.drop_index("ix_list_entries_page", table_name="list_entries")
    op.drop_table("list_entries")
    op.drop_table("log_heads")
    op.drop_table("log_blocks")
    op.drop_index("ix_log_leaves_origin_entry_id", table_name="log_leaves")
    op.drop_table("log_leaves")
