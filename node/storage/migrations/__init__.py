"""Alembic migrations of the node's database, run by :func:`node.storage.open_database`."""
