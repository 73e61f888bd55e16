"""The audit of private matching becomes a hash chain: each row holds a link.

Rows already written are linked here, oldest first, as the node links new ones.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from node.storage.matching import AUDIT_CHAIN_START, audit_link
from node.storage.schema import match_audit

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("match_audit", sa.Column("chain", sa.String(64), nullable=True))
    # The link is a function of the row's values as the node reads them (UTC times), so
    # the rows are read through the node's own table definition.
    connection = op.get_bind()
    previous, last_id = AUDIT_CHAIN_START, 0
    while page := connection.execute(
        sa.select(match_audit)
        .where(match_audit.c.id > last_id)
        .order_by(match_audit.c.id)
        .limit(1000)
    ).all():
        for row in page:
            previous = audit_link(previous, row._mapping)
            connection.execute(
                sa.update(match_audit).where(match_audit.c.id == row.id).values(chain=previous)
            )
        last_id = page[-1].id


def downgrade() -> None:
    op.drop_column("match_audit", "chain")
