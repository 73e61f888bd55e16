"""The FNP baseline (bench/fnp.py) finds exactly the intersection, on small keys."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.fnp import (
    OVERFLOW_BOUND,
    FnpResult,
    _hash_into_bins,
    _overflow_probability,
    bin_capacity,
    item_value,
    measure_powmod_seconds,
    plan_bins,
    run_fnp,
)

KEY_BITS = 512

# A small alphabet so that the two sets overlap and repeat items often.
items = st.lists(st.text(alphabet="ab闽鲁", max_size=3), max_size=12)


def _check(holder: list[str], querier: list[str]) -> FnpResult:
    result = run_fnp(holder, querier, key_bits=KEY_BITS)
    assert result.intersection == set(holder) & set(querier)
    assert result.querier_items == len(set(querier))
    assert result.holder_items == len(set(holder))
    return result


@settings(max_examples=15, deadline=None)
@given(holder=items, querier=items)
def test_intersection_of_random_sets(holder: list[str], querier: list[str]) -> None:
    _check(holder, querier)


@pytest.mark.parametrize(
    ("holder", "querier"),
    [
        pytest.param([], [], id="both-empty"),
        pytest.param([], ["a", "b"], id="holder-empty"),
        pytest.param(["a", "b"], [], id="querier-empty"),
        pytest.param(["a", "b", "c"], ["c", "b", "a"], id="all-match"),
        pytest.param(["a", "b", "c"], ["d", "e"], id="none-match"),
        pytest.param(["a", "a", "b", "b"], ["b", "b", "c", "c"], id="duplicates"),
        pytest.param(["91350200MA2YJ1XR9G"], ["91350200MA2YJ1XR9G"], id="one-each"),
    ],
)
def test_intersection_of_edge_cases(holder: list[str], querier: list[str]) -> None:
    _check(holder, querier)


def test_many_bins_and_accounting() -> None:
    holder = [f"h{i}" for i in range(40)]
    querier = [f"h{i}" for i in range(25, 65)]
    result = _check(holder, querier)
    assert result.bins > 1
    cells = result.bins * (result.bin_capacity + 1)
    assert result.querier_encryptions == cells
    assert result.holder_full_exponentiations == 2 * 40
    assert result.full_exponentiations == cells + 80
    assert result.holder_short_exponentiations == 40 * result.bin_capacity
    assert result.querier_decryptions == 40
    width = 2 * KEY_BITS // 8  # one ciphertext, below n²
    assert result.bytes_holder_to_querier == 40 * width
    assert result.bytes_querier_to_holder > cells * width
    assert result.total_seconds == pytest.approx(
        result.querier_encrypt_seconds
        + result.holder_evaluate_seconds
        + result.querier_decrypt_seconds
    )


def test_query_size_does_not_depend_on_the_items() -> None:
    first = run_fnp(["x"], [f"a{i}" for i in range(40)], key_bits=KEY_BITS)
    second = run_fnp(["x"], [f"b{i}" for i in range(40)], key_bits=KEY_BITS, seed=7)
    assert first.bytes_querier_to_holder == second.bytes_querier_to_holder


def test_capacity_meets_the_overflow_bound() -> None:
    for size, bins in [(2000, 250), (10_000, 2098), (200, 42), (50, 1)]:
        capacity = bin_capacity(size, bins)
        assert _overflow_probability(size, bins, capacity) <= OVERFLOW_BOUND
        if bins > 1:
            assert _overflow_probability(size, bins, capacity - 1) > OVERFLOW_BOUND
    assert plan_bins(0, 10, 2048) == (1, 1)
    assert plan_bins(1_000_000, 100_000, 2048)[0] > 1


def test_rehashing_after_an_overflow_and_giving_up() -> None:
    values = {item_value(f"v{i}") for i in range(10)}
    salt, table = _hash_into_bins(values, 10, 2, random.Random(0))
    assert len(salt) == 16
    assert sorted(v for roots in table for v in roots) == sorted(values)
    assert max(len(roots) for roots in table) <= 2
    with pytest.raises(RuntimeError, match="overflowed"):
        _hash_into_bins(values, 1, 5, random.Random(0))


def test_small_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="key_bits"):
        run_fnp(["a"], ["a"], key_bits=256)


def test_measure_powmod_seconds() -> None:
    assert 0 < measure_powmod_seconds(bits=KEY_BITS, repeats=3) < 1
