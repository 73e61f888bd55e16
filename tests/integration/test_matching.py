"""Private matching through real node processes: probes, batches, quotas, disclosure, CLI.

Three cities with 1024-bit Paillier keys and a one-second sync interval. Qingdao (370200)
holds the lists; Weihai (371000) is the querier of most tests; Weihai as a holder allows
each peer only a few subjects a day, which Yantai (370600) runs into.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from creditnet.v1 import client_pb2, lists_pb2, matching_pb2
from federation.clock import CHINA_TZ
from federation.errors import InvalidInputError, QuotaExceededError
from federation.subjects import resident_id_check_char, uscc_check_char
from node.cli.main import main
from node.client import NodeClient
from node.storage.database import open_database
from node.storage.matching import MatchAuditRepository
from tests.integration.conftest import Federation, running_federation, wait_for

pytestmark = pytest.mark.integration

QINGDAO, YANTAI, WEIHAI = "370200", "370600", "371000"
TODAY = dt.datetime.now(CHINA_TZ).date()
WEIHAI_QUOTA = 3
"""Subjects Yantai may check at Weihai per day: each check costs two units of the probe
quota (one OPRF evaluation, one probed subject)."""
WEIHAI_CHUNK = 4
HIT = matching_pb2.CityMatch.OUTCOME_HIT
NO_HIT = matching_pb2.CityMatch.OUTCOME_NO_HIT
REFUSED = matching_pb2.CityMatch.OUTCOME_REFUSED
RESIDENT = "37020219800101123" + resident_id_check_char("37020219800101123")


def uscc(serial: int) -> str:
    body = f"91370200MA{serial:07d}"
    return body + uscc_check_char(body)


def entry(serial: int, kind: str = "watch-list", subject: str = "") -> lists_pb2.ListEntry:
    return lists_pb2.ListEntry(
        list_kind=kind,
        subject=lists_pb2.Subject(id=subject or uscc(serial), name=f"青岛某某公司{serial}"),
        reason="多次违反合同约定",
        legal_basis="《青岛市社会信用条例》",
        authority="青岛市市场监督管理局",
        decision_no=f"青市监关〔2026〕{serial}号",
        listed_on=(TODAY - dt.timedelta(days=100)).isoformat(),
        measures=["加强日常监管"],
        appeal="可于60日内申请行政复议",
    )


def _configure(path: Path, city: str) -> None:
    text = path.read_text()
    text = re.sub(r"sync_interval_s = [0-9.]+", "sync_interval_s = 1.0", text)
    if city == WEIHAI:
        text = re.sub(
            r"probes_per_peer_per_day = \d+", f"probes_per_peer_per_day = {2 * WEIHAI_QUOTA}", text
        )
        text = re.sub(
            r"max_subjects_per_request = \d+", f"max_subjects_per_request = {WEIHAI_CHUNK}", text
        )
    path.write_text(text)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("matching")
    with running_federation(root, [QINGDAO, YANTAI, WEIHAI], _configure) as federation:
        yield federation


def client(fed: Federation, city: str) -> NodeClient:
    return NodeClient(fed.node(city).config, timeout_s=30)


def submit(fed: Federation, *changes: lists_pb2.ListChange) -> None:
    with client(fed, QINGDAO) as qingdao:
        results = qingdao.submit(list(changes)).results
    assert all(r.outcome == client_pb2.CHANGE_OUTCOME_APPLIED for r in results), results


def outcomes(fed: Federation, querier: str, subject: str) -> dict[str, int]:
    with client(fed, querier) as c:
        response = c.match_one(subject)
    return {m.city_code: m.outcome for m in response.cities}


def hits_at_qingdao(fed: Federation, subject: str) -> bool:
    return outcomes(fed, WEIHAI, subject)[QINGDAO] == HIT


def audit(fed: Federation, city: str) -> MatchAuditRepository:
    return MatchAuditRepository(open_database(fed.node(city).config.database_url))


@pytest.fixture(scope="module")
def listed(fed: Federation) -> list[str]:
    """Five subjects on Qingdao's watch list, one on a public list; matched at Weihai."""
    submit(
        fed,
        *(lists_pb2.ListChange(add=entry(s)) for s in range(1, 6)),
        lists_pb2.ListChange(add=entry(50, kind="serious-dishonesty")),
        lists_pb2.ListChange(add=entry(60, subject=RESIDENT)),
    )
    wait_for(lambda: hits_at_qingdao(fed, uscc(5)), timeout_s=60)
    return [uscc(s) for s in range(1, 6)]


def test_one_subject_hits_only_where_it_is_listed(fed: Federation, listed: list[str]) -> None:
    with client(fed, WEIHAI) as weihai:
        response = weihai.match_one(listed[0])
    by_city = {m.city_code: m for m in response.cities}
    assert set(by_city) == {QINGDAO, YANTAI}
    assert by_city[QINGDAO].outcome == HIT
    assert list(by_city[QINGDAO].list_kinds) == ["watch-list"]
    assert len(by_city[QINGDAO].match_request_id) == 16
    assert by_city[YANTAI].outcome == NO_HIT
    # A public list is replicated in clear, not matched privately; a clean subject hits nowhere.
    assert outcomes(fed, WEIHAI, uscc(50)) == {QINGDAO: NO_HIT, YANTAI: NO_HIT}
    assert outcomes(fed, WEIHAI, uscc(99)) == {QINGDAO: NO_HIT, YANTAI: NO_HIT}


def test_a_bad_identifier_is_refused_without_being_echoed(fed: Federation) -> None:
    bad = uscc(7)[:-1] + ("0" if uscc(7)[-1] != "0" else "1")
    with client(fed, WEIHAI) as weihai, pytest.raises(InvalidInputError) as caught:
        weihai.match_one(bad)
    assert bad not in caught.value.message


def test_batch_membership_and_count(fed: Federation, listed: list[str]) -> None:
    clean = [uscc(200 + i) for i in range(5)]
    subjects = [clean[0], listed[0], clean[1], listed[1], listed[2], clean[2], listed[0]]
    subjects += [clean[3], listed[3], listed[4], clean[4], uscc(50)]
    with client(fed, WEIHAI) as weihai:
        messages = list(weihai.match_batch(subjects, QINGDAO))
        counted = list(weihai.match_batch(subjects, QINGDAO, count_only=True))
    *progress, final = messages
    assert final.done and final.total_subjects == len(subjects)
    assert len(progress) >= 3  # 11 distinct subjects in requests of 4
    assert [p.done_subjects for p in progress] == sorted(p.done_subjects for p in progress)
    hits = {h.index: list(h.list_kinds) for h in final.hits}
    assert hits == {i: ["watch-list"] for i, s in enumerate(subjects) if s in listed}
    assert counted[-1].done and counted[-1].hit_count == 5 and not counted[-1].hits


def test_removal_stops_the_hit(fed: Federation) -> None:
    submit(fed, lists_pb2.ListChange(add=entry(30)))
    wait_for(lambda: hits_at_qingdao(fed, uscc(30)), timeout_s=30)
    removal = lists_pb2.RemoveEntry(
        entry=lists_pb2.EntryRef(
            authority="青岛市市场监督管理局", decision_no="青市监关〔2026〕30号"
        ),
        removal=lists_pb2.Removal(
            removed_on=TODAY.isoformat(),
            reason=lists_pb2.REMOVAL_REASON_DECISION_REVOKED,
            authority="青岛市市场监督管理局",
        ),
    )
    submit(fed, lists_pb2.ListChange(remove=removal))
    wait_for(lambda: not hits_at_qingdao(fed, uscc(30)), timeout_s=15)


def test_a_peer_over_quota_refuses_for_itself_only(fed: Federation, listed: list[str]) -> None:
    answers = [outcomes(fed, YANTAI, uscc(300 + i)) for i in range(WEIHAI_QUOTA + 1)]
    assert all(a == {QINGDAO: NO_HIT, WEIHAI: NO_HIT} for a in answers[:WEIHAI_QUOTA])
    assert answers[-1] == {QINGDAO: NO_HIT, WEIHAI: REFUSED}
    assert outcomes(fed, YANTAI, listed[0]) == {QINGDAO: HIT, WEIHAI: REFUSED}
    with client(fed, YANTAI) as yantai, pytest.raises(QuotaExceededError):
        list(yantai.match_batch([uscc(400)], WEIHAI))
    refused = [r for r in audit(fed, YANTAI).recent(direction="sent") if r.outcome == "refused"]
    assert refused and all(r.peer == WEIHAI for r in refused)


def test_disclosure_after_a_hit_is_audited_on_both_sides(
    fed: Federation, listed: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    subject = RESIDENT  # a personal identifier: never in clear in an audit record
    with client(fed, WEIHAI) as weihai:
        (hit,) = (m for m in weihai.match_one(subject, [QINGDAO]).cities)
        assert hit.outcome == HIT
        answer = weihai.disclose(
            QINGDAO,
            subject,
            match_request_id=hit.match_request_id,
            # A clerk may name the subject in the free text too: hidden in both audits.
            purpose=f"贷前审查：{subject}",
            legal_basis=f"《青岛市社会信用条例》第二十条（{subject}）",
            requested_by="威海市信用中心",
        )
    (disclosed,) = answer.entries
    assert disclosed.list_kind == "watch-list" and subject.encode() in disclosed.entry
    assert answer.disclosure_id
    sent = [r for r in audit(fed, WEIHAI).recent(direction="sent") if r.mode == "disclose"]
    received = [r for r in audit(fed, QINGDAO).recent(direction="received") if r.mode == "disclose"]
    assert sent and received
    for record in (sent[0], received[0]):
        assert "purpose: 贷前审查：[hidden]" in (record.detail or ""), record
        assert "basis: 《青岛市社会信用条例》第二十条（[hidden]）" in (record.detail or ""), record
    for record in [*audit(fed, WEIHAI).recent(), *audit(fed, QINGDAO).recent()]:
        text = f"{record.reason} {record.detail} {record.subject_ref}"
        assert RESIDENT not in text, record
    probes = [r for r in audit(fed, QINGDAO).recent(direction="received") if r.mode != "disclose"]
    assert probes and all(r.peer in (YANTAI, WEIHAI) for r in probes)
    # Each audit, as the running node wrote it, is an intact chain; read by the operator's
    # commands, it names no subject either.
    for city in (WEIHAI, QINGDAO):
        home = str(fed.node(city).config.home)
        written = audit(fed, city).count()
        code, out, _ = run(capsys, "audit", "verify", "--dir", home)
        assert code == 0 and out.startswith("intact: "), out
        assert int(out.split()[1]) >= written  # every row so far (the node may add more)
        code, out, _ = run(capsys, "audit", "show", "--dir", home, "--limit", "1000")
        assert code == 0 and "disclose" in out and RESIDENT not in out


def test_status_shows_the_tables_held(fed: Federation, listed: list[str]) -> None:
    with client(fed, WEIHAI) as weihai:
        tables = {t.city_code: t for t in weihai.matching_status().tables}
    assert set(tables) == {QINGDAO, YANTAI, WEIHAI}
    assert tables[QINGDAO].epoch >= 2 and tables[QINGDAO].bins > 0


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_cli_match_verbs(
    fed: Federation, listed: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(fed.node(WEIHAI).config.home)
    code, out, _ = run(capsys, "match", "one", listed[2], "--dir", home)
    assert code == 0
    assert re.search(rf"{QINGDAO} .*HIT .*重点关注名单", out), out
    assert re.search(rf"{YANTAI} .*no hit", out), out

    code, out, _ = run(capsys, "match", "one", uscc(99), "--city", YANTAI, "--dir", home)
    assert code == 0 and "no hit at 1 cities" in out

    subjects = tmp_path / "applicants.csv"
    rows = [uscc(99), listed[2], "not-an-id", listed[3]]
    subjects.write_text("name,subject_id\n" + "".join(f"x,{r}\n" for r in rows))
    result = tmp_path / "hits.csv"
    code, out, err = run(
        capsys, "match", "batch", str(subjects), "--peer", QINGDAO, "--out", str(result),
        "--dir", home,
    )  # fmt: skip
    assert code == 2, out + err  # one row left out
    assert "row 3" in err and "not-an-id" not in err
    assert "2 of 3 subjects" in out
    lines = result.read_text(encoding="utf-8-sig").splitlines()
    assert lines == [
        "row,subject_id,city,list_kinds",
        f"2,{listed[2]},{QINGDAO},watch-list",
        f"4,{listed[3]},{QINGDAO},watch-list",
    ]

    plain = tmp_path / "applicants.txt"
    plain.write_text("\n".join([listed[0], uscc(98), listed[4], listed[0]]) + "\n")
    code, out, _ = run(capsys, "match", "count", str(plain), "--peer", QINGDAO, "--dir", home)
    assert code == 0 and "2 of 3 distinct subjects" in out

    code, _, err = run(capsys, "match", "one", "91370200MA000000", "--dir", home)
    assert code == 2 and "error" in err

    code, out, _ = run(capsys, "match", "status", "--dir", home)
    assert code == 0 and QINGDAO in out and "own" in out
