"""Private matching: the audit of probes and disclosures, seen request ids, daily quotas.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Types are spelled out, as in 0001: a migration is a frozen record of one step.
    op.create_table(
        "match_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("peer", sa.String(6), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("subjects", sa.Integer(), nullable=False),
        sa.Column("ciphertexts", sa.Integer(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("subject_ref", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "direction IN ('received', 'sent')", name="ck_match_audit_direction_known"
        ),
        sa.CheckConstraint(
            "subjects >= 0 AND ciphertexts >= 0", name="ck_match_audit_counts_not_negative"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_match_audit"),
    )
    op.create_index("ix_match_audit_peer_at", "match_audit", ["peer", "at"])
    op.create_index("ix_match_audit_at", "match_audit", ["at"])
    op.create_table(
        "match_seen_requests",
        sa.Column("peer", sa.String(6), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("peer", "request_id", name="pk_match_seen_requests"),
    )
    op.create_index("ix_match_seen_requests_expires_at", "match_seen_requests", ["expires_at"])
    op.create_table(
        "match_quota",
        sa.Column("peer", sa.String(6), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("probes", sa.BigInteger(), nullable=False),
        sa.Column("disclosures", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "probes >= 0 AND disclosures >= 0", name="ck_match_quota_counts_not_negative"
        ),
        sa.PrimaryKeyConstraint("peer", "day", name="pk_match_quota"),
    )


def downgrade() -> None:
    op.drop_table("match_quota")
    op.drop_index("ix_match_seen_requests_expires_at", table_name="match_seen_requests")
    op.drop_table("match_seen_requests")
    op.drop_index("ix_match_audit_at", table_name="match_audit")
    op.drop_index("ix_match_audit_peer_at", table_name="match_audit")
    op.drop_table("match_audit")
