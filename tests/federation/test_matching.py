"""The private-matching protocol (federation.matching), run in memory by both sides."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import random
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phe import paillier

from federation import matching
from federation.manifest import build_manifest
from federation.matching import (
    ANSWER_BYTES,
    CuckooIndex,
    HolderKey,
    MatchingError,
    OprfKey,
    TableFullError,
    TableHeader,
    TableLayout,
)
from federation.signing import SigningKey
from tests.federation.conftest import NOW, YEAR, make_city

KINDS = ("serious-dishonesty", "watch")


@functools.cache
def holder_key() -> HolderKey:
    _, private = paillier.generate_paillier_keypair(n_length=1024)
    return HolderKey.from_phe(private)


@functools.cache
def oprf_key() -> OprfKey:
    return OprfKey.generate()


def build_index(
    layout_for: Callable[[], TableLayout], subjects: Mapping[str, Iterable[str]], **kw: Any
) -> CuckooIndex:
    """The holder's index, its values from the holder's OPRF key."""
    return matching.build_index(layout_for, subjects, oprf_key().value, **kw)


def place(index: CuckooIndex, key: str) -> matching.Placement:
    return index.layout.locate(key, oprf_key().value(key))


def oprf_values(keys: Sequence[str]) -> list[int]:
    """The querier's values, through the OPRF round (blind, holder evaluates, finalize)."""
    blinded = [matching.blind(key) for key in keys]
    evaluated = matching.evaluate(oprf_key(), [b.element for b in blinded])
    return [matching.finalize(b, e) for b, e in zip(blinded, evaluated, strict=True)]


def plan_for(layout: TableLayout, keys: Sequence[str]) -> matching.ProbePlan:
    return matching.plan_probes(layout, keys, oprf_values(keys))


def small_layout(bins: int = 64, kinds: tuple[str, ...] = KINDS) -> TableLayout:
    return TableLayout(n=holder_key().n, seed=secrets.token_bytes(16), bins=bins, kinds=kinds)


def publish(index: CuckooIndex) -> list[int]:
    key = holder_key()
    return [key.encrypt(index.plaintext(b)) for b in range(index.layout.bins)]


def run(
    index: CuckooIndex,
    table: list[int],
    queries: list[str],
    *,
    rng: random.Random | None = None,
) -> tuple[list[tuple[str, ...]], list[bytes], matching.ProbePlan, matching.ProbeSecrets, bytes]:
    layout = index.layout
    plan = plan_for(layout, queries)
    residues = (matching.querier_nth_residue(layout.n) for _ in range(plan.ciphertexts))
    ciphertexts, secrets_ = matching.build_probes(plan, table.__getitem__, residues, rng=rng)
    request_id = secrets.token_bytes(16)
    answers = matching.answer_probes(holder_key(), layout, request_id, ciphertexts)
    return (
        matching.read_answers(plan, secrets_, request_id, answers),
        answers,
        plan,
        secrets_,
        request_id,
    )


def company(i: int) -> str:
    return f"91370200MA{i:08d}"


subject_sets = st.lists(st.integers(0, 60), max_size=25)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(holder=subject_sets, queries=subject_sets, kinds=st.data())
def test_membership_is_exact_for_random_sets(
    holder: list[int], queries: list[int], kinds: st.DataObject
) -> None:
    # Empty lists, all matching, none matching and duplicates on either side all come up.
    listed = {
        company(i): kinds.draw(st.sets(st.sampled_from(KINDS), min_size=1), label=f"kinds {i}")
        for i in holder
    }
    index = build_index(lambda: small_layout(), listed)
    found, *_ = run(index, publish(index), [company(i) for i in queries])
    assert [set(f) for f in found] == [listed.get(company(i), set()) for i in queries]


def test_a_full_table_still_matches_every_subject() -> None:
    layout = small_layout(bins=40)
    index = CuckooIndex(layout)
    capacity = index.capacity
    listed = {company(i): ["watch"] for i in range(capacity)}
    index = build_index(lambda: small_layout(bins=40), listed, tries=50)
    assert len(index) == capacity
    with pytest.raises(TableFullError):
        index.put(place(index, company(999)), ["watch"])
    found, *_ = run(index, publish(index), [*listed, company(1000)])
    assert found == [("watch",)] * capacity + [()]


def test_removal_and_kind_changes_touch_one_bin_and_stop_matching() -> None:
    listed = {company(i): ["serious-dishonesty"] for i in range(20)}
    index = build_index(lambda: small_layout(), listed)
    table = publish(index)
    assert index.put(place(index, company(3)), ["serious-dishonesty"]) == set()
    changed = index.put(place(index, company(3)), ["serious-dishonesty", "watch"])
    assert len(changed) == 1
    removed = index.discard(place(index, company(4)))
    assert len(removed) == 1
    assert index.discard(place(index, company(4))) == set()
    for b in changed | removed:
        table[b] = holder_key().encrypt(index.plaintext(b))
    found, *_ = run(index, table, [company(3), company(4), company(5)])
    assert found == [("serious-dishonesty", "watch"), (), ("serious-dishonesty",)]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=80))
def test_cuckoo_index_keeps_every_subject_in_one_of_its_bins(ops: list[tuple[bool, int]]) -> None:
    index = CuckooIndex(small_layout(bins=64))
    present: set[str] = set()
    for add, i in ops:
        if add:
            index.put(place(index, company(i)), ["watch"])
            present.add(company(i))
        else:
            index.discard(place(index, company(i)))
            present.discard(company(i))
    assert len(index) == len(present)
    seen = {}
    for b, occupant in index.occupants():
        assert b in occupant.bins
        seen[occupant.value] = b
    assert {oprf_key().value(key) for key in present} == set(seen)
    published = [index.plaintext(b) for b in range(64)]
    restored = CuckooIndex.from_json(index.to_json())
    assert [restored.plaintext(b) for b in range(64)] == published


def test_count_mode_reveals_the_number_of_hits_only() -> None:
    listed = {company(i): ["watch"] for i in range(0, 30, 3)}
    index = build_index(lambda: small_layout(), listed)
    queries = [company(i) for i in range(30)]
    _, answers, plan, secrets_, request_id = run(index, publish(index), queries)
    querier, holder = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    expected = matching.expected_digests(plan, secrets_, request_id)
    assert len(expected) == 3 * len(queries) * 3  # padded: a function of the batch size
    twice, own = matching.blind_for_count(
        holder, matching.blind_expected(querier, expected), answers
    )
    assert matching.count_hits(querier, twice, own) == 10
    assert len(own) == len(answers) * plan.layout.slots_per_ciphertext


def test_probe_counts_depend_on_the_batch_size_only() -> None:
    layout = small_layout(bins=4096)
    for size in (1, 2, 10, 100):
        counts = {
            plan_for(layout, [company(random.randrange(10**8)) for _ in range(size)]).ciphertexts
            for _ in range(20)
        }
        assert counts == {matching.ciphertexts_for(layout, size)}


def test_without_matches_the_querier_view_does_not_depend_on_the_list() -> None:
    """Two holders of equal size, disjoint lists, same querier randomness: every slot the
    querier did not probe answers the same digest of its own mask, every probed slot a digest
    it cannot tie to any value it could guess (no hit, for any kinds), and all sizes agree."""
    queries = [company(i) for i in range(500, 520)]
    views = []
    for holder in (range(0, 40), range(100, 140)):
        seed = secrets.token_bytes(16)
        listed = {company(i): list(KINDS[: 1 + i % 2]) for i in holder}
        layout = TableLayout(n=holder_key().n, seed=seed, bins=64, kinds=KINDS)
        index = CuckooIndex(layout)
        for key, kinds in listed.items():
            index.put(place(index, key), kinds)
        found, answers, plan, secrets_, request_id = run(
            index, publish(index), queries, rng=random.Random(7)
        )
        assert found == [()] * len(queries)
        views.append((answers, plan, secrets_, request_id))
    (a1, p1, *_), (a2, p2, *_) = views
    assert p1.ciphertexts == p2.ciphertexts and len(a1) == len(a2)
    assert {len(a) for a in a1 + a2} == {p1.layout.slots_per_ciphertext * ANSWER_BYTES}
    for answers, plan, secrets_, request_id in views:
        probed = {(p.ciphertext, p.slot) for p in plan.probes}
        for j, answer in enumerate(answers):
            for s in range(plan.layout.slots_per_ciphertext):
                got = answer[s * ANSWER_BYTES : (s + 1) * ANSWER_BYTES]
                mask = secrets_.masks[j][s]
                if (j, s) not in probed:
                    assert got == matching.slot_digest(request_id, j, s, mask)
                else:
                    guesses = {
                        matching.slot_digest(request_id, j, s, mask + extra)
                        for extra in range(-4, 5)
                    } | {
                        matching.slot_digest(
                            request_id, j, s, mask + (1 << matching.VALUE_BITS) + (m << 97)
                        )
                        for m in range(4)
                    }
                    assert got not in guesses


def test_the_holder_sees_uniform_slots_whatever_the_querier_asks() -> None:
    """The top bits of every decrypted slot are spread evenly, hits or not."""
    listed = {company(i): ["watch"] for i in range(20)}
    index = build_index(lambda: small_layout(), listed)
    table = publish(index)
    layout = index.layout
    for queries in ([company(i) for i in range(20)], [company(i) for i in range(1000, 1020)]):
        plan = plan_for(layout, queries)
        residues = [matching.querier_nth_residue(layout.n) for _ in range(plan.ciphertexts)]
        ciphertexts, _ = matching.build_probes(plan, table.__getitem__, residues)
        buckets = [0] * 4
        for c in ciphertexts:
            plain = holder_key().decrypt(c)
            for s in range(layout.slots_per_ciphertext):
                slot = plain >> (layout.slot_bits * s) & ((1 << layout.slot_bits) - 1)
                buckets[slot >> (layout.slot_bits - 3)] += 1
        total = sum(buckets)
        # The mask is uniform below 2^(slot_bits - 1): the top bit is never set (a bucket
        # index above 3 would fail) and the next two bits split the slots into even quarters.
        assert total == plan.ciphertexts * layout.slots_per_ciphertext
        assert all(abs(b / total - 0.25) < 0.1 for b in buckets), buckets


# -- bad input --------------------------------------------------------------------------


def test_the_holder_refuses_malformed_ciphertexts() -> None:
    layout = small_layout()
    key = holder_key()
    rid = secrets.token_bytes(16)
    for bad in (0, layout.n_square, layout.n_square + 5, layout.n * 3):
        with pytest.raises(MatchingError, match="out of range"):
            matching.answer_probes(key, layout, rid, [bad])
    too_big = key.encrypt(1 << (layout.slot_bits * layout.slots_per_ciphertext))
    with pytest.raises(MatchingError, match="decrypts out of range"):
        matching.answer_probes(key, layout, rid, [too_big])


def test_a_probe_under_another_key_reads_as_no_hit() -> None:
    listed = {company(1): ["watch"]}
    index = build_index(lambda: small_layout(), listed)
    table = publish(index)
    _, other = paillier.generate_paillier_keypair(n_length=1024)
    plan = plan_for(index.layout, [company(1)])
    residues = [matching.querier_nth_residue(index.layout.n) for _ in range(plan.ciphertexts)]
    ciphertexts, secrets_ = matching.build_probes(plan, table.__getitem__, residues)
    rid = secrets.token_bytes(16)
    wrong = HolderKey.from_phe(other)
    try:
        answers = matching.answer_probes(wrong, index.layout, rid, ciphertexts)
    except MatchingError:
        return  # refused as out of range: also fine
    assert matching.read_answers(plan, secrets_, rid, answers) == [()]


def test_answers_that_do_not_fit_the_request_are_refused() -> None:
    index = build_index(lambda: small_layout(), {company(1): ["watch"]})
    found, answers, plan, secrets_, rid = run(index, publish(index), [company(1)])
    assert found == [("watch",)]
    with pytest.raises(MatchingError):
        matching.read_answers(plan, secrets_, rid, answers[:-1])
    with pytest.raises(MatchingError):
        matching.read_answers(plan, secrets_, rid, [a[:-1] for a in answers])
    # Answers for another request id never read as hits.
    assert matching.read_answers(plan, secrets_, secrets.token_bytes(16), answers) == [()]


def test_count_mode_refuses_bad_points() -> None:
    with pytest.raises(MatchingError):
        matching.blind_for_count(X25519PrivateKey.generate(), [b"\x00" * 31], [])
    with pytest.raises(MatchingError):
        matching.blind_for_count(X25519PrivateKey.generate(), [b"\x00" * 32], [])


@pytest.mark.parametrize(
    "layout",
    [
        {},
        {"n": "zz", "seed": "00" * 16, "bins": 10, "kinds": ["watch"]},
        {"n": "f" * 300, "seed": "00" * 15, "bins": 10, "kinds": ["watch"]},
        {"n": "f" * 300, "seed": "00" * 16, "bins": True, "kinds": ["watch"]},
        {"n": "f" * 300, "seed": "00" * 16, "bins": 10, "kinds": []},
        {"n": "f" * 300, "seed": "00" * 16, "bins": 10, "kinds": ["a", "a"]},
        {"n": "f" * 300, "seed": "00" * 16, "bins": 1, "kinds": ["watch"]},
        {"n": "ff", "seed": "00" * 16, "bins": 10, "kinds": ["watch"]},
    ],
)
def test_bad_layouts_are_refused(layout: dict[str, object]) -> None:
    with pytest.raises(MatchingError):
        TableLayout.from_json(layout)


def test_layout_refuses_unknown_kinds() -> None:
    with pytest.raises(MatchingError, match="not covered"):
        small_layout().kind_mask(["red-list"])


def _header(layout: TableLayout, holder: str = "370200", **changes: object) -> TableHeader:
    values: dict[str, object] = {
        "holder": holder,
        "table_id": secrets.token_hex(16),
        "epoch": 1,
        "layout": layout,
        "digest": bytes(32),
        "issued_at": dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
    }
    values.update(changes)
    return TableHeader(**values)  # type: ignore[arg-type]


def test_header_round_trip_and_malformations() -> None:
    header = _header(small_layout())
    assert TableHeader.from_bytes(header.to_bytes()) == header
    with pytest.raises(MatchingError):
        _header(small_layout(), epoch=0)
    with pytest.raises(MatchingError):
        _header(small_layout(), table_id="x")
    for junk in (b"", b"{}", b"[1]", header.to_bytes().replace(b'"epoch":1', b'"epoch":"1"')):
        with pytest.raises(MatchingError) as info:
            TableHeader.from_bytes(junk)
        assert info.value.message


def test_header_verification_fails_closed() -> None:
    cities = {code: make_city(code) for code in ("370200", "370600", "370700")}
    cities["370200"] = dataclasses.replace(
        cities["370200"],
        member=dataclasses.replace(cities["370200"].member, paillier_n=holder_key().n),
    )
    manifest = build_manifest(
        federation_id="jiaodong",
        federation_name="胶东经济圈",
        members=[c.member for c in cities.values()],
        threshold=2,
        expires=NOW + YEAR,
    )
    keys = {code: city.key for code, city in cities.items()}
    paillier_n = {code: city.member.paillier_n for code, city in cities.items()}
    now = NOW
    layout = TableLayout(n=paillier_n["370200"], seed=bytes(16), bins=64, kinds=KINDS)
    header = _header(layout, issued_at=now)
    data, signature = matching.sign_table_header(header, keys["370200"])
    assert matching.verify_table_header(data, signature, manifest, now=now) == header
    _, other_signature = matching.sign_table_header(header, keys["370600"])
    with pytest.raises(MatchingError, match="signature"):
        matching.verify_table_header(data, other_signature, manifest, now=now)
    stranger = SigningKey.generate()
    with pytest.raises(MatchingError, match="signature"):
        matching.verify_table_header(data, stranger.sign(data), manifest, now=now)
    wrong_key = _header(
        TableLayout(n=paillier_n["370600"], seed=bytes(16), bins=64, kinds=KINDS), issued_at=now
    )
    with pytest.raises(MatchingError, match="Paillier key"):
        matching.verify_table_header(
            *matching.sign_table_header(wrong_key, keys["370200"]), manifest, now=now
        )
    outsider = _header(layout, holder="370100", issued_at=now)
    with pytest.raises(MatchingError, match="not a federation member"):
        matching.verify_table_header(
            *matching.sign_table_header(outsider, keys["370200"]), manifest, now=now
        )
    future = _header(layout, issued_at=now + dt.timedelta(hours=1))
    with pytest.raises(MatchingError, match="future"):
        matching.verify_table_header(
            *matching.sign_table_header(future, keys["370200"]), manifest, now=now
        )
