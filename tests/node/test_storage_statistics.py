"""Planner statistics of bulk-filled tables (:class:`node.storage.database.PlannerStatistics`)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, insert, text

from node.storage import Database, open_database
from node.storage.database import PlannerStatistics
from node.storage.schema import log_leaves

QINGDAO = "370200"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.close()


def add_leaves(db: Database, start: int, end: int) -> int:
    rows = [
        {
            "origin": QINGDAO,
            "idx": i,
            "entry_id": f"{i:032x}",
            "event": "add",
            "list_kind": "serious-dishonesty",
            "leaf_hash": hashlib.sha256(str(i).encode()).digest(),
            "envelope": b"{}",
            "body": None,
        }
        for i in range(start, end)
    ]
    with db.transaction() as connection:
        connection.execute(insert(log_leaves), rows)
    return end - start


def estimated_rows(db: Database) -> float:
    """The planner's row estimate for log_leaves: -1 until the table is first analysed."""
    with db.read() as connection:
        value: float = connection.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('log_leaves')")
        ).scalar_one()
    return value


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_analyses_first_soon_then_each_time_the_table_has_doubled(db: Database) -> None:
    statistics = PlannerStatistics(db, (log_leaves,), first_after=100)
    statistics.added(add_leaves(db, 0, 60))
    assert estimated_rows(db) == -1  # not due yet: never analysed
    statistics.added(add_leaves(db, 60, 120))
    assert estimated_rows(db) == 120  # 120 >= 100: analysed
    statistics.added(add_leaves(db, 120, 220))
    assert estimated_rows(db) == 120  # 100 more on 120: not doubled yet
    statistics.added(add_leaves(db, 220, 250))
    assert estimated_rows(db) == 250  # 130 more on 120: doubled
    statistics.added(0)
    statistics.added(-5)
    assert estimated_rows(db) == 250


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_failed_analysis_is_logged_not_raised_and_tried_again(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    missing = Table("no_such_table", MetaData(), Column("id", Integer, primary_key=True))
    statistics = PlannerStatistics(db, (missing,), first_after=10)
    with caplog.at_level(logging.WARNING, logger="node.storage.database"):
        statistics.added(10)  # does not raise: the caller's rows are committed already
        statistics.added(9)  # not due again yet
        statistics.added(1)
    warnings = [
        r for r in caplog.records if r.getMessage() == "could not refresh the planner statistics"
    ]
    assert len(warnings) == 2
    assert "no_such_table" in str(warnings[0].__dict__["fields"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_nothing_is_done_on_sqlite(db: Database) -> None:
    statistics = PlannerStatistics(db, (log_leaves,), first_after=1)
    statistics.added(add_leaves(db, 0, 50))
    with db.read() as connection:
        stat_tables = connection.execute(
            text("SELECT count(*) FROM sqlite_master WHERE name LIKE 'sqlite_stat%'")
        ).scalar_one()
    assert stat_tables == 0  # ANALYZE would have created sqlite_stat1


def test_needs_a_table(database_url: str) -> None:
    with open_database(database_url) as database, pytest.raises(ValueError, match="one table"):
        PlannerStatistics(database, ())
