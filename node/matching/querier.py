"""The querier's side of private matching: peers' tables held here, probes, disclosures.

Every member publishes one encrypted, signed table of its non-public lists
(:mod:`node.matching.holder`). This node keeps a verified copy of each peer's table under
``<home>/matching/peers/<city>/`` (:meth:`MatchQuerier.replicate`, every sync interval and
when a probe finds the copy out of date), and asks peers about its own subjects with probes
built from those copies (:mod:`federation.matching` has the mathematics), each preceded by
one OPRF round (``EvaluateSubjects``) in which the peer turns the blinded subjects into
the values ``v(x)`` the probes need, without seeing them: one subject
against every peer at once (:meth:`MatchQuerier.match_one`), many against one peer in
chunks (:meth:`MatchQuerier.match_batch`, membership or count only). The ``r^n`` each probe
ciphertext needs is the expensive part; a small pool of them per peer is computed in idle
time (:meth:`MatchQuerier.run_refill`).

Every request sent is audited (time, peer, request id, mode, counts, outcome), never with
an identifier; a subject is named in clear to a peer only in a disclosure request, after a
hit, with a purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import logging
import secrets
import shutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from google.protobuf.timestamp_pb2 import Timestamp

from creditnet.v1 import matching_pb2
from federation.clock import Clock, china_date
from federation.errors import (
    CreditNetError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    UnavailableError,
)
from federation.matching import (
    Blinded,
    MatchingError,
    ProbePlan,
    ProbeSecrets,
    TableHeader,
    blind,
    blind_expected,
    build_probes,
    ciphertexts_for,
    count_hits,
    expected_digests,
    finalize,
    plan_probes,
    read_answers,
    subjects_per_request,
    verify_table_header,
)
from federation.member import check_city_code
from federation.subjects import mask_resident_id, parse_subject
from node.background import Background
from node.matching.holder import MAX_TEXT_CHARS, redacted
from node.matching.keys import subject_key
from node.matching.pool import MatchingPool
from node.matching.tables import OWN_DIR, PEERS_DIR, TableStore
from node.peers import PeerLinks
from node.service.errors import refused_by_quota
from node.storage.matching import MatchAuditRepository
from node.trust import TrustStore

log = logging.getLogger(__name__)

REQUEST_ID_BYTES = 16
#: Residues computed per step while refilling: short steps keep the shared process pool
#: free for probes and the holder's own work.
REFILL_STEP = 8
REFILL_IDLE_S = 30.0
#: After a peer's notice of a list change: when to look for its new table epoch.
NOTICE_DELAYS_S = (0.8, 2.0)
#: Fetching a whole table of 100,000 entries is ~65 MB on the wire.
FETCH_TIMEOUT_S = 300.0
#: One subject: three decryptions at the holder (plus its pool's start on first use).
PROBE_ONE_TIMEOUT_S = 20.0
#: A batch request: the holder decrypts ~3/k ciphertexts per subject on its cores.
PROBE_BATCH_TIMEOUT_S = 180.0
DISCLOSE_TIMEOUT_S = 20.0
MAX_DETAIL_CHARS = 200
#: The audit's mode for the OPRF round (as the holder records it).
EVALUATE_MODE = "evaluate"


class MatchMode(enum.StrEnum):
    MEMBERSHIP = "membership"
    COUNT = "count"


class Outcome(enum.StrEnum):
    HIT = "hit"
    NO_HIT = "no-hit"
    UNAVAILABLE = "unavailable"
    REFUSED = "refused"


@dataclasses.dataclass(frozen=True)
class CityAnswer:
    """One city's answer about one subject."""

    city: str
    outcome: Outcome
    kinds: tuple[str, ...] = ()
    detail: str = ""
    request_id: bytes = b""


@dataclasses.dataclass
class BatchResult:
    total: int
    #: Membership: (index in the caller's list, list kinds) of every subject that hit.
    hits: list[tuple[int, tuple[str, ...]]]
    hit_count: int
    request_ids: list[bytes]


@dataclasses.dataclass(frozen=True)
class TableState:
    """A table this node publishes or holds, for ``credit-node match status``."""

    city: str
    table_id: str
    epoch: int
    bins: int
    issued_at: dt.datetime
    pooled_residues: int
    #: Subjects this node may still probe there today, as that city last said (-1 unknown).
    quota_left: int
    fetched_at: dt.datetime | None = None


@dataclasses.dataclass
class _ProbeAnswer:
    """What one probe request returned: per-subject kinds or a count, or why nothing."""

    outcome: Outcome
    kinds: list[tuple[str, ...]] = dataclasses.field(default_factory=list)
    count: int = 0
    detail: str = ""
    #: The probe requests that gave the answer (more than one when it did not fit in one).
    request_ids: list[bytes] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Peer:
    city: str
    store: TableStore
    header: TableHeader | None = None
    fetched_at: dt.datetime | None = None
    #: Guards the table on disk: writers (replicate) against readers (probe building).
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    fetching: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    residues: list[int] = dataclasses.field(default_factory=list)
    residue_n: int = 0
    refused_on: dt.date | None = None


ProgressCallback = Callable[[int, int], Awaitable[None]]


class MatchQuerier:
    def __init__(
        self,
        *,
        city_code: str,
        home: Path,
        trust: TrustStore,
        links: PeerLinks,
        pool: MatchingPool,
        audit: MatchAuditRepository,
        clock: Clock,
        max_subjects_per_request: int,
        residue_pool_size: int,
        max_message_bytes: int,
    ) -> None:
        self._me = city_code
        self._root = home / PEERS_DIR
        self._own = TableStore(home / OWN_DIR)
        self._trust = trust
        self._links = links
        self._pool = pool
        self._audit = audit
        self._clock = clock
        self._max_subjects = max(1, max_subjects_per_request)
        self._max_message_bytes = max_message_bytes
        self._pool_size = residue_pool_size
        self._peers: dict[str, _Peer] = {}
        self._active = 0  # queries running: the pool is refilled only when none is
        self._wanted = asyncio.Event()
        self._background = Background()

    # --- tables held -------------------------------------------------------------------

    def _peer(self, city: str) -> _Peer:
        peer = self._peers.get(city)
        if peer is None:
            peer = _Peer(city, TableStore(self._root / city))
            self._peers[city] = peer
        return peer

    def _others(self) -> list[str]:
        return [m.city_code for m in self._trust.current.members if m.city_code != self._me]

    async def load(self) -> None:
        """Take up the tables held from an earlier run that still verify (digest, signature)."""
        for city in self._others():
            peer = self._peer(city)
            if not peer.store.exists():
                continue
            try:
                header = await asyncio.to_thread(peer.store.check)
                signed = peer.store.signed_header()
                assert signed is not None
                verify_table_header(*signed, self._trust.current, now=self._clock.now())
            except (CreditNetError, OSError, ValueError, KeyError) as exc:
                log.warning(
                    "dropping a matching table held",
                    extra={"fields": {"peer": city, "reason": _reason(exc)}},
                )
                await self._drop(peer)
                continue
            peer.header, peer.residue_n = header, header.layout.n
        self._wanted.set()

    def schedule_all(self) -> None:
        """Bring every peer's table up to date in the background (the sync round)."""
        for city in self._others():
            self.schedule(city)

    def schedule(self, city: str) -> None:
        """Fetch ``city``'s changes soon (it announced some), unless a fetch is running."""
        if city == self._me or self._peer(city).fetching.locked():
            return
        self._background.spawn(self._replicate_logged(city))

    def notice(self, city: str) -> None:
        """``city`` announced a change of its lists: its table follows within about a second
        (the holder re-encrypts after recording), so fetch a little later, and once more if
        the epoch did not move yet."""
        if city == self._me or self._trust.current.member(city) is None:
            return
        self._background.spawn(self._fetch_after_notice(city))

    async def _fetch_after_notice(self, city: str) -> None:
        before = self.held(city)
        for delay in NOTICE_DELAYS_S:
            await asyncio.sleep(delay)
            await self._replicate_logged(city)
            if self.held(city) != before:
                return

    async def _replicate_logged(self, city: str) -> None:
        try:
            await self.replicate(city)
        except CreditNetError as exc:
            log.info(
                "matching table not fetched",
                extra={"fields": {"peer": city, "reason": exc.message[:MAX_DETAIL_CHARS]}},
            )
        except Exception:
            log.exception("fetching a matching table failed", extra={"fields": {"peer": city}})

    async def replicate_all(self) -> None:
        await asyncio.gather(*(self._replicate_logged(city) for city in self._others()))

    async def replicate(self, city: str) -> TableHeader:
        """Fetch ``city``'s table (the changes since the epoch held, or whole), verify it,
        and store it; returns the header now held. Raises a CreditNetError if it cannot."""
        peer = self._peer(city)
        async with peer.fetching:
            member = self._trust.current.member(city)
            if member is None or city == self._me:
                raise InvalidInputError(f"{city} is not another member of the federation")
            if peer.header is not None and peer.header.layout.n != member.paillier_n:
                await self._drop(peer)  # the city changed its key: the copy is void
            whole = peer.header is None
            try:
                return await self._fetch(peer, whole=whole)
            except MatchingError as exc:
                if whole:
                    raise
                # An update that does not add up (digest, epoch): fetch the whole table.
                log.warning(
                    "matching table update refused; fetching the whole table",
                    extra={"fields": {"peer": city, "reason": exc.message}},
                )
                await self._drop(peer)
                return await self._fetch(peer, whole=True)

    async def _fetch(self, peer: _Peer, *, whole: bool) -> TableHeader:
        stub = self._links.stub(peer.city)
        if stub is None:
            raise UnavailableError(f"no link to {peer.city}")
        held = None if whole else peer.header
        request = matching_pb2.GetMatchTableRequest(
            table_id=held.table_id if held else "", epoch=held.epoch if held else 0
        )
        signed: tuple[bytes, bytes] | None = None
        full = False
        bins: dict[int, bytes] = {}
        try:
            async for message in stub.GetMatchTable(request, timeout=FETCH_TIMEOUT_S):
                if signed is None:
                    if not message.HasField("header"):
                        raise MatchingError(f"{peer.city} sent table bins before the header")
                    signed = (message.header.header, message.header.signature)
                    full = message.full
                for index, ciphertext in zip(message.bins, message.ciphertexts, strict=True):
                    bins[index] = ciphertext
        except grpc.aio.AioRpcError as exc:
            raise UnavailableError(
                f"{peer.city} did not send its matching table: {_describe(exc)}"
            ) from None
        except ValueError:
            raise MatchingError(f"{peer.city} sent bins and ciphertexts of unequal count") from None
        if signed is None:
            raise MatchingError(f"{peer.city} sent no matching table header")
        header = verify_table_header(*signed, self._trust.current, now=self._clock.now())
        if header.holder != peer.city:
            raise MatchingError(f"{peer.city} sent the table of {header.holder}")
        if not full and held is None:
            raise MatchingError(f"{peer.city} sent table changes, but no table is held")
        if held is not None and (
            (not full and header.table_id != held.table_id)
            or (header.table_id == held.table_id and header.epoch < held.epoch)
        ):
            raise MatchingError(
                f"{header.describe()} does not follow epoch {held.epoch} held (rollback?)"
            )
        if header == held and (full or not bins):
            return header
        async with peer.lock:
            await asyncio.to_thread(self._write, peer, header, signed, bins, full)
            peer.header = header
            peer.fetched_at = self._clock.now()
        if peer.residue_n != header.layout.n:
            peer.residues, peer.residue_n = [], header.layout.n
        self._wanted.set()
        return header

    @staticmethod
    def _write(
        peer: _Peer,
        header: TableHeader,
        signed: tuple[bytes, bytes],
        bins: dict[int, bytes],
        full: bool,
    ) -> None:
        if full:
            if len(bins) != header.layout.bins or any(
                i not in bins for i in range(header.layout.bins)
            ):
                raise MatchingError(
                    f"{header.describe()}: {len(bins)} bins sent of {header.layout.bins}"
                )
            peer.store.create(*signed, (bins[i] for i in range(header.layout.bins)))
        else:
            peer.store.apply(*signed, bins)
        try:
            peer.store.check()
        except MatchingError:
            peer.store.close()
            shutil.rmtree(peer.store.path, ignore_errors=True)
            peer.header = None
            raise
        peer.store.close()  # readers map the new bins afresh

    async def _drop(self, peer: _Peer) -> None:
        async with peer.lock:
            peer.store.close()
            await asyncio.to_thread(shutil.rmtree, peer.store.path, True)
            peer.header = None
            peer.residues, peer.residue_n = [], 0

    # --- precomputed randomness ----------------------------------------------------------

    async def refill(self) -> None:
        """Top up every peer's pool of ``r^n``, a few at a time, while no query runs."""
        for city in self._others():
            peer = self._peers.get(city)
            while (
                peer is not None
                and peer.header is not None
                and self._active == 0
                and len(peer.residues) < self._pool_size
            ):
                n = peer.header.layout.n
                step = min(REFILL_STEP, self._pool_size - len(peer.residues))
                fresh = await self._pool.querier_residues(n, step)
                if peer.residue_n == n:
                    peer.residues.extend(fresh)

    async def run_refill(self, stop: asyncio.Event) -> None:
        """The background loop: refill after use, after a table change, and now and then."""
        while not stop.is_set():
            self._wanted.clear()
            try:
                await self.refill()
            except Exception:
                log.exception("refilling matching randomness failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), timeout=REFILL_IDLE_S)

    async def _residues(self, peer: _Peer, n: int, count: int) -> list[int]:
        """``count`` fresh ``r^n`` for modulus ``n``: pooled ones first (each used once)."""
        taken: list[int] = []
        if peer.residue_n == n:
            taken, peer.residues = peer.residues[:count], peer.residues[count:]
        if len(taken) < count:
            taken += await self._pool.querier_residues(n, count - len(taken))
        self._wanted.set()
        return taken

    # --- probes ------------------------------------------------------------------------

    def _check_peer(self, city: str) -> str:
        check_city_code(city)
        if city == self._me:
            raise InvalidInputError(
                f"{city} is this node: its own lists are read in clear (credit-node list status)"
            )
        if self._trust.current.member(city) is None:
            raise InvalidInputError(f"{city} is not a member of the federation")
        return city

    def _subject_keys(self, identifiers: Sequence[str]) -> list[str]:
        today = china_date(self._clock.now())
        keys = []
        for index, text in enumerate(identifiers):
            try:
                keys.append(subject_key(parse_subject(text, today=today).value))
            except InvalidInputError as exc:
                where = f"subject {index + 1}: " if len(identifiers) > 1 else ""
                raise InvalidInputError(f"{where}{exc.message}") from None
        return keys

    async def match_one(self, identifier: str, cities: Sequence[str] = ()) -> list[CityAnswer]:
        """Is this subject on a non-public list of each city? All asked at once."""
        (key,) = self._subject_keys([identifier])
        targets = [self._check_peer(c) for c in dict.fromkeys(cities)] or self._others()
        self._active += 1
        try:
            answers = await asyncio.gather(
                *(self._probe(city, [key], MatchMode.MEMBERSHIP) for city in targets)
            )
        finally:
            self._active -= 1
            self._wanted.set()
        return [
            CityAnswer(
                city=city,
                outcome=(
                    answer.outcome
                    if answer.outcome is not Outcome.NO_HIT or not answer.kinds[0]
                    else Outcome.HIT
                ),
                kinds=answer.kinds[0] if answer.kinds else (),
                detail=answer.detail,
                request_id=answer.request_ids[0] if answer.request_ids else b"",
            )
            for city, answer in zip(targets, answers, strict=True)
        ]

    async def match_batch(
        self,
        identifiers: Sequence[str],
        city: str,
        mode: MatchMode,
        progress: ProgressCallback | None = None,
    ) -> BatchResult:
        """Screen many subjects against one city, in chunks of at most
        ``max_subjects_per_request`` distinct subjects (each probed in as many requests as
        fit in one message: :meth:`_probe_in_parts`); ``progress(done, total)`` after each."""
        if not identifiers:
            raise InvalidInputError("no subjects given")
        self._check_peer(city)
        keys = self._subject_keys(identifiers)
        positions: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            positions.setdefault(key, []).append(index)
        distinct = list(positions)
        chunks = [
            distinct[i : i + self._max_subjects]
            for i in range(0, len(distinct), self._max_subjects)
        ]
        result = BatchResult(total=len(identifiers), hits=[], hit_count=0, request_ids=[])
        done = 0
        self._active += 1
        prefetch: asyncio.Task[None] | None = None
        try:
            for number, chunk in enumerate(chunks):
                if prefetch is not None:
                    await prefetch
                if number + 1 < len(chunks):
                    # The next request's randomness is computed while this one is answered.
                    prefetch = asyncio.create_task(self._prefetch(city, len(chunks[number + 1])))
                answer = await self._probe(city, chunk, mode)
                if answer.outcome is Outcome.REFUSED:
                    raise QuotaExceededError(f"{city} refused: {answer.detail}")
                if answer.outcome is Outcome.UNAVAILABLE:
                    raise UnavailableError(f"{city} did not answer: {answer.detail}")
                result.request_ids += answer.request_ids
                if mode is MatchMode.COUNT:
                    result.hit_count += answer.count
                else:
                    for key, kinds in zip(chunk, answer.kinds, strict=True):
                        if kinds:
                            result.hits.extend((i, kinds) for i in positions[key])
                done += sum(len(positions[key]) for key in chunk)
                if progress is not None:
                    await progress(done, result.total)
        finally:
            if prefetch is not None and not prefetch.done():
                prefetch.cancel()
            self._active -= 1
            self._wanted.set()
        if mode is MatchMode.MEMBERSHIP:
            result.hits.sort()
            result.hit_count = len(result.hits)
        return result

    async def _prefetch(self, city: str, subjects: int) -> None:
        """Pool the ``r^n`` a request for ``subjects`` subjects to ``city`` will need."""
        peer = self._peer(city)
        if peer.header is None:
            return
        # Started before the current request takes its share of the pool, so it computes the
        # next request's whole need rather than counting what is pooled now.
        n = peer.header.layout.n
        fresh = await self._pool.querier_residues(n, ciphertexts_for(peer.header.layout, subjects))
        if peer.residue_n == n:
            peer.residues.extend(fresh)

    async def _probe(self, city: str, keys: Sequence[str], mode: MatchMode) -> _ProbeAnswer:
        """One probe request to ``city`` for ``keys`` (distinct), audited; retried once after
        fetching the table again if the holder says the copy is out of date."""
        peer = self._peer(city)
        values = await self._evaluate(peer, keys)
        if isinstance(values, _ProbeAnswer):
            return values
        for attempt in range(2):
            header = peer.header
            if header is None:
                try:
                    header = await self.replicate(city)
                except CreditNetError as exc:
                    return _ProbeAnswer(
                        Outcome.UNAVAILABLE, detail=f"no matching table: {_reason(exc)}"
                    )
            answer, stale = await self._probe_in_parts(peer, header, keys, values, mode)
            if not stale or attempt:
                return answer
            try:
                await self.replicate(city)
            except CreditNetError as exc:
                return _ProbeAnswer(Outcome.UNAVAILABLE, detail=_reason(exc))
        raise AssertionError("unreachable")

    async def _probe_in_parts(
        self,
        peer: _Peer,
        header: TableHeader,
        keys: Sequence[str],
        values: Sequence[int],
        mode: MatchMode,
    ) -> tuple[_ProbeAnswer, bool]:
        """:meth:`_probe_once`, in as many requests as ``header``'s table needs for each to
        fit in one message with its answer (:func:`subjects_per_request`): one, except in
        count-only mode against many list kinds. The answers are joined; the first failure,
        or a stale table, ends it."""
        try:
            size = subjects_per_request(
                header.layout,
                count_only=mode is MatchMode.COUNT,
                most=len(keys),
                max_message_bytes=self._max_message_bytes,
            )
        except MatchingError as exc:
            return _ProbeAnswer(Outcome.UNAVAILABLE, detail=exc.message), False
        joined = _ProbeAnswer(Outcome.NO_HIT)
        for start in range(0, len(keys), size):
            part = slice(start, start + size)
            answer, stale = await self._probe_once(peer, header, keys[part], values[part], mode)
            if stale or answer.outcome is not Outcome.NO_HIT:
                return answer, stale
            joined.kinds += answer.kinds
            joined.count += answer.count
            joined.request_ids += answer.request_ids
        return joined, False

    async def _evaluate(self, peer: _Peer, keys: Sequence[str]) -> list[int] | _ProbeAnswer:
        """The OPRF round: ``v(x)`` of every key from ``peer``, or why not (audited).

        The values depend on the peer's OPRF key only, not on its table, so one round serves
        a retry after a table refresh.
        """
        if len(keys) == 1:
            blinded = [blind(keys[0])]
        else:
            blinded = await asyncio.to_thread(lambda: [blind(key) for key in keys])
        request_id = secrets.token_bytes(REQUEST_ID_BYTES)
        request = matching_pb2.EvaluateSubjectsRequest(
            request_id=request_id,
            sent_at=_stamp(self._clock.now()),
            blinded=[b.element for b in blinded],
        )
        audit = _Audit(self, peer.city, request_id, EVALUATE_MODE, len(keys), 0)
        stub = self._links.stub(peer.city)
        if stub is None:
            audit.record("failed", reason="no link")
            return _ProbeAnswer(Outcome.UNAVAILABLE, detail="no link to this city")
        timeout = PROBE_ONE_TIMEOUT_S if len(keys) == 1 else PROBE_BATCH_TIMEOUT_S
        try:
            response = await stub.EvaluateSubjects(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            answer, _ = self._refused(peer, audit, exc)
            return answer
        evaluated = list(response.evaluated)
        try:
            if len(evaluated) != len(blinded):
                raise MatchingError(
                    f"{peer.city} evaluated {len(evaluated)} subjects of {len(blinded)}"
                )
            if len(keys) == 1:
                values = [finalize(blinded[0], evaluated[0])]
            else:
                values = await asyncio.to_thread(_finalize_all, blinded, evaluated)
        except MatchingError as exc:
            audit.record("failed", reason=exc.message)
            return _ProbeAnswer(Outcome.UNAVAILABLE, detail=exc.message)
        audit.record("answered")
        return values

    async def _probe_once(
        self,
        peer: _Peer,
        header: TableHeader,
        keys: Sequence[str],
        values: Sequence[int],
        mode: MatchMode,
    ) -> tuple[_ProbeAnswer, bool]:
        layout = header.layout
        plan = plan_probes(layout, keys, values)
        residues = await self._residues(peer, layout.n, plan.ciphertexts)
        async with peer.lock:
            if peer.header is None or peer.header.layout != layout:
                return _ProbeAnswer(Outcome.UNAVAILABLE, detail="the table changed"), True
            header = peer.header
            if len(keys) == 1:
                ciphertexts, secrets_ = build_probes(plan, peer.store.ciphertext, residues)
            else:
                ciphertexts, secrets_ = await asyncio.to_thread(
                    build_probes, plan, peer.store.ciphertext, residues
                )
        request_id = secrets.token_bytes(REQUEST_ID_BYTES)
        width = layout.ciphertext_bytes
        request = matching_pb2.ProbeRequest(
            request_id=request_id,
            sent_at=_stamp(self._clock.now()),
            table_id=header.table_id,
            epoch=header.epoch,
            mode=_WIRE_MODE[mode],
            subjects=len(keys),
            ciphertexts=[c.to_bytes(width, "big") for c in ciphertexts],
        )
        scalar: X25519PrivateKey | None = None
        if mode is MatchMode.COUNT:
            scalar = X25519PrivateKey.generate()
            digests = expected_digests(plan, secrets_, request_id)
            request.blinded_expected.extend(
                await asyncio.to_thread(blind_expected, scalar, digests)
            )
        stub = self._links.stub(peer.city)
        audit = _Audit(self, peer.city, request_id, mode.value, len(keys), len(ciphertexts))
        if stub is None:
            audit.record("failed", reason="no link")
            return _ProbeAnswer(Outcome.UNAVAILABLE, detail="no link to this city"), False
        timeout = PROBE_ONE_TIMEOUT_S if len(keys) == 1 else PROBE_BATCH_TIMEOUT_S
        try:
            response = await stub.Probe(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return self._refused(peer, audit, exc)
        try:
            answer = await self._read(plan, secrets_, request_id, response, scalar)
        except MatchingError as exc:
            audit.record("failed", reason=exc.message)
            return _ProbeAnswer(Outcome.UNAVAILABLE, detail=exc.message), False
        answer.request_ids = [request_id]
        hits = answer.count if mode is MatchMode.COUNT else sum(1 for k in answer.kinds if k)
        audit.record("answered", hits=hits)
        return answer, False

    def _refused(
        self, peer: _Peer, audit: _Audit, exc: grpc.aio.AioRpcError
    ) -> tuple[_ProbeAnswer, bool]:
        detail = _describe(exc)
        code = exc.code()
        if refused_by_quota(exc):  # the peer's daily quota
            peer.refused_on = self._clock.now().date()
            audit.record("refused", reason=detail)
            return _ProbeAnswer(Outcome.REFUSED, detail=exc.details() or detail), False
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            detail = _too_large(exc)
        audit.record("failed", reason=detail)
        stale = code is grpc.StatusCode.FAILED_PRECONDITION
        return _ProbeAnswer(Outcome.UNAVAILABLE, detail=detail), stale

    @staticmethod
    async def _read(
        plan: ProbePlan,
        secrets_: ProbeSecrets,
        request_id: bytes,
        response: matching_pb2.ProbeResponse,
        scalar: X25519PrivateKey | None,
    ) -> _ProbeAnswer:
        if scalar is not None:
            count = await asyncio.to_thread(
                count_hits, scalar, list(response.twice_blinded), list(response.holder_blinded)
            )
            return _ProbeAnswer(Outcome.NO_HIT, count=count)
        if plan.subjects == 1:
            kinds = read_answers(plan, secrets_, request_id, list(response.answers))
        else:
            kinds = await asyncio.to_thread(
                read_answers, plan, secrets_, request_id, list(response.answers)
            )
        return _ProbeAnswer(Outcome.NO_HIT, kinds=kinds)

    # --- disclosure ---------------------------------------------------------------------

    async def disclose(
        self,
        city: str,
        identifier: str,
        *,
        match_request_id: bytes,
        purpose: str,
        legal_basis: str = "",
        requested_by: str = "",
    ) -> matching_pb2.DiscloseResponse:
        """Ask ``city`` for its entries about a subject after a hit (named in clear: the
        holder checks it is on one of its non-public lists); audited on both sides."""
        self._check_peer(city)
        subject = parse_subject(identifier, today=china_date(self._clock.now()))
        if len(match_request_id) != REQUEST_ID_BYTES:
            raise InvalidInputError(
                f"the match request id is {REQUEST_ID_BYTES} bytes (32 hex digits), "
                f"not {len(match_request_id)}"
            )
        purpose = purpose.strip()
        if not purpose:
            raise InvalidInputError("a disclosure request needs a purpose")
        if len(purpose) > MAX_TEXT_CHARS or len(legal_basis) > MAX_TEXT_CHARS:
            raise InvalidInputError(f"purpose and legal basis have at most {MAX_TEXT_CHARS} chars")
        stub = self._links.stub(city)
        if stub is None:
            raise UnavailableError(f"no link to {city}")
        request_id = secrets.token_bytes(REQUEST_ID_BYTES)
        request = matching_pb2.DiscloseRequest(
            request_id=request_id,
            sent_at=_stamp(self._clock.now()),
            subject_id=subject.value,
            match_request_id=match_request_id,
            purpose=purpose,
            legal_basis=legal_basis.strip(),
            requested_by=requested_by.strip(),
        )
        detail = f"subject {mask_resident_id(subject.value)}; purpose: {redacted(purpose)}"
        if legal_basis.strip():
            detail += f"; basis: {redacted(legal_basis)}"
        audit = _Audit(self, city, request_id, "disclose", 1, 0)
        try:
            response: matching_pb2.DiscloseResponse = await stub.Disclose(
                request, timeout=DISCLOSE_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            audit.record("refused", reason=_describe(exc), detail=detail)
            raise _disclose_error(city, exc) from None
        audit.record(
            "answered",
            hits=len(response.entries),
            detail=f"{detail}; disclosure {response.disclosure_id}",
        )
        return response

    # --- status --------------------------------------------------------------------------

    def tables(self) -> list[TableState]:
        """This node's own table, then the peers' tables it holds."""
        states = []
        with contextlib.suppress(CreditNetError, OSError, ValueError, KeyError):
            own = self._own.header()
            if own is not None:
                states.append(_state(self._me, own, 0, -1, None))
        today = self._clock.now().date()
        for city in self._others():
            peer = self._peers.get(city)
            if peer is None or peer.header is None:
                continue
            pooled = len(peer.residues) if peer.residue_n == peer.header.layout.n else 0
            quota = 0 if peer.refused_on == today else -1
            states.append(_state(city, peer.header, pooled, quota, peer.fetched_at))
        return states

    def held(self, city: str) -> TableHeader | None:
        peer = self._peers.get(city)
        return None if peer is None else peer.header

    async def close(self) -> None:
        await self._background.close()
        for peer in self._peers.values():
            peer.store.close()


class _Audit:
    """The sent-side audit record of one request (written once, whatever happens)."""

    def __init__(
        self,
        querier: MatchQuerier,
        peer: str,
        request_id: bytes,
        mode: str,
        subjects: int,
        ciphertexts: int,
    ) -> None:
        self._sink = querier._audit
        self._clock = querier._clock
        self._peer = peer
        self._request_id = request_id
        self._mode = mode  # membership | count | evaluate | disclose
        self._subjects = subjects
        self._ciphertexts = ciphertexts

    def record(
        self,
        outcome: str,
        *,
        hits: int | None = None,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        try:
            self._sink.record(
                "sent",
                self._peer,
                self._request_id,
                self._mode,
                self._subjects,
                self._ciphertexts,
                hits,
                outcome,
                at=self._clock.now(),
                reason=reason[:MAX_DETAIL_CHARS] if reason else None,
                detail=detail,
            )
        except Exception:
            # The answer is not withheld for a failed audit write; the failure is logged.
            log.exception("could not write a matching audit record")


def _finalize_all(blinded: Sequence[Blinded], evaluated: Sequence[bytes]) -> list[int]:
    return [finalize(b, e) for b, e in zip(blinded, evaluated, strict=True)]


_WIRE_MODE = {
    MatchMode.MEMBERSHIP: matching_pb2.MATCH_MODE_MEMBERSHIP,
    MatchMode.COUNT: matching_pb2.MATCH_MODE_COUNT,
}


def _state(
    city: str,
    header: TableHeader,
    pooled: int,
    quota: int,
    fetched_at: dt.datetime | None,
) -> TableState:
    return TableState(
        city=city,
        table_id=header.table_id,
        epoch=header.epoch,
        bins=header.layout.bins,
        issued_at=header.issued_at,
        pooled_residues=pooled,
        quota_left=quota,
        fetched_at=fetched_at,
    )


def _stamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _describe(exc: grpc.aio.AioRpcError) -> str:
    code = exc.code()
    name = code.name if code is not None else "UNKNOWN"
    return f"{name}: {exc.details() or ''}"[:MAX_DETAIL_CHARS]


def _too_large(exc: grpc.aio.AioRpcError) -> str:
    """RESOURCE_EXHAUSTED from gRPC itself, not from the peer: a message over a size limit."""
    return (
        "a message was larger than this node or the peer accepts ([limits] max_message_bytes, "
        f"best the same in every city): {_describe(exc)}"
    )[:MAX_DETAIL_CHARS]


def _reason(exc: Exception) -> str:
    text = exc.message if isinstance(exc, CreditNetError) else type(exc).__name__
    return text[:MAX_DETAIL_CHARS]


def _disclose_error(city: str, exc: grpc.aio.AioRpcError) -> CreditNetError:
    code, details = exc.code(), exc.details() or ""
    if code is grpc.StatusCode.NOT_FOUND:
        return NotFoundError(f"{city}: {details}")
    if refused_by_quota(exc):
        return QuotaExceededError(f"{city} refused: {details}")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
        return InvalidInputError(f"{city} refused the request: {details}")
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDeniedError(f"{city} refused the request: {details}")
    return UnavailableError(f"{city} did not answer: {_describe(exc)}")
