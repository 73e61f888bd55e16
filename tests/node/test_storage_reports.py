"""Report and rating storage (:mod:`node.storage.reports`) on SQLite and a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, inspect, select
from sqlalchemy.exc import IntegrityError

from federation.errors import AlreadyExistsError, FailedPreconditionError
from federation.reports import ReportCommitment, ReportLicence
from node.storage import Database, open_database
from node.storage.database import head_revision
from node.storage.reports import (
    IssuedReport,
    RatingRepository,
    ReportRepository,
    StatusCheck,
    StoredMapping,
    StoredStatement,
    StoredStatusList,
)
from node.storage.schema import (
    issued_reports,
    rating_statements,
    report_status_checks,
    scale_mappings,
    status_lists,
)
from tests.node.migrating import migrate

QINGDAO, YANTAI, WEIHAI = "370200", "370600", "371000"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
# Microseconds and a non-UTC offset: both must survive the round trip.
T0 = dt.datetime(2026, 12, 2, 9, 30, 15, 123456, tzinfo=SHANGHAI)
COMPANY = "91370200MA3C4XYZ0K"
RESIDENT = "370202199001011234"  # a made-up resident ID number: never in an error message
REPORT_TABLES = {
    "issued_reports",
    "licences",
    "commitments",
    "status_lists",
    "report_status_checks",
    "rating_statements",
    "scale_mappings",
}


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.close()


# --- builders ---------------------------------------------------------------------------


def report(
    n: int,
    *,
    index: int | None = None,
    day: str = "20261202",
    issuer: str = QINGDAO,
    **changes: Any,
) -> IssuedReport:
    """Report number ``n`` of ``issuer`` on ``day``; its status index is ``n`` unless given."""
    number = f"{issuer}-{day}-{n:06d}"
    row = IssuedReport(
        report_no=number,
        status_index=n if index is None else index,
        subject_id=COMPANY if n % 2 else RESIDENT,
        issued_at=T0 + dt.timedelta(minutes=n),
        valid_until=T0 + dt.timedelta(days=30, minutes=n),
        supersedes=None,
        document=f'{{"report_no":"{number}","signature":"c2ln"}}'.encode(),
    )
    return dataclasses.replace(row, **changes)


def check(report_no: str, **changes: Any) -> StatusCheck:
    row = StatusCheck(
        report_no=report_no,
        issuer=report_no[:6],
        state="valid",
        reason="",
        superseded_by=None,
        status_at=T0,
        checked_at=T0 + dt.timedelta(seconds=2),
    )
    return dataclasses.replace(row, **changes)


def statement(issuer: str, sequence: int, *, subject: str = COMPANY) -> StoredStatement:
    return StoredStatement(
        issuer=issuer,
        sequence=sequence,
        subject_id=subject,
        scale_id=f"{issuer}-enterprise-2026",
        issued_on=dt.date(2026, 1, 1) + dt.timedelta(days=sequence),
        valid_until=dt.date(2027, 1, 1) + dt.timedelta(days=sequence),
        document=f'{{"issuer":"{issuer}","sequence":{sequence}}}'.encode(),
        received_at=T0 + dt.timedelta(seconds=sequence),
    )


def statements(issuer: str, first: int, last: int) -> list[StoredStatement]:
    return [statement(issuer, n) for n in range(first, last + 1)]


def rows_of(db: Database, *tables: Any) -> list[list[tuple[Any, ...]]]:
    """Every row of the tables, to show that a refused write changed nothing."""
    with db.read() as connection:
        return [
            [tuple(row) for row in connection.execute(select(t).order_by(*t.primary_key)).all()]
            for t in tables
        ]


def assert_aware_utc(value: dt.datetime) -> None:
    assert value.utcoffset() == dt.timedelta(0)


# --- schema -------------------------------------------------------------------------------


def test_migration_creates_the_tables_and_downgrades_cleanly(db: Database) -> None:
    assert set(inspect(db.engine).get_table_names()) >= REPORT_TABLES
    migrate(db, "downgrade", "0002")
    tables = set(inspect(db.engine).get_table_names())
    assert not REPORT_TABLES & tables
    assert "log_leaves" in tables  # 0002 is left alone
    assert db.schema_revision() == "0002"
    migrate(db, "upgrade", "head")
    assert set(inspect(db.engine).get_table_names()) >= REPORT_TABLES
    assert db.schema_revision() == head_revision()


@pytest.mark.parametrize(
    ("table", "row"),
    [
        (issued_reports, {**dataclasses.asdict(report(1)), "status_index": -1}),
        (report_status_checks, {**dataclasses.asdict(check(report(1).report_no)), "state": "x"}),
        (rating_statements, {**dataclasses.asdict(statement(QINGDAO, 1)), "sequence": 0}),
        (
            status_lists,
            {
                "issuer": QINGDAO,
                "version": 0,
                "updated_at": T0,
                "document": b"{}",
                "received_at": T0,
            },
        ),
        (
            scale_mappings,
            {
                "issuer": QINGDAO,
                "scale_id": "s",
                "version": 0,
                "document": b"{}",
                "received_at": T0,
            },
        ),
    ],
    ids=["negative-status-index", "unknown-state", "sequence-zero", "list-v0", "mapping-v0"],
)
def test_check_constraints_hold_in_the_database(
    db: Database, table: Any, row: dict[str, Any]
) -> None:
    # The repositories refuse these before SQL; the constraints guard every other writer.
    with pytest.raises(IntegrityError, match=r"(?i)check"), db.transaction() as connection:
        connection.execute(insert(table), [row])


@pytest.mark.parametrize(
    "make",
    [
        lambda: report(1, issued_at=dt.datetime(2026, 12, 2)),
        lambda: report(1, valid_until=dt.datetime(2026, 12, 2)),
        lambda: check("370200-20261202-000001", status_at=dt.datetime(2026, 12, 2)),
        lambda: check("370200-20261202-000001", checked_at=dt.datetime(2026, 12, 2)),
        lambda: dataclasses.replace(statement(QINGDAO, 1), received_at=dt.datetime(2026, 1, 1)),
        lambda: StoredStatusList(QINGDAO, 1, dt.datetime(2026, 1, 1), b"{}", T0),
        lambda: StoredMapping(QINGDAO, "s", 1, b"{}", dt.datetime(2026, 1, 1)),
        lambda: check("370200-20261202-000001", state="expired"),
    ],
    ids=[
        "report-issued",
        "report-valid-until",
        "check-status-at",
        "check-checked-at",
        "statement-received",
        "list-updated",
        "mapping-received",
        "check-state",
    ],
)
def test_rows_refuse_naive_times_and_unknown_states(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=r"timezone-aware|state must be"):
        make()


# --- issued reports ----------------------------------------------------------------------


def test_report_round_trip_and_status_indexes(db: Database) -> None:
    reports = ReportRepository(db)
    assert reports.next_status_index() == 0
    assert reports.get(report(1).report_no) is None
    first = report(1, index=0)
    second = report(2, index=7, supersedes=first.report_no)
    reports.add(first)
    assert reports.next_status_index() == 1
    reports.add(second)
    assert reports.next_status_index() == 8

    assert reports.get(first.report_no) == first
    stored = reports.get(second.report_no)
    assert stored == second
    assert stored is not None
    assert stored.supersedes == first.report_no
    assert isinstance(stored.document, bytes)
    # Aware, in UTC, the same instant to the microsecond.
    assert_aware_utc(stored.issued_at)
    assert_aware_utc(stored.valid_until)
    assert stored.issued_at == dt.datetime(2026, 12, 2, 1, 32, 15, 123456, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("duplicate", "message"),
    [
        (report(1, index=9), "report 370200-20261202-000001 is already stored"),
        (report(3, index=1), "status index 1 is already used by another report"),
        (report(1), "report 370200-20261202-000001 is already stored"),
    ],
    ids=["same-number", "same-index", "same-both"],
)
def test_a_used_number_or_index_is_refused(
    db: Database, duplicate: IssuedReport, message: str
) -> None:
    reports = ReportRepository(db)
    reports.add(report(1))
    reports.add(report(2))
    before = rows_of(db, issued_reports)
    with pytest.raises(AlreadyExistsError, match=re.escape(message)) as caught:
        reports.add(duplicate)
    assert RESIDENT not in str(caught.value.diagnostics())
    assert rows_of(db, issued_reports) == before


def test_a_report_with_a_negative_index_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="never negative"):
        ReportRepository(db).add(report(1, index=-1))


def test_a_database_failure_is_not_mistaken_for_a_duplicate(db: Database) -> None:
    reports = ReportRepository(db)
    with pytest.raises(IntegrityError, match=r"(?i)not null|null value"):
        reports.add(report(1, document=cast(bytes, None)))
    assert reports.get(report(1).report_no) is None


def test_concurrent_issuers_cannot_share_a_status_index(database_url: str) -> None:
    databases = [open_database(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(databases))
    outcomes: list[str] = []

    def issue(n: int, database: Database) -> None:
        barrier.wait()
        try:
            ReportRepository(database).add(report(n, index=0))
            outcomes.append("stored")
        except AlreadyExistsError:
            outcomes.append("refused")

    threads = [threading.Thread(target=issue, args=(n, d)) for n, d in enumerate(databases, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        assert sorted(outcomes) == ["refused"] * 3 + ["stored"]
        assert ReportRepository(databases[0]).next_status_index() == 1
    finally:
        for database in databases:
            database.close()


@pytest.mark.parametrize(
    ("prefix", "count"),
    [
        ("370200-20261202-", 3),
        ("370200-20261203-", 1),
        ("370600-20261202-", 1),
        ("370200-20261204-", 0),
        ("370200-202612", 4),
        ("370200-20261202-000002", 1),
        # Wildcards of LIKE are plain characters here.
        ("370200-2026120_-", 0),
        ("370200-%", 0),
        ("%", 0),
    ],
)
def test_count_issued_on_counts_an_exact_prefix(db: Database, prefix: str, count: int) -> None:
    reports = ReportRepository(db)
    for n in (1, 2, 3):
        reports.add(report(n))
    reports.add(report(1, index=10, day="20261203"))
    reports.add(report(1, index=11, issuer=YANTAI))
    assert reports.count_issued_on(prefix) == count


def test_count_issued_on_refuses_an_empty_prefix(db: Database) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        ReportRepository(db).count_issued_on("")


# --- status lists ------------------------------------------------------------------------


def test_status_lists_are_replaced_only_by_newer_versions(db: Database) -> None:
    reports = ReportRepository(db)
    assert reports.status_list(QINGDAO) is None
    assert reports.status_lists() == {}

    def put(issuer: str, version: int, tag: str = "") -> bool:
        return reports.put_status_list(
            issuer,
            version,
            T0 + dt.timedelta(hours=version),
            f'{{"issuer":"{issuer}","version":{version}{tag}}}'.encode(),
            T0 + dt.timedelta(hours=version, seconds=5),
        )

    def held(issuer: str, version: int, tag: str = "") -> StoredStatusList:
        return StoredStatusList(
            issuer,
            version,
            T0 + dt.timedelta(hours=version),
            f'{{"issuer":"{issuer}","version":{version}{tag}}}'.encode(),
            T0 + dt.timedelta(hours=version, seconds=5),
        )

    assert put(QINGDAO, 2) is True
    assert reports.status_list(QINGDAO) == held(QINGDAO, 2)
    assert put(QINGDAO, 2, ',"other":1') is False  # a repeat is not a replacement
    assert put(QINGDAO, 1) is False  # a late older list
    assert reports.status_list(QINGDAO) == held(QINGDAO, 2)
    assert put(QINGDAO, 5) is True
    assert put(YANTAI, 1) is True
    assert reports.status_lists() == {QINGDAO: held(QINGDAO, 5), YANTAI: held(YANTAI, 1)}
    stored = reports.status_list(QINGDAO)
    assert stored is not None
    assert_aware_utc(stored.updated_at)
    assert_aware_utc(stored.received_at)


def test_put_status_list_refuses_version_zero_and_naive_times(db: Database) -> None:
    reports = ReportRepository(db)
    with pytest.raises(ValueError, match="starts at 1"):
        reports.put_status_list(QINGDAO, 0, T0, b"{}", T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        reports.put_status_list(QINGDAO, 1, T0, b"{}", dt.datetime(2026, 12, 2))
    assert reports.status_lists() == {}


def test_concurrent_status_list_writers_keep_the_newest(database_url: str) -> None:
    versions = [3, 9, 1, 7, 5, 8]
    databases = [open_database(database_url) for _ in versions]
    barrier = threading.Barrier(len(databases))

    def put(version: int, database: Database) -> None:
        barrier.wait()
        ReportRepository(database).put_status_list(QINGDAO, version, T0, b"%d" % version, T0)

    pairs = zip(versions, databases, strict=True)
    threads = [threading.Thread(target=put, args=pair) for pair in pairs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        stored = ReportRepository(databases[0]).status_list(QINGDAO)
        assert stored is not None
        assert (stored.version, stored.document) == (9, b"9")
    finally:
        for database in databases:
            database.close()


# --- the online status cache --------------------------------------------------------------


def test_status_cache_upserts(db: Database) -> None:
    reports = ReportRepository(db)
    number = "370600-20261202-000003"
    assert reports.cached_status(number) is None
    valid = check(number)
    reports.cache_status(valid)
    assert reports.cached_status(number) == valid
    superseded = check(
        number,
        state="superseded",
        reason="更正",
        superseded_by="370600-20261203-000001",
        status_at=T0 + dt.timedelta(days=1),
        checked_at=T0 + dt.timedelta(days=1, seconds=1),
    )
    reports.cache_status(superseded)
    stored = reports.cached_status(number)
    assert stored == superseded
    assert stored is not None
    assert_aware_utc(stored.status_at)
    assert_aware_utc(stored.checked_at)
    other = check("370200-20261202-000001", state="revoked", reason="issued in error")
    reports.cache_status(other)
    assert reports.cached_status(other.report_no) == other
    assert reports.cached_status(number) == superseded


# --- rating statements --------------------------------------------------------------------


def test_statements_round_trip_and_read_in_order(db: Database) -> None:
    ratings = RatingRepository(db)
    assert ratings.last_sequence(QINGDAO) == 0
    assert ratings.next_sequence(QINGDAO) == 1
    # Two issuers mixed in one batch, each continuing its own sequence.
    ratings.add_statements([statement(QINGDAO, 1), statement(YANTAI, 1), statement(QINGDAO, 2)])
    ratings.add_statements(statements(QINGDAO, 3, 10))
    ratings.add_statements([])  # nothing to do, nothing refused
    assert ratings.last_sequence(QINGDAO) == 10
    assert ratings.next_sequence(QINGDAO) == 11
    assert ratings.last_sequence(YANTAI) == 1
    assert ratings.last_sequence(WEIHAI) == 0

    assert ratings.statements_after(QINGDAO, 0, 100) == statements(QINGDAO, 1, 10)
    assert ratings.statements_after(QINGDAO, 4, 3) == statements(QINGDAO, 5, 7)
    assert ratings.statements_after(QINGDAO, 10, 5) == []
    assert ratings.statements_after(QINGDAO, 0, 0) == []
    assert ratings.statements_after(YANTAI, 0, 5) == [statement(YANTAI, 1)]

    stored = ratings.statements_after(QINGDAO, 0, 1)[0]
    assert type(stored.issued_on) is dt.date  # a date, not a datetime
    assert stored.issued_on == dt.date(2026, 1, 2)
    assert stored.valid_until == dt.date(2027, 1, 2)
    assert_aware_utc(stored.received_at)
    assert stored.received_at == T0 + dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (statements(QINGDAO, 5, 6), "370200/5 does not continue"),
        (statements(QINGDAO, 3, 4), "370200/3 does not continue"),
        (statements(QINGDAO, 1, 2), "370200/1 does not continue"),
        ([statement(QINGDAO, 4), statement(QINGDAO, 6)], "370200/6"),
        ([statement(QINGDAO, 4), statement(QINGDAO, 4)], "370200/4 does not continue"),
        ([statement(QINGDAO, 5), statement(QINGDAO, 4)], "370200/5"),
        # One issuer fits, the other does not: neither is stored.
        ([statement(YANTAI, 1), statement(QINGDAO, 5)], "370200/5"),
        ([statement(QINGDAO, 4), statement(YANTAI, 2)], "370600/2"),
    ],
    ids=[
        "gap",
        "repeat-last",
        "restart",
        "inner-gap",
        "inner-repeat",
        "out-of-order",
        "mixed-second-bad",
        "new-issuer-not-from-1",
    ],
)
def test_add_statements_refuses_gaps_and_repeats_and_writes_nothing(
    db: Database, batch: list[StoredStatement], message: str
) -> None:
    ratings = RatingRepository(db)
    ratings.add_statements(statements(QINGDAO, 1, 3))
    before = rows_of(db, rating_statements)
    with pytest.raises(FailedPreconditionError, match=re.escape(message)):
        ratings.add_statements(batch)
    assert rows_of(db, rating_statements) == before
    ratings.add_statements(statements(QINGDAO, 4, 5))  # what fits is still accepted
    assert ratings.last_sequence(QINGDAO) == 5


def test_a_database_failure_mid_batch_writes_nothing(db: Database) -> None:
    ratings = RatingRepository(db)
    ratings.add_statements(statements(QINGDAO, 1, 2))
    before = rows_of(db, rating_statements)
    broken = dataclasses.replace(statement(QINGDAO, 5), subject_id=cast(str, None))
    with pytest.raises(IntegrityError, match=r"(?i)not null|null value"):
        ratings.add_statements([*statements(QINGDAO, 3, 4), broken])
    assert rows_of(db, rating_statements) == before


def test_concurrent_appenders_cannot_both_win(database_url: str) -> None:
    databases = [open_database(database_url) for _ in range(3)]
    RatingRepository(databases[0]).add_statements(statements(QINGDAO, 1, 2))
    barrier = threading.Barrier(len(databases))
    outcomes: list[str] = []

    def append(database: Database) -> None:
        barrier.wait()
        try:
            RatingRepository(database).add_statements(statements(QINGDAO, 3, 50))
            outcomes.append("stored")
        except FailedPreconditionError:
            outcomes.append("refused")

    threads = [threading.Thread(target=append, args=(d,)) for d in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        assert sorted(outcomes) == ["refused", "refused", "stored"]
        ratings = RatingRepository(databases[0])
        assert ratings.statements_after(QINGDAO, 0, 100) == statements(QINGDAO, 1, 50)
    finally:
        for database in databases:
            database.close()


_issuers = (f"{n:06d}" for n in itertools.count(100000))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(attempts=st.lists(st.lists(st.integers(1, 8), max_size=4), max_size=6))
def test_stored_sequences_never_have_gaps(db: Database, attempts: list[list[int]]) -> None:
    # Any series of batches: each is stored exactly when it continues the sequence, and
    # what is stored is always 1..n.
    issuer = next(_issuers)  # a fresh issuer per example: the database is shared
    ratings = RatingRepository(db)
    last = 0
    for numbers in attempts:
        fits = numbers == list(range(last + 1, last + 1 + len(numbers)))
        batch = [statement(issuer, n) for n in numbers]
        if fits:
            ratings.add_statements(batch)
            last += len(numbers)
        else:
            with pytest.raises(FailedPreconditionError):
                ratings.add_statements(batch)
        assert ratings.last_sequence(issuer) == last
    assert [s.sequence for s in ratings.statements_after(issuer, 0, 100)] == list(
        range(1, last + 1)
    )


def test_by_subject_across_issuers(db: Database) -> None:
    ratings = RatingRepository(db)
    ratings.add_statements(
        [
            statement(YANTAI, 1, subject=RESIDENT),
            statement(QINGDAO, 1),
            statement(QINGDAO, 2, subject=RESIDENT),
            statement(YANTAI, 2),
            statement(QINGDAO, 3, subject=RESIDENT),
        ]
    )
    assert ratings.by_subject(RESIDENT) == [
        statement(QINGDAO, 2, subject=RESIDENT),
        statement(QINGDAO, 3, subject=RESIDENT),
        statement(YANTAI, 1, subject=RESIDENT),
    ]
    assert ratings.by_subject(COMPANY) == [statement(QINGDAO, 1), statement(YANTAI, 2)]
    assert ratings.by_subject("91370600MA0000000X") == []


# --- scale mappings -----------------------------------------------------------------------


def test_mappings_are_replaced_only_by_newer_versions(db: Database) -> None:
    ratings = RatingRepository(db)
    assert ratings.mappings() == []

    def mapping(issuer: str, scale: str, version: int, tag: str = "") -> StoredMapping:
        return StoredMapping(
            issuer, scale, version, f"{issuer}/{scale}/v{version}{tag}".encode(), T0
        )

    def put(row: StoredMapping) -> bool:
        return ratings.put_mapping(
            row.issuer, row.scale_id, row.version, row.document, row.received_at
        )

    assert put(mapping(YANTAI, "grades", 2)) is True
    assert put(mapping(YANTAI, "grades", 2, " again")) is False
    assert put(mapping(YANTAI, "grades", 1)) is False
    assert put(mapping(QINGDAO, "points", 1)) is True
    assert put(mapping(QINGDAO, "grades", 4)) is True
    assert put(mapping(QINGDAO, "points", 3)) is True
    # Versions are per (issuer, scale): Qingdao's v4 leaves Yantai's v2 where it was.
    assert ratings.mappings() == [
        mapping(QINGDAO, "grades", 4),
        mapping(QINGDAO, "points", 3),
        mapping(YANTAI, "grades", 2),
    ]
    assert ratings.mappings(YANTAI) == [mapping(YANTAI, "grades", 2)]
    assert ratings.mappings(WEIHAI) == []
    assert_aware_utc(ratings.mappings(YANTAI)[0].received_at)
    with pytest.raises(ValueError, match="starts at 1"):
        ratings.put_mapping(WEIHAI, "grades", 0, b"{}", T0)


def test_expired_among_names_the_reports_whose_validity_ended(db: Database) -> None:
    reports = ReportRepository(db)
    for n in range(1, 701):  # more than one IN (...) list of indices
        reports.add(report(n))  # valid until T0 + 30 days + n minutes
    cut = T0 + dt.timedelta(days=30, minutes=600)
    # Strictly before the cut; indices with no report, or not asked about, are not named.
    assert reports.expired_among(range(0, 2000), cut) == set(range(1, 600))
    assert reports.expired_among([5, 650, 699, 5000], cut) == {5}
    assert reports.expired_among([], cut) == set()
    with pytest.raises(ValueError, match="timezone-aware"):
        reports.expired_among([1], cut.replace(tzinfo=None))


def test_confirming_a_status_list_moves_its_received_time_forward_only(db: Database) -> None:
    reports = ReportRepository(db)
    reports.put_status_list(QINGDAO, 3, T0, b'{"v":3}', T0)
    later = T0 + dt.timedelta(hours=5)
    reports.confirm_status_list(QINGDAO, 3, later)
    reports.confirm_status_list(QINGDAO, 3, T0 + dt.timedelta(hours=1))  # late: ignored
    reports.confirm_status_list(QINGDAO, 2, T0 + dt.timedelta(hours=9))  # not the version held
    reports.confirm_status_list(YANTAI, 3, T0 + dt.timedelta(hours=9))  # none held
    held = reports.status_list(QINGDAO)
    assert held is not None and (held.version, held.received_at, held.document) == (
        3,
        later,
        b'{"v":3}',
    )
    assert reports.status_list(YANTAI) is None


# --- licences and commitments ----------------------------------------------------------------


def test_licences_and_commitments_are_kept_newest_first_once_each(db: Database) -> None:
    repository = ReportRepository(db)
    at = dt.datetime(2026, 6, 1, 6, 0, tzinfo=dt.UTC)
    older = ReportLicence(
        authority="青岛市行政审批服务局",
        licence_no="JY13702000012345",
        issued_on=dt.date(2024, 3, 1),
        summary="食品经营许可",
    )
    newer = dataclasses.replace(older, licence_no="JY13702000099999", issued_on=dt.date(2026, 1, 5))
    # The same number from another authority is another licence.
    other_authority = dataclasses.replace(
        older, authority="青岛市市场监督管理局", issued_on=dt.date(2025, 1, 1)
    )
    for licence in (older, newer, other_authority):
        repository.add_licence("91110000600037341L", licence, at)
    with pytest.raises(AlreadyExistsError, match="licence JY13702000012345 of that authority"):
        repository.add_licence("91110000600037341L", older, at)
    repository.add_licence("91370200MA00000015", older, at)  # another subject: its own
    assert repository.licences_of("91110000600037341L") == [newer, other_authority, older]
    assert repository.licences_of("nobody") == []

    first = ReportCommitment(made_on=dt.date(2025, 5, 1), content="承诺所提交材料真实有效。" * 300)
    second = ReportCommitment(made_on=dt.date(2026, 2, 1), content="承诺依法诚信经营。")
    repository.add_commitment("91110000600037341L", first, at)
    repository.add_commitment("91110000600037341L", second, at)
    with pytest.raises(AlreadyExistsError, match="this commitment of 2025-05-01"):
        repository.add_commitment("91110000600037341L", first, at)
    # The same words on another day are another commitment.
    again = dataclasses.replace(first, made_on=dt.date(2025, 5, 2))
    repository.add_commitment("91110000600037341L", again, at)
    assert [c.made_on for c in repository.commitments_of("91110000600037341L")] == [
        dt.date(2026, 2, 1),
        dt.date(2025, 5, 2),
        dt.date(2025, 5, 1),
    ]
