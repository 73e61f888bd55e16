"""The sync engine (``node.replication.Replicator``) against one origin: real SQLite
databases, keys and trust stores on both sides, and the origin's real peer API. The one
fake is at the network boundary, so that the origin can answer what an honest node never
would (an older head)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from creditnet.v1 import lists_pb2, peer_pb2
from federation.canonical import canonical_bytes
from federation.checkpoint import MAX_SIZE, Checkpoint, sign_checkpoint
from federation.clock import FixedClock
from federation.manifest import SignedManifest, build_manifest
from federation.sanctions import (
    DEFAULT_POLICIES,
    ListKind,
    ListPolicy,
    Objection,
    Removal,
    RemovalReason,
    SanctionEntry,
)
from federation.signing import b64encode
from federation.subjects import SubjectId
from node.background import Background
from node.ledger import AddEntry, AmendEntry, Change, ObjectToEntry, OwnLog, RemoveEntry
from node.logstore import LogStore
from node.queries import ListQueries
from node.replication import Replicator
from node.samples import sample_entry
from node.service.peer_api import PeerApi
from node.storage import Database, open_database
from node.storage.lists import EntryRepository, LogRepository, ReplicaRepository
from node.storage.repositories import EventRepository, ManifestRepository
from node.trust import TrustStore
from tests.federation.conftest import NOW, YEAR, make_city

QINGDAO, JINAN, YANTAI = "370200", "370100", "370600"  # the origin, the replica, a peer
CITIES = {code: make_city(code) for code in (QINGDAO, JINAN, YANTAI)}
LISTED = NOW.date()


def trust_store(db: Database, clock: FixedClock) -> TrustStore:
    manifest = build_manifest(
        federation_id="jiaodong",
        federation_name="胶东经济圈",
        members=[c.member for c in CITIES.values()],
        threshold=3,
        expires=NOW + YEAR,
    )
    signed = SignedManifest(manifest)
    for city in CITIES.values():
        signed = signed.sign(city.key)
    trust = TrustStore(ManifestRepository(db), clock, EventRepository(db))
    trust.install(signed.to_bytes(), source="operator")
    return trust


class CallerContext:
    """What the origin's servicer sees of a call from Jinan: Jinan's pinned certificate."""

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [CITIES[JINAN].member.tls_certificate.encode("ascii")]}

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: object = ()
    ) -> None:
        raise grpc.aio.AbortError(f"{code.name}: {details}")


class Origin:
    """Qingdao's node as Jinan's replicator reaches it: its own log and its real peer API.

    ``head``, when set, is the checkpoint ``GetCheckpoint`` answers instead of the newest.
    """

    def __init__(self, db: Database, clock: FixedClock) -> None:
        logs, entries = LogRepository(db), EntryRepository(db)
        self.own = OwnLog(
            store=LogStore(QINGDAO, logs, entries, clock),
            entries=entries,
            signing_key=CITIES[QINGDAO].key,
            policies=DEFAULT_POLICIES,
            clock=clock,
        )
        unused = cast(Any, None)
        self.api = PeerApi(
            city_code=QINGDAO,
            trust=trust_store(db, clock),
            links=unused,
            contacts=unused,
            own_log=self.own,
            replicator=unused,
            logs=logs,
            reports=unused,
            ratings=unused,
            clock=clock,
        )
        self.context = cast(Any, CallerContext())
        self.head: bytes | None = None

    def submit(self, changes: list[Change]) -> bytes:
        """Record ``changes``; the checkpoint signed after them."""
        assert all(r.outcome.value == "applied" for r in self.own.submit(changes))
        assert self.own.store.checkpoint is not None
        return self.own.store.checkpoint

    def share(self, kind: ListKind, policy: ListPolicy) -> None:
        """The operator changes the policy of ``kind`` (and restarts the node)."""
        self.own.policies = {**self.own.policies, kind: policy}

    async def GetCheckpoint(
        self, request: peer_pb2.GetCheckpointRequest, **_call_options: Any
    ) -> peer_pb2.GetCheckpointResponse:
        if self.head is not None:
            return peer_pb2.GetCheckpointResponse(
                checkpoint=lists_pb2.SignedCheckpoint(document=self.head)
            )
        return await self.api.GetCheckpoint(request, self.context)

    async def GetConsistencyProof(
        self, request: peer_pb2.GetConsistencyProofRequest, **_call_options: Any
    ) -> peer_pb2.GetConsistencyProofResponse:
        return await self.api.GetConsistencyProof(request, self.context)

    def StreamLog(
        self, request: peer_pb2.StreamLogRequest, **_call_options: Any
    ) -> AsyncIterator[peer_pb2.StreamLogResponse]:
        return self.api.StreamLog(request, self.context)


class Monotonic:
    """The replicator's monotonic clock, moved on by the test."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


class Links:
    def __init__(self, origin: Origin) -> None:
        self.origin = origin

    def stub(self, city_code: str) -> Any:
        return self.origin if city_code == QINGDAO else None


@dataclasses.dataclass
class Replica:
    replicator: Replicator
    logs: LogRepository
    entries: EntryRepository
    replicas: ReplicaRepository
    background: Background
    monotonic: Monotonic

    @property
    def store(self) -> LogStore:
        return LogStore(QINGDAO, self.logs, self.entries, FixedClock(NOW))

    def run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        async def with_background() -> None:
            try:
                await coroutine
            finally:
                await self.background.close()

        asyncio.run(with_background())

    def sync(self) -> None:
        self.run(self.replicator.sync(QINGDAO))

    @property
    def queries(self) -> ListQueries:
        return ListQueries(
            city_code=JINAN,
            logs=self.logs,
            entries=self.entries,
            replicas=self.replicas,
            clock=FixedClock(NOW),
        )

    def receive(self, checkpoint: bytes, *, reported_by: str) -> None:
        """A checkpoint in a NotifyAppended (from the origin) or an exchange (from a peer)."""

        async def receive() -> None:
            self.replicator.receive_checkpoints([checkpoint], reported_by=reported_by)

        self.run(receive())

    @property
    def blocked(self) -> bool:
        status = self.replicas.status(QINGDAO)
        return status is not None and status.blocked


@pytest.fixture
def databases(tmp_path: Path) -> Iterator[tuple[Database, Database]]:
    origin = open_database(f"sqlite:///{tmp_path / 'qingdao.db'}")
    replica = open_database(f"sqlite:///{tmp_path / 'jinan.db'}")
    yield origin, replica
    origin.close()
    replica.close()


@pytest.fixture
def origin(databases: tuple[Database, Database]) -> Origin:
    return Origin(databases[0], FixedClock(NOW))


@pytest.fixture
def replica(databases: tuple[Database, Database], origin: Origin) -> Replica:
    db = databases[1]
    clock = FixedClock(NOW)
    logs, entries, replicas = LogRepository(db), EntryRepository(db), ReplicaRepository(db)
    background, monotonic = Background(), Monotonic()
    replicator = Replicator(
        city_code=JINAN,
        trust=trust_store(db, clock),
        links=cast(Any, Links(origin)),
        logs=logs,
        entries=entries,
        replicas=replicas,
        clock=clock,
        monotonic=monotonic,
        background=background,
    )
    return Replica(replicator, logs, entries, replicas, background, monotonic)


def adds(serials: range) -> list[Change]:
    return [AddEntry(sample_entry(QINGDAO, s, listed_on=LISTED)) for s in serials]


# --- checkpoints that contradict the replica ------------------------------------------------


@pytest.mark.parametrize("reported_by", [QINGDAO, YANTAI], ids=["notice", "exchange"])
def test_an_older_checkpoint_delivered_late_is_no_rollback(
    origin: Origin, replica: Replica, reported_by: str
) -> None:
    earlier = origin.submit(adds(range(5)))
    origin.submit(adds(range(5, 6)))
    replica.sync()
    assert replica.store.size == 6

    # The notice of the first append, queued while the channel reconnected, arrives now.
    replica.receive(earlier, reported_by=reported_by)

    assert not replica.blocked
    assert replica.replicas.split_views(QINGDAO) == []
    origin.submit(adds(range(6, 8)))
    replica.sync()
    assert replica.store.root() == origin.own.store.root()
    assert replica.store.size == 8


def test_an_origin_whose_head_shows_fewer_leaves_than_it_signed_is_a_rollback(
    origin: Origin, replica: Replica
) -> None:
    earlier = origin.submit(adds(range(5)))
    origin.submit(adds(range(5, 6)))
    replica.sync()

    origin.head = earlier  # GetCheckpoint answers the older head: the last leaf is gone
    replica.sync()

    assert replica.blocked
    (view,) = replica.replicas.split_views(QINGDAO)
    assert view.reason == "the origin now shows 5 leaves after signing 6"
    assert view.reported_by == QINGDAO
    assert replica.store.size == 6


@pytest.mark.parametrize("reported_by", [QINGDAO, YANTAI], ids=["notice", "exchange"])
def test_an_older_checkpoint_with_another_root_is_a_split_view(
    origin: Origin, replica: Replica, reported_by: str
) -> None:
    origin.submit(adds(range(6)))
    replica.sync()
    forked = Checkpoint(QINGDAO, 5, bytes(32), NOW - dt.timedelta(minutes=1))
    signed = sign_checkpoint(forked, CITIES[QINGDAO].key)

    replica.receive(signed.to_bytes(), reported_by=reported_by)

    assert replica.blocked
    (view,) = replica.replicas.split_views(QINGDAO)
    assert view.reason == "the log of size 5 has another root than the one verified here"
    assert view.reported_by == reported_by


# --- checkpoints no log can match ------------------------------------------------------------


def oversized(origin: Origin) -> bytes:
    """A checkpoint of Qingdao's log validly signed by Qingdao, but of a size past what a
    log (and a signed 64-bit column) can hold."""
    checkpoint = {**Checkpoint(QINGDAO, 1, bytes(32), NOW).to_json(), "size": MAX_SIZE + 1}
    key = CITIES[QINGDAO].key
    return canonical_bytes(
        {
            "checkpoint": checkpoint,
            "keyid": key.public_key.keyid,
            "signature": b64encode(key.sign(canonical_bytes(checkpoint))),
        }
    )


@pytest.mark.parametrize("reported_by", [QINGDAO, YANTAI], ids=["notice", "exchange"])
def test_a_received_checkpoint_larger_than_any_log_is_logged_and_skipped(
    origin: Origin, replica: Replica, reported_by: str, caplog: pytest.LogCaptureFixture
) -> None:
    held = origin.submit(adds(range(3)))
    replica.sync()

    with caplog.at_level(logging.WARNING, logger="node.replication"):
        replica.receive(oversized(origin), reported_by=reported_by)

    (record,) = [r for r in caplog.records if r.getMessage() == "checkpoint from peer refused"]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["peer"] == reported_by
    assert "larger than any log can be" in fields["reason"]
    status = replica.replicas.status(QINGDAO)
    assert status is not None and not status.blocked
    assert (status.latest_seen_size, status.latest_seen_checkpoint) == (3, held)


def test_an_origin_answering_a_checkpoint_larger_than_any_log_is_a_failed_pull(
    origin: Origin, replica: Replica
) -> None:
    origin.submit(adds(range(3)))
    origin.head = oversized(origin)

    replica.sync()  # returns: the failure is recorded, and the pull retried with backoff

    status = replica.replicas.status(QINGDAO)
    assert status is not None and not status.blocked
    assert status.consecutive_failures == 1
    assert status.last_error is not None and "larger than any log can be" in status.last_error
    assert replica.store.size == 0

    origin.head = None  # the origin answers its real head again
    replica.monotonic.seconds += 120  # past the longest backoff
    replica.sync()
    assert replica.store.root() == origin.own.store.root()


# --- entries the origin stops sharing -----------------------------------------------------

SERIOUS = ListKind.SERIOUS_DISHONESTY
REPAIRABLE = NOW.date() - dt.timedelta(days=300)  # past the 6-month minimum publicity
NARROWED = {
    "replicate_to": dataclasses.replace(DEFAULT_POLICIES[SERIOUS], replicate_to=(YANTAI,)),
    "not-public": dataclasses.replace(DEFAULT_POLICIES[SERIOUS], public=False),
}


def subject_of(entry: SanctionEntry) -> SubjectId:
    return SubjectId(entry.subject.kind, entry.subject.id)


def bodies(replica: Replica, entry: SanctionEntry) -> list[bytes | None]:
    return [leaf.body for leaf in replica.logs.entry_leaves(QINGDAO, entry.entry_id(QINGDAO))]


def repair(entry: SanctionEntry) -> RemoveEntry:
    removal = Removal(NOW.date(), RemovalReason.REPAIR, entry.authority)
    return RemoveEntry(entry.authority, entry.decision_no, removal)


@pytest.mark.parametrize("narrowed", NARROWED.values(), ids=NARROWED.keys())
def test_a_removal_the_origin_no_longer_shares_withdraws_the_entry(
    origin: Origin, replica: Replica, narrowed: ListPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    listed = sample_entry(QINGDAO, 1, listed_on=REPAIRABLE)
    other = sample_entry(QINGDAO, 2, kind=ListKind.JOINT_PUNISHMENT, listed_on=REPAIRABLE)
    origin.submit([AddEntry(listed), AddEntry(other)])
    replica.sync()
    (answer,) = replica.queries.subject_status(subject_of(listed), include_inactive=True)
    assert answer.status.active and all(bodies(replica, listed))

    # Qingdao stops sharing the kind with Jinan, then removes the entry after credit repair.
    origin.share(SERIOUS, narrowed)
    origin.submit([repair(listed)])
    with caplog.at_level(logging.INFO, logger="node.logstore"):
        replica.sync()

    # Jinan cannot follow the entry any more: it stops serving it, and holds none of it in
    # clear; the log itself is whole and the same as Qingdao's.
    assert replica.entries.get(QINGDAO, listed.entry_id(QINGDAO)) is None
    assert replica.queries.subject_status(subject_of(listed), include_inactive=True) == []
    exported, _token = replica.queries.export_page(
        origin=QINGDAO, list_kind=None, active_only=False, page_size=100, page_token=""
    )
    assert [a.state.entry_id for a in exported] == [other.entry_id(QINGDAO)]
    history = replica.queries.history(QINGDAO, listed.entry_id(QINGDAO))
    assert [(item.envelope.event.value, item.body) for item in history] == [
        ("add", None),
        ("remove", None),
    ]
    assert replica.store.size == 3 and replica.store.root() == origin.own.store.root()
    assert replica.store.checkpoint == origin.own.store.checkpoint
    # The other kind, still shared, is untouched.
    assert all(bodies(replica, other))
    (kept,) = replica.queries.subject_status(subject_of(other), include_inactive=True)
    assert kept.status.active
    # One line for the batch, with the origin and how many: no subject.
    (record,) = [r for r in caplog.records if r.getMessage().startswith("entries withdrawn")]
    assert record.fields == {"origin": QINGDAO, "entries": 1}  # type: ignore[attr-defined]


def test_a_withdrawn_entry_shared_again_gets_no_state_back_and_is_withdrawn_again(
    origin: Origin, replica: Replica, caplog: pytest.LogCaptureFixture
) -> None:
    listed = sample_entry(QINGDAO, 1, listed_on=REPAIRABLE)
    origin.submit([AddEntry(listed)])
    replica.sync()
    eid = listed.entry_id(QINGDAO)

    origin.share(SERIOUS, NARROWED["replicate_to"])
    origin.submit(
        [AmendEntry(dataclasses.replace(listed, reason="拒不履行生效法律文书确定的义务"))]
    )
    replica.sync()
    assert replica.entries.get(QINGDAO, eid) is None
    assert bodies(replica, listed) == [None, None]

    # Shared again: the next event comes in clear, but without the add before it there is
    # no state to apply it to. It is kept as a leaf (with the body now shared), not served.
    origin.share(SERIOUS, DEFAULT_POLICIES[SERIOUS])
    objection = Objection(open=True, on=NOW.date())
    origin.submit([ObjectToEntry(listed.authority, listed.decision_no, objection)])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="node.logstore"):
        replica.sync()
    assert [r.getMessage() for r in caplog.records] == ["event not applied to entry state"]
    assert replica.entries.get(QINGDAO, eid) is None
    assert replica.queries.subject_status(subject_of(listed), include_inactive=True) == []
    assert [body is None for body in bodies(replica, listed)] == [True, True, False]

    # Narrowed again: the body held is withdrawn too.
    origin.share(SERIOUS, NARROWED["replicate_to"])
    origin.submit([repair(listed)])
    replica.sync()
    assert bodies(replica, listed) == [None, None, None, None]
    assert replica.entries.get(QINGDAO, eid) is None
    assert replica.store.root() == origin.own.store.root()
    assert not replica.blocked


def test_an_entry_never_shared_is_not_withdrawn(origin: Origin, replica: Replica) -> None:
    # The common case: a kind never shared with this node. Its leaves come without bodies,
    # and nothing is held to withdraw.
    watched = sample_entry(QINGDAO, 1, kind=ListKind.WATCH_LIST, listed_on=REPAIRABLE)
    origin.submit([AddEntry(watched)])
    origin.submit([repair(watched)])
    replica.sync()
    assert bodies(replica, watched) == [None, None]
    assert replica.entries.count(QINGDAO) == 0
    assert replica.store.root() == origin.own.store.root()
