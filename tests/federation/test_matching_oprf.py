"""The subject value as an oblivious PRF (federation.matching): correctness, refusals, and
the reviewer's offline dictionary attack on no-hit answers (docs/private-matching.md)."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import random
import secrets
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phe import paillier

from federation import matching
from federation.matching import (
    ANSWER_BYTES,
    OPRF_ORDER,
    PROTOCOL_LABEL,
    VALUE_BITS,
    HolderKey,
    MatchingError,
    OprfKey,
    TableLayout,
)


@functools.cache
def oprf_key() -> OprfKey:
    return OprfKey.generate()


@functools.cache
def holder_key() -> HolderKey:
    _, private = paillier.generate_paillier_keypair(n_length=1024)
    return HolderKey.from_phe(private)


def oprf_round(key: OprfKey, subjects: Sequence[str]) -> list[int]:
    blinded = [matching.blind(s) for s in subjects]
    evaluated = matching.evaluate(key, [b.element for b in blinded])
    return [matching.finalize(b, e) for b, e in zip(blinded, evaluated, strict=True)]


# -- correctness ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(subject=st.text(min_size=1, max_size=40), scalar=st.integers(1, OPRF_ORDER - 1))
def test_the_blinded_round_gives_the_holders_direct_value(subject: str, scalar: int) -> None:
    key = oprf_key()
    blinded = matching.blind(subject, scalar=scalar)
    [evaluated] = matching.evaluate(key, [blinded.element])
    assert matching.finalize(blinded, evaluated) == key.value(subject)
    # a and -a give the same x-coordinate: the points a·H(x) and -a·H(x) are each other's
    # negation, and either decodes (prefix 02) to a point that finalises to the same value.
    negated = matching.blind(subject, scalar=OPRF_ORDER - scalar)
    assert negated.element == blinded.element
    [again] = matching.evaluate(key, [negated.element])
    assert matching.finalize(negated, again) == key.value(subject)


def test_values_are_96_bits_keyed_and_independent_of_the_table_seed() -> None:
    a, b = OprfKey.generate(), OprfKey.generate()
    subjects = [f"91370200MA{i:08d}" for i in range(50)]
    values = [a.value(s) for s in subjects]
    assert all(0 <= v < 1 << VALUE_BITS for v in values)
    assert len(set(values)) == len(values)
    assert all(a.value(s) != b.value(s) for s in subjects)
    assert oprf_round(a, subjects) == values
    # The key survives its file form; its fingerprint names it without revealing it.
    restored = OprfKey.from_pem(a.to_pem())
    assert restored.value(subjects[0]) == values[0]
    assert restored.fingerprint() == a.fingerprint() != b.fingerprint()


def test_blinded_values_look_unrelated_to_the_subject() -> None:
    # Two blindings of one subject differ; the holder cannot link them to each other.
    first, second = matching.blind("x"), matching.blind("x")
    assert first.element != second.element and len(first.element) == 32


def _not_on_curve() -> bytes:
    for i in range(1000):
        candidate = hashlib.sha256(i.to_bytes(4, "big")).digest()
        try:
            matching.check_blinded([candidate])
        except MatchingError:
            return candidate
    raise AssertionError("no off-curve x found")


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x01" * 31, b"\x01" * 33, b"\xff" * 32, _not_on_curve()],
    ids=["empty", "short", "long", "above-p", "off-curve"],
)
def test_bad_blinded_values_are_refused(bad: bytes) -> None:
    good = matching.blind("x").element
    with pytest.raises(MatchingError):
        matching.evaluate(oprf_key(), [good, bad])
    with pytest.raises(MatchingError):
        matching.check_blinded([bad])
    with pytest.raises(MatchingError):
        matching.finalize(matching.blind("x"), bad)


def test_a_bad_key_file_is_refused() -> None:
    with pytest.raises(MatchingError):
        OprfKey.from_pem(b"not a key")
    with pytest.raises(MatchingError):
        OprfKey(0)
    with pytest.raises(MatchingError):
        OprfKey(OPRF_ORDER)


# -- the reviewer's dictionary attack (/tmp/rev_match/dict_attack.py) -----------------------

_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
_CHECK = "10X98765432"


def resident_id(region: str, day: dt.date, sequence: int) -> str:
    body = f"{region}{day:%Y%m%d}{sequence:03d}"
    return body + _CHECK[sum(int(a) * w for a, w in zip(body, _WEIGHTS, strict=True)) % 11]


def public_value(layout: TableLayout) -> Callable[[str], int]:
    """The old subject hash: SHA-512(label/locate || seed || x), computable by anyone."""

    def value(subject: str) -> int:
        digest = hashlib.sha512(
            PROTOCOL_LABEL + b"/locate" + layout.seed + subject.encode()
        ).digest()
        return int.from_bytes(digest[: VALUE_BITS // 8], "big")

    return value


def dictionary_attack(
    value_for_layout: Callable[[TableLayout], Callable[[str], int]],
    searcher_value: Callable[[TableLayout], Callable[[str], int]],
) -> tuple[set[str], set[str]]:
    """A holder lists 150 people of a low-entropy universe; a querier sends honest probes
    for 30 people listed nowhere and then, offline, tests every candidate identifier whose
    candidate bins were probed against the no-hit answers. Returns (recovered, listed)."""
    rng = random.Random(5)
    universe = [
        resident_id("110105", dt.date(1990, 1, 1) + dt.timedelta(days=d), s)
        for d in range(10)
        for s in range(200)
    ]
    listed = set(rng.sample(universe, 150))
    key = holder_key()
    layout = matching.new_layout(key.n, ("watch",), len(listed))
    holder_value = value_for_layout(layout)
    index = matching.CuckooIndex(layout)
    for y in sorted(listed):
        index.put(layout.locate(y, holder_value(y)), ["watch"])
    residue = key.random_nth_residue()  # test-only: one r^n for every bin, for speed
    table = [key.encrypt(index.plaintext(b), residue) for b in range(layout.bins)]

    mine = [resident_id("440305", dt.date(1985, 5, 1) + dt.timedelta(days=d), 7) for d in range(30)]
    values = [holder_value(x) for x in mine]  # what the honest round gives
    plan = matching.plan_probes(layout, mine, values)
    residues = [matching.querier_nth_residue(layout.n) for _ in range(plan.ciphertexts)]
    ciphertexts, probe_secrets = matching.build_probes(plan, table.__getitem__, residues)
    request_id = secrets.token_bytes(16)
    answers = matching.answer_probes(key, layout, request_id, ciphertexts)
    assert matching.read_answers(plan, probe_secrets, request_id, answers) == [()] * len(mine)

    # Offline: candidate bins are public (the seed is in the signed header).
    by_bin: dict[int, list[str]] = {}
    for y in universe:
        for b in layout.candidate_bins(y):
            by_bin.setdefault(b, []).append(y)
    guess = searcher_value(layout)
    one = 1 << VALUE_BITS
    recovered: set[str] = set()
    for probe in plan.probes:
        j, s = probe.ciphertext, probe.slot
        got = answers[j][s * ANSWER_BYTES : (s + 1) * ANSWER_BYTES]
        base = one - plan.values[probe.subject] + probe_secrets.masks[j][s]
        for y in by_bin.get(probe.bin, []):
            content = guess(y) + (1 << (VALUE_BITS + 1)) + base
            if matching.slot_digest(request_id, j, s, content) == got:
                recovered.add(y)
    return recovered, listed


def test_no_hit_answers_no_longer_name_listed_people_offline() -> None:
    """With v an OPRF under the holder's key, the querier's offline search finds no one."""
    key = oprf_key()

    def keyed(_layout: TableLayout) -> Callable[[str], int]:
        return key.value

    # The searcher's best offline guess without k: the public hash (the old v), and a
    # different key of its own.
    recovered, _ = dictionary_attack(keyed, public_value)
    assert recovered == set()
    own = OprfKey.generate()
    recovered, _ = dictionary_attack(keyed, lambda _layout: own.value)
    assert recovered == set()


def test_the_search_is_effective_when_the_searcher_can_compute_v() -> None:
    """The same search does recover listed people when v is computable: with the OPRF key
    handed to the searcher, and with the old public hash (the flaw this change closes)."""
    key = oprf_key()

    def keyed(_layout: TableLayout) -> Callable[[str], int]:
        return key.value

    recovered, listed = dictionary_attack(keyed, keyed)
    assert recovered and recovered <= listed
    recovered, listed = dictionary_attack(public_value, public_value)
    assert recovered and recovered <= listed
