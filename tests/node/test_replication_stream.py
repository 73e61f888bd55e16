"""Applying a peer's log stream (``node.replication.apply_stream``): every batch checked
against the signed checkpoint before it is stored, batches stored in order, a batch
checked while the one before it is being stored, and nothing stored from a bad batch on."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from creditnet.v1 import lists_pb2, peer_pb2
from federation.checkpoint import SignedCheckpoint
from federation.clock import FixedClock
from federation.errors import CreditNetError, InvalidInputError, InvalidProofError
from federation.sanctions import (
    DEFAULT_POLICIES,
    ListKind,
    Objection,
    Removal,
    RemovalReason,
)
from federation.signing import SigningKey
from node.ledger import AddEntry, AmendEntry, Change, ObjectToEntry, OwnLog, RemoveEntry
from node.logstore import LogStore
from node.replication import apply_stream
from node.samples import sample_entry
from node.storage import Database, open_database
from node.storage.lists import EntryRepository, LogRepository
from tests.federation.conftest import NOW

ORIGIN = "370200"
SIZE = 25
LISTED = NOW.date()


@dataclasses.dataclass
class Publisher:
    own: OwnLog
    signed: SignedCheckpoint

    @property
    def store(self) -> LogStore:
        return self.own.store

    def batch(self, begin: int, end: int) -> peer_pb2.StreamLogResponse:
        """Leaves [begin, end) as the peer API streams them (bodies included)."""
        rows = self.store._logs.leaves(ORIGIN, begin, end)
        return peer_pb2.StreamLogResponse(
            start=begin,
            leaves=[lists_pb2.LogLeaf(envelope=r.envelope, body=r.body or b"") for r in rows],
            right_hashes=self.store.right_hashes(end, self.signed.checkpoint.size),
        )

    def batches(self, sizes: Sequence[int], begin: int = 0) -> list[peer_pb2.StreamLogResponse]:
        out = []
        for size in sizes:
            out.append(self.batch(begin, begin + size))
            begin += size
        return out

    def leaf_hashes(self, end: int) -> list[bytes]:
        return self.store._logs.leaf_hashes(ORIGIN, 0, end)


@pytest.fixture
def databases(tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    source = open_database(f"sqlite:///{tmp_path / 'publisher.db'}")
    target = open_database(f"sqlite:///{tmp_path / 'receiver.db'}")
    yield source, target
    source.close()
    target.close()


@pytest.fixture
def publisher(databases: tuple[Database, Database]) -> Publisher:
    source, _ = databases
    clock = FixedClock(NOW)
    logs, entries = LogRepository(source), EntryRepository(source)
    own = OwnLog(
        store=LogStore(ORIGIN, logs, entries, clock),
        entries=entries,
        signing_key=SigningKey.generate(),
        policies=DEFAULT_POLICIES,
        clock=clock,
    )
    changes = [
        AddEntry(
            sample_entry(
                ORIGIN,
                serial,
                kind=ListKind.SERIOUS_DISHONESTY,
                listed_on=LISTED,
                policies=DEFAULT_POLICIES,
            )
        )
        for serial in range(SIZE)
    ]
    assert all(r.outcome.value == "applied" for r in own.submit(changes))
    signed = own.store.signed_checkpoint()
    assert signed is not None and signed.checkpoint.size == SIZE
    return Publisher(own, signed)


@pytest.fixture
def receiver(databases: tuple[Database, Database]) -> LogStore:
    _, target = databases
    return LogStore(ORIGIN, LogRepository(target), EntryRepository(target), FixedClock(NOW))


async def stream_of(items: Sequence[object]) -> AsyncIterator[peer_pb2.StreamLogResponse]:
    for item in items:
        await asyncio.sleep(0)
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, peer_pb2.StreamLogResponse)
        yield item


def apply(publisher: Publisher, receiver: LogStore, items: Sequence[object]) -> None:
    signed = publisher.signed
    asyncio.run(
        apply_stream(ORIGIN, receiver, signed.checkpoint, signed.to_bytes(), stream_of(items))
    )


def stored(receiver: LogStore) -> list[bytes]:
    return receiver._logs.leaf_hashes(ORIGIN, 0, receiver.size)


def test_a_good_stream_gives_the_publishers_log(publisher: Publisher, receiver: LogStore) -> None:
    apply(publisher, receiver, publisher.batches([10, 10, 5]))
    assert receiver.size == SIZE and receiver.root() == publisher.store.root()
    assert stored(receiver) == publisher.leaf_hashes(SIZE)
    assert receiver.checkpoint == publisher.signed.to_bytes()
    entry_ids = [leaf.entry_id for leaf in publisher.store._logs.leaves(ORIGIN, 0, SIZE)]
    assert len(receiver._entries.get_many(ORIGIN, entry_ids)) == SIZE


def test_events_in_consecutive_batches_give_the_publishers_entry_states(
    publisher: Publisher, receiver: LogStore
) -> None:
    # Events on entries whose earlier events are in the batch before, which may still be
    # being stored: an objection, an amendment, a removal, the objection closed.
    own = publisher.own
    first = sample_entry(ORIGIN, 0, listed_on=LISTED)
    second = sample_entry(ORIGIN, 1, listed_on=LISTED)
    changes: list[Change] = [
        ObjectToEntry(first.authority, first.decision_no, Objection(open=True, on=LISTED)),
        AmendEntry(dataclasses.replace(second, reason="拒不履行生效法律文书确定的义务")),
        RemoveEntry(
            second.authority,
            second.decision_no,
            Removal(LISTED, RemovalReason.DECISION_REVOKED, second.authority),
        ),
        ObjectToEntry(first.authority, first.decision_no, Objection(open=False, on=LISTED)),
    ]
    for change in changes:  # one event, one checkpoint each
        assert all(r.outcome.value == "applied" for r in own.submit([change]))
    signed = own.store.signed_checkpoint()
    assert signed is not None and signed.checkpoint.size == SIZE + len(changes)
    publisher = Publisher(own, signed)

    apply(publisher, receiver, publisher.batches([SIZE, 1, 1, 1, 1]))

    assert receiver.root() == publisher.store.root()
    ids = [leaf.entry_id for leaf in publisher.store._logs.leaves(ORIGIN, 0, SIZE)]
    theirs = publisher.store._entries.get_many(ORIGIN, ids)
    ours = receiver._entries.get_many(ORIGIN, ids)
    assert ours == theirs
    ours_first, ours_second = ours[ids[0]], ours[ids[1]]
    assert ours_first.objection is not None and not ours_first.objection_open
    assert ours_second.removal_reason == "decision-revoked"
    assert "拒不履行生效法律文书确定的义务" in ours_second.entry


def test_a_leaf_without_its_body_withdraws_an_entry_added_earlier_in_the_same_batch(
    publisher: Publisher, receiver: LogStore
) -> None:
    # An origin that sends the add in clear and a later event of the same entry without
    # its body, in one batch: the entry is withdrawn whole, the add's body not stored.
    own = publisher.own
    first = sample_entry(ORIGIN, 0, listed_on=LISTED)
    removal = Removal(LISTED, RemovalReason.DECISION_REVOKED, first.authority)
    assert own.submit([RemoveEntry(first.authority, first.decision_no, removal)])
    signed = own.store.signed_checkpoint()
    assert signed is not None
    publisher = Publisher(own, signed)
    batch = publisher.batch(0, SIZE + 1)
    batch.leaves[SIZE].body = b""

    apply(publisher, receiver, [batch])

    eid = first.entry_id(ORIGIN)
    assert receiver._entries.get(ORIGIN, eid) is None
    assert [leaf.body for leaf in receiver._logs.entry_leaves(ORIGIN, eid)] == [None, None]
    assert receiver._entries.count(ORIGIN) == SIZE - 1
    assert receiver.root() == publisher.store.root()


def _tamper_leaf(batch: peer_pb2.StreamLogResponse) -> peer_pb2.StreamLogResponse:
    bad = peer_pb2.StreamLogResponse()
    bad.CopyFrom(batch)
    bad.leaves[3].body = bad.leaves[3].body.replace(b'"reason":"', b'"reason":"X')
    return bad


def _tamper_proof(batch: peer_pb2.StreamLogResponse) -> peer_pb2.StreamLogResponse:
    bad = peer_pb2.StreamLogResponse()
    bad.CopyFrom(batch)
    bad.right_hashes[0] = bytes(32)
    return bad


@pytest.mark.parametrize(
    ("tamper", "error"),
    [(_tamper_leaf, CreditNetError), (_tamper_proof, InvalidProofError)],
    ids=["altered-leaf", "altered-proof"],
)
def test_a_bad_batch_stops_the_stream_and_only_the_batches_before_it_are_stored(
    publisher: Publisher, receiver: LogStore, tamper: object, error: type[Exception]
) -> None:
    first, second, third = publisher.batches([10, 10, 5])
    assert callable(tamper)
    with pytest.raises(error):
        apply(publisher, receiver, [first, tamper(second), third])
    assert receiver.size == 10
    assert stored(receiver) == publisher.leaf_hashes(10)
    # Retried later from where it stopped, the log completes to the signed root.
    apply(publisher, receiver, publisher.batches([10, 5], begin=10))
    assert receiver.size == SIZE and receiver.root() == publisher.store.root()


@pytest.mark.parametrize("start", [0, 5, 11], ids=["repeat", "overlap", "gap"])
def test_a_batch_out_of_place_is_refused(
    publisher: Publisher, receiver: LogStore, start: int
) -> None:
    first = publisher.batch(0, 10)
    out_of_place = publisher.batch(start, start + 5)
    with pytest.raises(InvalidInputError, match=f"batch at {start}, expected 10"):
        apply(publisher, receiver, [first, out_of_place])
    assert stored(receiver) == publisher.leaf_hashes(10)


def test_a_stream_cut_after_a_batch_keeps_that_batch_whole(
    publisher: Publisher, receiver: LogStore
) -> None:
    first, second, _ = publisher.batches([10, 10, 5])
    with pytest.raises(ConnectionResetError):
        apply(publisher, receiver, [first, second, ConnectionResetError("cut")])
    assert stored(receiver) == publisher.leaf_hashes(20)
    # What a restarted node reads back from the database is what was stored.
    reopened = LogStore(ORIGIN, receiver._logs, receiver._entries, FixedClock(NOW))
    assert reopened.size == 20 and reopened.root() == receiver.root()


def test_a_batch_past_the_checkpoint_is_refused(publisher: Publisher, receiver: LogStore) -> None:
    batch = publisher.batch(0, 10)
    shrunk = dataclasses.replace(publisher.signed.checkpoint, size=5)
    with pytest.raises(InvalidInputError, match=r"outside \[0, 5\)"):
        asyncio.run(
            apply_stream(ORIGIN, receiver, shrunk, publisher.signed.to_bytes(), stream_of([batch]))
        )
    assert receiver.size == 0
