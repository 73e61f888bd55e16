"""Private-matching benchmark: this project's protocol against OpenMined's ECDH-PSI and a
plain FNP, in one run, on the same sets, on this machine.

``python -m bench.matching`` (full: 100,000-entry lists, a 10,000-subject batch) or
``--quick`` (2,000 and 200: under a minute plus the one-time openmined venv). Writes
``bench/results/matching.json``. What is measured (docs/private-matching.md has the
protocol and its cost model):

- **batch**: a holder with N entries builds its encrypted table (offline, process pool);
  the querier precomputes its randomisers (offline, process pool); then the online part:
  the OPRF round (querier blinds, holder evaluates, querier unblinds: one thread each),
  probes built, answered by the holder (decryptions in the process pool), read. Bytes are
  the probe ciphertexts and the answers. The holder and the querier share this machine's
  two cores, as they would share nothing in production: the online wall time is therefore
  an upper bound.
- **openmined**: ``openmined-psi`` on the same holder list and batch, in its own venv
  (``bench/openmined.py``); its online time is request + process + intersection.
- **fnp**: FNP on ``phe`` (``bench/fnp.py``) on a scaled-down pair of sets; its cost grows
  with the holder's list for every query, so it is extrapolated linearly to N (holder work
  and querier decryptions scale with N; the querier's encryption with the batch).
- **one subject**: five real node processes on loopback; Rizhao checks one subject with
  ``MatchOne`` against four holders of N watch-list entries each (their own keys and
  tables, built at start-up), all four asked in parallel by the node, timed at the client.
- **efficiency**: the protocol's own count of exponentiations (full: 2048-bit exponent mod
  n²; half: 1024-bit mod p² — two per CRT decryption or CRT randomiser) times this
  machine's measured cost of each on one core, divided by the cores, over the measured time.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gmpy2
from phe import paillier

from bench.common import (
    RESULTS_DIR,
    BenchmarkFailedError,
    Stopwatch,
    format_figures,
    interrupt_on_termination,
    machine_info,
    peak_rss_mb,
    percentile,
    say,
    write_results,
)
from bench.fnp import measure_powmod_seconds, run_fnp
from bench.openmined import run_openmined
from bench.sync import NodeLogs, form, populate, wait_until
from federation import matching
from federation.clock import CHINA_TZ, SystemClock
from federation.matching import HolderKey, TableLayout
from federation.presets import preset
from federation.sanctions import ListKind
from node.client import NodeClient
from node.demo import start, stop
from node.matching.pool import MatchingPool
from node.samples import sample_uscc

KINDS = ("watch-list",)
PACE_S = 0.5
WARM_RESIDUES = 30  # of the default pool of 32 per holder
TABLES_TIMEOUT_S = 3600.0
TARGETS = {
    "one_subject_p95_ms": ("<=", 300),
    "batch_online_ratio_vs_openmined": ("<=", 5),
    "per_item_speedup_vs_fnp": (">=", 50),
    "efficiency_vs_powmod_limit": (">", 0.5),
}


def judge(figures: dict[str, Any]) -> dict[str, Any]:
    verdicts = {}
    for name, (op, limit) in TARGETS.items():
        value = figures[name]
        passed = {"<=": value <= limit, ">=": value >= limit, ">": value > limit}[op]
        verdicts[name] = {"value": value, "target": f"{op} {limit}", "pass": passed}
    return verdicts


@dataclasses.dataclass(frozen=True)
class Settings:
    holder_entries: int
    node_holder_entries: int
    batch: int
    overlap: float
    fnp_holder: int
    fnp_querier: int
    one_subject_rounds: int
    key_bits: int
    output: Path
    quick: bool


def company(i: int) -> str:
    return f"91370000MA{i:08d}"


def sets(settings: Settings) -> tuple[list[str], list[str], set[str]]:
    """The holder's list and the querier's batch, with ``overlap`` of the batch listed."""
    rng = random.Random(20261202)
    holder = [company(i) for i in range(settings.holder_entries)]
    hits = round(settings.batch * settings.overlap)
    listed = rng.sample(holder, hits)
    others = [company(settings.holder_entries + i) for i in range(settings.batch - hits)]
    batch = listed + others
    rng.shuffle(batch)
    return holder, batch, set(listed)


def measure_half_powmod_seconds(key: HolderKey, repeats: int = 40) -> float:
    """Median seconds of one ``c^(p-1) mod p^2`` (half of a CRT decryption), one core."""
    p2 = key.p * key.p
    times = []
    for _ in range(repeats):
        base = gmpy2.mpz(secrets.randbelow(p2))
        start = time.perf_counter()
        gmpy2.powmod(base, key.p - 1, p2)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def build_table(
    pool: MatchingPool, key: HolderKey, oprf_key: matching.OprfKey, holder: Sequence[str]
) -> tuple[TableLayout, list[int]]:
    index = matching.build_index(
        lambda: matching.new_layout(key.n, KINDS, len(holder)),
        {h: KINDS for h in holder},
        oprf_key.value,
    )
    plaintexts = [index.plaintext(b) for b in range(index.layout.bins)]
    return index.layout, await pool.encrypt(key, plaintexts)


async def batch_run(
    pool: MatchingPool,
    key: HolderKey,
    oprf_key: matching.OprfKey,
    layout: TableLayout,
    table: list[int],
    batch: Sequence[str],
    watch: Stopwatch,
) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
    # The number of probe ciphertexts depends on the bins only, not on the values.
    plan = matching.plan_probes(layout, batch, [0] * len(batch))
    with watch.phase("batch_offline_querier"):
        residues = await pool.querier_residues(layout.n, plan.ciphertexts)
    request_id = secrets.token_bytes(16)
    with watch.phase("batch_online"):
        started = time.monotonic()
        blinded = [matching.blind(subject) for subject in batch]
        evaluated = matching.evaluate(oprf_key, [b.element for b in blinded])
        values = [matching.finalize(b, e) for b, e in zip(blinded, evaluated, strict=True)]
        evaluated_at = time.monotonic()
        plan = matching.plan_probes(layout, batch, values)
        ciphertexts, secrets_ = matching.build_probes(plan, table.__getitem__, residues)
        built = time.monotonic()
        answers = await pool.answer(key, layout, request_id, ciphertexts)
        answered = time.monotonic()
        found = matching.read_answers(plan, secrets_, request_id, answers)
        done = time.monotonic()
    width = layout.ciphertext_bytes
    return found, {
        "probe_ciphertexts": plan.ciphertexts,
        "slots_per_ciphertext": layout.slots_per_ciphertext,
        "oprf_round_s": round(evaluated_at - started, 3),
        "querier_build_s": round(built - evaluated_at, 3),
        "holder_answer_s": round(answered - built, 3),
        "querier_read_s": round(done - answered, 3),
        "bytes_up": len(ciphertexts) * width + 16 + 64 + 32 * len(batch) + 16 + 12,
        "bytes_down": sum(len(a) for a in answers) + 32 * len(batch),
    }


def one_subject_via_nodes(settings: Settings, root: Path) -> tuple[list[float], dict[str, Any]]:
    """Latencies (ms) of ``MatchOne`` at Rizhao against four holders of N watch-list entries.

    Five real node processes on loopback (2048-bit Paillier keys); the four holders record
    their entries beforehand (untimed) and build their tables at start-up; the clock runs
    from the client's call to its answer. Checks alternate between a subject listed at one
    holder (it must hit there and nowhere else) and one listed nowhere; a clerk's pace (one
    check every ``PACE_S``) leaves the querier idle time to precompute its randomisers, as
    the protocol intends.
    """
    cities = [city.code for city in preset("jiaodong").cities]
    holders, querier_city = cities[:4], cities[4]
    nodes, _ = form(root, cities, 3, paillier_bits=settings.key_bits)
    logs = NodeLogs(nodes)
    day = (SystemClock().now().astimezone(CHINA_TZ) - dt.timedelta(days=30)).date()
    by_city = {n.member.city_code: n for n in nodes}
    entries = settings.node_holder_entries
    for city in holders:
        say(f"  {city} records {entries:,} watch-list entries (untimed)")
        populate(by_city[city], entries, kind=ListKind.WATCH_LIST, day=day)
    bins = matching.bins_for(matching.capacity_for(entries))
    details: dict[str, Any] = {}
    try:
        for node in nodes:
            start(node)
        querier = NodeClient(by_city[querier_city].config, timeout_s=30.0)

        def tables_ready() -> bool:
            # Every holder's table held, and the randomisers for it precomputed (idle time).
            held = {
                t.city_code: (t.bins, t.pooled_residues)
                for t in querier.matching_status().tables
                if t.city_code != querier_city
            }
            return all(
                held.get(city, (0, 0))[0] == bins and held[city][1] >= WARM_RESIDUES
                for city in holders
            )

        took = wait_until(
            f"{querier_city} holds the four tables of {bins:,} bins",
            tables_ready,
            nodes,
            logs,
            timeout_s=TABLES_TIMEOUT_S,
        )
        details["tables_ready_s"] = round(took, 1)
        say(f"  {querier_city} holds all four tables after {took:.0f}s; checking")
        rng = random.Random(11)
        latencies: list[float] = []
        time.sleep(PACE_S * 4)
        for i in range(settings.one_subject_rounds):
            holder = holders[i % len(holders)]
            listed = i % 2 == 0
            serial = rng.randrange(entries) if listed else 10**6 + i
            subject = sample_uscc(holder, serial)
            started = time.monotonic()
            answer = querier.match_one(subject)
            latencies.append((time.monotonic() - started) * 1000)
            hits = {c.city_code for c in answer.cities if c.outcome == c.OUTCOME_HIT}
            answered = {c.city_code for c in answer.cities}
            if answered != set(holders) or hits != ({holder} if listed else set()):
                raise BenchmarkFailedError(
                    f"MatchOne answered {sorted(answered)} with hits {sorted(hits)} "
                    f"(expected a hit at {holder if listed else 'no city'})"
                )
            time.sleep(PACE_S)
        details["querier_peak_rss_mb"] = peak_rss_mb(by_city[querier_city].process.pid)  # type: ignore[union-attr]
        querier.close()
        return latencies, details
    finally:
        stop(nodes)


def fnp_figures(settings: Settings) -> dict[str, Any]:
    rng = random.Random(7)
    holder = [company(i) for i in range(settings.fnp_holder)]
    querier = rng.sample(holder, settings.fnp_querier // 10) + [
        company(10**7 + i) for i in range(settings.fnp_querier - settings.fnp_querier // 10)
    ]
    result = run_fnp(holder, querier, key_bits=settings.key_bits)
    if len(result.intersection) != settings.fnp_querier // 10:
        raise BenchmarkFailedError("FNP found the wrong intersection")
    scale = settings.holder_entries / settings.fnp_holder
    extrapolated = result.querier_encrypt_seconds + scale * (
        result.holder_evaluate_seconds + result.querier_decrypt_seconds
    )
    return {
        "holder_items": settings.fnp_holder,
        "querier_items": settings.fnp_querier,
        "measured_total_s": round(result.total_seconds, 3),
        "querier_encrypt_s": round(result.querier_encrypt_seconds, 3),
        "holder_evaluate_s": round(result.holder_evaluate_seconds, 3),
        "querier_decrypt_s": round(result.querier_decrypt_seconds, 3),
        "extrapolated_to_holder_entries": settings.holder_entries,
        "extrapolated_total_s": round(extrapolated, 1),
        "extrapolated_per_querier_item_s": extrapolated / settings.fnp_querier,
        "full_exponentiations": result.full_exponentiations,
        "bytes": result.bytes_querier_to_holder + result.bytes_holder_to_querier,
    }


async def run(settings: Settings) -> dict[str, Any]:
    watch = Stopwatch()
    cores = os.cpu_count() or 1
    holder, batch, listed = sets(settings)
    say(f"generating a {settings.key_bits}-bit Paillier key")
    _, private = paillier.generate_paillier_keypair(n_length=settings.key_bits)
    key = HolderKey.from_phe(private)
    oprf_key = matching.OprfKey.generate()
    full_s = measure_powmod_seconds(settings.key_bits)
    half_s = measure_half_powmod_seconds(key)
    say(f"powmod on one core: full {full_s * 1000:.2f} ms, half {half_s * 1000:.2f} ms")

    pool = MatchingPool()
    try:
        say(f"holder builds its table of {len(holder):,} entries (offline)")
        with watch.phase("batch_offline_holder"):
            layout, table = await build_table(pool, key, oprf_key, holder)
        say(f"querier screens {len(batch):,} subjects")
        found, batch_details = await batch_run(pool, key, oprf_key, layout, table, batch, watch)
    finally:
        pool.close()
    got = {subject for subject, kinds in zip(batch, found, strict=True) if kinds}
    if got != listed:
        raise BenchmarkFailedError(
            f"the batch found {len(got)} hits, {len(got ^ listed)} wrong (expected {len(listed)})"
        )
    say(f"batch: {len(got)} hits, all correct")

    say(f"one subject against 4 holders of {settings.node_holder_entries:,} entries: real nodes")
    with tempfile.TemporaryDirectory(prefix="bench-matching-") as root:
        latencies, node_details = await asyncio.to_thread(
            one_subject_via_nodes, settings, Path(root)
        )

    say("openmined-psi on the same sets")
    openmined = run_openmined(holder, batch, reveal_intersection=True)
    if int(openmined["intersection_size"]) != len(listed):
        raise BenchmarkFailedError("openmined-psi found the wrong intersection size")

    say(f"FNP on {settings.fnp_querier} vs {settings.fnp_holder} items (scaled down)")
    fnp = fnp_figures(settings)

    bins, cts = layout.bins, batch_details["probe_ciphertexts"]
    holder_offline_s = watch.phases["batch_offline_holder"]
    querier_offline_s = watch.phases["batch_offline_querier"]
    online_s = watch.phases["batch_online"]
    limits = {
        # Two half-size exponentiations per CRT randomiser (holder) or decryption (holder).
        "holder_offline": 2 * bins * half_s / cores,
        "querier_offline": cts * full_s / cores,
        "online": 2 * cts * half_s / cores,
    }
    ours_per_item = (querier_offline_s + online_s) / len(batch)
    figures: dict[str, Any] = {
        "holder_entries": len(holder),
        "batch_subjects": len(batch),
        "key_bits": settings.key_bits,
        "one_subject_holder_entries": settings.node_holder_entries,
        "one_subject_p50_ms": round(percentile(latencies, 50), 1),
        "one_subject_p95_ms": round(percentile(latencies, 95), 1),
        "batch_online_s": online_s,
        "batch_offline_s": round(holder_offline_s + querier_offline_s, 3),
        "batch_offline_holder_table_s": holder_offline_s,
        "batch_offline_querier_s": querier_offline_s,
        "batch_bytes": batch_details["bytes_up"] + batch_details["bytes_down"],
        "table_bytes": bins * layout.ciphertext_bytes,
        "openmined_online_s": round(float(openmined["online_seconds"]), 3),
        "openmined_setup_s": round(float(openmined["server_setup_seconds"]), 3),
        "openmined_bytes": int(openmined["setup_bytes"])
        + int(openmined["request_bytes"])
        + int(openmined["response_bytes"]),
        "batch_online_ratio_vs_openmined": round(online_s / float(openmined["online_seconds"]), 2),
        "fnp_per_item_s": round(fnp["extrapolated_per_querier_item_s"], 3),
        "per_item_s": round(ours_per_item, 5),
        "per_item_speedup_vs_fnp": round(fnp["extrapolated_per_querier_item_s"] / ours_per_item),
        "efficiency_vs_powmod_limit": round(limits["online"] / online_s, 2),
        "efficiency_offline_querier": round(limits["querier_offline"] / querier_offline_s, 2),
        "efficiency_offline_holder": round(limits["holder_offline"] / holder_offline_s, 2),
    }
    figures["targets"] = judge(figures)
    details = {
        "batch": batch_details,
        "openmined": openmined,
        "fnp": fnp,
        "powmod": {"full_ms": full_s * 1000, "half_ms": half_s * 1000, "cores": cores},
        "limits_s": limits,
        "one_subject_ms": [round(x, 1) for x in latencies],
        "one_subject_nodes": node_details,
        "table": {"bins": bins, "slots_per_ciphertext": layout.slots_per_ciphertext},
    }
    return {"figures": figures, "details": details, "phases": watch.phases}


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m bench.matching", description="Private-matching benchmark."
    )
    parser.add_argument("--quick", action="store_true", help="small sets (under a minute)")
    parser.add_argument("--entries", type=int, help="holder list size (default 100,000)")
    parser.add_argument("--batch", type=int, help="subjects screened (default 10,000)")
    parser.add_argument(
        "--node-entries",
        type=int,
        help="entries of each of the four holder nodes in the one-subject run (default: --entries)",
    )
    parser.add_argument("--output", type=Path, help="results file (default bench/results/)")
    args = parser.parse_args(argv)
    quick = args.quick
    entries = args.entries or (1_000 if quick else 100_000)
    batch = args.batch or (200 if quick else 10_000)
    if entries < 100 or batch < 10:
        parser.error("--entries must be at least 100 and --batch at least 10")
    output = args.output or RESULTS_DIR / ("matching-quick.json" if quick else "matching.json")
    return Settings(
        holder_entries=entries,
        node_holder_entries=args.node_entries or entries,
        batch=batch,
        overlap=0.1,
        fnp_holder=200 if quick else 2_000,
        fnp_querier=20 if quick else 200,
        one_subject_rounds=20 if quick else 100,
        key_bits=2048,
        output=output,
        quick=quick,
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    interrupt_on_termination()
    started = time.monotonic()
    result = asyncio.run(run(settings))
    run_info = {
        "settings": dataclasses.asdict(settings) | {"output": str(settings.output)},
        "machine": machine_info(),
        "seconds": round(time.monotonic() - started, 1),
    }
    details = {"details": result["details"], "phases": result["phases"]}
    path = write_results(settings.output, result["figures"], run_info | details)
    print(format_figures("private matching", result["figures"]))
    say(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
