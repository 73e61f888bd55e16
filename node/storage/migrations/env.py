"""Alembic environment: migrates the connection that :mod:`node.storage.database` hands in.

There is no ``alembic.ini`` and no URL here on purpose: the node opens the database (with
its pragmas, driver and error handling) and passes an open connection, already inside a
transaction that holds the migration lock, through ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from node.storage.schema import metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "node migrations run through node.storage.open_database(), not the alembic CLI"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
