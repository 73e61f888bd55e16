"""Credit-report benchmark: ``python -m bench.reports [--quick] [--suites ed25519,sm2-sm3]``.

Measures, for each signature suite (Ed25519 and SM2/SM3), in one run on one machine:

1. **Offline verification** (:func:`federation.reports.verify_offline`) of a realistic
   report (a company with five list entries from three cities, a penalty, two ratings),
   parsed from its bytes every time as a clerk's node receives it, in a tight loop in
   this process.
2. **The limit**: :meth:`federation.signing.PublicKey.verify` over the same signed bytes
   with the same key, in the same loop style, measured in alternating rounds of 0.1 s
   with (1), after an untimed warm-up of both.
   The figure is (1) / (2): how much of a report check is the signature itself. Each
   rate is that of the loop's fastest round, as ``timeit`` advises (slower rounds are
   other work on the host, not the code); the ratio over every round is given too.
3. **VerifyReport over the client API**: two real ``credit-node serve`` processes on
   loopback (issuer 青岛 370200, verifier 威海 371000, identities made with that suite).
   The issuer issues one report through its client API; four client threads then ask the
   verifier to verify it for N seconds. With status lookups the verifier asks the issuer
   the first time and reuses the answer for 10 s (``node.reporting.STATUS_TTL``); the run
   records how many calls actually reached the issuer. Measured again with
   ``offline_only``.
4. **IssueReport latency** at the issuer over K issues.

Results go to ``bench/results/reports.json`` (``--quick``: ``reports-quick.json``). Node
processes are stopped and temporary directories removed at the end, also on failure or
Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime as dt
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from bench.common import (
    RESULTS_DIR,
    BenchmarkFailedError,
    Stopwatch,
    cpu_steal_jiffies,
    format_figures,
    interrupt_on_termination,
    machine_info,
    percentile,
    say,
    write_results,
)
from bench.sync import NodeLogs, check_alive, responds, wait_until
from creditnet.v1 import client_pb2, client_pb2_grpc, lists_pb2, reports_pb2
from federation.clock import CHINA_TZ, SystemClock
from federation.errors import CreditNetError
from federation.manifest import SignedManifest, TrustedChain, build_manifest
from federation.member import tls_server_name
from federation.presets import preset
from federation.reports import (
    CreditReport,
    ManifestEpoch,
    ReportListEntry,
    ReportPenalty,
    ReportRating,
    SignedReport,
    epochs,
    report_number,
    sign_report,
    verify_offline,
)
from federation.sanctions import DEFAULT_POLICIES, ListKind, SanctionEntry, Subject
from federation.signing import ED25519, SM2_SM3, SUITES, SigningKey
from federation.subjects import SubjectKind
from node.config import SETTINGS, client_target
from node.demo import (
    TAX_CREDIT_MAPPING,
    DemoNode,
    all_reachable,
    create_nodes,
    matching_ready,
    sign,
    start,
    stop,
)
from node.keystore import load_node_keys, read_secret
from node.reporting import STATUS_TTL
from node.samples import AUTHORITIES, sample_uscc
from node.service.convert import entry_to_wire
from node.trust import install_manifest

ISSUER = "370200"  # 青岛
VERIFIER = "371000"  # 威海
YANTAI = "370600"  # 烟台: a third city in the offline report
FEDERATION = "jiaodong"
PAILLIER_BITS = 1024  # reports do not use Paillier; small keys start quickly
CLIENT_THREADS = 4
RATIO_TARGET = 0.7

FULL_ISSUES, QUICK_ISSUES = 50, 10
FULL_RPC_S, QUICK_RPC_S = 30.0, 3.0
# Seconds for each of the offline loop and the raw signature loop, in alternating rounds
# of 0.1 s: short, so that a burst of other load on the machine (a virtual machine's
# neighbours, a daemon waking up) falls on both loops alike rather than on one round of one.
FULL_OFFLINE_S, QUICK_OFFLINE_S = 10.0, 1.5
FULL_ROUNDS, QUICK_ROUNDS = 100, 15
# Seconds of each loop run untimed before the rounds (caches, allocator, branch history).
WARM_UP_S = 0.5
# Seconds for each diagnostic loop (parse only; verify_offline on a parsed report).
FULL_DIAGNOSTIC_S, QUICK_DIAGNOSTIC_S = 3.0, 0.5

RPC_TIMEOUT_S = 10.0
REPLICATION_TIMEOUT_S = 60.0
# Calls between two looks at the clock in the tight loops: the clock costs ~0.1 µs, a
# verification tens of µs at least, so the look is noise either way.
BATCH = 8

# The issuer's mappings of two preset scales onto the federation's common scale (A-D).
ISSUER_RATINGS = (
    TAX_CREDIT_MAPPING
    + """
[ratings.mappings.public-credit-gbt45255]
A = "A"
B = "B"
C = "C"
D = "D"
"""
)

_T = TypeVar("_T")


def suite_suffix(suite: str) -> str:
    """``ed25519`` or ``sm2_sm3``: the suffix of a figure's key."""
    return suite.replace("-", "_")


@dataclasses.dataclass(frozen=True)
class Settings:
    suites: tuple[str, ...]
    issues: int
    rpc_s: float
    offline_s: float
    rounds: int
    diagnostic_s: float
    quick: bool
    output: Path
    keep: bool


# --- node identities with a chosen suite -------------------------------------------------------


def form_pair(root: Path, suite: str) -> tuple[list[DemoNode], SignedManifest]:
    """Issuer and verifier identities with ``suite``, and a manifest both trust."""
    cities = [ISSUER, VERIFIER]
    nodes = create_nodes(root, cities, paillier_bits=PAILLIER_BITS, signature_suite=suite)
    members = [n.member for n in nodes]
    for node in nodes:
        if node.member.signing_key.suite != suite:
            raise BenchmarkFailedError(
                f"{node.member.city_code} was created with a {node.member.signing_key.suite} "
                f"key, not {suite}"
            )
    clock = SystemClock()
    manifest = build_manifest(
        federation_id=FEDERATION,
        federation_name=preset(FEDERATION).name,
        members=members,
        threshold=2,
        expires=clock.now() + dt.timedelta(days=7),
    )
    signed = sign(manifest, nodes)
    for node in nodes:
        install_manifest(node.config, signed.to_bytes(), clock=clock)
    issuer_config = nodes[0].config.config_path
    issuer_config.write_text(issuer_config.read_text() + ISSUER_RATINGS)
    return nodes, signed


# --- 1 and 2: offline verification and the raw signature --------------------------------------


def _china_today() -> dt.date:
    return SystemClock().now().astimezone(CHINA_TZ).date()


def _entry(
    origin: str,
    kind: ListKind,
    decision_no: str,
    reason: str,
    listed_on: dt.date,
    *,
    removed_on: dt.date | None = None,
) -> ReportListEntry:
    end = listed_on + dt.timedelta(days=1095)
    names = {ISSUER: "青岛市", YANTAI: "烟台市", VERIFIER: "威海市"}
    return ReportListEntry(
        origin=origin,
        origin_name=f"{names[origin]}公共信用信息中心",
        list_kind=kind,
        decision_no=decision_no,
        authority=AUTHORITIES[origin],
        reason=reason,
        listed_on=listed_on,
        publicity_end=end,
        active=removed_on is None,
        why=(
            f"removed on {removed_on}: repair"
            if removed_on
            else f"listed on {listed_on}, public until {end}"
        ),
        removed_on=removed_on,
        removal_reason="repair: 已完成信用修复" if removed_on else None,
    )


def realistic_report(*, issued_at: dt.datetime, manifest_version: int) -> CreditReport:
    """A company listed by three cities (five entries, one removed), one penalty, two
    ratings: what a report on a troubled company looks like."""
    day = issued_at.astimezone(CHINA_TZ).date()

    def ago(days: int) -> dt.date:
        return day - dt.timedelta(days=days)

    company = Subject(SubjectKind.USCC, sample_uscc(ISSUER, 4242), "青岛示例海润贸易有限公司")
    return CreditReport(
        report_no=report_number(ISSUER, issued_at, 17),
        issuer=ISSUER,
        issuer_name="青岛市公共信用信息中心",
        subject=company,
        issued_at=issued_at,
        valid_until=issued_at + dt.timedelta(days=30),
        manifest_version=manifest_version,
        status_index=17,
        registration=(
            ("名称", company.name),
            ("统一社会信用代码", company.id),
            ("法定代表人", "李四"),
            ("成立日期", "2015-03-18"),
            ("住所", "山东省青岛市市南区香港中路100号"),
        ),
        list_entries=(
            _entry(
                ISSUER,
                ListKind.SERIOUS_DISHONESTY,
                f"青信惩〔{ago(200).year}〕17号",
                "拒不履行人民法院生效判决确定的义务",
                ago(200),
            ),
            _entry(
                ISSUER,
                ListKind.ABNORMAL_OPERATION,
                f"青市监异〔{ago(500).year}〕301号",
                "通过登记的住所无法联系",
                ago(500),
                removed_on=ago(300),
            ),
            _entry(
                YANTAI,
                ListKind.SERIOUS_DISHONESTY,
                f"烟发改信〔{ago(150).year}〕12号",
                "拒不履行法定义务，严重影响司法机关、行政机关公信力",
                ago(150),
            ),
            _entry(
                YANTAI,
                ListKind.JOINT_PUNISHMENT,
                f"烟信惩〔{ago(90).year}〕5号",
                "被人民法院列为失信被执行人",
                ago(90),
            ),
            _entry(
                VERIFIER,
                ListKind.ABNORMAL_OPERATION,
                f"威市监异〔{ago(60).year}〕44号",
                "未按规定公示年度报告",
                ago(60),
            ),
        ),
        penalties=(
            ReportPenalty(
                authority="青岛市生态环境局",
                decision_no=f"青环罚〔{ago(120).year}〕88号",
                decided_on=ago(120),
                summary="超标排放大气污染物，罚款人民币十万元",
            ),
        ),
        ratings=(
            ReportRating(
                issuer="国家税务总局青岛市税务局",
                scale="纳税信用等级",
                grade="M",
                common_grade="C",
                issued_on=ago(40),
                valid_until=ago(40) + dt.timedelta(days=365),
            ),
            ReportRating(
                issuer="烟台市发展和改革委员会",
                scale="公共信用综合评价",
                grade="C",
                common_grade="C",
                issued_on=ago(30),
                valid_until=ago(30) + dt.timedelta(days=365),
            ),
        ),
    )


@dataclasses.dataclass
class Loop:
    """Calls and seconds of one timed loop, possibly run in several rounds."""

    calls: int = 0
    seconds: float = 0.0
    round_rates: list[float] = dataclasses.field(default_factory=list)

    @property
    def per_s(self) -> float:
        """Calls per second over every round."""
        return self.calls / self.seconds

    @property
    def best_per_s(self) -> float:
        """Calls per second in the fastest round: the one least slowed by other work."""
        return max(self.round_rates)

    def run(self, call: Callable[[], object], seconds: float) -> None:
        calls = 0
        started = time.perf_counter()
        deadline = started + seconds
        while True:
            for _ in range(BATCH):
                call()
            calls += BATCH
            now = time.perf_counter()
            if now >= deadline:
                break
        self.calls += calls
        self.seconds += now - started
        self.round_rates.append(calls / (now - started))


def measure_offline(
    key: SigningKey, signed_manifest: SignedManifest, settings: Settings
) -> dict[str, Any]:
    """verify_offline from bytes vs PublicKey.verify, alternating rounds in this process."""
    clock = SystemClock()
    now = clock.now()
    chain: Sequence[ManifestEpoch] = epochs(TrustedChain.bootstrap(signed_manifest, now=now))
    issued_at = (now - dt.timedelta(minutes=1)).replace(microsecond=0)
    report = realistic_report(
        issued_at=issued_at, manifest_version=signed_manifest.manifest.version
    )
    data = sign_report(report, key).to_bytes()
    parsed = SignedReport.from_bytes(data)
    public = key.public_key
    signature, message = parsed.signature, parsed.report.signed_bytes()

    # Untimed checks (and warm-up: SM2's library is imported on first use).
    verdict = verify_offline(parsed, chain=chain, now=now)
    if verdict.state != "valid":
        raise BenchmarkFailedError(f"the sample report does not verify: {verdict.reasons}")
    public.verify(signature, message)

    def offline() -> object:
        return verify_offline(SignedReport.from_bytes(data), chain=chain, now=now)

    def raw() -> object:
        public.verify(signature, message)
        return None

    def parse_only() -> object:
        return SignedReport.from_bytes(data)

    def preparsed() -> object:
        return verify_offline(parsed, chain=chain, now=now)

    Loop().run(offline, WARM_UP_S)
    Loop().run(raw, WARM_UP_S)
    offline_loop, raw_loop = Loop(), Loop()
    per_round = settings.offline_s / settings.rounds
    steal_before = cpu_steal_jiffies()
    for _ in range(settings.rounds):
        offline_loop.run(offline, per_round)
        raw_loop.run(raw, per_round)
    steal_after = cpu_steal_jiffies()
    steal = None if steal_before is None or steal_after is None else steal_after - steal_before
    parse_loop, preparsed_loop = Loop(), Loop()
    parse_loop.run(parse_only, settings.diagnostic_s)
    preparsed_loop.run(preparsed, settings.diagnostic_s)
    # The last answer of the timed loop, checked: a fast wrong answer is no figure.
    if offline().state != "valid":  # type: ignore[attr-defined]
        raise BenchmarkFailedError("verify_offline stopped answering valid during the loop")
    return {
        "offline": offline_loop,
        "raw": raw_loop,
        "details": {
            "report_bytes": len(data),
            "signed_part_bytes": len(message),
            "signature_bytes": len(signature),
            "list_entries": len(report.list_entries),
            "list_entry_cities": sorted({e.origin for e in report.list_entries}),
            "penalties": len(report.penalties),
            "ratings": len(report.ratings),
            "manifest_versions_in_chain": len(chain),
            "rounds": settings.rounds,
            "offline_calls": offline_loop.calls,
            "offline_seconds": round(offline_loop.seconds, 3),
            "raw_calls": raw_loop.calls,
            "raw_seconds": round(raw_loop.seconds, 3),
            # Every round counted (the figures take the fastest round of each loop).
            "offline_per_s_all_rounds": round(offline_loop.per_s),
            "raw_per_s_all_rounds": round(raw_loop.per_s),
            # How steady the machine was: the limit's own rate round by round (the same
            # code every time, so any spread is the host), the ratio of each round to the
            # raw round after it, and the time the hypervisor gave the machine's virtual
            # CPUs to others during the rounds (jiffies of 10 ms, all CPUs; None off Linux).
            "raw_round_rates": _spread(raw_loop.round_rates, places=0),
            "round_ratios": _spread(
                [a / b for a, b in zip(offline_loop.round_rates, raw_loop.round_rates, strict=True)]
            ),
            "cpu_steal_jiffies_during_rounds": steal,
            # Where the rest of the time goes: parsing the file, and the seven steps on
            # an already parsed report (one signature verification among them).
            "diagnostic_parse_only_per_s": round(parse_loop.per_s),
            "diagnostic_verify_offline_preparsed_per_s": round(preparsed_loop.per_s),
        },
    }


def _spread(values: Sequence[float], *, places: int = 3) -> dict[str, float]:
    """Minimum, quartiles and maximum of ``values``, rounded to ``places``."""
    low, median, high = statistics.quantiles(values, n=4, method="inclusive")
    return {
        name: round(value, places)
        for name, value in (
            ("min", min(values)),
            ("p25", low),
            ("median", median),
            ("p75", high),
            ("max", max(values)),
        )
    }


# --- 3 and 4: the client API of running nodes ---------------------------------------------------


class ReportClient:
    """One channel to a node's client API (token and certificate from its directory)."""

    def __init__(self, node: DemoNode) -> None:
        config = node.config
        token = read_secret(config.client_token_path).decode().strip()
        credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(root_certificates=config.tls_cert_path.read_bytes()),
            grpc.access_token_call_credentials(token),
        )
        self.city = config.city_code
        self.channel = grpc.secure_channel(
            client_target(config),
            credentials,
            options=[("grpc.ssl_target_name_override", tls_server_name(config.city_code))],
        )
        self.stub = client_pb2_grpc.ClientServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def call(self, rpc: Callable[..., _T], request: object) -> _T:
        try:
            return rpc(request, timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise BenchmarkFailedError(
                f"{self.city} answered {code.name if code else 'an error'}: {details}"
            ) from None

    def verify(self, document: bytes, *, offline_only: bool) -> client_pb2.VerifyReportResponse:
        request = client_pb2.VerifyReportRequest(
            report=reports_pb2.SignedReport(document=document), offline_only=offline_only
        )
        return self.call(self.stub.VerifyReport, request)


def _sanction(
    city: str, subject_id: str, kind: ListKind, serial: int, day: dt.date
) -> lists_pb2.ListChange:
    entry = SanctionEntry.create(
        list_kind=kind,
        subject_id=subject_id,
        subject_name="青岛示例海润贸易有限公司",
        reason="拒不履行人民法院生效判决确定的义务",
        legal_basis="《关于对失信被执行人实施联合惩戒的合作备忘录》",
        authority=AUTHORITIES[city],
        decision_no=f"信惩〔{day.year}〕{serial}号",
        listed_on=day,
        measures=("限制参与政府采购", "限制高消费"),
        appeal="可自收到决定书之日起六十日内申请行政复议",
        policy=DEFAULT_POLICIES[kind],
    )
    return lists_pb2.ListChange(add=entry_to_wire(entry))


def prepare_subject(
    issuer: ReportClient, verifier: ReportClient, nodes: list[DemoNode], logs: NodeLogs
) -> str:
    """A company listed at both cities (one listing a penalty) and rated twice by the
    issuer; returns its identifier once the issuer serves the verifier's entries too."""
    subject = sample_uscc(ISSUER, 4242)
    today = _china_today()
    changes = {
        issuer: [
            _sanction(ISSUER, subject, ListKind.SERIOUS_DISHONESTY, 1, today - dt.timedelta(200)),
            _sanction(ISSUER, subject, ListKind.ABNORMAL_OPERATION, 2, today - dt.timedelta(150)),
            _sanction(
                ISSUER, subject, ListKind.ADMINISTRATIVE_PENALTY, 3, today - dt.timedelta(120)
            ),
        ],
        verifier: [
            _sanction(VERIFIER, subject, ListKind.SERIOUS_DISHONESTY, 4, today - dt.timedelta(90)),
            _sanction(VERIFIER, subject, ListKind.JOINT_PUNISHMENT, 5, today - dt.timedelta(60)),
        ],
    }
    for client, batch in changes.items():
        answer = client.call(
            client.stub.SubmitListChanges, client_pb2.SubmitListChangesRequest(changes=batch)
        )
        refused = [r for r in answer.results if r.outcome != client_pb2.CHANGE_OUTCOME_APPLIED]
        if refused:
            raise BenchmarkFailedError(f"{client.city} did not apply a change: {refused[0]}")
    for scale, grade, days in (("tax-credit", "M", 40), ("public-credit-gbt45255", "C", 30)):
        issuer.call(
            issuer.stub.SubmitRating,
            client_pb2.SubmitRatingRequest(
                subject_id=subject,
                subject_name="青岛示例海润贸易有限公司",
                scale_id=scale,
                grade=grade,
                issued_on=(today - dt.timedelta(days)).isoformat(),
                valid_until=(today + dt.timedelta(300)).isoformat(),
                evidence_ref="青税评〔2026〕12号",
            ),
        )

    def replicated() -> bool:
        answer = issuer.call(
            issuer.stub.GetSubjectStatus,
            client_pb2.GetSubjectStatusRequest(subject_id=subject, include_inactive=True),
        )
        return sum(1 for e in answer.entries if e.origin == VERIFIER) == 2

    took = wait_until(
        "the issuer serves the verifier's entries",
        replicated,
        nodes,
        logs,
        timeout_s=REPLICATION_TIMEOUT_S,
    )
    say(f"  the issuer holds the verifier's two entries after {took:.1f}s")
    return subject


def measure_issue(client: ReportClient, subject: str, count: int) -> tuple[bytes, list[float]]:
    """Latencies (ms) of ``count`` IssueReport calls; returns the first report's file too."""
    latencies: list[float] = []
    first = b""
    numbers: set[str] = set()
    for _ in range(count):
        started = time.perf_counter()
        answer = client.call(
            client.stub.IssueReport, client_pb2.IssueReportRequest(subject_id=subject)
        )
        latencies.append((time.perf_counter() - started) * 1000)
        numbers.add(answer.report_no)
        if not first:
            first = answer.report.document
    if len(numbers) != count:
        raise BenchmarkFailedError(f"{count} issues gave {len(numbers)} distinct report numbers")
    return first, latencies


def _report_content(document: bytes) -> dict[str, Any]:
    report = SignedReport.from_bytes(document).report
    # Two list entries from each city; the issuer's third listing is a penalty.
    expected = (4, 1, 2)
    found = (len(report.list_entries), len(report.penalties), len(report.ratings))
    if found != expected:
        raise BenchmarkFailedError(
            f"the issued report has (list entries, penalties, ratings) {found}, expected {expected}"
        )
    return {
        "report_no": report.report_no,
        "report_bytes": len(document),
        "list_entries": len(report.list_entries),
        "list_entry_cities": sorted({e.origin for e in report.list_entries}),
        "penalties": len(report.penalties),
        "ratings": len(report.ratings),
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_VERDICT_NAMES = {
    value: name.removeprefix("REPORT_VERDICT_").lower().replace("_", "-")
    for name, value in reports_pb2.ReportVerdict.items()
}


def measure_verify_rpc(
    verifier: DemoNode,
    issuer: DemoNode,
    document: bytes,
    seconds: float,
    *,
    offline_only: bool,
) -> dict[str, Any]:
    """CLIENT_THREADS threads call VerifyReport at the verifier for ``seconds``."""
    clients = [ReportClient(verifier) for _ in range(CLIENT_THREADS)]
    latencies: list[list[float]] = [[] for _ in clients]
    verdicts: collections.Counter[str] = collections.Counter()
    sources: collections.Counter[str] = collections.Counter()
    as_of: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(clients) + 1)
    deadline = [0.0]

    def work(index: int) -> None:
        client, mine = clients[index], latencies[index]
        local_verdicts: collections.Counter[str] = collections.Counter()
        local_sources: collections.Counter[str] = collections.Counter()
        local_as_of: collections.Counter[str] = collections.Counter()
        barrier.wait()
        try:
            while time.monotonic() < deadline[0]:
                started = time.perf_counter()
                answer = client.verify(document, offline_only=offline_only)
                mine.append((time.perf_counter() - started) * 1000)
                local_verdicts[_VERDICT_NAMES.get(answer.verdict, str(answer.verdict))] += 1
                local_sources[answer.status_source or "none"] += 1
                if answer.HasField("status_as_of"):
                    when = answer.status_as_of.ToDatetime(dt.UTC)
                    local_as_of[when.isoformat(timespec="microseconds")] += 1
        except BenchmarkFailedError as exc:
            with lock:
                failures.append(exc.args[0])
        with lock:
            verdicts.update(local_verdicts)
            sources.update(local_sources)
            as_of.update(local_as_of)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(clients))]
    assert verifier.process is not None and issuer.process is not None
    try:
        for thread in threads:
            thread.start()
        cpu_before = (
            _cpu_s(verifier.process.pid),
            _cpu_s(issuer.process.pid),
            _own_cpu_s(),
        )
        started = time.monotonic()
        deadline[0] = started + seconds
        barrier.wait()
        for thread in threads:
            thread.join(timeout=seconds + 2 * RPC_TIMEOUT_S)
        elapsed = time.monotonic() - started
        cpu_after = (
            _cpu_s(verifier.process.pid),
            _cpu_s(issuer.process.pid),
            _own_cpu_s(),
        )
    finally:
        for client in clients:
            client.close()
    if failures:
        raise BenchmarkFailedError(f"VerifyReport failed during the run: {failures[0]}")
    expected = {"status-unknown"} if offline_only else {"valid", "status-unknown"}
    wrong = {v: n for v, n in verdicts.items() if v not in expected}
    if wrong:
        raise BenchmarkFailedError(f"VerifyReport gave wrong verdicts for a good report: {wrong}")
    merged = [v for values in latencies for v in values]
    calls = len(merged)
    cpu = [round(a - b, 2) for a, b in zip(cpu_after, cpu_before, strict=True)]
    return {
        "calls": calls,
        "seconds": round(elapsed, 3),
        "per_s": calls / elapsed,
        "client_threads": len(clients),
        "p50_ms": round(percentile(merged, 50), 2),
        "p95_ms": round(percentile(merged, 95), 2),
        "p99_ms": round(percentile(merged, 99), 2),
        "max_ms": round(max(merged), 2),
        "verdicts": dict(verdicts),
        "status_sources": dict(sources),
        # Each time the verifier asks the issuer it answers with a new "as of" time; calls
        # within STATUS_TTL of it reuse it. So: distinct times = questions to the issuer.
        "issuer_asked": len(as_of) if not offline_only else 0,
        "calls_answered_from_cache": calls - len(as_of) if not offline_only else 0,
        "calls_per_status_as_of": dict(sorted(as_of.items())),
        "cpu_s": {"verifier_node": cpu[0], "issuer_node": cpu[1], "benchmark_process": cpu[2]},
    }


def measure_rpc(
    nodes: list[DemoNode], settings: Settings, watch: Stopwatch, suite: str
) -> dict[str, Any]:
    issuer_node, verifier_node = nodes
    logs = NodeLogs(nodes)
    logs.mark()
    clients: list[ReportClient] = []
    try:
        with watch.phase(f"start_nodes_{suite}"):
            started = time.monotonic()
            for node in nodes:
                start(node)
            wait_until("both nodes answer", lambda: all(responds(n) for n in nodes), nodes, logs)
            wait_until("the nodes reach each other", lambda: all_reachable(nodes, 1), nodes, logs)
            # Each node encrypts its private-matching table at start-up: not what is measured.
            wait_until("the matching tables are built", lambda: matching_ready(nodes), nodes, logs)
        say(f"  both nodes started and connected after {time.monotonic() - started:.1f}s")
        issuer, verifier = ReportClient(issuer_node), ReportClient(verifier_node)
        clients.extend([issuer, verifier])
        with watch.phase(f"prepare_subject_{suite}"):
            subject = prepare_subject(issuer, verifier, nodes, logs)
        with watch.phase(f"issue_{suite}"):
            document, issue_ms = measure_issue(issuer, subject, settings.issues)
        content = _report_content(document)
        say(
            f"  {settings.issues} IssueReport calls: p50 {percentile(issue_ms, 50):.1f} ms, "
            f"p95 {percentile(issue_ms, 95):.1f} ms ({content['report_bytes']:,}-byte report, "
            f"{content['list_entries']} list entries from {len(content['list_entry_cities'])} "
            "cities)"
        )
        # Untimed check; it does not ask the issuer, so the timed run starts with a cold
        # status cache (and SM2's library is already loaded at the verifier).
        first = verifier.verify(document, offline_only=True)
        if first.verdict != reports_pb2.REPORT_VERDICT_STATUS_UNKNOWN:
            raise BenchmarkFailedError(f"the verifier says {first.summary}: {list(first.reasons)}")
        results = {}
        for offline_only in (False, True):
            label = "offline_only" if offline_only else "with_status"
            with watch.phase(f"verify_rpc_{label}_{suite}"):
                result = measure_verify_rpc(
                    verifier_node, issuer_node, document, settings.rpc_s, offline_only=offline_only
                )
            check_alive(nodes, logs, f"VerifyReport ({label})")
            results[label] = result
            say(
                f"  VerifyReport {label}: {result['per_s']:,.0f}/s from {CLIENT_THREADS} threads, "
                f"p99 {result['p99_ms']} ms; verdicts {result['verdicts']}"
                + (
                    ""
                    if offline_only
                    else f"; the issuer was asked {result['issuer_asked']} times in "
                    f"{result['calls']:,} calls"
                )
            )
        warnings = logs.check(f"the report benchmark ({suite})")
    finally:
        for client in clients:
            client.close()
        codes = stop(nodes)
    if any(codes):
        raise BenchmarkFailedError(
            f"nodes did not stop cleanly (exit codes {codes}):\n{logs.describe()}"
        )
    return {
        "issue_ms": issue_ms,
        "issued_report": content,
        "with_status": results["with_status"],
        "offline_only": results["offline_only"],
        "node_warnings": warnings,
    }


# --- the run ------------------------------------------------------------------------------------


def _target(value: float, target: str, passed: bool) -> dict[str, Any]:
    return {"value": value, "target": target, "pass": passed}


def run(settings: Settings, root: Path) -> dict[str, Any]:
    watch = Stopwatch()
    figures: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for suite in settings.suites:
        sfx = suite_suffix(suite)
        say(f"[{suite}] creating the issuer {ISSUER} and the verifier {VERIFIER}")
        with watch.phase(f"create_nodes_{suite}"):
            nodes, manifest = form_pair(root / sfx, suite)
        key = load_node_keys(nodes[0].config).signing_key
        say(f"[{suite}] offline: verify_offline from bytes vs PublicKey.verify, in this process")
        with watch.phase(f"offline_{suite}"):
            offline = measure_offline(key, manifest, settings)
        offline_rate, raw_rate = offline["offline"].best_per_s, offline["raw"].best_per_s
        ratio = offline_rate / raw_rate
        ratio_all_rounds = offline["offline"].per_s / offline["raw"].per_s
        say(
            f"  verify_offline {offline_rate:,.0f}/s, raw signature {raw_rate:,.0f}/s "
            f"(fastest rounds), ratio {ratio:.3f}; every round: {ratio_all_rounds:.3f}"
        )
        say(f"[{suite}] client API: starting both nodes")
        rpc = measure_rpc(nodes, settings, watch, suite)
        issue_ms = rpc.pop("issue_ms")

        figures[f"verify_offline_per_s_{sfx}"] = round(offline_rate)
        figures[f"raw_signature_verify_per_s_{sfx}"] = round(raw_rate)
        figures[f"verify_offline_ratio_to_raw_signature_{sfx}"] = round(ratio, 3)
        figures[f"verify_offline_ratio_all_rounds_{sfx}"] = round(ratio_all_rounds, 3)
        figures[f"verify_rpc_per_s_{sfx}"] = round(rpc["with_status"]["per_s"])
        figures[f"verify_rpc_p99_ms_{sfx}"] = rpc["with_status"]["p99_ms"]
        figures[f"verify_rpc_offline_per_s_{sfx}"] = round(rpc["offline_only"]["per_s"])
        figures[f"verify_rpc_offline_p99_ms_{sfx}"] = rpc["offline_only"]["p99_ms"]
        figures[f"issue_p95_ms_{sfx}"] = round(percentile(issue_ms, 95), 1)
        targets[f"verify_offline_ratio_to_raw_signature_{sfx}"] = _target(
            round(ratio, 3), f">= {RATIO_TARGET}", ratio >= RATIO_TARGET
        )
        for mode in ("with_status", "offline_only"):
            rpc[mode]["per_s"] = round(rpc[mode]["per_s"], 1)
        details[sfx] = {
            "offline": offline["details"],
            "issue": {
                "issues": len(issue_ms),
                "p50_ms": round(percentile(issue_ms, 50), 1),
                "p95_ms": round(percentile(issue_ms, 95), 1),
                "max_ms": round(max(issue_ms), 1),
                "latencies_ms": [round(v, 1) for v in issue_ms],
            },
            "verify_rpc": rpc,
        }
    figures["targets"] = targets
    return {"figures": figures, "details": details, "phases": watch.phases}


def summary(figures: dict[str, Any]) -> str:
    return format_figures("credit reports", figures)


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reports", description="Credit-report benchmark."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_ISSUES} issues, {QUICK_RPC_S:.0f}s of VerifyReport per mode, shorter "
        "offline loops (under a minute)",
    )
    parser.add_argument(
        "--suites",
        help=f"comma-separated signature suites (default {','.join(SUITES)})",
    )
    parser.add_argument("--issues", type=int, help=f"IssueReport calls (default {FULL_ISSUES})")
    parser.add_argument(
        "--rpc-seconds",
        type=float,
        help=f"seconds of VerifyReport per mode (default {FULL_RPC_S:.0f})",
    )
    parser.add_argument("--output", type=Path, help="results file (default bench/results/)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the node directories (for debugging)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    issues = args.issues or (QUICK_ISSUES if quick else FULL_ISSUES)
    rpc_s = args.rpc_seconds or (QUICK_RPC_S if quick else FULL_RPC_S)
    if issues < 1 or rpc_s <= 0:
        parser.error("--issues and --rpc-seconds must be positive")
    if args.suites:
        suites = tuple(s.strip() for s in args.suites.split(",") if s.strip())
    else:
        suites = (ED25519, SM2_SM3)
    if not suites or any(s not in SUITES for s in suites) or len(set(suites)) != len(suites):
        parser.error(f"--suites takes a comma-separated subset of {','.join(SUITES)}")
    output = args.output or RESULTS_DIR / ("reports-quick.json" if quick else "reports.json")
    return Settings(
        suites=suites,
        issues=issues,
        rpc_s=rpc_s,
        offline_s=QUICK_OFFLINE_S if quick else FULL_OFFLINE_S,
        rounds=QUICK_ROUNDS if quick else FULL_ROUNDS,
        diagnostic_s=QUICK_DIAGNOSTIC_S if quick else FULL_DIAGNOSTIC_S,
        quick=quick,
        output=output,
        keep=args.keep,
    )


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    interrupt_on_termination()
    # The node processes inherit this environment: settings meant for something else
    # (a database URL, a sync interval) would change what is measured.
    for setting in SETTINGS:
        os.environ.pop(setting.env_name, None)
    started = time.monotonic()
    load_at_start = [round(v, 2) for v in os.getloadavg()]
    root = Path(tempfile.mkdtemp(prefix="credit-bench-reports-"))
    say(
        f"bench.reports: suites {', '.join(settings.suites)}, {settings.issues} issues, "
        f"{settings.rpc_s:.0f}s of VerifyReport per mode; working in {root}"
    )
    try:
        result = run(settings, root)
    except BenchmarkFailedError as exc:
        print(f"bench.reports: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except CreditNetError as exc:
        print(f"bench.reports: FAILED: {exc.message}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("bench.reports: interrupted; nodes stopped", file=sys.stderr, flush=True)
        return 130
    finally:
        if settings.keep:
            say(f"node directories kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    run_info = {
        **machine_info(),
        "load_average_at_start": load_at_start,
        "command": "python -m bench.reports " + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": settings.quick,
        "suites": list(settings.suites),
        "setup": (
            f"issuer {ISSUER} and verifier {VERIFIER}: two credit-node serve processes on "
            f"loopback (TLS, SQLite); {CLIENT_THREADS} client threads in the benchmark process. "
            f"All three processes share this machine's {os.cpu_count()} cores, so the RPC "
            "figures include the client's own cost and the contention for cores; the offline "
            "figures are one thread in the benchmark process while no node runs."
        ),
        "status_cache_ttl_s": STATUS_TTL.total_seconds(),
        "rpc_seconds_per_mode": settings.rpc_s,
        "offline_seconds_per_loop": settings.offline_s,
        "durations_s": {**result["phases"], "total": round(time.monotonic() - started, 3)},
        **result["details"],
    }
    path = write_results(settings.output, result["figures"], run_info)
    print()
    print(summary(result["figures"]))
    print(f"\nresults written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
