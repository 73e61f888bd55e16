"""A whole federation on one machine: the five Jiaodong cities as separate node processes.

``credit-node demo`` (and ``make demo``) runs this: it creates five node identities in a
temporary directory, forms a federation manifest signed by a threshold of them, installs
it, starts five ``credit-node serve`` processes on loopback, waits until every node sees
every other, prints the federation, runs the scenarios below, and stops every process.

Each scenario is a function of the running :class:`DemoFederation`; later features add
theirs to :data:`SCENARIOS`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import grpc

from creditnet.v1 import (
    client_pb2,
    lists_pb2,
    matching_pb2,
    peer_pb2,
    peer_pb2_grpc,
    reports_pb2,
)
from federation.clock import SystemClock, china_date
from federation.errors import CreditNetError
from federation.manifest import Manifest, SignedManifest, build_manifest, next_version
from federation.member import Member
from federation.presets import preset
from federation.reports import SignedReport
from federation.sanctions import ListKind
from federation.signing import ED25519, SigningKey
from node.cli.status import format_status
from node.client import NodeClient
from node.config import NodeConfig, load_config
from node.identity import init_node
from node.keystore import read_secret
from node.samples import sample_entry, sample_uscc
from node.service.convert import entry_to_wire
from node.service.tls import server_name_option
from node.trust import install_manifest

FEDERATION = "jiaodong"
THRESHOLD = 3
READY_TIMEOUT_S = 90.0
MATCHING_READY_TIMEOUT_S = 300.0
# How a city maps the tax-credit grades (纳税信用等级) onto the common A-D scale, as a
# node.toml table: Yantai signs it in the demo (and tests and benchmarks reuse it).
TAX_CREDIT_MAPPING = """
[ratings.mappings.tax-credit]
A = "A"
B = "B"
M = "C"
C = "C"
D = "D"
"""
STOP_TIMEOUT_S = 30.0  # the server grace (5 s) plus the matching pool, on a busy machine

Say = Callable[[str], None]


class DemoFailedError(CreditNetError):
    """A demo step did not reach the state it waits for."""


@dataclass
class DemoNode:
    member: Member
    config: NodeConfig
    process: subprocess.Popen[bytes] | None = None

    @property
    def city(self) -> str:
        return f"{self.member.city_code} {self.member.name}"

    def signing_key(self) -> SigningKey:
        return SigningKey.from_pem(read_secret(self.config.signing_key_path))

    def status(self) -> client_pb2.GetStatusResponse:
        with NodeClient(self.config, timeout_s=2.0) as client:
            return client.status()


@dataclass
class DemoFederation:
    root: Path
    nodes: list[DemoNode]
    manifest: SignedManifest
    say: Say
    clock: SystemClock = field(default_factory=SystemClock)

    def wait_until(self, what: str, check: Callable[[], bool], timeout_s: float) -> float:
        """Poll ``check`` until it holds; returns the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            with contextlib.suppress(CreditNetError):
                if check():
                    return time.monotonic() - start
            for node in self.nodes:
                if node.process is not None and node.process.poll() is not None:
                    raise DemoFailedError(
                        f"node {node.city} exited with code {node.process.returncode} "
                        f"while waiting until {what}; its log: {node.config.home / 'node.log'}"
                    )
            time.sleep(0.2)
        raise DemoFailedError(f"timed out after {timeout_s:.0f}s waiting until {what}")


def sign(manifest: Manifest, signers: list[DemoNode]) -> SignedManifest:
    signed = SignedManifest(manifest=manifest, signatures=())
    for node in signers:
        signed = signed.sign(node.signing_key(), city_code=node.member.city_code)
    return signed


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _init(
    home: Path, city_code: str, peer_port: int, client_port: int, bits: int, suite: str
) -> Member:
    return init_node(
        home,
        city_code=city_code,
        endpoint=f"127.0.0.1:{peer_port}",
        client_listen=f"127.0.0.1:{client_port}",
        paillier_bits=bits,
        signature_suite=suite,
    )


def create_nodes(
    root: Path, city_codes: list[str], *, paillier_bits: int, signature_suite: str = ED25519
) -> list[DemoNode]:
    """Node identities for ``city_codes`` with signing keys of ``signature_suite``; key
    generation runs on all cores."""
    ports = _free_ports(2 * len(city_codes))
    homes = [root / code for code in city_codes]
    # "spawn", not fork: forking a process whose gRPC threads are running can hang the child.
    workers = min(len(city_codes), os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        members = list(
            pool.map(
                _init,
                homes,
                city_codes,
                ports[0::2],
                ports[1::2],
                [paillier_bits] * len(city_codes),
                [signature_suite] * len(city_codes),
            )
        )
    return [DemoNode(m, load_config(h)) for m, h in zip(members, homes, strict=True)]


def start(node: DemoNode) -> None:
    log = (node.config.home / "node.log").open("ab")
    node.process = subprocess.Popen(
        [sys.executable, "-m", "node.cli.main", "serve", "--dir", str(node.config.home)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()


def stop(nodes: list[DemoNode]) -> list[int]:
    """SIGTERM every node, wait for a clean exit, SIGKILL stragglers; returns exit codes."""
    running = [n for n in nodes if n.process is not None and n.process.poll() is None]
    for node in running:
        assert node.process is not None
        node.process.send_signal(signal.SIGTERM)
    codes = []
    for node in nodes:
        if node.process is None:
            continue
        try:
            codes.append(node.process.wait(timeout=STOP_TIMEOUT_S))
        except subprocess.TimeoutExpired:
            node.process.kill()
            codes.append(node.process.wait())
    return codes


def all_reachable(nodes: list[DemoNode], version: int) -> bool:
    for node in nodes:
        status = node.status()
        if status.manifest_version != version:
            return False
        if not all(m.reachable and m.manifest_version == version for m in status.members):
            return False
    return True


def matching_ready(nodes: list[DemoNode], warm: int = 6) -> bool:
    """Every node publishes its table and holds every other's, with ``warm`` randomisers
    ready for each (five nodes on one machine encrypt their tables at start-up: the
    scenarios should not measure that)."""
    cities = {n.member.city_code for n in nodes}
    for node in nodes:
        with NodeClient(node.config) as client:
            tables = client.matching_status().tables
        held = {t.city_code: t for t in tables}
        if set(held) != cities:
            return False
        if any(t.pooled_residues < warm for c, t in held.items() if c != node.member.city_code):
            return False
    return True


@contextlib.contextmanager
def running_federation(root: Path, *, paillier_bits: int, say: Say) -> Iterator[DemoFederation]:
    cities = preset(FEDERATION).cities
    say(f"creating {len(cities)} node identities in {root} (Paillier {paillier_bits} bits)")
    nodes = create_nodes(root, [c.code for c in cities], paillier_bits=paillier_bits)
    yantai = next(n for n in nodes if n.member.city_code == "370600").config.config_path
    yantai.write_text(yantai.read_text() + TAX_CREDIT_MAPPING, encoding="utf-8")
    clock = SystemClock()
    manifest = build_manifest(
        federation_id=FEDERATION,
        federation_name=preset(FEDERATION).name,
        members=[n.member for n in nodes],
        threshold=THRESHOLD,
        expires=clock.now() + dt.timedelta(days=30),
    )
    federation = DemoFederation(
        root=root, nodes=nodes, manifest=sign(manifest, nodes[:THRESHOLD]), say=say, clock=clock
    )
    say(
        f"federation manifest v1: {len(nodes)} members, threshold {THRESHOLD}, signed by "
        + ", ".join(n.member.city_code for n in nodes[:THRESHOLD])
    )
    document = federation.manifest.to_bytes()
    for node in nodes:
        install_manifest(node.config, document, clock=clock)
    try:
        for node in nodes:
            start(node)
        say(f"started {len(nodes)} node processes on loopback; waiting until all are connected")
        took = federation.wait_until(
            "every node reaches every other", lambda: all_reachable(nodes, 1), READY_TIMEOUT_S
        )
        say(f"all {len(nodes)} members connected and healthy after {took:.1f}s")
        took = federation.wait_until(
            "every node holds every other city's matching table",
            lambda: matching_ready(nodes),
            MATCHING_READY_TIMEOUT_S,
        )
        say(
            f"every city published its encrypted matching table and holds the other "
            f"{len(nodes) - 1}, randomisers precomputed, after {took:.1f}s more\n"
        )
        yield federation
    finally:
        codes = stop(nodes)
        if any(codes):
            say(f"node exit codes: {codes}")
            raise DemoFailedError(f"not every node stopped cleanly (exit codes {codes})")
        say(f"\nall {len(nodes)} nodes stopped cleanly (exit code 0)")


# --- scenarios --------------------------------------------------------------------


def scenario_outsider_refused(federation: DemoFederation) -> None:
    """A sixth node, not in the manifest, cannot reach a member's peer API."""
    (outsider,) = create_nodes(federation.root / "outsiders", ["370100"], paillier_bits=1024)
    target = federation.nodes[0]
    keys_dir = outsider.config
    credentials = grpc.ssl_channel_credentials(
        root_certificates=target.member.tls_certificate.encode(),
        private_key=read_secret(keys_dir.tls_key_path),
        certificate_chain=keys_dir.tls_cert_path.read_bytes(),
    )
    with grpc.secure_channel(
        target.member.endpoint, credentials, options=[server_name_option(target.member.city_code)]
    ) as channel:
        stub = peer_pb2_grpc.PeerServiceStub(channel)
        try:
            stub.Hello(peer_pb2.HelloRequest(federation_id=FEDERATION), timeout=3)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code is not grpc.StatusCode.UNAVAILABLE:
                raise DemoFailedError(
                    f"outsider got {code}, expected a refused handshake"
                ) from None
        else:
            raise DemoFailedError("a node outside the manifest reached a member's peer API")
    federation.say(
        f"outsider 370100 济南 (not in the manifest) -> {target.city}: refused at the TLS "
        "handshake, as it must be"
    )


def scenario_manifest_update(federation: DemoFederation) -> None:
    """Version 2 (longer expiry, threshold 4) installed at one city reaches all five."""
    current = federation.manifest.manifest
    manifest = next_version(
        current, expires=federation.clock.now() + dt.timedelta(days=90), threshold=4
    )
    signers = federation.nodes[1:5]
    signed = sign(manifest, signers)
    first = federation.nodes[0]
    install_manifest(first.config, signed.to_bytes(), clock=federation.clock)
    federation.say(
        f"manifest v2 (threshold 4, signed by {', '.join(n.member.city_code for n in signers)})"
        f" installed at {first.city} only"
    )
    took = federation.wait_until(
        "every node holds manifest v2",
        lambda: all_reachable(federation.nodes, 2),
        READY_TIMEOUT_S,
    )
    federation.manifest = signed
    federation.say(f"every member verified and adopted v2 from its peers within {took:.1f}s")


def _serving(federation: DemoFederation, subject: str) -> list[bool]:
    """Per city: does it serve an active Qingdao entry about ``subject``?"""
    answers = []
    for node in federation.nodes:
        with NodeClient(node.config) as client:
            views = client.subject_status(subject).entries
        answers.append(any(v.active and v.origin == "370200" for v in views))
    return answers


def scenario_sanction_list(federation: DemoFederation) -> None:
    """Qingdao lists a company; every city serves it; after credit repair none does."""
    qingdao = federation.nodes[0]
    today = china_date(federation.clock.now())
    entry = sample_entry("370200", 1, listed_on=today - dt.timedelta(days=200))
    subject = entry.subject.id
    add = lists_pb2.ListChange(add=entry_to_wire(entry))
    with NodeClient(qingdao.config) as client:
        (result,) = client.submit([add]).results
    if result.outcome != client_pb2.CHANGE_OUTCOME_APPLIED:
        raise DemoFailedError(f"Qingdao could not list the company: {result.reason}")
    took = federation.wait_until(
        "every city serves the entry", lambda: all(_serving(federation, subject)), 30
    )
    federation.say(
        f"{qingdao.city} lists {entry.subject.name} ({subject}) on 严重失信主体名单 "
        f"(decision {entry.decision_no}): served as active by 5/5 cities after {took * 1000:.0f} ms"
    )
    removal = lists_pb2.ListChange(
        remove=lists_pb2.RemoveEntry(
            entry=lists_pb2.EntryRef(authority=entry.authority, decision_no=entry.decision_no),
            removal=lists_pb2.Removal(
                removed_on=today.isoformat(),
                reason=lists_pb2.REMOVAL_REASON_REPAIR,
                authority="青岛市社会信用体系建设领导小组办公室",
                note="信用修复完成",
            ),
        )
    )
    with NodeClient(qingdao.config) as client:
        (result,) = client.submit([removal]).results
    if result.outcome != client_pb2.CHANGE_OUTCOME_APPLIED:
        raise DemoFailedError(f"Qingdao could not remove the entry: {result.reason}")
    took = federation.wait_until(
        "no city serves the entry", lambda: not any(_serving(federation, subject)), 30
    )
    federation.say(
        f"{qingdao.city} removes it after credit repair (信用修复): no city serves it as active "
        f"after {took * 1000:.0f} ms; each keeps it as history"
    )

    def caught_up() -> bool:
        for node in federation.nodes:
            with NodeClient(node.config) as client:
                sync = client.sync_status()
            if any(r.lag or (r.verified_size != 2 and r.origin == "370200") for r in sync.replicas):
                return False
        return True

    federation.wait_until("every replica is caught up", caught_up, 30)
    weihai = federation.nodes[3]
    with NodeClient(weihai.config) as client:
        view = format_status(client.status(), now=federation.clock.now(), sync=client.sync_status())
    federation.say(f"status at {weihai.city}: every list log verified, zero lag\n{view}")


def scenario_reports_and_ratings(federation: DemoFederation) -> None:
    """A report issued, verified and revoked; a rating shown on the common scale elsewhere.

    Qingdao issues a report that Weihai verifies, then revokes it; Yantai's rating of the
    company shows in Rizhao on the federation's common scale.
    """
    qingdao, yantai, weihai, rizhao = (federation.nodes[i] for i in (0, 1, 3, 4))
    today = china_date(federation.clock.now())
    entry = sample_entry("370200", 2, listed_on=today - dt.timedelta(days=120))
    subject = entry.subject.id
    with NodeClient(qingdao.config) as client:
        client.submit([lists_pb2.ListChange(add=entry_to_wire(entry))])
    with NodeClient(yantai.config) as client:
        client.submit_rating(
            subject,
            entry.subject.name,
            "tax-credit",
            grade="M",
            issued_on=today - dt.timedelta(days=30),
            valid_until=today + dt.timedelta(days=335),
            evidence_ref="烟台市税务局纳税信用评价〔2026〕",
        )

    federation.wait_until("Rizhao holds Yantai's rating", lambda: _rated_at(rizhao, subject), 30)
    with NodeClient(rizhao.config) as client:
        (view,) = client.subject_ratings(subject).ratings
    federation.say(
        f"{yantai.city} rates {entry.subject.name} {view.grade} on its {view.scale_name} scale; "
        f"{rizhao.city} shows common grade {view.common_grade}, "
        f"{'recognised' if view.recognised else 'not recognised'}: {view.reasons[0]}"
    )

    federation.wait_until("Qingdao holds the rating", lambda: _rated_at(qingdao, subject), 30)
    with NodeClient(qingdao.config) as client:
        # What Qingdao's own authorities record of the company goes into its report too.
        client.record_licence(
            subject,
            authority="青岛市行政审批服务局",
            licence_no="JY13702000012345",
            issued_on=china_date(SystemClock().now()) - dt.timedelta(days=400),
            summary="食品经营许可",
        )
        client.record_commitment(
            subject, made_on=china_date(SystemClock().now()), content="承诺所提交材料真实有效。"
        )
        issued = client.issue_report(subject)
    document = SignedReport.from_bytes(issued.report.document).report
    federation.say(
        f"{qingdao.city} issues report {issued.report_no} (verification code "
        f"{issued.verification_code}, {len(issued.report.document)} bytes signed: "
        f"{len(document.list_entries)} list entries, {len(document.ratings)} ratings, "
        f"{len(document.licences)} licence, {len(document.commitments)} commitment; "
        f"{len(issued.html)} bytes of printable HTML)"
    )
    with NodeClient(weihai.config) as client:
        verdict = client.verify_report(issued.report.document)
    if verdict.verdict != reports_pb2.REPORT_VERDICT_VALID:
        raise DemoFailedError(f"Weihai did not find the report valid: {verdict.summary}")
    federation.say(f"{weihai.city} verifies it: {verdict.summary}")
    with NodeClient(qingdao.config) as client:
        client.revoke_report(issued.report_no, "报告信息有误，已重新出具")

    def revoked_at_weihai() -> bool:
        with NodeClient(weihai.config) as client:
            answer = client.verify_report(issued.report.document)
        return answer.verdict == reports_pb2.REPORT_VERDICT_REVOKED

    took = federation.wait_until("Weihai sees the revocation", revoked_at_weihai, 40)
    with NodeClient(weihai.config) as client:
        verdict = client.verify_report(issued.report.document)
    federation.say(
        f"{qingdao.city} revokes it; {weihai.city} sees it {took:.1f}s later: {verdict.summary}"
    )


def _rated_at(node: DemoNode, subject: str) -> bool:
    with NodeClient(node.config) as client:
        return len(client.subject_ratings(subject).ratings) == 1


def _table_epochs(node: DemoNode) -> dict[str, tuple[str, int]]:
    """city -> (table id, epoch) of the matching tables ``node`` publishes and holds."""
    with NodeClient(node.config) as client:
        tables = client.matching_status().tables
    return {t.city_code: (t.table_id, t.epoch) for t in tables}


def _outcomes(response: matching_pb2.MatchOneResponse) -> dict[str, str]:
    names = {
        matching_pb2.CityMatch.OUTCOME_HIT: "HIT",
        matching_pb2.CityMatch.OUTCOME_NO_HIT: "no hit",
        matching_pb2.CityMatch.OUTCOME_UNAVAILABLE: "unavailable",
        matching_pb2.CityMatch.OUTCOME_REFUSED: "refused",
    }
    return {c.city_code: names.get(c.outcome, "?") for c in response.cities}


def scenario_private_matching(federation: DemoFederation) -> None:
    """Rizhao checks companies privately against every city's non-public lists.

    Qingdao lists a company on its watch list (重点关注名单: not public, so never replicated
    in clear); once Rizhao holds the epoch of Qingdao's encrypted table that covers it,
    Rizhao's check hits at Qingdao only, and a company on no list hits nowhere.
    """
    qingdao, rizhao = federation.nodes[0], federation.nodes[4]
    others = [n.member.city_code for n in federation.nodes if n is not rizhao]
    today = china_date(federation.clock.now())
    entry = sample_entry(
        "370200", 3, kind=ListKind.WATCH_LIST, listed_on=today - dt.timedelta(days=30)
    )
    subject = entry.subject.id
    federation.wait_until(
        "Rizhao holds every other city's matching table",
        lambda: set(others) <= set(_table_epochs(rizhao)),
        60,
    )
    before = _table_epochs(qingdao)["370200"]
    with NodeClient(qingdao.config) as client:
        (result,) = client.submit([lists_pb2.ListChange(add=entry_to_wire(entry))]).results
    if result.outcome != client_pb2.CHANGE_OUTCOME_APPLIED:
        raise DemoFailedError(f"Qingdao could not list the company: {result.reason}")
    start_s = time.monotonic()
    federation.wait_until(
        "Qingdao's table covers the entry", lambda: _table_epochs(qingdao)["370200"] != before, 30
    )
    table_id, epoch = _table_epochs(qingdao)["370200"]

    def rizhao_holds_it() -> bool:
        held = _table_epochs(rizhao).get("370200")
        return held is not None and held[0] == table_id and held[1] >= epoch

    federation.wait_until("Rizhao holds that epoch", rizhao_holds_it, 30)
    federation.say(
        f"{qingdao.city} lists {entry.subject.name} ({subject}) on 重点关注名单 (not public: "
        f"never replicated in clear); its encrypted table {table_id[:8]} reaches epoch {epoch} "
        f"and {rizhao.city} holds it {time.monotonic() - start_s:.1f}s later"
    )
    with NodeClient(rizhao.config) as client:
        took = time.monotonic()
        response = client.match_one(subject)
        took = time.monotonic() - took
    outcomes = _outcomes(response)
    expected = {code: "no hit" for code in others} | {"370200": "HIT"}
    if outcomes != expected:
        raise DemoFailedError(f"Rizhao's check of the listed company gave {outcomes}")
    (hit,) = (c for c in response.cities if c.city_code == "370200")
    federation.say(
        f"{rizhao.city} checks {subject} at {len(outcomes)} cities in parallel: HIT at "
        f"{qingdao.city} ({', '.join(ListKind(k).name_zh for k in hit.list_kinds)}), no hit "
        f"at {', '.join(c for c in others if c != '370200')} ({took * 1000:.0f} ms); "
        "no city learnt which company was checked"
    )
    with NodeClient(rizhao.config) as client:
        disclosed = client.disclose(
            "370200",
            subject,
            match_request_id=hit.match_request_id,
            purpose="信贷审查: 核实重点关注名单命中",
            legal_basis="《胶东经济圈公共信用信息共享协议》",
            requested_by="日照市信用中心",
        )
    (shown,) = disclosed.entries
    federation.say(
        f"{rizhao.city} asks {qingdao.city} for the entry (发起-响应-反馈): decision "
        f"{json.loads(shown.entry)['decision_no']}, disclosure {disclosed.disclosure_id}, "
        "audited on both sides"
    )
    clean = sample_uscc("371100", 9)
    with NodeClient(rizhao.config) as client:
        took = time.monotonic()
        response = client.match_one(clean)
        took = time.monotonic() - took
    outcomes = _outcomes(response)
    if outcomes != {code: "no hit" for code in others}:
        raise DemoFailedError(f"Rizhao's check of a company on no list gave {outcomes}")
    federation.say(
        f"{rizhao.city} checks {clean} (on no list): no hit at any of the "
        f"{len(outcomes)} cities ({took * 1000:.0f} ms)"
    )


SCENARIOS: list[Callable[[DemoFederation], None]] = [
    scenario_outsider_refused,
    scenario_manifest_update,
    scenario_sanction_list,
    scenario_reports_and_ratings,
    scenario_private_matching,
]


def _stop_on_signal(signum: int, frame: object) -> None:
    # SIGTERM/SIGHUP would end the demo without running its clean-up; an exception does.
    raise KeyboardInterrupt


def run_demo(*, workdir: Path | None, paillier_bits: int, keep: bool, say: Say = print) -> int:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    root = Path(tempfile.mkdtemp(prefix="credit-demo-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    try:
        with running_federation(root, paillier_bits=paillier_bits, say=say) as federation:
            say(format_status(federation.nodes[0].status(), now=federation.clock.now()))
            say("")
            for node in federation.nodes:
                status = node.status()
                seen = sum(1 for m in status.members if m.reachable)
                say(
                    f"  {node.city}: sees {seen}/{len(status.members)} members, "
                    f"manifest v{status.manifest_version}"
                )
            say("")
            for scenario in SCENARIOS:
                title = (scenario.__doc__ or scenario.__name__).splitlines()[0]
                say(f"--- {title}")
                scenario(federation)
    finally:
        if not keep and workdir is None:
            shutil.rmtree(root, ignore_errors=True)
        elif keep:
            say(f"node directories kept in {root}")
    say("demo finished: OK")
    return 0
