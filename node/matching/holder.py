"""The holder side of private matching: this city's encrypted table, probes and disclosures.

The node keeps ONE encrypted cuckoo table over the subjects of its own active entries of
its non-public list kinds (docs/private-matching.md). On disk, in ``<home>/matching/own/``:

- ``bins.dat`` and ``header.json``: the published table (:class:`TableStore`);
- ``index.json`` (0600): the private :class:`CuckooIndex` (hashes and bins, no identifiers)
  with the table id and epoch it belongs to;
- ``changes.json``: which bins each of the last :data:`HISTORY_EPOCHS` epochs changed, so
  that a peer holding an older epoch fetches only those bins.

:meth:`MatchHolder.refresh` brings the table in line with the entries: it puts or discards
the subjects whose lists changed, re-encrypts only the bins that changed (with randomness
precomputed in idle time), bumps the epoch and signs the header again. It rebuilds from
scratch, under a new table id, when the index is missing, corrupt, full, or for another
key or set of list kinds.

:meth:`MatchHolder.evaluate` is the first round of a query: it applies this city's OPRF key
``k`` (``keys/oprf.key``, :mod:`node.keystore`) to the querier's blinded subjects, which
gives the querier the values ``v(x)`` its probes need and nothing it could compute offline.
Each blinded value is charged to the peer's daily quota like a probed subject.

:meth:`MatchHolder.probe` runs every check before anything is decrypted or charged:
request id, time, table epoch, mode, sizes, widths and ranges, then replay and quota in
one transaction; every probe is audited, answered or refused, without identifiers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from federation.canonical import canonical_bytes
from federation.clock import Clock, china_date, format_utc
from federation.errors import (
    AlreadyExistsError,
    CreditNetError,
    FailedPreconditionError,
    InvalidInputError,
    NotFoundError,
    QuotaExceededError,
    UnavailableError,
)
from federation.matching import (
    HASH_FUNCTIONS,
    CuckooIndex,
    HolderKey,
    MatchingError,
    OprfKey,
    Placement,
    TableFullError,
    TableHeader,
    TableLayout,
    blind_for_count,
    build_index,
    check_blinded,
    ciphertexts_for,
    evaluate,
    new_layout,
    sign_table_header,
    table_digest,
)
from federation.sanctions import EntryState, ListKind, ListPolicy
from federation.signing import SigningKey
from federation.subjects import SubjectId, hide_identifiers, mask_resident_id, parse_subject
from node.logstore import state_from_row
from node.matching.keys import subject_key
from node.matching.pool import MatchingPool
from node.matching.tables import OWN_DIR, TableStore
from node.storage.lists import EntryRepository
from node.storage.matching import (
    Admission,
    MatchAuditRepository,
    MatchQuotaRepository,
    OwnListingRepository,
)

log = logging.getLogger(__name__)

INDEX_FILE = "index.json"
CHANGES_FILE = "changes.json"
SALT_FILE = "audit-salt"
HISTORY_EPOCHS = 64
"""Epochs whose changed bins are kept; a peer further behind fetches the whole table."""
BINS_PER_MESSAGE = 1000
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
REQUEST_ID_BYTES = 16
BLINDED_BYTES = 32
MAX_TEXT_CHARS = 500
EVALUATE_MODE = "evaluate"
"""The audit's mode for an OPRF evaluation request (the round before the probes)."""
NO_REQUEST = "0" * 32
"""The audit's request id for a request whose own id is malformed."""


class ProbeMode(enum.StrEnum):
    MEMBERSHIP = "membership"
    COUNT = "count"


class ReplayedRequestError(AlreadyExistsError):
    """A request id this node has already seen from that peer."""


class TableOutOfDateError(FailedPreconditionError):
    """A probe built on a table or epoch this node no longer answers for."""


@dataclasses.dataclass(frozen=True)
class MatchingLimits:
    """The ``[matching]`` settings the holder enforces (see :mod:`node.config`)."""

    probes_per_peer_per_day: int = 50_000
    disclosures_per_peer_per_day: int = 200
    max_subjects_per_request: int = 1000
    residue_pool_size: int = 32
    replay_window_s: float = 600.0
    sync_interval_s: float = 5.0
    max_message_bytes: int = 4 * 1024 * 1024

    @classmethod
    def from_config(cls, config: Any) -> MatchingLimits:
        """From a :class:`node.config.NodeConfig`."""
        return cls(
            probes_per_peer_per_day=config.matching_probes_per_peer_per_day,
            disclosures_per_peer_per_day=config.matching_disclosures_per_peer_per_day,
            max_subjects_per_request=config.matching_max_subjects_per_request,
            residue_pool_size=config.matching_residue_pool_size,
            replay_window_s=config.matching_replay_window_s,
            sync_interval_s=config.sync_interval_s,
            max_message_bytes=config.max_message_bytes,
        )


@dataclasses.dataclass(frozen=True)
class TablePart:
    """One message of a GetMatchTable stream: the signed header first, then bins."""

    header: bytes = b""
    signature: bytes = b""
    full: bool = False
    bins: tuple[int, ...] = ()
    ciphertexts: tuple[bytes, ...] = ()


@dataclasses.dataclass(frozen=True)
class BadTime:
    """A time the request gave that is no time (out of range on the wire): the holder
    refuses the request, and audits the refusal, like any other malformed field."""

    problem: str


@dataclasses.dataclass(frozen=True)
class ProbeQuery:
    request_id: bytes
    sent_at: dt.datetime | BadTime | None
    table_id: str
    epoch: int
    mode: ProbeMode | None
    subjects: int
    ciphertexts: Sequence[bytes]
    blinded_expected: Sequence[bytes] = ()


@dataclasses.dataclass(frozen=True)
class EvaluationQuery:
    """A peer's blinded subjects (the OPRF round before its probes)."""

    request_id: bytes
    sent_at: dt.datetime | BadTime | None
    blinded: Sequence[bytes]


@dataclasses.dataclass(frozen=True)
class ProbeAnswer:
    answers: list[bytes] = dataclasses.field(default_factory=list)
    twice_blinded: list[bytes] = dataclasses.field(default_factory=list)
    holder_blinded: list[bytes] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class DisclosureQuery:
    request_id: bytes
    sent_at: dt.datetime | BadTime | None
    subject_id: str
    match_request_id: bytes
    purpose: str
    legal_basis: str = ""
    requested_by: str = ""


@dataclasses.dataclass(frozen=True)
class DisclosedEntry:
    list_kind: str
    entry: bytes  # canonical JSON of the SanctionEntry
    entry_id: str


@dataclasses.dataclass(frozen=True)
class Disclosure:
    entries: list[DisclosedEntry]
    disclosure_id: str


@dataclasses.dataclass
class _Table:
    """The table being served: its header and the private index behind it."""

    header: TableHeader
    signed: tuple[bytes, bytes]
    index: CuckooIndex | None  # None: served as found on disk, rebuilt at the next refresh


class MatchHolder:
    """This node's matching table and the answers to other cities' probes."""

    def __init__(
        self,
        *,
        city_code: str,
        home: Path,
        key: HolderKey,
        oprf_key: OprfKey,
        signing_key: SigningKey,
        policies: Mapping[ListKind, ListPolicy],
        listings: OwnListingRepository,
        entries: EntryRepository,
        audit: MatchAuditRepository,
        quota: MatchQuotaRepository,
        pool: MatchingPool,
        clock: Clock,
        limits: MatchingLimits | None = None,
    ) -> None:
        self.city_code = city_code
        self.directory = Path(home) / OWN_DIR
        self.store = TableStore(self.directory)
        self._key = key
        self._oprf_key = oprf_key
        # v(y) of every subject seen: k never changes, and one costs ~0.1 ms of EC work.
        self._values: dict[str, int] = {}
        self._signing_key = signing_key
        self.kinds = tuple(k.value for k in ListKind if k in policies and not policies[k].public)
        self._listings = listings
        self._entries = entries
        self._audit = audit
        self._quota = quota
        self._pool = pool
        self._clock = clock
        self.limits = limits or MatchingLimits()
        self._table: _Table | None = None
        self._changes: dict[int, frozenset[int]] = {}  # epoch -> bins changed to reach it
        self._superseded: dict[int, dt.datetime] = {}  # epoch -> when the next one replaced it
        self._residues: list[int] = []
        self._lock = asyncio.Lock()
        self._salt: bytes | None = None
        # What the table was last brought in line with: (entries' version, date in China).
        self._basis: tuple[tuple[int, int], dt.date] | None = None

    # --- state -------------------------------------------------------------------------

    @property
    def header(self) -> TableHeader | None:
        return None if self._table is None else self._table.header

    @property
    def signed_header(self) -> tuple[bytes, bytes] | None:
        return None if self._table is None else self._table.signed

    @property
    def pooled_residues(self) -> int:
        return len(self._residues)

    def load(self) -> None:
        """Take up the table left on disk (cheap checks; :meth:`refresh` does the rest).

        A table for another key or other list kinds, or whose bins do not match its signed
        digest, is not served; an index that does not belong to the table is dropped, so
        that the next refresh rebuilds.
        """
        self._table = None
        if not self.kinds or not self.store.exists():
            return
        try:
            header = self.store.check()
            signed = self.store.signed_header()
        except (CreditNetError, OSError, ValueError, KeyError) as exc:
            log.warning("own matching table unusable; it will be rebuilt", extra=_fields(exc))
            return
        if signed is None or not self._fits(header.layout):
            return
        if not self._same_oprf_key():
            # Its bins hold values a querier can no longer obtain: every probe would miss.
            log.warning("own matching table made under another OPRF key; it will be rebuilt")
            return
        index = self._load_index(header)
        self._table = _Table(header, signed, index)
        self._changes = self._load_changes(header) if index is not None else {}

    def _fits(self, layout: TableLayout) -> bool:
        return layout.n == self._key.n and layout.kinds == self.kinds

    def _same_oprf_key(self) -> bool:
        """Whether the index on disk (if readable) was made under this node's OPRF key."""
        try:
            value = json.loads((self.directory / INDEX_FILE).read_text())
        except (OSError, ValueError):
            return True  # no index to tell: served as found, rebuilt at the next refresh
        return isinstance(value, dict) and value.get("oprf") == self._oprf_key.fingerprint()

    def _load_index(self, header: TableHeader) -> CuckooIndex | None:
        try:
            value = json.loads((self.directory / INDEX_FILE).read_text())
            if value.get("table_id") != header.table_id or value.get("epoch") != header.epoch:
                return None
            if value.get("oprf") != self._oprf_key.fingerprint():
                return None
            index = CuckooIndex.from_json(value)
        except (OSError, ValueError, KeyError, TypeError, CreditNetError):
            return None
        return index if index.layout == header.layout else None

    def _load_changes(self, header: TableHeader) -> dict[int, frozenset[int]]:
        try:
            value = json.loads((self.directory / CHANGES_FILE).read_text())
            if value.get("table_id") != header.table_id:
                return {}
            return {
                int(epoch): frozenset(int(b) for b in bins)
                for epoch, bins in value["epochs"].items()
                if int(epoch) <= header.epoch
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    # --- keeping the table in line with the lists ----------------------------------------

    def wanted(self) -> tuple[dict[str, set[str]], set[str]]:
        """Subject key -> list kinds of the active own entries, and every key ever listed.

        Entries are never deleted (a removal is an event), so the second set covers every
        subject the index may still hold.
        """
        today = china_date(self._clock.now())
        active: dict[str, set[str]] = {}
        every: set[str] = set()
        for listing in self._listings.listings(self.city_code, self.kinds):
            key = subject_key(listing.subject_id)
            every.add(key)
            if listing.active_on(today):
                active.setdefault(key, set()).add(listing.list_kind)
        return active, every

    async def refresh(self) -> bool:
        """Bring the table in line with the entries; True if a new epoch was published.

        Cheap when nothing can have changed: which entries are active changes only with a
        new event of this city's log or with the date, so the work is skipped while the
        entries' version and the date in China stay the same.
        """
        if not self.kinds:
            return False
        async with self._lock:
            # A count over the list (100,000 rows and more), every sync interval: not in the
            # event loop, where it would hold up the probes being answered.
            version = await asyncio.to_thread(self._listings.version, self.city_code, self.kinds)
            basis = (version, china_date(self._clock.now()))
            table = self._table
            usable = table is not None and table.index is not None
            if usable and basis == self._basis:
                changed = False
            else:
                try:
                    changed = await self._bring_in_line(table)
                except BaseException:
                    # The index may be ahead of the table now: rebuild next time.
                    self._basis = None
                    if self._table is not None:
                        self._table.index = None
                    raise
                self._basis = basis
        await self._refill_residues()
        return changed

    async def _bring_in_line(self, table: _Table | None) -> bool:
        # Reading and hashing every subject takes a while for a long list: not in the loop.
        active, every = await asyncio.to_thread(self.wanted)
        await asyncio.to_thread(self._compute_values, every)
        if table is None or table.index is None or not self._fits(table.header.layout):
            await self._rebuild(active)
            return True
        return await self._update(table, active, every)

    async def _update(self, table: _Table, active: Mapping[str, set[str]], every: set[str]) -> bool:
        index = table.index
        assert index is not None
        try:
            changed = await asyncio.to_thread(_apply, index, active, every, self._value)
        except TableFullError:
            await self._rebuild(active)
            return True
        if len(index) != len(active):
            # The index holds subjects no entry explains (e.g. another database): start over.
            log.warning("own matching index does not match the entries; rebuilding")
            await self._rebuild(active)
            return True
        if not changed:
            return False
        await self._publish_changes(table, index, sorted(changed))
        return True

    async def _rebuild(self, active: Mapping[str, set[str]]) -> None:
        subjects = {key: sorted(kinds) for key, kinds in active.items()}
        index = build_index(
            lambda: new_layout(self._key.n, self.kinds, len(subjects)), subjects, self._value
        )
        layout = index.layout
        plaintexts = [index.plaintext(b) for b in range(layout.bins)]
        width = layout.ciphertext_bytes
        ciphertexts = [
            c.to_bytes(width, "big") for c in await self._pool.encrypt(self._key, plaintexts)
        ]
        header = TableHeader(
            holder=self.city_code,
            table_id=secrets.token_hex(16),
            epoch=1,
            layout=layout,
            digest=table_digest(ciphertexts),
            issued_at=self._clock.now(),
        )
        signed = sign_table_header(header, self._signing_key)
        self.store.create(*signed, ciphertexts)
        self._table = _Table(header, signed, index)
        self._changes = {}
        self._superseded = {}
        self._save(index, header)
        log.info(
            "own matching table built",
            extra={"fields": {"table": header.table_id[:8], "bins": layout.bins}},
        )

    async def _publish_changes(self, table: _Table, index: CuckooIndex, bins: list[int]) -> None:
        layout = table.header.layout
        width = layout.ciphertext_bytes
        fresh = await self._encrypt(layout, [index.plaintext(b) for b in bins])
        changes = {b: c.to_bytes(width, "big") for b, c in zip(bins, fresh, strict=True)}
        digest = table_digest(
            changes.get(b) or self.store.ciphertext(b).to_bytes(width, "big")
            for b in range(layout.bins)
        )
        now = self._clock.now()
        header = dataclasses.replace(
            table.header, epoch=table.header.epoch + 1, digest=digest, issued_at=now
        )
        signed = sign_table_header(header, self._signing_key)
        self.store.apply(*signed, changes)
        self._superseded[table.header.epoch] = now
        self._changes[header.epoch] = frozenset(bins)
        for old in [e for e in self._changes if e <= header.epoch - HISTORY_EPOCHS]:
            del self._changes[old]
        for old in [e for e in self._superseded if e < header.epoch - HISTORY_EPOCHS]:
            del self._superseded[old]
        self._table = _Table(header, signed, index)
        self._save(index, header)
        log.info(
            "own matching table updated",
            extra={
                "fields": {"table": header.table_id[:8], "epoch": header.epoch, "bins": len(bins)}
            },
        )

    def _compute_values(self, keys: set[str]) -> None:
        for key in keys:
            self._value(key)

    def _value(self, subject_key: str) -> int:
        """``v(y)`` of one of this city's subjects, computed directly with the OPRF key."""
        value = self._values.get(subject_key)
        if value is None:
            value = self._values[subject_key] = self._oprf_key.value(subject_key)
        return value

    async def _encrypt(self, layout: TableLayout, plaintexts: list[int]) -> list[int]:
        """Pooled randomness first (a few multiplications each), the process pool for the rest."""
        take = min(len(plaintexts), len(self._residues))
        residues, self._residues = self._residues[:take], self._residues[take:]
        done = [self._key.encrypt(m, r) for m, r in zip(plaintexts[:take], residues, strict=True)]
        rest = (
            await self._pool.encrypt(self._key, plaintexts[take:]) if take < len(plaintexts) else []
        )
        return done + rest

    async def _refill_residues(self) -> None:
        missing = self.limits.residue_pool_size - len(self._residues)
        if missing > 0:
            self._residues.extend(await self._pool.holder_residues(self._key, missing))

    def _save(self, index: CuckooIndex, header: TableHeader) -> None:
        value = {
            **index.to_json(),
            "table_id": header.table_id,
            "epoch": header.epoch,
            "oprf": self._oprf_key.fingerprint(),
        }
        _write_private(self.directory / INDEX_FILE, json.dumps(value))
        changes = {
            "table_id": header.table_id,
            "epochs": {str(e): sorted(b) for e, b in sorted(self._changes.items())},
        }
        _write_private(self.directory / CHANGES_FILE, json.dumps(changes))

    # --- GetMatchTable -------------------------------------------------------------------

    def table_parts(self, table_id: str, epoch: int) -> Iterator[TablePart]:
        """The stream for a caller holding ``(table_id, epoch)``: the changed bins since, or
        the whole table (``full``) if it holds another table or an epoch too old.

        The bins are read chunk by chunk; if the table changes meanwhile, the stream stops
        with UNAVAILABLE (the caller fetches again).
        """
        table = self._current()
        header = table.header
        bins = self._changed_since(header, table_id, epoch)
        full = bins is None
        yield TablePart(header=table.signed[0], signature=table.signed[1], full=full)
        wanted: Sequence[int] = range(header.layout.bins) if bins is None else bins
        width = header.layout.ciphertext_bytes
        per_message = max(1, min(BINS_PER_MESSAGE, self.limits.max_message_bytes // 2 // width))
        for start in range(0, len(wanted), per_message):
            if self._table is not table:
                raise UnavailableError(
                    "this city's matching table changed while it was being sent; fetch it again"
                )
            chunk = tuple(wanted[start : start + per_message])
            yield TablePart(
                bins=chunk,
                ciphertexts=tuple(self.store.ciphertext(b).to_bytes(width, "big") for b in chunk),
            )

    def _current(self) -> _Table:
        if not self.kinds:
            raise FailedPreconditionError(
                f"{self.city_code} keeps no non-public list, so it publishes no matching table"
            )
        if self._table is None:
            raise UnavailableError(f"the matching table of {self.city_code} is being built")
        return self._table

    def _changed_since(self, header: TableHeader, table_id: str, epoch: int) -> list[int] | None:
        if table_id != header.table_id or not 1 <= epoch <= header.epoch:
            return None
        changed: set[int] = set()
        for later in range(epoch + 1, header.epoch + 1):
            bins = self._changes.get(later)
            if bins is None:
                return None
            changed |= bins
        return sorted(changed)

    # --- EvaluateSubjects (the OPRF round) ------------------------------------------------

    async def evaluate(self, peer: str, query: EvaluationQuery) -> list[bytes]:
        """Apply the OPRF key to a peer's blinded subjects, after every check; audited.

        Checks: request id and time, 1 to ``max_subjects_per_request`` values, each a P-256
        x-coordinate, then replay and quota (one unit of the probe quota per value: a value
        is what lets the querier test an identifier). Nothing is evaluated before that.
        """
        request = query.request_id.hex() if len(query.request_id) == REQUEST_ID_BYTES else ""
        count = len(query.blinded)
        try:
            if not self.kinds:
                raise FailedPreconditionError(
                    f"{self.city_code} keeps no non-public list, so it evaluates no subjects"
                )
            self._check_request(peer, query.request_id, query.sent_at, self._clock.now())
            most = self.limits.max_subjects_per_request
            if not 1 <= count <= most:
                raise InvalidInputError(
                    f"an evaluation request carries 1 to {most} blinded values, not {count}"
                )
            check_blinded(query.blinded)
            self._admit(peer, query.request_id, "probes", count, query.sent_at)
        except CreditNetError as exc:
            self._record(peer, request, EVALUATE_MODE, count, 0, "refused", exc.message)
            raise
        blinded = list(query.blinded)
        if count == 1:
            evaluated = evaluate(self._oprf_key, blinded)
        else:
            evaluated = await asyncio.to_thread(evaluate, self._oprf_key, blinded)
        self._record(peer, request, EVALUATE_MODE, count, 0, "answered", None)
        return evaluated

    # --- Probe ---------------------------------------------------------------------------

    async def probe(self, peer: str, query: ProbeQuery) -> ProbeAnswer:
        """Answer a peer's probes, after every check; audited whatever the outcome."""
        request = query.request_id.hex() if len(query.request_id) == REQUEST_ID_BYTES else ""
        mode = query.mode.value if query.mode is not None else "unspecified"
        sizes = (query.subjects, len(query.ciphertexts))
        try:
            table = self._check_probe(peer, query)
            self._admit(peer, query.request_id, "probes", query.subjects, query.sent_at)
        except CreditNetError as exc:
            self._record(peer, request, mode, *sizes, "refused", exc.message)
            raise
        layout = table.header.layout
        try:
            answer = await self._answer(layout, query)
        except MatchingError as exc:
            self._record(peer, request, mode, *sizes, "refused", exc.message)
            raise
        self._record(peer, request, mode, *sizes, "answered", None)
        return answer

    def _check_probe(self, peer: str, query: ProbeQuery) -> _Table:
        now = self._clock.now()
        self._check_request(peer, query.request_id, query.sent_at, now)
        table = self._check_epoch(query.table_id, query.epoch, now)
        layout = table.header.layout
        if query.mode is None:
            raise InvalidInputError("a probe request must say its mode (membership or count)")
        most = self.limits.max_subjects_per_request
        if not 1 <= query.subjects <= most:
            raise InvalidInputError(
                f"a probe request covers 1 to {most} subjects, not {query.subjects}"
            )
        least = ciphertexts_for(layout, query.subjects)
        highest = max(least, HASH_FUNCTIONS * query.subjects)
        if not least <= len(query.ciphertexts) <= highest:
            raise InvalidInputError(
                f"{query.subjects} subjects take {least} to {highest} probe ciphertexts, "
                f"not {len(query.ciphertexts)}"
            )
        _check_ciphertexts(layout, query.ciphertexts)
        expected = HASH_FUNCTIONS * query.subjects * ((1 << len(layout.kinds)) - 1)
        if query.mode is ProbeMode.COUNT:
            if len(query.blinded_expected) != expected:
                raise InvalidInputError(
                    f"a count request for {query.subjects} subjects carries {expected} blinded "
                    f"values, not {len(query.blinded_expected)}"
                )
            if any(len(p) != BLINDED_BYTES for p in query.blinded_expected):
                raise InvalidInputError(f"a blinded value is {BLINDED_BYTES} bytes")
        elif query.blinded_expected:
            raise InvalidInputError("a membership request carries no blinded values")
        return table

    def _check_request(
        self,
        peer: str,
        request_id: bytes,
        sent_at: dt.datetime | BadTime | None,
        now: dt.datetime,
    ) -> None:
        if isinstance(sent_at, BadTime):
            raise InvalidInputError(sent_at.problem)
        if len(request_id) != REQUEST_ID_BYTES:
            raise InvalidInputError(
                f"a request id is {REQUEST_ID_BYTES} random bytes, not {len(request_id)}"
            )
        if self._quota.seen(peer, request_id):
            raise ReplayedRequestError(
                f"request id {request_id.hex()} was already used by {peer} (replay refused)"
            )
        if sent_at is None:
            raise InvalidInputError("the request has no sent_at time")
        if abs(sent_at - now) > MAX_CLOCK_SKEW:
            raise InvalidInputError(
                f"the request was sent at {format_utc(sent_at)}, more than "
                f"{int(MAX_CLOCK_SKEW.total_seconds() // 60)} minutes from this node's time "
                f"{format_utc(now)}; check the clocks"
            )

    def _check_epoch(self, table_id: str, epoch: int, now: dt.datetime) -> _Table:
        table = self._current()
        header = table.header
        if table_id == header.table_id:
            if epoch == header.epoch:
                return table
            superseded = self._superseded.get(epoch)
            grace = dt.timedelta(seconds=self.limits.sync_interval_s)
            if superseded is not None and now - superseded < grace:
                return table
        raise TableOutOfDateError(
            f"table out of date: {self.city_code} answers for table {header.table_id} "
            f"at epoch {header.epoch}; fetch epoch {header.epoch}"
        )

    def _admit(
        self,
        peer: str,
        request_id: bytes,
        counter: str,
        amount: int,
        sent_at: dt.datetime | BadTime | None,
    ) -> None:
        now = self._clock.now()
        limit = (
            self.limits.probes_per_peer_per_day
            if counter == "probes"
            else self.limits.disclosures_per_peer_per_day
        )
        remember = now + dt.timedelta(seconds=self.limits.replay_window_s)
        if isinstance(sent_at, dt.datetime):
            remember = max(remember, sent_at + MAX_CLOCK_SKEW)
        day = now.astimezone(dt.UTC).date()
        result = self._quota.admit(
            peer,
            request_id,
            counter="probes" if counter == "probes" else "disclosures",
            amount=amount,
            limit=limit,
            day=day,
            at=now,
            remember_until=remember,
        )
        if result.outcome is Admission.REPLAY:
            raise ReplayedRequestError(
                f"request id {request_id.hex()} was already used by {peer} (replay refused)"
            )
        if result.outcome is Admission.OVER_QUOTA:
            resets = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
            what = "subjects probed" if counter == "probes" else "disclosures"
            raise QuotaExceededError(
                f"{peer} has used {result.used} of its {limit} {what} per day at "
                f"{self.city_code} and asked for {amount} more; the quota resets at "
                f"{format_utc(resets)}"
            )

    async def _answer(self, layout: TableLayout, query: ProbeQuery) -> ProbeAnswer:
        ciphertexts = [int.from_bytes(c, "big") for c in query.ciphertexts]
        if query.mode is not ProbeMode.COUNT:
            answers = await self._pool.answer(self._key, layout, query.request_id, ciphertexts)
            return ProbeAnswer(answers=answers)
        scalar = X25519PrivateKey.generate()
        # The querier's values first: a malformed point is refused before any decryption.
        twice, _ = await asyncio.to_thread(
            blind_for_count, scalar, list(query.blinded_expected), []
        )
        answers = await self._pool.answer(self._key, layout, query.request_id, ciphertexts)
        _, own = await asyncio.to_thread(blind_for_count, scalar, [], answers)
        return ProbeAnswer(twice_blinded=twice, holder_blinded=own)

    def _record(
        self,
        peer: str,
        request: str,
        mode: str,
        subjects: int,
        ciphertexts: int,
        outcome: str,
        reason: str | None,
    ) -> None:
        """Audit a probe or an evaluation round, whatever its outcome."""
        try:
            self._audit.record(
                "received",
                peer,
                request or NO_REQUEST,
                mode,
                max(0, subjects),
                ciphertexts,
                None,
                outcome,
                at=self._clock.now(),
                reason=reason,
            )
        except Exception:
            log.exception("could not write a matching audit record")

    # --- Disclose ------------------------------------------------------------------------

    def disclose(self, peer: str, query: DisclosureQuery) -> Disclosure:
        """The entries about a subject on this city's non-public lists, after a hit.

        Checks: request id and time, a purpose, the probe it follows, replay and the daily
        quota (charged even when the subject is not listed: no free oracle). Audited with a
        salted hash of the subject, never the identifier.
        """
        now = self._clock.now()
        request = query.request_id.hex() if len(query.request_id) == REQUEST_ID_BYTES else ""
        subject: SubjectId | None = None
        detail = self._disclosure_detail(query)
        try:
            self._check_request(peer, query.request_id, query.sent_at, now)
            subject = parse_subject(query.subject_id, today=china_date(now))
            detail = self._disclosure_detail(query, subject)
            self._check_disclosure(peer, query)
            self._admit(peer, query.request_id, "disclosures", 1, query.sent_at)
        except CreditNetError as exc:
            self._record_disclosure(peer, request, subject, "refused", exc.message, detail, 0)
            raise
        found = self._listed(subject, now)
        if not found:
            self._record_disclosure(peer, request, subject, "not-found", None, detail, 0)
            raise NotFoundError(
                f"the subject named is on no non-public list of {self.city_code} now"
            )
        disclosure_id = secrets.token_hex(16)
        self._record_disclosure(
            peer,
            request,
            subject,
            "disclosed",
            None,
            f"{detail}; disclosure {disclosure_id}",
            len(found),
        )
        return Disclosure(
            entries=[
                DisclosedEntry(
                    list_kind=state.entry.list_kind.value,
                    entry=canonical_bytes(state.entry.to_json()),
                    entry_id=state.entry_id,
                )
                for state in found
            ],
            disclosure_id=disclosure_id,
        )

    def _check_disclosure(self, peer: str, query: DisclosureQuery) -> None:
        if len(query.match_request_id) != REQUEST_ID_BYTES:
            raise InvalidInputError(
                f"the match request id is {REQUEST_ID_BYTES} bytes, not "
                f"{len(query.match_request_id)}"
            )
        if not query.purpose.strip():
            raise InvalidInputError("a disclosure request must state its purpose")
        for name, text in (
            ("purpose", query.purpose),
            ("legal_basis", query.legal_basis),
            ("requested_by", query.requested_by),
        ):
            if len(text) > MAX_TEXT_CHARS:
                raise InvalidInputError(f"{name} has at most {MAX_TEXT_CHARS} characters")
        answered = any(
            row.direction == "received"
            and row.peer == peer
            and row.outcome == "answered"
            and row.mode in (ProbeMode.MEMBERSHIP, ProbeMode.COUNT)
            for row in self._audit.by_request(query.match_request_id)
        )
        if not answered:
            raise FailedPreconditionError(
                f"no probe {query.match_request_id.hex()} of {peer} was answered here; a "
                "disclosure follows a probe that hit"
            )

    def _listed(self, subject: SubjectId, now: dt.datetime) -> list[EntryState]:
        found = []
        for row in self._entries.by_subject(subject.value):
            if row.origin != self.city_code or row.list_kind not in self.kinds:
                continue
            state = state_from_row(row)
            if state.effective(now).active:
                found.append(state)
        return found

    def _disclosure_detail(self, query: DisclosureQuery, subject: SubjectId | None = None) -> str:
        parts = [f"subject {mask_resident_id(subject.value)}"] if subject is not None else []
        parts.append(f"purpose: {redacted(query.purpose)}")
        if query.legal_basis:
            parts.append(f"basis: {redacted(query.legal_basis)}")
        if query.requested_by:
            parts.append(f"requested by: {redacted(query.requested_by)}")
        if len(query.match_request_id) == REQUEST_ID_BYTES:
            parts.append(f"match request {query.match_request_id.hex()}")
        return "; ".join(parts)

    def _record_disclosure(
        self,
        peer: str,
        request: str,
        subject: SubjectId | None,
        outcome: str,
        reason: str | None,
        detail: str,
        hits: int,
    ) -> None:
        try:
            self._audit.record(
                "received",
                peer,
                request or NO_REQUEST,
                "disclose",
                1,
                0,
                hits,
                outcome,
                at=self._clock.now(),
                reason=reason,
                subject_ref=None if subject is None else self.subject_ref(subject.value),
                detail=detail,
            )
        except Exception:
            log.exception("could not write a matching audit record")

    def subject_ref(self, identifier: str) -> str:
        """The audit's reference to a subject: HMAC-SHA256 under this node's audit salt.

        An operator with the salt can tell whether a given subject was disclosed; the audit
        rows alone reveal nothing.
        """
        return hmac.new(
            self._audit_salt(), subject_key(identifier).encode(), hashlib.sha256
        ).hexdigest()

    def _audit_salt(self) -> bytes:
        if self._salt is None:
            path = self.directory.parent / SALT_FILE
            try:
                self._salt = bytes.fromhex(path.read_text().strip())
            except (OSError, ValueError):
                self._salt = secrets.token_bytes(32)
                _write_private(path, self._salt.hex())
        return self._salt

    # --- housekeeping --------------------------------------------------------------------

    def forget_expired(self) -> int:
        """Drop request ids past their replay window and quota rows older than a week."""
        now = self._clock.now()
        self._quota.forget_days_before(now.astimezone(dt.UTC).date() - dt.timedelta(days=7))
        return self._quota.forget_expired(now)

    def close(self) -> None:
        self.store.close()


def _apply(
    index: CuckooIndex,
    active: Mapping[str, set[str]],
    every: set[str],
    value_of: Callable[[str], int],
) -> set[int]:
    """Put or discard every subject ever listed as the entries say; the bins that changed."""
    changed: set[int] = set()
    for key in every:
        kinds = active.get(key)
        place: Placement = index.layout.locate(key, value_of(key))
        changed |= index.put(place, sorted(kinds)) if kinds else index.discard(place)
    return changed


def _check_ciphertexts(layout: TableLayout, ciphertexts: Sequence[bytes]) -> None:
    width, n, n_square = layout.ciphertext_bytes, layout.n, layout.n_square
    for position, data in enumerate(ciphertexts):
        if len(data) != width:
            raise InvalidInputError(
                f"probe ciphertext {position} is {len(data)} bytes; this table's are {width}"
            )
        value = int.from_bytes(data, "big")
        if not 0 < value < n_square or math.gcd(value, n) != 1:
            raise InvalidInputError(f"probe ciphertext {position} is out of range")


def redacted(text: str) -> str:
    """Free text of a disclosure request (purpose, legal basis, requester) as the audit keeps
    it, on both sides: trimmed, anything that could be an identifier hidden, cut."""
    return hide_identifiers(text.strip())[:MAX_TEXT_CHARS]


def _write_private(path: Path, text: str) -> None:
    """Write a file only the node's user can read, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + ".new")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.chmod(0o600)
    temporary.replace(path)


def _fields(exc: Exception) -> dict[str, Any]:
    message = exc.message if isinstance(exc, CreditNetError) else type(exc).__name__
    return {"fields": {"error": message}}
