"""Initial schema: the manifest chain, peer contacts and the operator event journal.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Types are spelled out rather than imported from node.storage.schema: a migration is a
    # frozen record of one step and must not change when the models move on.
    op.create_table(
        "manifests",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("federation_id", sa.String(100), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=True), nullable=False),
        sa.Column("adopted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.CheckConstraint("version >= 1", name="ck_manifests_version_positive"),
        sa.PrimaryKeyConstraint("version", name="pk_manifests"),
    )
    op.create_table(
        "peer_contacts",
        sa.Column("city_code", sa.String(6), nullable=False),
        sa.Column("last_attempt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_success", sa.DateTime(timezone=True), nullable=True),
        sa.Column("manifest_version", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "consecutive_failures >= 0", name="ck_peer_contacts_failures_not_negative"
        ),
        sa.PrimaryKeyConstraint("city_code", name="pk_peer_contacts"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("peer_contacts")
    op.drop_table("manifests")
