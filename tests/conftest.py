"""Suite-wide fixtures: a real PostgreSQL server, and ``database_url`` over both engines.

Keep this file to the database fixtures; package-specific fixtures belong next to their
tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pg_server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL server for this session (``.../postgres``, the admin database).

    Fails (never skips) when no server can be had: the storage tests must run on both
    engines. See :mod:`tests.pg_server` for where the server comes from.
    """
    try:
        with pg_server.postgres_server() as (url, started_in_s):
            if started_in_s:
                print(f"\ncredit-node tests: PostgreSQL started in {started_in_s:.2f}s")
            yield url
    except pg_server.PostgresUnavailableError as exc:
        pytest.fail(f"no PostgreSQL for the tests: {exc}", pytrace=False)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to a fresh, empty database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'node.db'}"
    # Looked up lazily so that `-m "not postgres"` runs never start a server.
    server_url: str = request.getfixturevalue("postgres_url")
    return pg_server.create_database(server_url)
