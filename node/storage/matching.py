"""Repositories for private matching: the audit, seen request ids, daily quotas, own listings.

* :class:`MatchAuditRepository`: one row per probe or disclosure, received (a peer asked
  this node) or sent (this node asked a peer). Rows hold counts and outcomes only; a
  disclosure row holds a salted hash and a masked form of the subject, never the identifier.
  The rows form a hash chain (:func:`audit_link`), so that a row changed, removed or put
  in by hand afterwards shows (:meth:`MatchAuditRepository.verify`).
* :class:`MatchQuotaRepository`: per peer and UTC day, the subjects it probed and the
  disclosures it obtained, and the request ids seen within the replay window. A request is
  admitted (:meth:`MatchQuotaRepository.admit`) in one transaction: its id is remembered and
  its cost charged together, or neither happens.
* :class:`OwnListingRepository`: the subjects of this node's own active entries of given list
  kinds, read straight from the entry states (what the holder's table covers).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, Literal

from sqlalchemy import Connection, delete, func, insert, select, text, tuple_, update

from federation.member import check_city_code
from node.storage.database import Database
from node.storage.schema import list_entries, match_audit, match_quota, match_seen_requests

Direction = Literal["received", "sent"]
DIRECTIONS: Final = ("received", "sent")
Counter = Literal["probes", "disclosures"]
REQUEST_ID_BYTES: Final = 16
# Longest reason or detail text kept per audit row.
AUDIT_TEXT_MAX_CHARS: Final = 2000
_PAGE: Final = 1000


def _require_aware(name: str, value: dt.datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _request_hex(request_id: bytes | str) -> str:
    """Request ids are stored as 32 lower-case hex digits."""
    text = request_id.hex() if isinstance(request_id, bytes | bytearray) else request_id
    if len(text) != 2 * REQUEST_ID_BYTES or text != text.lower():
        raise ValueError("a request id is 16 bytes (32 lower-case hex digits)")
    int(text, 16)
    return text


def _clip(text: str | None) -> str | None:
    """At most :data:`AUDIT_TEXT_MAX_CHARS`, and no NUL (which PostgreSQL cannot store)."""
    if text is None:
        return None
    text = text.replace("\x00", "\\0")
    if len(text) <= AUDIT_TEXT_MAX_CHARS:
        return text
    return text[: AUDIT_TEXT_MAX_CHARS - 3] + "..."


# --- audit ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited probe or disclosure."""

    id: int
    at: dt.datetime
    direction: str  # received | sent
    peer: str
    request_id: str  # hex
    mode: str  # membership | count | disclose
    subjects: int
    ciphertexts: int
    hits: int | None
    outcome: str  # answered | refused | failed | disclosed | not-found | ...
    reason: str | None
    subject_ref: str | None
    detail: str | None


_AUDIT_COLUMNS: Final = tuple(f.name for f in dataclasses.fields(AuditRecord))
#: The link before the first row.
AUDIT_CHAIN_START: Final = "0" * 64
_LINK_DOMAIN: Final = b"creditnet.match-audit/v1\x00"
# Appends to the chain take this PostgreSQL transaction lock, so that two appending at
# once cannot both link to the same row (SQLite's write transactions are serial anyway).
_APPEND_LOCK: Final = 0x6D61746368617564  # "matchaud"
_SHORT_VALUES: Final = {"mode": 16, "outcome": 16}


def audit_link(previous: str, values: Mapping[Any, Any]) -> str:
    """The link of an audit row: SHA-256 over the link before it (as text, whatever it
    holds) and every column of the row but the link itself, id included; 64 hex digits.

    (Version 1, as its domain tag says: a change of what it covers is a new version, and
    the migration that links the rows written before it keeps calling this one.)
    """
    row = {name: values[name] for name in _AUDIT_COLUMNS}
    at = row["at"]
    assert isinstance(at, dt.datetime)
    row["at"] = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    before = json.dumps(previous, ensure_ascii=True)  # any text, quoted: no ambiguity
    return hashlib.sha256(_LINK_DOMAIN + before.encode("ascii") + body.encode("ascii")).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class AuditChainCheck:
    """What :meth:`MatchAuditRepository.verify` found.

    ``head`` is the link of the last row (:data:`AUDIT_CHAIN_START` for an empty audit);
    ``breaks`` the rows whose link does not hold, by id, with what is wrong, in order;
    ``head_found`` whether a head recorded earlier is still in the chain (``None`` when
    none was given).
    """

    rows: int
    head: str
    breaks: tuple[tuple[int, str], ...] = ()
    head_found: bool | None = None

    @property
    def intact(self) -> bool:
        return not self.breaks and self.head_found is not False


def _newest_link(connection: Connection) -> str | None:
    """The link of the newest row that has one: a row put in without a link is passed over
    (verify() names it), so that the chain goes on past it."""
    link: str | None = connection.execute(
        select(match_audit.c.chain)
        .where(match_audit.c.chain.is_not(None))
        .order_by(match_audit.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return link


class MatchAuditRepository:
    """The audit of private matching, both directions (append-only)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self,
        direction: Direction,
        peer: str,
        request_id: bytes | str,
        mode: str,
        subjects: int,
        ciphertexts: int,
        hits: int | None,
        outcome: str,
        *,
        at: dt.datetime | None = None,
        reason: str | None = None,
        subject_ref: str | None = None,
        detail: str | None = None,
    ) -> int:
        """Append one row; returns its id. ``at`` defaults to now (UTC).

        Never pass an identifier in ``reason`` or ``detail``: a disclosure's subject goes in
        ``subject_ref`` as a salted hash, and in ``detail`` masked at most.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}")
        if subjects < 0 or ciphertexts < 0:
            raise ValueError("subjects and ciphertexts must not be negative")
        check_city_code(peer)
        for name, value in (("mode", mode), ("outcome", outcome)):
            if not value or len(value) > _SHORT_VALUES[name] or value != value.strip():
                raise ValueError(f"{name} must be 1 to {_SHORT_VALUES[name]} characters")
        when = dt.datetime.now(dt.UTC) if at is None else at
        _require_aware("at", when)
        values: dict[str, Any] = {
            "at": when,
            "direction": direction,
            "peer": peer,
            "request_id": _request_hex(request_id),
            "mode": mode,
            "subjects": subjects,
            "ciphertexts": ciphertexts,
            "hits": hits,
            "outcome": outcome,
            "reason": _clip(reason),
            "subject_ref": subject_ref,
            "detail": _clip(detail),
        }
        with self._db.transaction() as connection:
            if self._db.dialect == "postgresql":
                lock = text("SELECT pg_advisory_xact_lock(:key)")
                connection.execute(lock, {"key": _APPEND_LOCK})
            previous = _newest_link(connection)
            key = connection.execute(insert(match_audit).values(values)).inserted_primary_key
            assert key is not None
            values["id"] = row_id = int(key[0])
            link = audit_link(previous or AUDIT_CHAIN_START, values)
            connection.execute(
                update(match_audit).where(match_audit.c.id == row_id).values(chain=link)
            )
        return row_id

    def head(self) -> tuple[int, str]:
        """How many rows the audit holds, and the newest link (:data:`AUDIT_CHAIN_START`
        when none): what the node logs, for an operator to keep outside its database."""
        with self._db.read() as connection:
            rows: int = connection.execute(
                select(func.count()).select_from(match_audit)
            ).scalar_one()
            link = _newest_link(connection)
        return rows, link or AUDIT_CHAIN_START

    def verify(self, *, recorded_head: str | None = None) -> AuditChainCheck:
        """Walk the chain from the first row: each row's link must be :func:`audit_link`
        of the link before it and the row itself (its id included).

        A row changed or given another id, a row put in without a link (by hand, or by a
        node of a version before the chain), and the row after one removed each break the
        chain there; the walk goes on from that row's own link, so that each break is named
        once and the rows after it are still checked. What it cannot show: someone able to
        write the table can compute the links again after what they changed, or append rows
        with good links; a head recorded elsewhere before (``recorded_head``) shows the
        first, by no longer being in the chain, but nothing here shows the second.
        """
        wanted = None if recorded_head is None else recorded_head.strip().lower()
        found = None if wanted is None else wanted == AUDIT_CHAIN_START
        previous, rows, last_id = AUDIT_CHAIN_START, 0, None
        breaks: list[tuple[int, str]] = []
        while True:
            query = select(match_audit).order_by(match_audit.c.id).limit(_PAGE)
            if last_id is not None:
                query = query.where(match_audit.c.id > last_id)
            with self._db.read() as connection:
                page = connection.execute(query).all()
            for row in page:
                values, rows, last_id = row._mapping, rows + 1, row.id
                link = values["chain"]
                if link is None:
                    breaks.append((row.id, "it has no link: it was put in by hand, or by a "
                                   "node of a version before the chain"))  # fmt: skip
                    continue
                expected = audit_link(previous, values)
                if not hmac.compare_digest(link.encode("utf-8"), expected.encode("ascii")):
                    breaks.append((row.id, "its link does not hold: this row was changed or "
                                   "given another id, or the row before it removed"))  # fmt: skip
                previous = link  # from this row on, the chain as it stands
                if wanted is not None and not found:
                    found = hmac.compare_digest(link.encode("utf-8"), wanted.encode("utf-8"))
            if len(page) < _PAGE:
                return AuditChainCheck(rows, previous, tuple(breaks), found)

    def recent(
        self,
        *,
        direction: Direction | None = None,
        peer: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """The newest rows first, optionally of one direction and one peer."""
        query = select(match_audit)
        if direction is not None:
            query = query.where(match_audit.c.direction == direction)
        if peer is not None:
            query = query.where(match_audit.c.peer == peer)
        query = query.order_by(match_audit.c.id.desc()).limit(limit)
        with self._db.read() as connection:
            rows = connection.execute(query).all()
        return [
            AuditRecord(**{name: row._mapping[name] for name in _AUDIT_COLUMNS}) for row in rows
        ]

    def by_request(self, request_id: bytes | str) -> list[AuditRecord]:
        """Every row of one request id (both directions), oldest first."""
        query = (
            select(match_audit)
            .where(match_audit.c.request_id == _request_hex(request_id))
            .order_by(match_audit.c.id)
        )
        with self._db.read() as connection:
            rows = connection.execute(query).all()
        return [
            AuditRecord(**{name: row._mapping[name] for name in _AUDIT_COLUMNS}) for row in rows
        ]

    def count(self, *, direction: Direction | None = None) -> int:
        query = select(func.count()).select_from(match_audit)
        if direction is not None:
            query = query.where(match_audit.c.direction == direction)
        with self._db.read() as connection:
            total: int = connection.execute(query).scalar_one()
        return total


# --- quotas and replay protection ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class QuotaUsage:
    peer: str
    day: dt.date
    probes: int
    disclosures: int


class Admission(enum.Enum):
    ADMITTED = "admitted"
    REPLAY = "replay"  # the request id was seen before (within the replay window)
    OVER_QUOTA = "over-quota"  # the charge would exceed the day's limit


@dataclasses.dataclass(frozen=True, slots=True)
class AdmissionResult:
    outcome: Admission
    used: int  # the counter's value for the day after the attempt


class _Refuse(Exception):
    """Rolls back an admission transaction."""

    def __init__(self, result: AdmissionResult) -> None:
        super().__init__(result.outcome.value)
        self.result = result


class MatchQuotaRepository:
    """Daily usage per peer, and the request ids seen within the replay window."""

    def __init__(self, db: Database) -> None:
        self._db = db
        seen = db.dialect_insert(match_seen_requests)
        self._remember = seen.on_conflict_do_nothing(
            index_elements=[match_seen_requests.c.peer, match_seen_requests.c.request_id]
        )
        day_row = db.dialect_insert(match_quota)
        self._open_day = day_row.on_conflict_do_nothing(
            index_elements=[match_quota.c.peer, match_quota.c.day]
        )

    def usage(self, peer: str, day: dt.date) -> QuotaUsage:
        with self._db.read() as connection:
            row = connection.execute(
                select(match_quota.c.probes, match_quota.c.disclosures).where(
                    match_quota.c.peer == peer, match_quota.c.day == day
                )
            ).one_or_none()
        if row is None:
            return QuotaUsage(peer, day, 0, 0)
        return QuotaUsage(peer, day, int(row.probes), int(row.disclosures))

    def seen(self, peer: str, request_id: bytes | str) -> bool:
        """Whether ``peer`` used this request id (ids are kept until :meth:`forget_expired`)."""
        with self._db.read() as connection:
            row = connection.execute(
                select(match_seen_requests.c.expires_at).where(
                    match_seen_requests.c.peer == peer,
                    match_seen_requests.c.request_id == _request_hex(request_id),
                )
            ).one_or_none()
        return row is not None

    def admit(
        self,
        peer: str,
        request_id: bytes | str,
        *,
        counter: Counter,
        amount: int,
        limit: int,
        day: dt.date,
        at: dt.datetime,
        remember_until: dt.datetime,
    ) -> AdmissionResult:
        """Remember the request id and charge ``amount`` to the day's ``counter``, atomically.

        Refused (nothing written) if the id was seen before or the counter would pass
        ``limit``. Safe against concurrent callers on both engines: the id is a primary
        key, and the charge is one conditional UPDATE.
        """
        if counter not in ("probes", "disclosures"):
            raise ValueError("counter must be probes or disclosures")
        if amount < 0:
            raise ValueError("amount must not be negative")
        _require_aware("at", at)
        _require_aware("remember_until", remember_until)
        request = _request_hex(request_id)
        column = match_quota.c[counter]
        try:
            with self._db.transaction() as connection:
                # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT.
                inserted = connection.execute(
                    self._remember.values(
                        peer=peer, request_id=request, seen_at=at, expires_at=remember_until
                    ).returning(match_seen_requests.c.request_id)
                ).first()
                if inserted is None:
                    raise _Refuse(
                        AdmissionResult(
                            Admission.REPLAY, self._used(connection, peer, day, counter)
                        )
                    )
                connection.execute(
                    self._open_day.values(peer=peer, day=day, probes=0, disclosures=0)
                )
                charged = connection.execute(
                    update(match_quota)
                    .where(
                        match_quota.c.peer == peer,
                        match_quota.c.day == day,
                        column + amount <= limit,
                    )
                    .values({counter: column + amount})
                    .returning(column)
                ).first()
                if charged is None:
                    used = self._used(connection, peer, day, counter)
                    raise _Refuse(AdmissionResult(Admission.OVER_QUOTA, used))
                used = int(charged[0])
        except _Refuse as refused:
            return refused.result
        return AdmissionResult(Admission.ADMITTED, used)

    @staticmethod
    def _used(connection: Connection, peer: str, day: dt.date, counter: Counter) -> int:
        value = connection.execute(
            select(match_quota.c[counter]).where(
                match_quota.c.peer == peer, match_quota.c.day == day
            )
        ).scalar_one_or_none()
        return int(value or 0)

    def forget_expired(self, now: dt.datetime) -> int:
        """Drop request ids whose replay window has passed; returns how many."""
        _require_aware("now", now)
        with self._db.transaction() as connection:
            result = connection.execute(
                delete(match_seen_requests).where(match_seen_requests.c.expires_at < now)
            )
        return int(result.rowcount)

    def forget_days_before(self, day: dt.date) -> int:
        """Drop usage rows of days before ``day`` (history no quota needs any more)."""
        with self._db.transaction() as connection:
            result = connection.execute(delete(match_quota).where(match_quota.c.day < day))
        return int(result.rowcount)


# --- this node's own listings ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Listing:
    """One own entry, reduced to what the matching table needs."""

    entry_id: str
    list_kind: str
    subject_id: str
    listed_on: dt.date
    publicity_end: dt.date
    removed_on: dt.date | None

    def active_on(self, today: dt.date) -> bool:
        """The rule of :meth:`federation.sanctions.EntryState.effective` (China dates)."""
        return self.removed_on is None and self.listed_on <= today <= self.publicity_end


class OwnListingRepository:
    """The entries of one origin of some list kinds, in any state, read page by page."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def version(self, origin: str, kinds: Sequence[str]) -> tuple[int, int]:
        """(entries, highest log index of their latest events): changes with every event."""
        if not kinds:
            return (0, -1)
        query = select(func.count(), func.max(list_entries.c.last_index)).where(
            list_entries.c.origin == origin, list_entries.c.list_kind.in_(list(kinds))
        )
        with self._db.read() as connection:
            count, highest = connection.execute(query).one()
        return (int(count), -1 if highest is None else int(highest))

    def listings(self, origin: str, kinds: Sequence[str]) -> Iterator[Listing]:
        """In (list_kind, entry_id) order; removed and expired entries included."""
        if not kinds:
            return
        columns = (
            list_entries.c.entry_id,
            list_entries.c.list_kind,
            list_entries.c.subject_id,
            list_entries.c.listed_on,
            list_entries.c.publicity_end,
            list_entries.c.removed_on,
        )
        after: tuple[str, str] | None = None
        while True:
            query = select(*columns).where(
                list_entries.c.origin == origin, list_entries.c.list_kind.in_(list(kinds))
            )
            if after is not None:
                query = query.where(
                    tuple_(list_entries.c.list_kind, list_entries.c.entry_id) > tuple_(*after)
                )
            query = query.order_by(list_entries.c.list_kind, list_entries.c.entry_id).limit(_PAGE)
            with self._db.read() as connection:
                rows = connection.execute(query).all()
            for row in rows:
                yield Listing(
                    row.entry_id,
                    row.list_kind,
                    row.subject_id,
                    row.listed_on,
                    row.publicity_end,
                    row.removed_on,
                )
            if len(rows) < _PAGE:
                return
            after = (rows[-1].list_kind, rows[-1].entry_id)
