"""Credit reports and ratings: issued reports, status lists, status cache, statements, mappings.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Types are spelled out, as in 0001: a migration is a frozen record of one step.
    op.create_table(
        "issued_reports",
        sa.Column("report_no", sa.String(40), nullable=False),
        sa.Column("status_index", sa.BigInteger(), nullable=False),
        sa.Column("subject_id", sa.String(32), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("supersedes", sa.String(40), nullable=True),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("status_index >= 0", name="ck_issued_reports_status_index_not_negative"),
        sa.PrimaryKeyConstraint("report_no", name="pk_issued_reports"),
        sa.UniqueConstraint("status_index", name="uq_issued_reports_status_index"),
    )
    op.create_index("ix_issued_reports_subject_id", "issued_reports", ["subject_id"])
    op.create_table(
        "status_lists",
        sa.Column("issuer", sa.String(6), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("version >= 1", name="ck_status_lists_version_positive"),
        sa.PrimaryKeyConstraint("issuer", name="pk_status_lists"),
    )
    op.create_table(
        "report_status_checks",
        sa.Column("report_no", sa.String(40), nullable=False),
        sa.Column("issuer", sa.String(6), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("superseded_by", sa.String(40), nullable=True),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('valid', 'revoked', 'superseded')",
            name="ck_report_status_checks_state_known",
        ),
        sa.PrimaryKeyConstraint("report_no", name="pk_report_status_checks"),
    )
    op.create_table(
        "rating_statements",
        sa.Column("issuer", sa.String(6), nullable=False),
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("subject_id", sa.String(32), nullable=False),
        sa.Column("scale_id", sa.String(64), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("sequence >= 1", name="ck_rating_statements_sequence_positive"),
        sa.PrimaryKeyConstraint("issuer", "sequence", name="pk_rating_statements"),
    )
    op.create_index("ix_rating_statements_subject_id", "rating_statements", ["subject_id"])
    op.create_table(
        "scale_mappings",
        sa.Column("issuer", sa.String(6), nullable=False),
        sa.Column("scale_id", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("version >= 1", name="ck_scale_mappings_version_positive"),
        sa.PrimaryKeyConstraint("issuer", "scale_id", name="pk_scale_mappings"),
    )


def downgrade() -> None:
    op.drop_table("scale_mappings")
    op.drop_index("ix_rating_statements_subject_id", table_name="rating_statements")
    op.drop_table("rating_statements")
    op.drop_table("report_status_checks")
    op.drop_table("status_lists")
    op.drop_index("ix_issued_reports_subject_id", table_name="issued_reports")
    op.drop_table("issued_reports")
