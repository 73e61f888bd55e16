"""Replicas of the other cities' list logs: pulled, verified, then applied.

For each member, the node pulls incrementally from the last verified position:

1. ``GetCheckpoint``: the origin's signed checkpoint; its signature is checked against the
   origin's key in the manifest.
2. If this node already holds a checkpoint of that log, the new one must extend it: the
   same size needs the same root, a smaller size is a rewritten history, a larger one needs
   a valid consistency proof. A failure is a split view: both signed checkpoints are kept
   as evidence and sync from that city stops until an operator resumes it.
3. ``StreamLog``: the missing leaves in bounded batches. Each batch is checked before it is
   applied: the leaves, the verified compact range before them and the hashes to the right
   must give the checkpoint's root; envelopes must name the origin and their position;
   bodies must match their envelope's hash. A bad batch is rejected whole and the pull is
   retried later with backoff; a good batch is applied in one transaction, so a crash or a
   cut stream loses nothing and applies nothing twice.

Nodes also swap the checkpoints they hold (``ExchangeCheckpoints``): a checkpoint of city X
received from Y that contradicts the replica of X here is a split view too. Such a
checkpoint, like the one in a ``NotifyAppended``, may be an old one delivered late: only
its root is checked, and a smaller size is a rollback only in the origin's current head.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import AsyncIterable, Callable
from typing import TYPE_CHECKING

import grpc

from creditnet.v1 import lists_pb2, peer_pb2
from federation.checkpoint import Checkpoint, SignedCheckpoint, verify_checkpoint
from federation.clock import Clock
from federation.errors import CreditNetError, InvalidInputError, InvalidProofError
from federation.merkle import (
    CompactRange,
    leaf_hash,
    range_hash,
    verify_consistency,
    verify_extension,
)
from federation.sanctions import Envelope, open_body
from node.background import Background
from node.logstore import Leaf, LogStore
from node.peers import PeerLinks
from node.storage.lists import EntryRepository, LogRepository, ReplicaRepository, SplitView
from node.trust import TrustStore

if TYPE_CHECKING:  # the async stub class exists only in the generated type stubs
    from creditnet.v1.peer_pb2_grpc import PeerServiceAsyncStub as PeerStub

log = logging.getLogger(__name__)

MAX_BATCH = 1000
STREAM_LEAVES = 50_000
STREAM_TIMEOUT_S = 300.0
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
MAX_ERROR_CHARS = 300


@dataclasses.dataclass
class _Origin:
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    not_before: float = 0.0
    failures: int = 0
    again: bool = False


class Replicator:
    def __init__(
        self,
        *,
        city_code: str,
        trust: TrustStore,
        links: PeerLinks,
        logs: LogRepository,
        entries: EntryRepository,
        replicas: ReplicaRepository,
        clock: Clock,
        monotonic: Callable[[], float],
        background: Background,
    ) -> None:
        self._background = background
        self._me = city_code
        self._trust = trust
        self._links = links
        self._logs = logs
        self._entries = entries
        self._replicas = replicas
        self._clock = clock
        self._monotonic = monotonic
        self._origins: dict[str, _Origin] = {}
        self._self_contradictions: set[bytes] = set()

    def _state(self, origin: str) -> _Origin:
        return self._origins.setdefault(origin, _Origin())

    async def sync_all(self) -> None:
        members = [m.city_code for m in self._trust.current.members if m.city_code != self._me]
        await asyncio.gather(*(self.sync(code) for code in members))

    def schedule(self, origin: str) -> None:
        """Pull from ``origin`` now (a push notice or a newer checkpoint seen elsewhere)."""
        state = self._state(origin)
        state.not_before = 0.0
        if state.lock.locked():
            state.again = True  # a pull is running: run once more when it ends
            return
        self._background.spawn(self.sync(origin))

    async def sync(self, origin: str) -> None:
        state = self._state(origin)
        if state.lock.locked() or self._monotonic() < state.not_before:
            return
        async with state.lock:
            while True:
                state.again = False
                await self._sync_once(origin, state)
                if not state.again:
                    return

    async def _sync_once(self, origin: str, state: _Origin) -> None:
        status = self._replicas.status(origin)
        if status is not None and status.blocked:
            return
        stub = self._links.stub(origin)
        if stub is None:
            return
        try:
            await self._pull(origin, stub)
        except (grpc.aio.AioRpcError, CreditNetError) as exc:
            state.failures += 1
            delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (state.failures - 1))
            state.not_before = self._monotonic() + delay * (0.5 + random.random() / 2)
            reason = _describe(exc)
            self._replicas.record_failure(origin, self._clock.now(), reason)
            log.warning(
                "sync failed",
                extra={
                    "fields": {"origin": origin, "reason": reason, "retry_in_s": round(delay, 1)}
                },
            )
            return
        state.failures = 0
        state.not_before = 0.0
        self._replicas.record_success(origin, self._clock.now())

    async def _pull(self, origin: str, stub: PeerStub) -> None:
        answer = await stub.GetCheckpoint(peer_pb2.GetCheckpointRequest(), timeout=10)
        if not answer.checkpoint.document:
            return  # the origin has not recorded anything yet
        signed = SignedCheckpoint.from_bytes(answer.checkpoint.document)
        checkpoint = verify_checkpoint(signed, self._trust.current, now=self._clock.now())
        if checkpoint.origin != origin:
            raise InvalidInputError(f"{origin} answered with a checkpoint of {checkpoint.origin}")
        self._replicas.record_seen(origin, checkpoint.size, signed.to_bytes())
        store = LogStore(origin, self._logs, self._entries, self._clock)
        if not self.check_against_replica(store, signed, reported_by=origin, current_head=True):
            return
        held = store.signed_checkpoint()
        if held is not None and 0 < held.checkpoint.size < checkpoint.size:
            old = held.checkpoint
            proof = await stub.GetConsistencyProof(
                peer_pb2.GetConsistencyProofRequest(first=old.size, second=checkpoint.size),
                timeout=10,
            )
            try:
                verify_consistency(
                    old.size, checkpoint.size, old.root, checkpoint.root, list(proof.hashes)
                )
            except InvalidProofError as exc:
                self._split_view(origin, held, signed, f"not an extension: {exc.message}", origin)
                return
        if checkpoint.size > store.size:
            await self._stream(origin, stub, store, checkpoint, signed)

    async def _stream(
        self,
        origin: str,
        stub: PeerStub,
        store: LogStore,
        checkpoint: Checkpoint,
        signed: SignedCheckpoint,
    ) -> None:
        document = signed.to_bytes()
        while store.size < checkpoint.size:
            # One stream per STREAM_LEAVES leaves: bounded calls, each with its own
            # deadline, all checked against the same signed checkpoint.
            before = store.size
            request = peer_pb2.StreamLogRequest(
                start=store.size, end=checkpoint.size, max_batch=MAX_BATCH, count=STREAM_LEAVES
            )
            stream = stub.StreamLog(request, timeout=STREAM_TIMEOUT_S)
            await apply_stream(origin, store, checkpoint, document, stream)
            if store.size == before:
                break
        if store.size != checkpoint.size:
            raise InvalidInputError(
                f"{origin} ended the stream at {store.size} of {checkpoint.size} leaves"
            )

    def check_against_replica(
        self, store: LogStore, signed: SignedCheckpoint, *, reported_by: str, current_head: bool
    ) -> bool:
        """False (and a split view recorded) if ``signed`` contradicts what is held here.

        ``current_head``: ``signed`` is the origin's answer to ``GetCheckpoint``, its head
        now, so it may not show fewer leaves than a checkpoint it signed before. A checkpoint
        received in a notice or an exchange may be an old one delivered late (notices queued
        while a channel reconnects): only its root is checked.
        """
        held = store.signed_checkpoint()
        reason = _contradiction(store, held, signed.checkpoint, current_head=current_head)
        if reason is None:
            return True
        self._split_view(store.origin, held or signed, signed, reason, reported_by)
        return False

    def _split_view(
        self,
        origin: str,
        first: SignedCheckpoint,
        second: SignedCheckpoint,
        reason: str,
        reported_by: str,
    ) -> None:
        evidence = second.to_bytes()
        if any(v.second_checkpoint == evidence for v in self._replicas.split_views(origin)):
            return  # already held as evidence (it comes back every exchange round)
        self._replicas.add_split_view(
            origin=origin,
            detected_at=self._clock.now(),
            first_checkpoint=first.to_bytes(),
            second_checkpoint=evidence,
            reason=reason,
            reported_by=reported_by,
        )
        self._replicas.block(origin, f"split view: {reason}")
        log.error(
            "split view detected: sync stopped",
            extra={"fields": {"origin": origin, "reported_by": reported_by, "reason": reason}},
        )

    def held_checkpoints(self) -> list[bytes]:
        """The newest verified checkpoint of every log held here (ours included)."""
        return [h.checkpoint for h in self._logs.heads().values() if h.checkpoint]

    def receive_checkpoints(self, documents: list[bytes], *, reported_by: str) -> None:
        """Compare checkpoints another member holds with ours; pull where it saw more."""
        manifest = self._trust.current
        now = self._clock.now()
        for document in documents:
            try:
                signed = SignedCheckpoint.from_bytes(document)
                checkpoint = verify_checkpoint(signed, manifest, now=now)
            except CreditNetError as exc:
                log.warning(
                    "checkpoint from peer refused",
                    extra={"fields": {"peer": reported_by, "reason": exc.message}},
                )
                continue
            origin = checkpoint.origin
            store = LogStore(origin, self._logs, self._entries, self._clock)
            if origin == self._me:
                contradicts = _contradiction(store, None, checkpoint, current_head=False)
                if contradicts and document not in self._self_contradictions:
                    self._self_contradictions.add(document)  # once per checkpoint, not per round
                    log.error(
                        "a checkpoint signed by this node contradicts its own log",
                        extra={"fields": {"reported_by": reported_by, "size": checkpoint.size}},
                    )
                continue
            if not self.check_against_replica(
                store, signed, reported_by=reported_by, current_head=False
            ):
                continue
            status = self._replicas.status(origin)
            if checkpoint.size > ((status.latest_seen_size or 0) if status else 0):
                self._replicas.record_seen(origin, checkpoint.size, signed.to_bytes())
            if checkpoint.size > store.size:
                self.schedule(origin)

    async def exchange_all(self) -> None:
        """Swap held checkpoints with every member."""
        request = peer_pb2.ExchangeCheckpointsRequest(
            checkpoints=[lists_pb2.SignedCheckpoint(document=d) for d in self.held_checkpoints()]
        )
        members = [m.city_code for m in self._trust.current.members if m.city_code != self._me]

        async def exchange(code: str) -> None:
            stub = self._links.stub(code)
            if stub is None:
                return
            try:
                answer = await stub.ExchangeCheckpoints(request, timeout=10)
            except grpc.aio.AioRpcError:
                return  # unreachable peers show in status through the heartbeat
            self.receive_checkpoints([c.document for c in answer.checkpoints], reported_by=code)

        await asyncio.gather(*(exchange(code) for code in members))

    def split_views(self) -> list[SplitView]:
        return self._replicas.split_views()

    def resume(self, origin: str) -> None:
        self._replicas.unblock(origin)
        self._replicas.resolve_split_views(origin, self._clock.now())
        self._state(origin).failures = 0
        with contextlib.suppress(RuntimeError):
            self.schedule(origin)


async def apply_stream(
    origin: str,
    store: LogStore,
    checkpoint: Checkpoint,
    document: bytes,
    stream: AsyncIterable[peer_pb2.StreamLogResponse],
) -> None:
    """Check each batch against the checkpoint, then store it, in order, one at a time.

    Checking and storing take a few hundred milliseconds of CPU and disk per batch: both
    run on worker threads so that the node keeps answering meanwhile, and in a pipeline,
    the next batch checked while the previous one is stored (SQLite writes without
    holding the GIL). At most one checked batch waits in memory; a batch is stored only
    after every batch before it, and nothing after a batch that fails.
    """
    verified = store.range
    storing: asyncio.Task[None] | None = None
    try:
        async for batch in stream:
            leaves, verified = await asyncio.to_thread(
                verify_batch, origin, verified, checkpoint, batch
            )
            if storing is not None:
                await storing
            storing = asyncio.create_task(
                asyncio.to_thread(store.append, leaves, checkpoint=document)
            )
    finally:
        if storing is not None:
            await storing


def verify_batch(
    origin: str,
    verified: CompactRange,
    checkpoint: Checkpoint,
    batch: peer_pb2.StreamLogResponse,
) -> tuple[list[Leaf], CompactRange]:
    """The batch's leaves, and the range they extend ``verified`` to: only if they are
    exactly the next leaves of the tree whose signed root ``checkpoint`` holds."""
    if batch.start != verified.end:
        raise InvalidInputError(f"{origin} sent a batch at {batch.start}, expected {verified.end}")
    if not batch.leaves or batch.start + len(batch.leaves) > checkpoint.size:
        raise InvalidInputError(f"{origin} sent a batch outside [0, {checkpoint.size})")
    if len(batch.leaves) > MAX_BATCH:
        raise InvalidInputError(f"{origin} sent {len(batch.leaves)} leaves; at most {MAX_BATCH}")
    leaves = [decode_leaf(origin, batch.start + i, leaf) for i, leaf in enumerate(batch.leaves)]
    try:
        extended = verify_extension(
            verified,
            [leaf.hash for leaf in leaves],
            list(batch.right_hashes),
            checkpoint.size,
            checkpoint.root,
        )
    except InvalidProofError as exc:
        raise InvalidProofError(f"{origin}: {exc.message}") from None
    return leaves, extended


def decode_leaf(origin: str, index: int, leaf: lists_pb2.LogLeaf) -> Leaf:
    """Leaf ``index`` of ``origin``'s log as received: its envelope must say so, and its
    body (when this node may see it) must be the one the envelope commits to."""
    data, body_data = leaf.envelope, leaf.body  # each read of a field copies its bytes
    envelope = Envelope.from_bytes(data)
    if envelope.origin != origin or envelope.index != index:
        raise InvalidInputError(
            f"leaf {index} of {origin} names {envelope.origin} at {envelope.index}"
        )
    body = open_body(envelope, body_data) if body_data else None
    return Leaf(envelope, data, leaf_hash(data), body, body_data or None)


def _contradiction(
    store: LogStore, held: SignedCheckpoint | None, new: Checkpoint, *, current_head: bool
) -> str | None:
    """Why ``new`` cannot be true together with the replica and checkpoint held here.

    Roots are checked whatever ``new`` is; the size only when ``new`` is the origin's
    current head (see :meth:`Replicator.check_against_replica`).
    """
    if new.size <= store.size:
        ours = store.root() if new.size == store.size else range_hash(0, new.size, store.tree())
        if ours != new.root:
            return f"the log of size {new.size} has another root than the one verified here"
    if held is not None:
        old = held.checkpoint
        if new.size == old.size and new.root != old.root:
            return f"two different roots signed for size {new.size}"
        if current_head and new.size < old.size:
            return f"the origin now shows {new.size} leaves after signing {old.size}"
    return None


def _describe(exc: Exception) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        text = f"{code.name if code else 'UNKNOWN'}: {exc.details() or ''}"
    elif isinstance(exc, CreditNetError):
        text = exc.message
    else:
        text = type(exc).__name__
    return text[:MAX_ERROR_CHARS]
