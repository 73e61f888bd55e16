"""Repositories for signed credit reports and ratings, and what other cities publish about them.

* :class:`ReportRepository`: the reports this node issued (公共信用信息报告), each with its
  bit in this node's report status list; the newest signed status list of every issuer
  (this node's own and the replicas of others); and the cache of online status answers.
* :class:`RatingRepository`: every issuer's signed rating statements (信用评价结果), numbered
  by the issuer from 1 without gaps so that replicas can sync by sequence, and the newest
  signed scale mapping of every (issuer, scale).

Documents are stored verbatim: the canonical signed JSON, exactly as signed or verified.
Nothing here checks a signature or a domain rule (that is :mod:`federation.reports` and
:mod:`federation.ratings`); the rules enforced are structural: a report number and a status
index are used once, a statement sequence grows only at its end, and a status list or a
mapping is replaced only by a newer version.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from sqlalchemy import Connection, Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from federation.errors import AlreadyExistsError, FailedPreconditionError
from federation.reports import MAX_SECTION_ITEMS, ReportCommitment, ReportLicence
from node.storage.database import Database, in_chunks
from node.storage.schema import (
    commitments,
    issued_reports,
    licences,
    rating_statements,
    report_status_checks,
    scale_mappings,
    status_lists,
)

REPORT_STATES: Final = ("valid", "revoked", "superseded")
_LICENCE_FIELDS: Final = tuple(f.name for f in dataclasses.fields(ReportLicence))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _require_aware(name: str, value: dt.datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


# --- rows -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedReport:
    """A report this node issued."""

    report_no: str  # CITY-YYYYMMDD-NNNNNN
    status_index: int  # its bit in this node's status list
    subject_id: str
    issued_at: dt.datetime
    valid_until: dt.datetime
    supersedes: str | None  # the report number this one replaces
    document: bytes  # canonical signed report JSON

    def __post_init__(self) -> None:
        _require_aware("issued_at", self.issued_at)
        _require_aware("valid_until", self.valid_until)


@dataclasses.dataclass(frozen=True, slots=True)
class StoredStatusList:
    """The newest signed report status list held for one issuer."""

    issuer: str
    version: int
    updated_at: dt.datetime  # the issuer's time, from the list
    document: bytes  # canonical signed status list JSON
    received_at: dt.datetime  # when the issuer last sent this version

    def __post_init__(self) -> None:
        _require_aware("updated_at", self.updated_at)
        _require_aware("received_at", self.received_at)


@dataclasses.dataclass(frozen=True, slots=True)
class StatusCheck:
    """A report's status as its issuer answered online: the cache (the caller applies a TTL)."""

    report_no: str
    issuer: str
    state: str  # valid | revoked | superseded
    reason: str
    superseded_by: str | None
    status_at: dt.datetime  # the issuer's time of the answer
    checked_at: dt.datetime  # when this node asked

    def __post_init__(self) -> None:
        if self.state not in REPORT_STATES:
            raise ValueError(f"state must be one of {', '.join(REPORT_STATES)}")
        _require_aware("status_at", self.status_at)
        _require_aware("checked_at", self.checked_at)


@dataclasses.dataclass(frozen=True, slots=True)
class StoredStatement:
    """One signed rating statement, as stored (any issuer)."""

    issuer: str
    sequence: int  # the issuer's numbering, from 1 without gaps
    subject_id: str
    scale_id: str
    issued_on: dt.date
    valid_until: dt.date
    document: bytes  # canonical signed statement JSON
    received_at: dt.datetime

    def __post_init__(self) -> None:
        _require_aware("received_at", self.received_at)


@dataclasses.dataclass(frozen=True, slots=True)
class StoredMapping:
    """The newest signed scale mapping held for one (issuer, scale)."""

    issuer: str
    scale_id: str
    version: int
    document: bytes  # canonical signed mapping JSON
    received_at: dt.datetime

    def __post_init__(self) -> None:
        _require_aware("received_at", self.received_at)


_REPORT_COLUMNS: Final = tuple(f.name for f in dataclasses.fields(IssuedReport))
_CHECK_COLUMNS: Final = tuple(f.name for f in dataclasses.fields(StatusCheck))
_STATEMENT_COLUMNS: Final = tuple(f.name for f in dataclasses.fields(StoredStatement))


def _values(row: Any, columns: Sequence[str]) -> dict[str, Any]:
    # getattr rather than dataclasses.asdict: asdict deep-copies every value.
    return {name: getattr(row, name) for name in columns}


def _report(row: Any) -> IssuedReport:
    return IssuedReport(
        report_no=row.report_no,
        status_index=row.status_index,
        subject_id=row.subject_id,
        issued_at=row.issued_at,
        valid_until=row.valid_until,
        supersedes=row.supersedes,
        document=bytes(row.document),
    )


def _status_list(row: Any) -> StoredStatusList:
    return StoredStatusList(
        issuer=row.issuer,
        version=row.version,
        updated_at=row.updated_at,
        document=bytes(row.document),
        received_at=row.received_at,
    )


def _check(row: Any) -> StatusCheck:
    return StatusCheck(**{name: row._mapping[name] for name in _CHECK_COLUMNS})


def _statement(row: Any) -> StoredStatement:
    return StoredStatement(
        issuer=row.issuer,
        sequence=row.sequence,
        subject_id=row.subject_id,
        scale_id=row.scale_id,
        issued_on=row.issued_on,
        valid_until=row.valid_until,
        document=bytes(row.document),
        received_at=row.received_at,
    )


def _mapping(row: Any) -> StoredMapping:
    return StoredMapping(
        issuer=row.issuer,
        scale_id=row.scale_id,
        version=row.version,
        document=bytes(row.document),
        received_at=row.received_at,
    )


def _newer_only(db: Database, table: Any, keys: Sequence[str], values: dict[str, Any]) -> bool:
    """Insert ``values``, or replace the stored row only if its version is lower.

    One statement, so two writers offering versions at once cannot interleave a read and a
    write: the database keeps the higher. Returns whether the row was written.
    """
    offered = db.dialect_insert(table).values(**values)
    stored = table.c
    statement = offered.on_conflict_do_update(
        index_elements=[stored[key] for key in keys],
        set_={name: offered.excluded[name] for name in values if name not in keys},
        where=stored.version < offered.excluded.version,
    ).returning(stored.version)
    with db.transaction() as connection:
        # RETURNING yields a row only when one was inserted or updated (a conflict whose
        # WHERE is false yields none); rowcount is not reliable here (psycopg gives -1).
        written = connection.execute(statement).first()
    return written is not None


# --- reports ----------------------------------------------------------------------------


class ReportRepository:
    """Issued reports, every issuer's newest status list, and the online status cache."""

    def __init__(self, db: Database) -> None:
        self._db = db
        check_upsert = db.dialect_insert(report_status_checks)
        self._upsert_check = check_upsert.on_conflict_do_update(
            index_elements=[report_status_checks.c.report_no],
            set_={
                name: check_upsert.excluded[name] for name in _CHECK_COLUMNS if name != "report_no"
            },
            # A revocation or supersession is final: a later (or slower) "valid" never
            # replaces it, and only a revocation replaces a supersession.
            where=(report_status_checks.c.state == "valid")
            | (check_upsert.excluded.state == "revoked"),
        )

    def next_status_index(self) -> int:
        """The status index for the next report: one past the highest used (0 when none).

        Two issuers racing get the same index; :meth:`add` lets only one of them store it.
        """
        with self._db.read() as connection:
            highest: int | None = connection.execute(
                select(func.max(issued_reports.c.status_index))
            ).scalar()
        return 0 if highest is None else highest + 1

    def add(self, row: IssuedReport) -> None:
        """Store an issued report; :class:`AlreadyExistsError` if its number or index is used."""
        if row.status_index < 0:
            raise ValueError("a status index is never negative")
        try:
            with self._db.transaction() as connection:
                connection.execute(insert(issued_reports), [_values(row, _REPORT_COLUMNS)])
        except IntegrityError:
            with self._db.read() as connection:
                number_used = _report_exists(connection, row.report_no)
                index_used = _index_used(connection, row.status_index)
            # The subject is not named: it may be a resident ID number.
            if number_used:
                raise AlreadyExistsError(
                    f"report {row.report_no} is already stored",
                    hint="number the report with count_issued_on() + 1 again",
                ) from None
            if index_used:
                raise AlreadyExistsError(
                    f"status index {row.status_index} is already used by another report",
                    hint="another report was issued at the same time; take the next index",
                ) from None
            raise

    def get(self, report_no: str) -> IssuedReport | None:
        with self._db.read() as connection:
            row = connection.execute(
                select(issued_reports).where(issued_reports.c.report_no == report_no)
            ).one_or_none()
        return None if row is None else _report(row)

    def expired_among(self, status_indices: Iterable[int], now: dt.datetime) -> set[int]:
        """Those of ``status_indices`` whose report's validity ended before ``now``."""
        _require_aware("now", now)
        found: set[int] = set()
        with self._db.read() as connection:
            for chunk in in_chunks(sorted(set(status_indices))):
                found.update(
                    connection.execute(
                        select(issued_reports.c.status_index).where(
                            issued_reports.c.status_index.in_(chunk),
                            issued_reports.c.valid_until < now,
                        )
                    ).scalars()
                )
        return found

    def count_issued_on(self, day_prefix: str) -> int:
        """How many stored report numbers start with ``day_prefix`` (``"370200-20261202-"``).

        An exact, case-sensitive prefix test on both engines (SQLite's LIKE ignores case,
        and ``%`` or ``_`` in a prefix would be wildcards).
        """
        if not day_prefix:
            raise ValueError("the report number prefix must not be empty")
        prefix = func.substr(issued_reports.c.report_no, 1, len(day_prefix))
        with self._db.read() as connection:
            count: int = connection.execute(
                select(func.count()).select_from(issued_reports).where(prefix == day_prefix)
            ).scalar_one()
        return count

    # --- what this city records for its reports ----------------------------------------

    def add_licence(self, subject_id: str, licence: ReportLicence, at: dt.datetime) -> None:
        """Record a licence of the subject; :class:`AlreadyExistsError` if its authority
        recorded that licence number for the subject already."""
        values = {
            "subject_id": subject_id,
            **dataclasses.asdict(licence),
            "recorded_at": at,
            "authority_digest": _digest(licence.authority),
        }
        self._add_record(licences, values, f"licence {licence.licence_no} of that authority")

    def add_commitment(
        self, subject_id: str, commitment: ReportCommitment, at: dt.datetime
    ) -> None:
        """Record a commitment of the subject; :class:`AlreadyExistsError` if the same one
        (same day, same text) is recorded already."""
        values = {
            "subject_id": subject_id,
            **dataclasses.asdict(commitment),
            "recorded_at": at,
            "content_digest": _digest(commitment.content),
        }
        self._add_record(commitments, values, f"this commitment of {commitment.made_on}")

    def _add_record(self, table: Table, values: dict[str, Any], what: str) -> None:
        try:
            with self._db.transaction() as connection:
                connection.execute(insert(table), [values])
        except IntegrityError:
            # The subject is not named: it may be a resident ID number.
            raise AlreadyExistsError(f"{what} is recorded for the subject already") from None

    def licences_of(self, subject_id: str) -> list[ReportLicence]:
        """The subject's licences, newest first (at most a report's section)."""
        query = (
            select(*(licences.c[name] for name in _LICENCE_FIELDS))
            .where(licences.c.subject_id == subject_id)
            .order_by(licences.c.issued_on.desc(), licences.c.licence_no)
            .limit(MAX_SECTION_ITEMS)
        )
        with self._db.read() as connection:
            return [ReportLicence(**row._mapping) for row in connection.execute(query)]

    def commitments_of(self, subject_id: str) -> list[ReportCommitment]:
        """The subject's commitments, newest first (at most a report's section)."""
        query = (
            select(commitments.c.made_on, commitments.c.content)
            .where(commitments.c.subject_id == subject_id)
            .order_by(commitments.c.made_on.desc(), commitments.c.content_digest)
            .limit(MAX_SECTION_ITEMS)
        )
        with self._db.read() as connection:
            return [ReportCommitment(**row._mapping) for row in connection.execute(query)]

    # --- status lists -------------------------------------------------------------------

    def status_list(self, issuer: str) -> StoredStatusList | None:
        with self._db.read() as connection:
            row = connection.execute(
                select(status_lists).where(status_lists.c.issuer == issuer)
            ).one_or_none()
        return None if row is None else _status_list(row)

    def status_lists(self) -> dict[str, StoredStatusList]:
        """Every issuer's newest status list held here, by issuer."""
        with self._db.read() as connection:
            rows = connection.execute(select(status_lists).order_by(status_lists.c.issuer)).all()
        return {row.issuer: _status_list(row) for row in rows}

    def put_status_list(
        self,
        issuer: str,
        version: int,
        updated_at: dt.datetime,
        document: bytes,
        received_at: dt.datetime,
    ) -> bool:
        """Keep ``document`` if its version is newer than the one held; True if stored.

        The same or an older version is ignored (a late or repeated delivery), whatever its
        content: the caller verifies, and decides what a second list with one version means.
        """
        row = StoredStatusList(issuer, version, updated_at, document, received_at)
        if version < 1:
            raise ValueError("a status list version starts at 1")
        return _newer_only(self._db, status_lists, ("issuer",), dataclasses.asdict(row))

    def confirm_status_list(self, issuer: str, version: int, at: dt.datetime) -> None:
        """The issuer sent again the version held: it was still its list at ``at``
        (``received_at`` moves forward, never back)."""
        _require_aware("at", at)
        with self._db.transaction() as connection:
            connection.execute(
                update(status_lists)
                .where(
                    status_lists.c.issuer == issuer,
                    status_lists.c.version == version,
                    status_lists.c.received_at < at,
                )
                .values(received_at=at)
            )

    def cached_status(self, report_no: str) -> StatusCheck | None:
        with self._db.read() as connection:
            row = connection.execute(
                select(report_status_checks).where(report_status_checks.c.report_no == report_no)
            ).one_or_none()
        return None if row is None else _check(row)

    def cache_status(self, row: StatusCheck) -> None:
        """Remember an online status answer for the report: it replaces an earlier "valid"
        one, and a revocation replaces a supersession; a revocation stays."""
        with self._db.transaction() as connection:
            connection.execute(self._upsert_check, [_values(row, _CHECK_COLUMNS)])


def _report_exists(connection: Connection, report_no: str) -> bool:
    found = connection.execute(
        select(issued_reports.c.report_no).where(issued_reports.c.report_no == report_no)
    ).first()
    return found is not None


def _index_used(connection: Connection, status_index: int) -> bool:
    found = connection.execute(
        select(issued_reports.c.report_no).where(issued_reports.c.status_index == status_index)
    ).first()
    return found is not None


# --- ratings ----------------------------------------------------------------------------


class RatingRepository:
    """Every issuer's rating statements (by sequence), and the newest scale mappings."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def last_sequence(self, issuer: str) -> int:
        """The highest stored sequence of ``issuer``'s statements (0 when none)."""
        with self._db.read() as connection:
            return _last_sequence(connection, issuer)

    def next_sequence(self, issuer: str) -> int:
        return self.last_sequence(issuer) + 1

    def add_statements(self, rows: Sequence[StoredStatement]) -> None:
        """Store statements at the end of their issuers' sequences, all of them or none.

        Refused (:class:`FailedPreconditionError`) unless, for every issuer in ``rows``,
        its statements (in the order given) are numbered exactly last stored + 1, + 2, ...:
        no gap and no repeat. Rows of several issuers may be mixed.
        """
        if not rows:
            return
        by_issuer: dict[str, list[int]] = {}
        for row in rows:
            by_issuer.setdefault(row.issuer, []).append(row.sequence)
        values = [_values(row, _STATEMENT_COLUMNS) for row in rows]
        try:
            with self._db.transaction() as connection:
                for issuer, sequences in by_issuer.items():
                    _check_continues(issuer, _last_sequence(connection, issuer), sequences)
                connection.execute(insert(rating_statements), values)
        except IntegrityError:
            # On PostgreSQL two writers can both read the same last sequence; the primary
            # key lets only one of them commit. Anything else is re-raised as is.
            with self._db.read() as connection:
                for issuer, sequences in by_issuer.items():
                    _check_continues(issuer, _last_sequence(connection, issuer), sequences)
            raise

    def statements_after(self, issuer: str, after: int, limit: int) -> list[StoredStatement]:
        """Up to ``limit`` of ``issuer``'s statements with sequence > ``after``, in order."""
        if limit < 1:
            return []
        with self._db.read() as connection:
            rows = connection.execute(
                select(rating_statements)
                .where(rating_statements.c.issuer == issuer, rating_statements.c.sequence > after)
                .order_by(rating_statements.c.sequence)
                .limit(limit)
            ).all()
        return [_statement(row) for row in rows]

    def replace_documents(self, issuer: str, documents: Mapping[int, bytes]) -> None:
        """Store new signed documents of ``issuer``'s statements, by sequence: the same
        statements signed again (after a key rotation)."""
        if not documents:
            return
        with self._db.transaction() as connection:
            connection.execute(
                update(rating_statements)
                .where(
                    rating_statements.c.issuer == issuer,
                    rating_statements.c.sequence == bindparam("at_sequence"),
                )
                .values(document=bindparam("new_document")),
                [
                    {"at_sequence": sequence, "new_document": document}
                    for sequence, document in documents.items()
                ],
            )

    def by_subject(self, subject_id: str) -> list[StoredStatement]:
        """Every statement about one subject, from every issuer, by (issuer, sequence)."""
        with self._db.read() as connection:
            rows = connection.execute(
                select(rating_statements)
                .where(rating_statements.c.subject_id == subject_id)
                .order_by(rating_statements.c.issuer, rating_statements.c.sequence)
            ).all()
        return [_statement(row) for row in rows]

    def put_mapping(
        self,
        issuer: str,
        scale_id: str,
        version: int,
        document: bytes,
        received_at: dt.datetime,
    ) -> bool:
        """Keep ``document`` if its version is newer than the one held; True if stored.

        The same or an older version is ignored whatever its content: telling a repeat
        from a conflict (one version signed twice) is :func:`federation.ratings.newer_mapping`.
        """
        row = StoredMapping(issuer, scale_id, version, document, received_at)
        if version < 1:
            raise ValueError("a scale mapping version starts at 1")
        return _newer_only(
            self._db, scale_mappings, ("issuer", "scale_id"), dataclasses.asdict(row)
        )

    def mappings(self, issuer: str | None = None) -> list[StoredMapping]:
        """The newest mapping of every (issuer, scale), or of one issuer's scales."""
        query = select(scale_mappings).order_by(scale_mappings.c.issuer, scale_mappings.c.scale_id)
        if issuer is not None:
            query = query.where(scale_mappings.c.issuer == issuer)
        with self._db.read() as connection:
            rows = connection.execute(query).all()
        return [_mapping(row) for row in rows]


def _last_sequence(connection: Connection, issuer: str) -> int:
    last: int | None = connection.execute(
        select(func.max(rating_statements.c.sequence)).where(rating_statements.c.issuer == issuer)
    ).scalar()
    return 0 if last is None else last


def _check_continues(issuer: str, last: int, sequences: Sequence[int]) -> None:
    # The first misfit is named: in a batch of thousands it is where the gap or repeat is.
    for expected, sequence in enumerate(sequences, start=last + 1):
        if sequence != expected:
            raise FailedPreconditionError(
                f"rating statement {issuer}/{sequence} does not continue {issuer}'s sequence: "
                f"{last} stored here, so the batch must go on with {expected}",
                hint="another writer may have stored some first; resume from last_sequence() + 1",
            )


__all__ = [
    "REPORT_STATES",
    "IssuedReport",
    "RatingRepository",
    "ReportRepository",
    "StatusCheck",
    "StoredMapping",
    "StoredStatement",
    "StoredStatusList",
]
