"""Private-matching storage (:mod:`node.storage.matching`) on SQLite and a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import column, delete, insert, inspect, select, update
from sqlalchemy import table as sa_table
from sqlalchemy.exc import IntegrityError

from federation.errors import CreditNetError
from node.storage import Database, open_database
from node.storage.database import head_revision
from node.storage.matching import (
    AUDIT_CHAIN_START,
    Admission,
    MatchAuditRepository,
    MatchQuotaRepository,
    OwnListingRepository,
)
from node.storage.schema import list_entries, match_audit
from tests.node.migrating import migrate

PEER, OTHER = "370600", "370700"
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 12, 2, 9, 30, 15, 123456, tzinfo=SHANGHAI)
DAY = dt.date(2026, 12, 2)
MATCH_TABLES = {"match_audit", "match_seen_requests", "match_quota"}


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = open_database(database_url)
    yield database
    database.close()


def test_migration_creates_the_tables_and_downgrades_cleanly(db: Database) -> None:
    assert set(inspect(db.engine).get_table_names()) >= MATCH_TABLES
    migrate(db, "downgrade", "0003")
    tables = set(inspect(db.engine).get_table_names())
    assert not MATCH_TABLES & tables
    assert "issued_reports" in tables
    migrate(db, "upgrade", "head")
    assert set(inspect(db.engine).get_table_names()) >= MATCH_TABLES
    assert db.schema_revision() == head_revision()


# --- audit ---------------------------------------------------------------------------------


def test_audit_records_both_directions(db: Database) -> None:
    audit = MatchAuditRepository(db)
    sent = secrets.token_bytes(16)
    first = audit.record("sent", PEER, sent, "membership", 3, 2, 1, "answered", at=T0)
    second = audit.record(
        "received",
        OTHER,
        sent.hex(),
        "disclose",
        1,
        0,
        None,
        "refused",
        at=T0 + dt.timedelta(seconds=1),
        reason="over quota",
        subject_ref="ab" * 32,
        detail="subject 913702****XY12",
    )
    assert second > first
    rows = audit.recent()
    assert [r.id for r in rows] == [second, first]
    newest = rows[0]
    assert (newest.direction, newest.peer, newest.mode, newest.outcome) == (
        "received",
        OTHER,
        "disclose",
        "refused",
    )
    assert (newest.reason, newest.subject_ref, newest.hits) == ("over quota", "ab" * 32, None)
    assert newest.at == T0 + dt.timedelta(seconds=1)
    assert newest.at.utcoffset() == dt.timedelta(0)
    oldest = rows[1]
    assert (oldest.request_id, oldest.subjects, oldest.ciphertexts, oldest.hits) == (
        sent.hex(),
        3,
        2,
        1,
    )
    assert [r.id for r in audit.recent(direction="sent")] == [first]
    assert [r.id for r in audit.recent(peer=OTHER)] == [second]
    assert [r.id for r in audit.by_request(sent)] == [first, second]
    assert audit.count() == 2 and audit.count(direction="received") == 1


def test_audit_defaults_its_time_and_clips_long_text(db: Database) -> None:
    audit = MatchAuditRepository(db)
    before = dt.datetime.now(dt.UTC)
    audit.record("sent", PEER, bytes(16), "count", 1, 1, 0, "failed", reason="x" * 5000)
    [row] = audit.recent()
    assert row.at >= before.replace(microsecond=0)
    assert row.reason is not None and len(row.reason) == 2000


@pytest.mark.parametrize(
    ("direction", "request_id", "subjects"),
    [
        ("both", bytes(16), 1),
        ("sent", b"short", 1),
        ("sent", "AB" * 16, 1),
        ("sent", bytes(16), -1),
    ],
)
def test_audit_refuses_malformed_rows(
    db: Database, direction: str, request_id: bytes | str, subjects: int
) -> None:
    with pytest.raises(ValueError):
        MatchAuditRepository(db).record(
            direction,  # type: ignore[arg-type]
            PEER,
            request_id,
            "membership",
            subjects,
            0,
            None,
            "answered",
            at=T0,
        )
    with pytest.raises(ValueError, match="aware"):
        MatchAuditRepository(db).record(
            "sent",
            PEER,
            bytes(16),
            "membership",
            1,
            0,
            None,
            "answered",
            at=T0.replace(tzinfo=None),
        )


def test_the_database_checks_the_direction(db: Database) -> None:
    row = {
        "at": T0,
        "direction": "sideways",
        "peer": PEER,
        "request_id": "0" * 32,
        "mode": "membership",
        "subjects": 1,
        "ciphertexts": 1,
        "outcome": "answered",
    }
    with pytest.raises(IntegrityError), db.transaction() as connection:
        connection.execute(insert(match_audit).values(row))


# --- the audit's hash chain ------------------------------------------------------------------


def _fill(audit: MatchAuditRepository, count: int) -> list[int]:
    return [
        audit.record(
            "received" if i % 2 else "sent",
            PEER,
            secrets.token_bytes(16),
            "membership",
            i,
            i,
            None if i % 3 else i,
            "answered",
            at=T0 + dt.timedelta(microseconds=i),
            detail=f"第{i}条",
        )
        for i in range(count)
    ]


def test_the_audit_is_a_chain_each_row_linked_to_the_one_before(db: Database) -> None:
    audit = MatchAuditRepository(db)
    empty = audit.verify()
    assert (empty.rows, empty.head, empty.intact) == (0, AUDIT_CHAIN_START, True)
    heads = []
    for _ in range(3):
        _fill(audit, 1)
        heads.append(audit.verify().head)
    check = audit.verify()
    assert check.intact and check.rows == 3 and check.breaks == ()
    assert len(set(heads)) == 3 and check.head == heads[-1]
    with db.read() as connection:
        links = connection.execute(select(match_audit.c.chain).order_by(match_audit.c.id))
        assert list(links.scalars()) == heads


def change(db: Database, statement: Any) -> None:
    with db.transaction() as connection:
        connection.execute(statement)


DOES_NOT_HOLD = "its link does not hold"


@pytest.mark.parametrize(
    "values", [{"hits": 99}, {"at": T0 + dt.timedelta(seconds=1)}, {"detail": None}]
)
def test_a_changed_row_breaks_the_chain_there_only(db: Database, values: dict[str, Any]) -> None:
    audit = MatchAuditRepository(db)
    ids = _fill(audit, 5)
    change(db, update(match_audit).where(match_audit.c.id == ids[2]).values(values))
    check = audit.verify()
    assert (check.rows, check.intact) == (5, False)
    assert [(row, problem.startswith(DOES_NOT_HOLD)) for row, problem in check.breaks] == [
        (ids[2], True)
    ]


def test_each_break_is_named_and_the_rows_after_it_still_checked(db: Database) -> None:
    audit = MatchAuditRepository(db)
    ids = _fill(audit, 8)
    change(db, update(match_audit).where(match_audit.c.id == ids[1]).values(hits=7))
    change(db, delete(match_audit).where(match_audit.c.id == ids[4]))
    change(db, update(match_audit).where(match_audit.c.id == ids[6]).values(chain="f" * 64))
    assert [row for row, _ in audit.verify().breaks] == [ids[1], ids[5], ids[6], ids[7]]


def test_a_row_given_another_id_breaks_the_chain(db: Database) -> None:
    audit = MatchAuditRepository(db)
    ids = _fill(audit, 3)
    change(db, update(match_audit).where(match_audit.c.id == ids[2]).values(id=ids[2] + 10))
    assert [row for row, _ in audit.verify().breaks] == [ids[2] + 10]


@pytest.mark.parametrize("at_id", [0, -7])
def test_a_row_put_in_by_hand_breaks_the_chain_wherever_it_is(db: Database, at_id: int) -> None:
    audit = MatchAuditRepository(db)
    _fill(audit, 2)
    with db.transaction() as connection:
        hand = connection.execute(
            insert(match_audit).values({**_row_values(), "request_id": "cd" * 16})
        ).inserted_primary_key[0]
        connection.execute(
            insert(match_audit).values({**_row_values(), "id": at_id, "chain": "0" * 64})
        )
    _fill(audit, 1)  # linked past the row without a link
    check = audit.verify()
    assert check.rows == 5
    assert [row for row, _ in check.breaks] == [at_id, hand]
    assert check.breaks[0][1].startswith(DOES_NOT_HOLD)
    assert check.breaks[1][1] == (
        "it has no link: it was put in by hand, or by a node of a version before the chain"
    )


def test_a_link_that_is_no_hash_is_a_break_not_a_failure(db: Database) -> None:
    """A damaged newest link neither stops the audit nor the check."""
    audit = MatchAuditRepository(db)
    ids = _fill(audit, 2)
    change(db, update(match_audit).where(match_audit.c.id == ids[1]).values(chain="é" * 64))
    later = _fill(audit, 2)  # still recorded, linked to what the row holds
    check = audit.verify()
    assert [row for row, _ in check.breaks] == [ids[1]] and check.rows == 4
    assert later[-1] == max(r.id for r in audit.recent())


def test_values_the_database_would_alter_are_refused_or_made_storable(db: Database) -> None:
    audit = MatchAuditRepository(db)
    for bad in ({"peer": "370600 "}, {"outcome": "answered "}, {"mode": "m" * 17}):
        arguments = {"peer": PEER, "mode": "count", "outcome": "answered", **bad}
        with pytest.raises(CreditNetError if "peer" in bad else ValueError):
            audit.record(
                "sent", arguments["peer"], bytes(16), arguments["mode"], 1, 1, None,
                arguments["outcome"],
            )  # fmt: skip
    audit.record("sent", PEER, bytes(16), "count", 1, 1, None, "failed", reason="a\x00b")
    assert audit.recent()[0].reason == "a\\0b"
    assert audit.verify().intact


def test_removing_the_newest_rows_shows_only_against_a_recorded_head(db: Database) -> None:
    audit = MatchAuditRepository(db)
    ids = _fill(audit, 4)
    early = audit.verify()
    _fill(audit, 2)
    recorded = audit.verify().head
    assert audit.verify(recorded_head=early.head).head_found is True
    assert audit.verify(recorded_head=recorded.upper()).intact
    change(db, delete(match_audit).where(match_audit.c.id > ids[-1]))
    shorter = audit.verify()
    assert shorter.intact and shorter.rows == 4 and shorter.head == early.head
    check = audit.verify(recorded_head=recorded)
    assert (check.head_found, check.intact, check.breaks) == (False, False, ())
    assert audit.verify(recorded_head=AUDIT_CHAIN_START).head_found is True


def test_rows_appended_at_once_from_many_threads_form_one_chain(db: Database) -> None:
    audit = MatchAuditRepository(db)
    failures: list[BaseException] = []

    def append() -> None:
        try:
            _fill(audit, 15)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=append) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    check = audit.verify()
    assert check.intact and check.rows == 60


def test_the_migration_links_the_rows_written_before_it(db: Database) -> None:
    audit = MatchAuditRepository(db)
    migrate(db, "downgrade", "0004")
    assert "chain" not in {c["name"] for c in inspect(db.engine).get_columns("match_audit")}
    before = sa_table("match_audit", *(column(n) for n in _row_values()))
    with db.transaction() as connection:
        for i in range(3):
            connection.execute(insert(before).values({**_row_values(), "request_id": f"{i:032x}"}))
    migrate(db, "upgrade", "head")
    check = audit.verify()
    assert check.intact and check.rows == 3
    _fill(audit, 1)
    assert audit.verify().rows == 4 and audit.verify().intact


def _row_values() -> dict[str, Any]:
    return {
        "at": T0,
        "direction": "received",
        "peer": OTHER,
        "request_id": "ab" * 16,
        "mode": "count",
        "subjects": 1,
        "ciphertexts": 1,
        "hits": None,
        "outcome": "answered",
        "reason": None,
        "subject_ref": None,
        "detail": None,
    }


# --- quotas and replay ---------------------------------------------------------------------


def admit(
    quota: MatchQuotaRepository,
    request_id: bytes,
    amount: int,
    *,
    peer: str = PEER,
    limit: int = 10,
    counter: str = "probes",
    day: dt.date = DAY,
) -> Admission:
    return quota.admit(
        peer,
        request_id,
        counter=counter,  # type: ignore[arg-type]
        amount=amount,
        limit=limit,
        day=day,
        at=T0,
        remember_until=T0 + dt.timedelta(minutes=10),
    ).outcome


def test_admission_charges_and_remembers_together(db: Database) -> None:
    quota = MatchQuotaRepository(db)
    first = secrets.token_bytes(16)
    assert admit(quota, first, 6) is Admission.ADMITTED
    assert quota.seen(PEER, first) and not quota.seen(OTHER, first)
    assert admit(quota, first, 1) is Admission.REPLAY
    assert admit(quota, first, 1, peer=OTHER) is Admission.ADMITTED  # ids are per peer
    over = secrets.token_bytes(16)
    result = quota.admit(
        PEER,
        over,
        counter="probes",
        amount=5,
        limit=10,
        day=DAY,
        at=T0,
        remember_until=T0 + dt.timedelta(minutes=10),
    )
    assert (result.outcome, result.used) == (Admission.OVER_QUOTA, 6)
    assert not quota.seen(PEER, over)  # a refused request leaves nothing behind
    assert admit(quota, over, 4) is Admission.ADMITTED  # exactly at the limit
    assert admit(quota, secrets.token_bytes(16), 1, counter="disclosures", limit=1) is (
        Admission.ADMITTED
    )
    usage = quota.usage(PEER, DAY)
    assert (usage.probes, usage.disclosures) == (10, 1)
    assert quota.usage(PEER, DAY + dt.timedelta(days=1)).probes == 0
    assert admit(quota, secrets.token_bytes(16), 10, day=DAY + dt.timedelta(days=1)) is (
        Admission.ADMITTED
    )


def test_forgetting_expired_ids_and_old_days(db: Database) -> None:
    quota = MatchQuotaRepository(db)
    old = secrets.token_bytes(16)
    admit(quota, old, 1, day=DAY - dt.timedelta(days=8))
    assert quota.forget_expired(T0 + dt.timedelta(minutes=9)) == 0
    assert quota.forget_expired(T0 + dt.timedelta(minutes=11)) == 1
    assert not quota.seen(PEER, old)
    admit(quota, secrets.token_bytes(16), 1)
    assert quota.forget_days_before(DAY - dt.timedelta(days=7)) == 1
    assert quota.usage(PEER, DAY).probes == 1


def test_concurrent_admissions_never_pass_the_limit(database_url: str) -> None:
    databases = [open_database(database_url) for _ in range(4)]
    outcomes: list[Admission] = []
    lock = threading.Lock()

    def worker(database: Database) -> None:
        quota = MatchQuotaRepository(database)
        for _ in range(5):
            outcome = admit(quota, secrets.token_bytes(16), 3, limit=20)
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=worker, args=(d,)) for d in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert outcomes.count(Admission.ADMITTED) == 6
        assert MatchQuotaRepository(databases[0]).usage(PEER, DAY).probes == 18
    finally:
        for database in databases:
            database.close()


# --- own listings ----------------------------------------------------------------------------


def test_listings_of_one_origin_and_some_kinds(db: Database) -> None:
    def row(origin: str, entry_id: str, kind: str, **dates: dt.date | None) -> dict[str, object]:
        values: dict[str, object] = {
            "origin": origin,
            "entry_id": entry_id,
            "list_kind": kind,
            "subject_kind": "uscc",
            "subject_id": f"SUBJECT{entry_id}",
            "subject_name": "x",
            "authority": "a",
            "decision_no": entry_id,
            "listed_on": dt.date(2026, 1, 1),
            "publicity_end": dt.date(2026, 12, 31),
            "removed_on": None,
            "removal_reason": None,
            "objection_open": False,
            "entry": "{}",
            "last_index": 0,
            "updated_at": T0,
        }
        values.update(dates)
        return values

    rows = [
        row("370200", "a1", "watch-list"),
        row("370200", "a2", "watch-list", removed_on=dt.date(2026, 6, 1)),
        row("370200", "a3", "watch-list", publicity_end=dt.date(2026, 12, 1)),
        row("370200", "a4", "watch-list", listed_on=dt.date(2026, 12, 3)),
        row("370200", "b1", "administrative-penalty"),
        row("370200", "c1", "serious-dishonesty"),
        row(PEER, "d1", "watch-list"),
    ]
    with db.transaction() as connection:
        connection.execute(insert(list_entries), rows)
    listings = list(
        OwnListingRepository(db).listings("370200", ["watch-list", "administrative-penalty"])
    )
    assert [(x.list_kind, x.entry_id) for x in listings] == [
        ("administrative-penalty", "b1"),
        ("watch-list", "a1"),
        ("watch-list", "a2"),
        ("watch-list", "a3"),
        ("watch-list", "a4"),
    ]
    assert [x.entry_id for x in listings if x.active_on(DAY)] == ["b1", "a1"]
    assert list(OwnListingRepository(db).listings("370200", [])) == []
    repository = OwnListingRepository(db)
    assert repository.version("370200", ["watch-list", "administrative-penalty"]) == (5, 0)
    assert repository.version("370200", ["red-list"]) == (0, -1)
    assert repository.version("370200", []) == (0, -1)
    with db.transaction() as connection:
        connection.execute(
            list_entries.update()
            .where(list_entries.c.entry_id == "a1")
            .values(last_index=9, removed_on=dt.date(2026, 12, 2))
        )
    assert repository.version("370200", ["watch-list"]) == (4, 9)
