"""The timed loop of bench/reports.py: how its rates are counted."""

from __future__ import annotations

import itertools

from bench.common import cpu_steal_jiffies
from bench.reports import Loop


def test_rates_over_every_round_and_in_the_fastest_round() -> None:
    loop = Loop(calls=300, seconds=2.0, round_rates=[100.0, 250.0, 120.0])
    assert loop.per_s == 150.0
    assert loop.best_per_s == 250.0


def test_a_run_adds_one_round_of_whole_batches() -> None:
    counter = itertools.count()
    loop = Loop()
    loop.run(lambda: next(counter), 0.01)
    loop.run(lambda: next(counter), 0.01)
    assert len(loop.round_rates) == 2
    assert loop.calls == next(counter) and loop.calls % 8 == 0
    assert loop.seconds >= 0.02
    assert loop.best_per_s == max(loop.round_rates) >= loop.per_s


def test_steal_is_read_from_proc_stat() -> None:
    # The nodes run on Linux (Debian); /proc/stat is always there.
    first = cpu_steal_jiffies()
    assert isinstance(first, int) and first >= 0
    second = cpu_steal_jiffies()
    assert second is not None and second >= first
