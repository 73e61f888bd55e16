"""The holder side of private matching (:mod:`node.matching.holder`), probed as a querier would.

Entries are recorded through the node's own list log (:class:`node.ledger.OwnLog`) into a
SQLite database; the querier side is played with :mod:`federation.matching` directly
(plan, build, answer, read). Paillier keys are 1024 bits to stay fast; most tests run the
Paillier work in-process (:class:`InlinePool`), one runs it in the real process pool.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import json
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from phe import paillier

from creditnet.v1 import matching_pb2
from federation.clock import FixedClock
from federation.errors import CreditNetError, ErrorCode
from federation.manifest import Manifest, build_manifest
from federation.matching import (
    HolderKey,
    MatchingError,
    OprfKey,
    TableLayout,
    answer_probes,
    blind,
    blind_expected,
    build_probes,
    check_blinded,
    ciphertexts_for,
    count_hits,
    expected_digests,
    finalize,
    plan_probes,
    querier_nth_residue,
    read_answers,
    verify_table_header,
)
from federation.member import Member
from federation.sanctions import (
    DEFAULT_POLICIES,
    ListKind,
    Removal,
    RemovalReason,
    SanctionEntry,
)
from federation.signing import SigningKey
from node.ledger import AddEntry, OwnLog, RemoveEntry
from node.logstore import LogStore
from node.matching.holder import (
    CHANGES_FILE,
    EVALUATE_MODE,
    INDEX_FILE,
    DisclosureQuery,
    EvaluationQuery,
    MatchHolder,
    MatchingLimits,
    ProbeMode,
    ProbeQuery,
    TablePart,
)
from node.matching.keys import subject_key
from node.matching.pool import MatchingPool
from node.matching.tables import TableStore
from node.samples import sample_entry, sample_uscc
from node.service.errors import STATUS_FOR
from node.service.peer_api import PeerApi
from node.storage import Database, open_database
from node.storage.lists import EntryRepository, LogRepository
from node.storage.matching import (
    MatchAuditRepository,
    MatchQuotaRepository,
    OwnListingRepository,
)
from tests.federation.conftest import NOW, YEAR, make_city

ME, PEER = "370200", "370600"
LISTED = dt.date(2026, 1, 5)
# Two non-public kinds (administrative-penalty made private here), the rest public.
POLICIES = {
    **DEFAULT_POLICIES,
    ListKind.ADMINISTRATIVE_PENALTY: dataclasses.replace(
        DEFAULT_POLICIES[ListKind.ADMINISTRATIVE_PENALTY], public=False
    ),
}
WATCH, PENALTY, SERIOUS = (
    ListKind.WATCH_LIST,
    ListKind.ADMINISTRATIVE_PENALTY,
    ListKind.SERIOUS_DISHONESTY,
)


@functools.cache
def holder_key() -> HolderKey:
    _public, private = paillier.generate_paillier_keypair(n_length=1024)
    return HolderKey.from_phe(private)


@functools.cache
def oprf_key() -> OprfKey:
    return OprfKey.generate()


class InlinePool(MatchingPool):
    """The pool's work in this process, counting what it is asked to do.

    Encryption reuses one ``r^n`` (test-only: no fresh randomness per bin) to stay fast.
    """

    def __init__(self) -> None:
        super().__init__(workers=1)
        self.encrypted = 0
        self.answered = 0
        self._residue: int | None = None

    async def encrypt(self, key: HolderKey, plaintexts: Sequence[int]) -> list[int]:
        if self._residue is None:
            self._residue = key.random_nth_residue()
        self.encrypted += len(plaintexts)
        return [key.encrypt(m, self._residue) for m in plaintexts]

    async def holder_residues(self, key: HolderKey, count: int) -> list[int]:
        return [key.random_nth_residue() for _ in range(count)]

    async def answer(
        self, key: HolderKey, layout: TableLayout, request_id: bytes, ciphertexts: Sequence[int]
    ) -> list[bytes]:
        self.answered += 1
        return answer_probes(key, layout, request_id, ciphertexts)


@dataclasses.dataclass
class World:
    home: Path
    db: Database
    clock: FixedClock
    own_log: OwnLog
    pool: InlinePool
    signing_key: SigningKey
    audit: MatchAuditRepository
    quota: MatchQuotaRepository
    limits: MatchingLimits
    oprf_key: OprfKey = dataclasses.field(default_factory=oprf_key)

    def holder(self, pool: MatchingPool | None = None) -> MatchHolder:
        return MatchHolder(
            city_code=ME,
            home=self.home,
            key=holder_key(),
            oprf_key=self.oprf_key,
            signing_key=self.signing_key,
            policies=POLICIES,
            listings=OwnListingRepository(self.db),
            entries=EntryRepository(self.db),
            audit=self.audit,
            quota=self.quota,
            pool=pool or self.pool,
            clock=self.clock,
            limits=self.limits,
        )

    @staticmethod
    def entry(serial: int, kind: ListKind) -> SanctionEntry:
        """Subject ``serial`` on list ``kind`` (one decision per subject and kind)."""
        entry = sample_entry(ME, serial, kind=kind, listed_on=LISTED, policies=POLICIES)
        return dataclasses.replace(entry, decision_no=f"信惩〔2026〕{kind.value}-{serial}号")

    def add(self, serial: int, kind: ListKind = WATCH) -> str:
        entry = self.entry(serial, kind)
        [result] = self.own_log.submit([AddEntry(entry)])
        assert result.outcome.value == "applied", result.reason
        return entry.subject.id

    def remove(self, serial: int, kind: ListKind = WATCH) -> None:
        entry = self.entry(serial, kind)
        removal = Removal(
            removed_on=NOW.date(),
            reason=RemovalReason.DECISION_REVOKED,
            authority=entry.authority,
        )
        [result] = self.own_log.submit([RemoveEntry(entry.authority, entry.decision_no, removal)])
        assert result.outcome.value == "applied", result.reason


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    db = open_database(f"sqlite:///{tmp_path / 'node.db'}")
    clock = FixedClock(NOW)
    logs, entries = LogRepository(db), EntryRepository(db)
    signing_key = SigningKey.generate()
    own_log = OwnLog(
        store=LogStore(ME, logs, entries, clock),
        entries=entries,
        signing_key=signing_key,
        policies=POLICIES,
        clock=clock,
    )
    yield World(
        home=tmp_path,
        db=db,
        clock=clock,
        own_log=own_log,
        pool=InlinePool(),
        signing_key=signing_key,
        audit=MatchAuditRepository(db),
        quota=MatchQuotaRepository(db),
        limits=MatchingLimits(residue_pool_size=4, sync_interval_s=5.0),
    )
    db.close()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# --- the querier, played with federation.matching ----------------------------------------


def replicate(holder: MatchHolder, copy: TableStore, table_id: str = "", epoch: int = 0) -> bool:
    """Fetch as a querier: whole or changes; returns whether the answer was whole."""
    parts = list(holder.table_parts(table_id, epoch))
    first, rest = parts[0], parts[1:]
    changes = {b: c for part in rest for b, c in zip(part.bins, part.ciphertexts, strict=True)}
    if first.full:
        copy.create(first.header, first.signature, (changes[b] for b in sorted(changes)))
    else:
        copy.apply(first.header, first.signature, changes)
    copy.check()
    return first.full


@dataclasses.dataclass
class Probe:
    query: ProbeQuery
    plan: Any
    secrets: Any
    scalar: X25519PrivateKey | None = None


def make_probe(
    holder: MatchHolder,
    identifiers: Sequence[str],
    *,
    mode: ProbeMode = ProbeMode.MEMBERSHIP,
    sent_at: dt.datetime | None = None,
    epoch: int | None = None,
    table_id: str | None = None,
    values: Sequence[int] | None = None,
) -> Probe:
    header = holder.header
    assert header is not None
    layout = header.layout
    # The OPRF round is played by the holder's key directly here (its RPC has its own tests).
    keys = [subject_key(i) for i in identifiers]
    if values is None:
        values = [oprf_key().value(k) for k in keys]
    plan = plan_probes(layout, keys, values)
    residues = [querier_nth_residue(layout.n) for _ in range(plan.ciphertexts)]
    ciphertexts, probe_secrets = build_probes(plan, holder.store.ciphertext, residues)
    request_id = secrets.token_bytes(16)
    scalar = None
    blinded: list[bytes] = []
    if mode is ProbeMode.COUNT:
        scalar = X25519PrivateKey.generate()
        blinded = blind_expected(scalar, expected_digests(plan, probe_secrets, request_id))
    width = layout.ciphertext_bytes
    query = ProbeQuery(
        request_id=request_id,
        sent_at=NOW if sent_at is None else sent_at,
        table_id=header.table_id if table_id is None else table_id,
        epoch=header.epoch if epoch is None else epoch,
        mode=mode,
        subjects=len(identifiers),
        ciphertexts=[c.to_bytes(width, "big") for c in ciphertexts],
        blinded_expected=blinded,
    )
    return Probe(query, plan, probe_secrets, scalar)


def hits(holder: MatchHolder, identifiers: Sequence[str]) -> list[tuple[str, ...]]:
    probe = make_probe(holder, identifiers)
    answer = run(holder.probe(PEER, probe.query))
    return read_answers(probe.plan, probe.secrets, probe.query.request_id, answer.answers)


def usage(world: World) -> int:
    return world.quota.usage(PEER, NOW.date()).probes


# --- the table ----------------------------------------------------------------------------


def test_table_covers_own_active_non_public_entries_only(world: World) -> None:
    watched = world.add(1, WATCH)
    penalised = world.add(2, PENALTY)
    public = world.add(3, SERIOUS)
    both = world.add(4, WATCH)
    world.add(4, PENALTY)  # the same subject on the second non-public list
    holder = world.holder()
    assert run(holder.refresh()) is True
    header = holder.header
    assert header is not None and header.epoch == 1 and header.holder == ME
    assert header.layout.kinds == ("administrative-penalty", "watch-list")  # ListKind order
    assert header.layout.bins == 1301  # 1024 subjects' worth: the size reveals no more
    found = hits(holder, [watched, penalised, public, both, sample_uscc(ME, 99)])
    assert found == [
        ("watch-list",),
        ("administrative-penalty",),
        (),  # public kinds never enter the table
        ("administrative-penalty", "watch-list"),
        (),
    ]
    index = json.loads((world.home / "matching" / "own" / INDEX_FILE).read_text())
    assert len(index["occupants"]) == 3
    assert (world.home / "matching" / "own" / INDEX_FILE).stat().st_mode & 0o777 == 0o600
    text = (world.home / "matching" / "own" / INDEX_FILE).read_text()
    assert all(s not in text for s in (watched, penalised, both))
    assert run(holder.refresh()) is False  # nothing changed: no new epoch
    assert holder.header == header


def test_entries_outside_publicity_are_left_out(world: World) -> None:
    ended = sample_entry(ME, 5, kind=WATCH, listed_on=dt.date(2025, 1, 2), policies=POLICIES)
    ended = dataclasses.replace(ended, publicity_end=dt.date(2025, 12, 31))
    world.clock.advance(-dt.timedelta(days=365))  # record it while it was current
    world.own_log.submit([AddEntry(ended)])
    world.clock.advance(dt.timedelta(days=365))
    later = world.add(6, WATCH)
    holder = world.holder()
    run(holder.refresh())
    assert hits(holder, [ended.subject.id, later]) == [(), ("watch-list",)]


def test_an_entry_leaves_the_table_when_its_publicity_ends(world: World) -> None:
    entry = dataclasses.replace(world.entry(7, WATCH), publicity_end=NOW.date())
    world.own_log.submit([AddEntry(entry)])
    holder = world.holder()
    run(holder.refresh())
    assert hits(holder, [entry.subject.id]) == [("watch-list",)]
    assert run(holder.refresh()) is False
    world.clock.advance(dt.timedelta(days=1))  # no event: only the date changes
    assert run(holder.refresh()) is True
    late = make_probe(holder, [entry.subject.id], sent_at=world.clock.now())
    answer = run(holder.probe(PEER, late.query))
    assert read_answers(late.plan, late.secrets, late.query.request_id, answer.answers) == [()]


def test_a_city_without_non_public_lists_publishes_nothing(world: World) -> None:
    holder = world.holder()
    holder.kinds = ()
    assert run(holder.refresh()) is False
    with pytest.raises(CreditNetError) as info:
        list(holder.table_parts("", 0))
    assert info.value.code is ErrorCode.FAILED_PRECONDITION


def test_no_table_yet_is_unavailable(world: World) -> None:
    holder = world.holder()
    with pytest.raises(CreditNetError) as info:
        list(holder.table_parts("", 0))
    assert info.value.code is ErrorCode.UNAVAILABLE


def test_incremental_update_changes_only_the_affected_bins(world: World, tmp_path: Path) -> None:
    kept = world.add(1)
    removed = world.add(2)
    for serial in range(10, 30):
        world.add(serial)
    holder = world.holder()
    run(holder.refresh())
    first = holder.header
    assert first is not None
    copy = TableStore(tmp_path / "copy")
    assert replicate(holder, copy) is True
    before = list(copy.raw_bins())
    encrypted = world.pool.encrypted

    world.remove(2)
    added = world.add(3)
    assert run(holder.refresh()) is True
    second = holder.header
    assert second is not None
    assert (second.table_id, second.epoch) == (first.table_id, 2)
    assert second.layout == first.layout
    # Only the bins of the removed and the added subject were encrypted again (at most a
    # few more if the insertion evicted others); the residue pool served some of them.
    assert world.pool.encrypted - encrypted <= 4
    parts = list(holder.table_parts(first.table_id, 1))
    assert parts[0].full is False
    changed = {b for part in parts[1:] for b in part.bins}
    assert 1 <= len(changed) <= 4
    assert replicate(holder, copy, first.table_id, 1) is False
    after = list(copy.raw_bins())
    differing = {b for b, (x, y) in enumerate(zip(before, after, strict=True)) if x != y}
    assert differing == changed
    # The querier's copy is the holder's table, and the removed subject no longer hits.
    assert list(holder.store.raw_bins()) == after
    assert hits(holder, [kept, removed, added]) == [("watch-list",), (), ("watch-list",)]
    # Up to date: the header alone.
    parts = list(holder.table_parts(second.table_id, 2))
    assert len(parts) == 1 and parts[0].full is False
    # Another table or an epoch not known: the whole table.
    assert next(holder.table_parts("0" * 32, 2)).full is True
    assert next(holder.table_parts(second.table_id, 7)).full is True


def test_header_verifies_against_the_manifest(world: World) -> None:
    world.add(1)
    holder = world.holder()
    run(holder.refresh())
    signed = holder.signed_header
    assert signed is not None

    def manifest(n: int, key: SigningKey) -> Manifest:
        me = make_city(ME)
        member = dataclasses.replace(me.member, signing_key=key.public_key, paillier_n=n)
        others = [make_city(PEER).member]
        return build_manifest(
            federation_id="jiaodong",
            federation_name="胶东",
            members=[member, *others],
            threshold=1,
            expires=NOW + YEAR,
        )

    header = verify_table_header(*signed, manifest(holder_key().n, world.signing_key), now=NOW)
    assert header == holder.header
    with pytest.raises(MatchingError, match="Paillier key other"):
        other_n = int(paillier.generate_paillier_keypair(n_length=1024)[0].n)
        verify_table_header(*signed, manifest(other_n, world.signing_key), now=NOW)
    with pytest.raises(MatchingError, match="signature"):
        verify_table_header(*signed, manifest(holder_key().n, SigningKey.generate()), now=NOW)


def test_restart_reloads_the_index_and_the_table(world: World) -> None:
    subject = world.add(1)
    holder = world.holder()
    run(holder.refresh())
    world.add(2)
    run(holder.refresh())
    header = holder.header
    assert header is not None and header.epoch == 2

    again = world.holder()
    again.load()
    assert again.header == header
    assert hits(again, [subject]) == [("watch-list",)]
    assert run(again.refresh()) is False  # the index on disk matches the entries
    assert next(again.table_parts(header.table_id, 1)).full is False
    world.remove(1)
    assert run(again.refresh()) is True
    assert again.header is not None
    assert (again.header.table_id, again.header.epoch) == (header.table_id, 3)
    assert hits(again, [subject]) == [()]


@pytest.mark.parametrize("damage", ["index", "index-epoch", "bins"])
def test_a_damaged_index_or_table_is_rebuilt(world: World, damage: str) -> None:
    subject = world.add(1)
    holder = world.holder()
    run(holder.refresh())
    header = holder.header
    assert header is not None
    own = world.home / "matching" / "own"
    holder.close()
    if damage == "index":
        (own / INDEX_FILE).write_text("{not json")
    elif damage == "index-epoch":
        value = json.loads((own / INDEX_FILE).read_text())
        (own / INDEX_FILE).write_text(json.dumps({**value, "epoch": 9}))
    else:
        with (own / "bins.dat").open("r+b") as bins:
            bins.write(b"\x00" * 8)
    again = world.holder()
    again.load()
    assert (again.header is None) is (damage == "bins")
    assert run(again.refresh()) is True
    assert again.header is not None
    assert again.header.table_id != header.table_id and again.header.epoch == 1
    assert hits(again, [subject]) == [("watch-list",)]
    assert json.loads((own / CHANGES_FILE).read_text())["epochs"] == {}


def test_a_failed_update_is_followed_by_a_rebuild(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = world.add(1)
    holder = world.holder()
    run(holder.refresh())
    header = holder.header
    assert header is not None

    def fail(*args: object) -> None:
        raise OSError("disk full")

    second = world.add(2)
    monkeypatch.setattr(holder.store, "apply", fail)
    with pytest.raises(OSError):
        run(holder.refresh())
    assert holder.header == header  # still serving the last good table
    monkeypatch.undo()
    assert run(holder.refresh()) is True
    assert holder.header is not None and holder.header.table_id != header.table_id
    assert hits(holder, [first, second]) == [("watch-list",), ("watch-list",)]


def test_a_full_table_is_rebuilt_larger(world: World) -> None:
    world.add(1)
    holder = world.holder()
    run(holder.refresh())
    header = holder.header
    assert header is not None
    table = holder._table
    assert table is not None and table.index is not None
    # Pretend the index is at capacity: the next subject cannot go in.
    table.index._where.update(dict.fromkeys(range(1, 1100), 0))
    subject = world.add(2)
    assert run(holder.refresh()) is True
    assert holder.header is not None and holder.header.table_id != header.table_id
    assert hits(holder, [subject]) == [("watch-list",)]


def test_the_stream_is_chunked_and_stops_if_the_table_changes(world: World) -> None:
    world.add(1)
    world.limits = dataclasses.replace(world.limits, max_message_bytes=100 * 256 * 2)
    holder = world.holder()
    run(holder.refresh())
    parts = holder.table_parts("", 0)
    first = next(parts)
    assert first.full and first.header and not first.bins
    second: TablePart = next(parts)
    assert len(second.bins) == 100
    world.add(2)
    run(holder.refresh())
    with pytest.raises(CreditNetError) as info:
        next(parts)
    assert info.value.code is ErrorCode.UNAVAILABLE


# --- probes -------------------------------------------------------------------------------


def test_membership_and_count_answers(world: World) -> None:
    a, b = world.add(1), world.add(2, PENALTY)
    holder = world.holder()
    run(holder.refresh())
    batch = [a, sample_uscc(ME, 50), b, sample_uscc(ME, 51)]
    assert hits(holder, batch) == [("watch-list",), (), ("administrative-penalty",), ()]
    probe = make_probe(holder, batch, mode=ProbeMode.COUNT)
    answer = run(holder.probe(PEER, probe.query))
    assert answer.answers == []
    assert probe.scalar is not None
    assert count_hits(probe.scalar, answer.twice_blinded, answer.holder_blinded) == 2
    assert usage(world) == 8
    rows = world.audit.recent(direction="received")
    assert [(r.mode, r.subjects, r.outcome, r.peer) for r in rows] == [
        ("count", 4, "answered", PEER),
        ("membership", 4, "answered", PEER),
    ]
    assert rows[0].ciphertexts == len(probe.query.ciphertexts)


def test_the_previous_epoch_is_answered_for_one_sync_interval(world: World) -> None:
    world.add(1)
    holder = world.holder()
    run(holder.refresh())
    world.add(2)
    run(holder.refresh())
    late = make_probe(holder, [sample_uscc(ME, 1)], epoch=1)
    run(holder.probe(PEER, late.query))  # within the grace period
    world.clock.advance(dt.timedelta(seconds=6))
    late = make_probe(holder, [sample_uscc(ME, 1)], epoch=1, sent_at=world.clock.now())
    with pytest.raises(CreditNetError, match="fetch epoch 2") as info:
        run(holder.probe(PEER, late.query))
    assert info.value.code is ErrorCode.FAILED_PRECONDITION


def _replace(probe: Probe, **changes: Any) -> ProbeQuery:
    return dataclasses.replace(probe.query, **changes)


def _bad_cases() -> list[Any]:
    def width(h: MatchHolder, p: Probe) -> ProbeQuery:
        return _replace(p, ciphertexts=[p.query.ciphertexts[0][1:], *p.query.ciphertexts[1:]])

    def too_large(h: MatchHolder, p: Probe) -> ProbeQuery:
        assert h.header is not None
        n2 = h.header.layout.n_square
        big = n2.to_bytes(h.header.layout.ciphertext_bytes, "big")
        return _replace(p, ciphertexts=[*p.query.ciphertexts[:-1], big])

    def shares_a_factor(h: MatchHolder, p: Probe) -> ProbeQuery:
        assert h.header is not None
        value = holder_key().p * 12345
        return _replace(
            p, ciphertexts=[value.to_bytes(h.header.layout.ciphertext_bytes, "big")] * 3
        )

    def zero(h: MatchHolder, p: Probe) -> ProbeQuery:
        assert h.header is not None
        return _replace(p, ciphertexts=[bytes(h.header.layout.ciphertext_bytes)] * 3)

    return [
        pytest.param(
            lambda h, p: _replace(p, request_id=b"short"), ErrorCode.INVALID_INPUT, "16", id="id"
        ),
        pytest.param(
            lambda h, p: _replace(p, sent_at=NOW - dt.timedelta(minutes=6)),
            ErrorCode.INVALID_INPUT,
            "check the clocks",
            id="stale",
        ),
        pytest.param(
            lambda h, p: _replace(p, sent_at=NOW + dt.timedelta(minutes=6)),
            ErrorCode.INVALID_INPUT,
            "check the clocks",
            id="future",
        ),
        pytest.param(
            lambda h, p: _replace(p, sent_at=None), ErrorCode.INVALID_INPUT, "sent_at", id="no-time"
        ),
        pytest.param(
            lambda h, p: _replace(p, table_id="0" * 32),
            ErrorCode.FAILED_PRECONDITION,
            "table out of date",
            id="unknown-table",
        ),
        pytest.param(
            lambda h, p: _replace(p, epoch=0),
            ErrorCode.FAILED_PRECONDITION,
            "fetch epoch 1",
            id="unknown-epoch",
        ),
        pytest.param(
            lambda h, p: _replace(p, epoch=2),
            ErrorCode.FAILED_PRECONDITION,
            "fetch epoch 1",
            id="future-epoch",
        ),
        pytest.param(
            lambda h, p: _replace(p, mode=None), ErrorCode.INVALID_INPUT, "mode", id="no-mode"
        ),
        pytest.param(
            lambda h, p: _replace(p, subjects=0), ErrorCode.INVALID_INPUT, "1 to 5", id="none"
        ),
        pytest.param(
            lambda h, p: _replace(p, subjects=6, ciphertexts=p.query.ciphertexts * 6),
            ErrorCode.INVALID_INPUT,
            "1 to 5 subjects",
            id="oversized",
        ),
        pytest.param(
            lambda h, p: _replace(p, ciphertexts=p.query.ciphertexts[:-1]),
            ErrorCode.INVALID_INPUT,
            "take 3 to 3 probe ciphertexts, not 2",
            id="too-few",
        ),
        pytest.param(
            lambda h, p: _replace(p, ciphertexts=[*p.query.ciphertexts, p.query.ciphertexts[0]]),
            ErrorCode.INVALID_INPUT,
            "not 4",
            id="too-many",
        ),
        pytest.param(width, ErrorCode.INVALID_INPUT, "is 255 bytes", id="width"),
        pytest.param(too_large, ErrorCode.INVALID_INPUT, "out of range", id="too-large"),
        pytest.param(zero, ErrorCode.INVALID_INPUT, "out of range", id="zero"),
        pytest.param(shares_a_factor, ErrorCode.INVALID_INPUT, "out of range", id="factor"),
        pytest.param(
            lambda h, p: _replace(p, blinded_expected=[bytes(32)]),
            ErrorCode.INVALID_INPUT,
            "membership request carries no blinded",
            id="membership-blinded",
        ),
        pytest.param(
            lambda h, p: _replace(p, mode=ProbeMode.COUNT),
            ErrorCode.INVALID_INPUT,
            "carries 9 blinded values, not 0",
            id="count-missing",
        ),
        pytest.param(
            lambda h, p: _replace(p, mode=ProbeMode.COUNT, blinded_expected=[bytes(32)] * 8),
            ErrorCode.INVALID_INPUT,
            "not 8",
            id="count-short",
        ),
        pytest.param(
            lambda h, p: _replace(p, mode=ProbeMode.COUNT, blinded_expected=[bytes(31)] * 9),
            ErrorCode.INVALID_INPUT,
            "32 bytes",
            id="count-width",
        ),
    ]


@pytest.mark.parametrize(("spoil", "code", "message"), _bad_cases())
def test_bad_probes_are_refused_before_any_decryption_or_charge(
    world: World, spoil: Any, code: ErrorCode, message: str
) -> None:
    world.limits = dataclasses.replace(world.limits, max_subjects_per_request=5)
    world.add(1)
    holder = world.holder()
    run(holder.refresh())
    probe = make_probe(holder, [sample_uscc(ME, 1)])
    query = spoil(holder, probe)
    with pytest.raises(CreditNetError) as info:
        run(holder.probe(PEER, query))
    assert info.value.code is code
    assert message in info.value.message
    assert world.pool.answered == 0
    assert usage(world) == 0
    [row] = world.audit.recent()
    assert (row.direction, row.peer, row.outcome) == ("received", PEER, "refused")
    assert row.reason == info.value.message
    # A refused request id is not burnt, except a malformed one.
    if len(query.request_id) == 16:
        assert not world.quota.seen(PEER, query.request_id)


def test_a_replayed_request_is_refused(world: World) -> None:
    world.add(1)
    holder = world.holder()
    run(holder.refresh())
    probe = make_probe(holder, [sample_uscc(ME, 1)])
    run(holder.probe(PEER, probe.query))
    with pytest.raises(CreditNetError, match="replay") as info:
        run(holder.probe(PEER, probe.query))
    assert info.value.code is ErrorCode.ALREADY_EXISTS
    assert STATUS_FOR[info.value.code] is grpc.StatusCode.ALREADY_EXISTS
    assert world.pool.answered == 1
    assert usage(world) == 1
    assert [r.outcome for r in world.audit.recent()] == ["refused", "answered"]
    # Past the replay window the id is forgotten; its sent_at is stale by then anyway.
    world.clock.advance(dt.timedelta(seconds=601))
    assert holder.forget_expired() == 1
    stale = dataclasses.replace(probe.query)
    with pytest.raises(CreditNetError, match="check the clocks"):
        run(holder.probe(PEER, stale))


def test_over_quota_is_refused_and_audited(world: World) -> None:
    world.limits = dataclasses.replace(world.limits, probes_per_peer_per_day=4)
    a = world.add(1)
    holder = world.holder()
    run(holder.refresh())
    assert hits(holder, [a, sample_uscc(ME, 2), sample_uscc(ME, 3)]) == [("watch-list",), (), ()]
    probe = make_probe(holder, [a, sample_uscc(ME, 4)])
    with pytest.raises(CreditNetError, match="resets at 2026-06-02T00:00:00Z") as info:
        run(holder.probe(PEER, probe.query))
    assert info.value.code is ErrorCode.RESOURCE_EXHAUSTED
    assert STATUS_FOR[info.value.code] is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert world.pool.answered == 1
    assert usage(world) == 3
    refused = world.audit.recent()[0]
    assert (refused.outcome, refused.subjects) == ("refused", 2)
    assert refused.request_id == probe.query.request_id.hex()
    # One more subject still fits; a new UTC day starts afresh.
    assert hits(holder, [a]) == [("watch-list",)]
    world.clock.advance(dt.timedelta(days=1))
    again = make_probe(holder, [a, sample_uscc(ME, 4)], sent_at=world.clock.now())
    run(holder.probe(PEER, again.query))
    assert world.quota.usage(PEER, world.clock.now().date()).probes == 2


def test_the_real_process_pool_answers(world: World) -> None:
    subject = world.add(1)
    pool = MatchingPool(workers=1)
    try:
        holder = world.holder(pool)
        run(holder.refresh())
        assert holder.pooled_residues == 4
        assert hits(holder, [subject, sample_uscc(ME, 2)]) == [("watch-list",), ()]
        world.remove(1)
        run(holder.refresh())
        assert holder.pooled_residues == 4  # used for the changed bins, then refilled
        assert hits(holder, [subject]) == [()]
    finally:
        pool.close()


# --- disclosure ---------------------------------------------------------------------------


def disclosure(match_request_id: bytes, subject: str, **changes: Any) -> DisclosureQuery:
    query = DisclosureQuery(
        request_id=secrets.token_bytes(16),
        sent_at=NOW,
        subject_id=subject,
        match_request_id=match_request_id,
        purpose="政府采购资格审查",
        legal_basis="《政府采购法》第二十二条",
        requested_by="采购办 王",
    )
    return dataclasses.replace(query, **changes)


def test_disclose_after_a_hit(world: World) -> None:
    subject = world.add(1, PENALTY)
    world.add(1, SERIOUS)  # public: never disclosed through matching
    holder = world.holder()
    run(holder.refresh())
    probe = make_probe(holder, [subject])
    run(holder.probe(PEER, probe.query))
    result = holder.disclose(PEER, disclosure(probe.query.request_id, subject.lower()))
    [entry] = result.entries
    assert entry.list_kind == "administrative-penalty"
    parsed = SanctionEntry.from_json(json.loads(entry.entry))
    assert parsed.subject.id == subject
    assert len(result.disclosure_id) == 32
    row = world.audit.recent()[0]
    assert (row.mode, row.outcome, row.hits) == ("disclose", "disclosed", 1)
    assert row.subject_ref == holder.subject_ref(subject)
    assert row.detail is not None and result.disclosure_id in row.detail
    assert world.quota.usage(PEER, NOW.date()).disclosures == 1


def test_disclose_refusals(world: World) -> None:
    world.limits = dataclasses.replace(world.limits, disclosures_per_peer_per_day=2)
    subject = world.add(1)
    holder = world.holder()
    run(holder.refresh())
    probe = make_probe(holder, [subject])
    run(holder.probe(PEER, probe.query))
    match = probe.query.request_id

    def refused(query: DisclosureQuery, code: ErrorCode, peer: str = PEER) -> str:
        with pytest.raises(CreditNetError) as info:
            holder.disclose(peer, query)
        assert info.value.code is code
        return info.value.message

    assert "purpose" in refused(disclosure(match, subject, purpose=" "), ErrorCode.INVALID_INPUT)
    refused(disclosure(match, "91370200MA0000000X"), ErrorCode.INVALID_INPUT)
    refused(disclosure(secrets.token_bytes(16), subject), ErrorCode.FAILED_PRECONDITION)
    refused(disclosure(match, subject), ErrorCode.FAILED_PRECONDITION, peer="370700")
    assert world.quota.usage(PEER, NOW.date()).disclosures == 0
    # Not on a list: NOT_FOUND, audited and charged (no free membership oracle).
    message = refused(disclosure(match, sample_uscc(ME, 7)), ErrorCode.NOT_FOUND)
    assert sample_uscc(ME, 7) not in message
    assert world.audit.recent()[0].outcome == "not-found"
    query = disclosure(match, subject)
    holder.disclose(PEER, query)
    refused(query, ErrorCode.ALREADY_EXISTS)
    assert "resets at" in refused(disclosure(match, subject), ErrorCode.RESOURCE_EXHAUSTED)
    world.remove(1)
    world.clock.advance(dt.timedelta(days=1))
    later = dict(sent_at=world.clock.now())
    refused(disclosure(match, subject, **later), ErrorCode.NOT_FOUND)


def test_the_audit_never_holds_an_identifier(world: World) -> None:
    subject = world.add(1)
    holder = world.holder()
    run(holder.refresh())
    probe = make_probe(holder, [subject, sample_uscc(ME, 3)])
    run(holder.probe(PEER, probe.query))
    holder.disclose(PEER, disclosure(probe.query.request_id, subject, purpose=f"查 {subject}"))
    with pytest.raises(CreditNetError):
        holder.disclose(PEER, disclosure(probe.query.request_id, sample_uscc(ME, 3)))
    rows = world.audit.recent()
    assert len(rows) == 3
    text = json.dumps([dataclasses.asdict(r) for r in rows], default=str)
    for identifier in (subject, sample_uscc(ME, 3)):
        assert identifier not in text
        assert identifier[2:] not in text


# --- the peer API adapters ----------------------------------------------------------------


class FakeContext:
    def __init__(self) -> None:
        self.aborted: list[tuple[grpc.StatusCode, str]] = []

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: object = ()
    ) -> None:
        self.aborted.append((code, details))
        raise grpc.aio.AbortError()


class Api(PeerApi):
    def __init__(self, holder: MatchHolder | None) -> None:
        anything = cast(Any, None)
        super().__init__(
            city_code=ME,
            trust=anything,
            links=anything,
            contacts=anything,
            own_log=anything,
            replicator=anything,
            logs=anything,
            reports=anything,
            ratings=anything,
            clock=FixedClock(NOW),
            match_holder=holder,
        )

    def _caller(self, context: Any) -> Member:
        return make_city(PEER).member


def test_the_peer_api_adapts_the_three_rpcs(world: World) -> None:
    subject = world.add(1)
    holder = world.holder()
    run(holder.refresh())
    api = Api(holder)

    async def table() -> list[matching_pb2.GetMatchTableResponse]:
        request = matching_pb2.GetMatchTableRequest(table_id="", epoch=0)
        return [m async for m in api.GetMatchTable(request, cast(Any, FakeContext()))]

    messages = run(table())
    signed = holder.signed_header
    assert signed is not None
    assert messages[0].full and messages[0].header.header == signed[0]
    assert sum(len(m.bins) for m in messages[1:]) == 1301

    probe = make_probe(holder, [subject])
    request = matching_pb2.ProbeRequest(
        request_id=probe.query.request_id,
        table_id=probe.query.table_id,
        epoch=probe.query.epoch,
        mode=matching_pb2.MATCH_MODE_MEMBERSHIP,
        subjects=1,
        ciphertexts=probe.query.ciphertexts,
    )
    request.sent_at.FromDatetime(NOW)
    response = run(api.Probe(request, cast(Any, FakeContext())))
    found = read_answers(probe.plan, probe.secrets, request.request_id, list(response.answers))
    assert found == [("watch-list",)]

    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        run(api.Probe(request, cast(Any, context)))
    assert context.aborted[0][0] is grpc.StatusCode.ALREADY_EXISTS

    unspecified = matching_pb2.ProbeRequest()
    unspecified.CopyFrom(request)
    unspecified.request_id = secrets.token_bytes(16)
    unspecified.mode = matching_pb2.MATCH_MODE_UNSPECIFIED
    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        run(api.Probe(unspecified, cast(Any, context)))
    assert context.aborted[0] == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "a probe request must say its mode (membership or count)",
    )

    ask = matching_pb2.DiscloseRequest(
        request_id=secrets.token_bytes(16),
        subject_id=subject,
        match_request_id=request.request_id,
        purpose="审查",
    )
    ask.sent_at.FromDatetime(NOW)
    answer = run(api.Disclose(ask, cast(Any, FakeContext())))
    assert [e.list_kind for e in answer.entries] == ["watch-list"]

    disabled = Api(None)
    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        run(disabled.Probe(request, cast(Any, context)))
    assert context.aborted[0][0] is grpc.StatusCode.UNAVAILABLE


def test_ciphertext_count_bounds_follow_the_layout(world: World) -> None:
    world.add(1)
    holder = world.holder()
    run(holder.refresh())
    assert holder.header is not None
    layout = holder.header.layout
    # What the check accepts: what plan_probes sends, up to one ciphertext per probe.
    assert ciphertexts_for(layout, 1) == 3
    assert ciphertexts_for(layout, 1000) < 3000


# --- EvaluateSubjects: the OPRF round ------------------------------------------------------


def evaluation(identifiers: Sequence[str], **changes: Any) -> tuple[EvaluationQuery, list[Any]]:
    blinded = [blind(subject_key(i)) for i in identifiers]
    query = EvaluationQuery(
        request_id=secrets.token_bytes(16), sent_at=NOW, blinded=[b.element for b in blinded]
    )
    return dataclasses.replace(query, **changes), blinded


def test_the_oprf_round_gives_the_values_the_probes_need(world: World) -> None:
    listed = world.add(1)
    holder = world.holder()
    run(holder.refresh())
    subjects = [listed, sample_uscc(ME, 2)]
    query, blinded = evaluation(subjects)
    evaluated = run(holder.evaluate(PEER, query))
    values = [finalize(b, e) for b, e in zip(blinded, evaluated, strict=True)]
    assert values == [oprf_key().value(subject_key(i)) for i in subjects]
    assert usage(world) == 2  # one unit of the probe quota per blinded value
    probe = make_probe(holder, subjects, values=values)
    answer = run(holder.probe(PEER, probe.query))
    found = read_answers(probe.plan, probe.secrets, probe.query.request_id, answer.answers)
    assert found == [("watch-list",), ()]
    assert usage(world) == 4
    rows = world.audit.recent()
    assert [(r.mode, r.subjects, r.ciphertexts, r.outcome) for r in rows[1:]] == [
        (EVALUATE_MODE, 2, 0, "answered")
    ]
    text = json.dumps([dataclasses.asdict(r) for r in rows], default=str)
    assert listed not in text and query.blinded[0].hex() not in text
    # An evaluation is not a probe: no disclosure can cite it.
    with pytest.raises(CreditNetError, match="no probe"):
        holder.disclose(PEER, disclosure(query.request_id, listed))


def _bad_evaluations() -> list[Any]:
    good = blind("x").element
    off_curve = next(
        candidate for candidate in (bytes([i]) * 32 for i in range(256)) if not _on_curve(candidate)
    )
    return [
        pytest.param({"blinded": []}, "1 to 3 blinded values", id="none"),
        pytest.param({"blinded": [good] * 4}, "1 to 3 blinded values", id="too-many"),
        pytest.param({"blinded": [good, good[:31]]}, "32 bytes", id="short"),
        pytest.param({"blinded": [good + b"\x00"]}, "32 bytes", id="long"),
        pytest.param({"blinded": [off_curve]}, "P-256 point", id="off-curve"),
        pytest.param({"request_id": b"x"}, "request id", id="request-id"),
        pytest.param({"sent_at": None}, "sent_at", id="no-time"),
        pytest.param({"sent_at": NOW + dt.timedelta(hours=1)}, "clocks", id="skew"),
    ]


def _on_curve(candidate: bytes) -> bool:
    try:
        check_blinded([candidate])
    except MatchingError:
        return False
    return True


@pytest.mark.parametrize(("changes", "message"), _bad_evaluations())
def test_bad_evaluations_are_refused_before_any_work_or_charge(
    world: World, changes: dict[str, Any], message: str
) -> None:
    world.limits = dataclasses.replace(world.limits, max_subjects_per_request=3)
    world.add(1)
    holder = world.holder()
    run(holder.refresh())
    query, _ = evaluation([sample_uscc(ME, 1)], **changes)
    with pytest.raises(CreditNetError, match=message) as info:
        run(holder.evaluate(PEER, query))
    assert STATUS_FOR[info.value.code] is grpc.StatusCode.INVALID_ARGUMENT
    assert usage(world) == 0
    [row] = world.audit.recent()
    assert (row.mode, row.outcome, row.reason) == (EVALUATE_MODE, "refused", info.value.message)


def test_evaluations_count_against_the_quota_and_cannot_be_replayed(world: World) -> None:
    world.limits = dataclasses.replace(world.limits, probes_per_peer_per_day=3)
    world.add(1)
    holder = world.holder()
    run(holder.refresh())
    query, _ = evaluation([sample_uscc(ME, i) for i in range(2)])
    run(holder.evaluate(PEER, query))
    with pytest.raises(CreditNetError, match="replay") as info:
        run(holder.evaluate(PEER, query))
    assert info.value.code is ErrorCode.ALREADY_EXISTS
    over, _ = evaluation([sample_uscc(ME, i) for i in range(2)])
    with pytest.raises(CreditNetError, match="resets at") as info:
        run(holder.evaluate(PEER, over))
    assert info.value.code is ErrorCode.RESOURCE_EXHAUSTED
    assert usage(world) == 2
    assert [r.outcome for r in world.audit.recent()] == ["refused", "refused", "answered"]


def test_a_table_made_under_another_oprf_key_is_not_served_and_is_rebuilt(
    world: World,
) -> None:
    subject = world.add(1)
    holder = world.holder()
    run(holder.refresh())
    old = holder.header
    assert old is not None
    holder.close()
    world.oprf_key = OprfKey.generate()  # e.g. keys/oprf.key lost and created afresh
    again = world.holder()
    again.load()
    assert again.header is None  # its bins hold values no querier can obtain any more
    assert run(again.refresh()) is True
    assert again.header is not None and again.header.table_id != old.table_id
    query, blinded = evaluation([subject])
    [evaluated] = run(again.evaluate(PEER, query))
    probe = make_probe(again, [subject], values=[finalize(blinded[0], evaluated)])
    answer = run(again.probe(PEER, probe.query))
    found = read_answers(probe.plan, probe.secrets, probe.query.request_id, answer.answers)
    assert found == [("watch-list",)]


def test_the_peer_api_adapts_evaluate_subjects(world: World) -> None:
    subject = world.add(1)
    holder = world.holder()
    run(holder.refresh())
    api = Api(holder)
    blinded = blind(subject_key(subject))
    request = matching_pb2.EvaluateSubjectsRequest(
        request_id=secrets.token_bytes(16), blinded=[blinded.element]
    )
    request.sent_at.FromDatetime(NOW)
    response = run(api.EvaluateSubjects(request, cast(Any, FakeContext())))
    assert [finalize(blinded, e) for e in response.evaluated] == [
        oprf_key().value(subject_key(subject))
    ]
    bad = matching_pb2.EvaluateSubjectsRequest()
    bad.CopyFrom(request)
    bad.request_id = secrets.token_bytes(16)
    del bad.blinded[:]
    bad.blinded.append(b"\x00" * 31)
    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        run(api.EvaluateSubjects(bad, cast(Any, context)))
    assert context.aborted[0][0] is grpc.StatusCode.INVALID_ARGUMENT
    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        run(Api(None).EvaluateSubjects(request, cast(Any, context)))
    assert context.aborted[0][0] is grpc.StatusCode.UNAVAILABLE
