"""This city's own list log: turns the platform's decisions into signed, append-only events.

Each change is planned by the domain rules (:mod:`federation.sanctions`: validation,
idempotency per decision, the publicity periods), sealed into an envelope and a body,
appended to the log in one transaction, and covered by a newly signed checkpoint. Changes
are processed in order; a rejected change does not stop the good ones.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import threading
from collections.abc import Mapping, Sequence

from federation.checkpoint import Checkpoint, sign_checkpoint
from federation.clock import Clock, china_date
from federation.errors import CreditNetError, NotFoundError
from federation.merkle import leaf_hash
from federation.sanctions import (
    Duplicate,
    EntryState,
    ListKind,
    ListPolicy,
    Objection,
    Planned,
    Removal,
    SanctionEntry,
    apply_event,
    due_expiries,
    entry_id,
    plan_add,
    plan_amend,
    plan_objection,
    plan_remove,
    seal,
)
from federation.signing import SigningKey
from node.logstore import Leaf, LogStore, state_from_row
from node.storage.lists import EntryRepository

# Changes are appended (and a checkpoint signed) per chunk, so that an import of a
# million rows never holds them all in one transaction or in memory.
CHUNK = 1000


@dataclasses.dataclass(frozen=True)
class AddEntry:
    entry: SanctionEntry


@dataclasses.dataclass(frozen=True)
class AmendEntry:
    entry: SanctionEntry


@dataclasses.dataclass(frozen=True)
class RemoveEntry:
    authority: str
    decision_no: str
    removal: Removal


@dataclasses.dataclass(frozen=True)
class ObjectToEntry:
    authority: str
    decision_no: str
    objection: Objection


Change = AddEntry | AmendEntry | RemoveEntry | ObjectToEntry


class Outcome(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclasses.dataclass(frozen=True)
class ChangeResult:
    outcome: Outcome
    entry_id: str = ""
    reason: str = ""
    log_index: int | None = None


class OwnLog:
    def __init__(
        self,
        *,
        store: LogStore,
        entries: EntryRepository,
        signing_key: SigningKey,
        policies: Mapping[ListKind, ListPolicy],
        clock: Clock,
    ) -> None:
        self.store = store
        self._entries = entries
        self._key = signing_key
        self.policies = policies
        self._clock = clock
        self._writing = threading.Lock()

    @property
    def origin(self) -> str:
        return self.store.origin

    def submit(self, changes: Sequence[Change]) -> list[ChangeResult]:
        """Record ``changes`` in order. Thread-safe: one writer of this city's log at a
        time (the client API runs it on a worker thread, the expiry sweep in the loop)."""
        results: list[ChangeResult] = []
        with self._writing:
            for begin in range(0, len(changes), CHUNK):
                results.extend(self._submit_chunk(changes[begin : begin + CHUNK]))
        return results

    def _submit_chunk(self, changes: Sequence[Change]) -> list[ChangeResult]:
        now = self._clock.now()
        today = china_date(now)
        ids = [self._entry_id(change) for change in changes]
        states: dict[str, EntryState] = self.store.states(sorted(set(ids)))
        touched: dict[str, EntryState] = {}
        leaves: list[Leaf] = []
        results: list[ChangeResult] = []
        for change, eid in zip(changes, ids, strict=True):
            try:
                planned = self._plan(change, states.get(eid), today)
            except CreditNetError as exc:
                results.append(ChangeResult(Outcome.REJECTED, eid, exc.message))
                continue
            if isinstance(planned, Duplicate):
                results.append(ChangeResult(Outcome.DUPLICATE, eid))
                continue
            index = self.store.size + len(leaves)
            envelope, body_bytes = seal(
                origin=self.origin,
                index=index,
                at=now,
                event=planned.event,
                list_kind=planned.list_kind,
                entry_id=planned.entry_id,
                body=planned.body,
            )
            state = apply_event(states.get(eid), envelope, planned.body)
            states[eid] = touched[eid] = state
            envelope_bytes = envelope.to_bytes()
            leaves.append(
                Leaf(envelope, envelope_bytes, leaf_hash(envelope_bytes), planned.body, body_bytes)
            )
            results.append(ChangeResult(Outcome.APPLIED, eid, log_index=index))
        if leaves:
            size = self.store.size + len(leaves)
            root = self.store.range.extend(leaf.hash for leaf in leaves).root()
            checkpoint = sign_checkpoint(
                Checkpoint(origin=self.origin, size=size, root=root, timestamp=now), self._key
            )
            self.store.append(leaves, checkpoint=checkpoint.to_bytes(), states=touched)
        return results

    def _entry_id(self, change: Change) -> str:
        if isinstance(change, AddEntry | AmendEntry):
            return entry_id(self.origin, change.entry.authority, change.entry.decision_no)
        return entry_id(self.origin, change.authority, change.decision_no)

    def _plan(
        self, change: Change, existing: EntryState | None, today: dt.date
    ) -> Planned | Duplicate:
        if isinstance(change, AddEntry):
            policy = self.policies[change.entry.list_kind]
            return plan_add(self.origin, existing, change.entry, policy, today)
        if isinstance(change, AmendEntry):
            policy = self.policies[change.entry.list_kind]
            return plan_amend(self.origin, existing, change.entry, policy, today)
        if existing is None:
            raise NotFoundError(
                f"no entry of {self.origin} for decision {change.decision_no!r} of "
                f"{change.authority!r}"
            )
        if isinstance(change, RemoveEntry):
            policy = self.policies[existing.entry.list_kind]
            return plan_remove(self.origin, existing, change.removal, policy, today)
        return plan_objection(self.origin, existing, change.objection, today)

    def sweep_expired(self) -> int:
        """Record a removal for every own entry whose publicity period has ended."""
        now = self._clock.now()
        today = china_date(now)
        rows = self._entries.not_removed(self.origin, publicity_end_before=today)
        due = due_expiries((state_from_row(r) for r in rows), now)
        if not due:
            return 0
        by_id = {r.entry_id: r for r in rows}
        changes: list[Change] = [
            RemoveEntry(by_id[eid].authority, by_id[eid].decision_no, removal)
            for eid, removal in due
        ]
        results = self.submit(changes)
        return sum(1 for r in results if r.outcome is Outcome.APPLIED)
