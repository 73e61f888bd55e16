"""Licences and credit commitments a city records about subjects, for its own reports.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "licences",
        sa.Column("subject_id", sa.String(32), nullable=False),
        sa.Column("authority", sa.Text(), nullable=False),
        sa.Column("licence_no", sa.String(100), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("authority_digest", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("subject_id", "authority_digest", "licence_no", name="pk_licences"),
    )
    op.create_table(
        "commitments",
        sa.Column("subject_id", sa.String(32), nullable=False),
        sa.Column("made_on", sa.Date(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("content_digest", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("subject_id", "made_on", "content_digest", name="pk_commitments"),
    )


def downgrade() -> None:
    op.drop_table("commitments")
    op.drop_table("licences")
