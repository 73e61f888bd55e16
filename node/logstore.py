"""One city's list log as this node stores it: its own log, or a verified replica.

Both the owner (recording decisions) and a replica (applying verified batches from the
owner) append through :meth:`LogStore.append`: leaves, the level-8 subtree hashes, the new
compact range, and the entry states the events produce, all in one transaction. A node can
therefore answer proofs and queries for every log it holds in the same way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Sequence

from federation.checkpoint import SignedCheckpoint
from federation.clock import Clock
from federation.errors import CreditNetError
from federation.merkle import CompactRange, LayeredTree, subtree_hashes
from federation.sanctions import (
    EntryState,
    Envelope,
    EventBody,
    Objection,
    Removal,
    RemovalReason,
    SanctionEntry,
    apply_event,
)
from node.storage.lists import EntryRepository, EntryRow, LogHead, LogRepository, StoredLeaf

log = logging.getLogger(__name__)

# json.dumps(value, ensure_ascii=False): the stored form of removals and objections (an
# entry is stored as its canonical JSON), with the encoder made once rather than per row.
_json = json.JSONEncoder(ensure_ascii=False).encode


@dataclasses.dataclass(frozen=True, slots=True)
class Leaf:
    """A decoded leaf: the envelope always, the body when this node may see it."""

    envelope: Envelope
    envelope_bytes: bytes
    hash: bytes
    body: EventBody | None = None
    body_bytes: bytes | None = None


class LogStore:
    def __init__(self, origin: str, logs: LogRepository, entries: EntryRepository, clock: Clock):
        self.origin = origin
        self._logs = logs
        self._entries = entries
        self._clock = clock
        head = logs.head(origin)
        if head is None:
            self.range = CompactRange.empty()
            self.checkpoint: bytes | None = None
        else:
            self.range = CompactRange.from_bytes(0, head.size, head.frontier)
            self.checkpoint = head.checkpoint

    @property
    def size(self) -> int:
        return self.range.end

    def root(self) -> bytes:
        return self.range.root()

    def signed_checkpoint(self) -> SignedCheckpoint | None:
        return None if self.checkpoint is None else SignedCheckpoint.from_bytes(self.checkpoint)

    def tree(self) -> LayeredTree:
        return LayeredTree(
            lambda begin, end: self._logs.leaf_hashes(self.origin, begin, end),
            lambda begin, end: self._logs.blocks(self.origin, begin, end),
        )

    def right_hashes(self, begin: int, end: int) -> list[bytes]:
        """Hashes of the compact range [begin, end): with the range [0, begin) they give
        the root of the tree of size ``end``."""
        return subtree_hashes(begin, end, self.tree())

    def states(self, entry_ids: Sequence[str]) -> dict[str, EntryState]:
        rows = self._entries.get_many(self.origin, entry_ids)
        return {eid: state_from_row(row) for eid, row in rows.items()}

    def append(
        self,
        leaves: Sequence[Leaf],
        *,
        checkpoint: bytes | None,
        states: dict[str, EntryState] | None = None,
    ) -> None:
        """Append verified leaves (in order, starting at :attr:`size`) in one transaction.

        ``states`` may carry entry states the caller already computed (the owner does);
        otherwise they are derived here from the stored states and the bodies, and the
        entries the origin no longer shares with this node are withdrawn (:meth:`_apply`).
        """
        if not leaves:
            return
        start = self.size
        withdrawn: dict[str, int] = {}
        if states is None:
            states, withdrawn = self._apply(leaves)
        new_range, blocks = self.range.extend_with_blocks([leaf.hash for leaf in leaves])
        now = self._clock.now()
        stored = [
            StoredLeaf(
                origin=self.origin,
                idx=start + offset,
                entry_id=leaf.envelope.entry_id,
                event=leaf.envelope.event.value,
                list_kind=leaf.envelope.list_kind.value,
                leaf_hash=leaf.hash,
                envelope=leaf.envelope_bytes,
                body=(
                    None
                    if leaf.envelope.index < withdrawn.get(leaf.envelope.entry_id, -1)
                    else leaf.body_bytes
                ),
            )
            for offset, leaf in enumerate(leaves)
        ]
        head = LogHead(
            origin=self.origin,
            size=new_range.end,
            root=new_range.root(),
            frontier=new_range.to_bytes(),
            checkpoint=checkpoint,
            updated_at=now,
        )
        self._logs.append(
            origin=self.origin,
            expected_size=start,
            leaves=stored,
            blocks=blocks,
            head=head,
            entries=[row_from_state(state, now) for state in states.values()],
            withdrawn=sorted(withdrawn),
        )
        self.range = new_range
        self.checkpoint = checkpoint
        if withdrawn:
            log.warning(
                "entries withdrawn: their origin no longer shares their list kind with us",
                extra={"fields": {"origin": self.origin, "entries": len(withdrawn)}},
            )

    def _apply(self, leaves: Sequence[Leaf]) -> tuple[dict[str, EntryState], dict[str, int]]:
        """The entry states after ``leaves``, and the entries withdrawn, each with the index
        of the leaf that withdrew it.

        A replica holds in clear only what the origin currently shares with it. The origin
        sends a leaf without its body when it does not share that list kind with this node:
        an entry held here (its state, or the body of one of its leaves) that gets such a
        leaf is withdrawn, so that this node stops serving what it can no longer follow
        (a removal after credit repair, say).
        """
        states = self.states(sorted({leaf.envelope.entry_id for leaf in leaves}))
        bodiless = sorted({leaf.envelope.entry_id for leaf in leaves if leaf.body is None})
        with_bodies = self._logs.with_bodies(self.origin, bodiless) if bodiless else set()
        withdrawn: dict[str, int] = {}
        for leaf in leaves:
            eid = leaf.envelope.entry_id
            if leaf.body is None:
                if eid in states or eid in with_bodies:
                    withdrawn[eid] = leaf.envelope.index
                    states.pop(eid, None)
                    with_bodies.discard(eid)
                continue
            with_bodies.add(eid)
            try:
                states[eid] = apply_event(states.get(eid), leaf.envelope, leaf.body)
            except CreditNetError as exc:
                # A body whose earlier events were withheld from us or withdrawn (the kind
                # became shared later, or again): keep the leaf, skip the state.
                log.warning(
                    "event not applied to entry state",
                    extra={
                        "fields": {
                            "origin": self.origin,
                            "index": leaf.envelope.index,
                            "reason": exc.message,
                        }
                    },
                )
        return states, withdrawn


def _date(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def state_from_row(row: EntryRow) -> EntryState:
    return EntryState(
        origin=row.origin,
        entry_id=row.entry_id,
        entry=SanctionEntry.from_json(json.loads(row.entry)),
        removal=None if row.removal is None else Removal.from_json(json.loads(row.removal)),
        objection=None if row.objection is None else Objection.from_json(json.loads(row.objection)),
        last_index=row.last_index,
        updated_at=row.updated_at,
    )


def row_from_state(state: EntryState, now: dt.datetime) -> EntryRow:
    entry = state.entry
    removal = state.removal
    return EntryRow(
        origin=state.origin,
        entry_id=state.entry_id,
        list_kind=entry.list_kind.value,
        subject_kind=entry.subject.kind.value,
        subject_id=entry.subject.id,
        subject_name=entry.subject.name,
        authority=entry.authority,
        decision_no=entry.decision_no,
        listed_on=entry.listed_on,
        publicity_end=entry.publicity_end,
        removed_on=None if removal is None else removal.removed_on,
        removal_reason=None if removal is None else RemovalReason(removal.reason).value,
        objection_open=state.objection is not None and state.objection.open,
        entry=entry.canonical_json,
        removal=None if removal is None else _json(removal.to_json()),
        objection=None if state.objection is None else _json(state.objection.to_json()),
        last_index=state.last_index,
        updated_at=state.updated_at if state.updated_at else now,
    )
