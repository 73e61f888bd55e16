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
from node.storage.schema import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The table as this revision leaves it (not the model of today), read with the node's own
# UTC times: a link is a function of the values as the node reads them.
_AUDIT = sa.table(
    "match_audit",
    sa.column("id", sa.Integer()),
    sa.column("at", UTCDateTime()),
    *(sa.column(name, sa.Text()) for name in ("direction", "peer", "request_id", "mode")),
    *(sa.column(name, sa.Integer()) for name in ("subjects", "ciphertexts", "hits")),
    *(sa.column(name, sa.Text()) for name in ("outcome", "reason", "subject_ref", "detail")),
    sa.column("chain", sa.Text()),
)


def upgrade() -> None:
    op.add_column("match_audit", sa.Column("chain", sa.String(64), nullable=True))
    connection = op.get_bind()
    previous, last_id = AUDIT_CHAIN_START, None
    while True:
        query = sa.select(_AUDIT).order_by(_AUDIT.c.id).limit(1000)
        if last_id is not None:
            query = query.where(_AUDIT.c.id > last_id)
        page = connection.execute(query).all()
        for row in page:
            # Version 1 of the link (audit_link says so): a later version keeps this one.
            previous = audit_link(previous, row._mapping)
            connection.execute(
                sa.update(_AUDIT).where(_AUDIT.c.id == row.id).values(chain=previous)
            )
        if len(page) < 1000:
            return
        last_id = page[-1].id


def downgrade() -> None:
    op.drop_column("match_audit", "chain")
