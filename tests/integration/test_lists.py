"""Sanction lists across real nodes: recorded at one city, verified and served by all."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator

import grpc
import pytest

from creditnet.v1 import client_pb2, client_pb2_grpc, lists_pb2
from federation.clock import CHINA_TZ
from federation.subjects import resident_id_check_char, uscc_check_char
from node.demo import DemoNode, all_reachable, start, stop
from node.keystore import read_secret
from tests.integration.conftest import Federation, form_federation, wait_for

pytestmark = pytest.mark.integration

TODAY = dt.datetime.now(CHINA_TZ).date()
RESIDENT = "11010119900307777" + resident_id_check_char("11010119900307777")


def uscc(serial: int) -> str:
    body = f"91370200MA{serial:07d}"[:17]
    return body + uscc_check_char(body)


def entry(
    serial: int, *, kind: str = "serious-dishonesty", listed_on: dt.date | None = None
) -> lists_pb2.ListEntry:
    return lists_pb2.ListEntry(
        list_kind=kind,
        subject=lists_pb2.Subject(id=uscc(serial), name=f"青岛某某公司{serial}"),
        reason="拒不履行法定义务",
        legal_basis="《失信行为纠正后的信用信息修复管理办法》",
        authority="青岛市市场监督管理局",
        decision_no=f"青市监信〔2026〕{serial}号",
        listed_on=(listed_on or TODAY - dt.timedelta(days=400)).isoformat(),
        measures=["限制参与政府采购"],
        appeal="可于60日内向青岛市人民政府申请行政复议",
    )


class Client:
    def __init__(self, node: DemoNode) -> None:
        token = read_secret(node.config.client_token_path).decode().strip()
        credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(node.config.tls_cert_path.read_bytes()),
            grpc.access_token_call_credentials(token),
        )
        self.channel = grpc.secure_channel(
            node.config.client_listen,
            credentials,
            options=[("grpc.ssl_target_name_override", f"{node.member.city_code}.node.creditnet")],
        )
        self.stub = client_pb2_grpc.ClientServiceStub(self.channel)

    def submit(self, *changes: lists_pb2.ListChange) -> list[client_pb2.ChangeResult]:
        request = client_pb2.SubmitListChangesRequest(changes=list(changes))
        return list(self.stub.SubmitListChanges(request, timeout=30).results)

    def status(
        self, subject: str, *, inactive: bool = False
    ) -> client_pb2.GetSubjectStatusResponse:
        request = client_pb2.GetSubjectStatusRequest(subject_id=subject, include_inactive=inactive)
        return self.stub.GetSubjectStatus(request, timeout=10)


@pytest.fixture(scope="module")
def lists_federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    fed = form_federation(tmp_path_factory.mktemp("lists"), ["370200", "370600", "371000"])
    for node in fed.nodes:
        start(node)
    try:
        wait_for(lambda: all_reachable(fed.nodes, 1), timeout_s=60)
        yield fed
    finally:
        assert stop(fed.nodes) == [0, 0, 0]


@pytest.fixture(scope="module")
def clients(lists_federation: Federation) -> dict[str, Client]:
    return {n.member.city_code: Client(n) for n in lists_federation.nodes}


def add(serial: int, **kwargs: object) -> lists_pb2.ListChange:
    return lists_pb2.ListChange(add=entry(serial, **kwargs))  # type: ignore[arg-type]


def active_everywhere(clients: dict[str, Client], subject: str, expected: bool) -> bool:
    for client in clients.values():
        views = client.status(subject).entries
        if expected != any(v.active and v.origin == "370200" for v in views):
            return False
    return True


def test_an_entry_reaches_every_city_and_its_removal_too(clients: dict[str, Client]) -> None:
    (result,) = clients["370200"].submit(add(1))
    assert result.outcome == client_pb2.CHANGE_OUTCOME_APPLIED, result.reason
    wait_for(lambda: active_everywhere(clients, uscc(1), True), timeout_s=10)
    view = clients["371000"].status(uscc(1)).entries[0]
    assert view.origin == "370200" and view.entry.decision_no == "青市监信〔2026〕1号"
    assert view.entry.subject.name == "青岛某某公司1"

    removal = lists_pb2.ListChange(
        remove=lists_pb2.RemoveEntry(
            entry=lists_pb2.EntryRef(
                authority="青岛市市场监督管理局", decision_no="青市监信〔2026〕1号"
            ),
            removal=lists_pb2.Removal(
                removed_on=TODAY.isoformat(),
                reason=lists_pb2.REMOVAL_REASON_REPAIR,
                authority="青岛市发展和改革委员会",
            ),
        )
    )
    (result,) = clients["370200"].submit(removal)
    assert result.outcome == client_pb2.CHANGE_OUTCOME_APPLIED, result.reason
    wait_for(lambda: active_everywhere(clients, uscc(1), False), timeout_s=10)
    kept = clients["370600"].status(uscc(1), inactive=True).entries
    assert len(kept) == 1 and not kept[0].active and "repair" in kept[0].why


def test_the_same_decision_twice_is_one_entry(clients: dict[str, Client]) -> None:
    first, again = clients["370200"].submit(add(2), add(2))
    assert first.outcome == client_pb2.CHANGE_OUTCOME_APPLIED
    assert again.outcome == client_pb2.CHANGE_OUTCOME_DUPLICATE
    changed = entry(2)
    changed.reason = "另一事由"
    (conflict,) = clients["370200"].submit(lists_pb2.ListChange(add=changed))
    assert conflict.outcome == client_pb2.CHANGE_OUTCOME_REJECTED
    assert "amend" in conflict.reason


def test_bad_changes_are_rejected_one_by_one(clients: dict[str, Client]) -> None:
    bad_id = entry(3)
    bad_id.subject.id = "91370200MA0000003X"
    future = entry(4, listed_on=TODAY + dt.timedelta(days=3))
    unknown_kind = entry(5, kind="no-such-list")
    results = clients["370200"].submit(
        lists_pb2.ListChange(add=bad_id),
        add(6),
        lists_pb2.ListChange(add=future),
        lists_pb2.ListChange(add=unknown_kind),
    )
    outcomes = [r.outcome for r in results]
    assert outcomes == [
        client_pb2.CHANGE_OUTCOME_REJECTED,
        client_pb2.CHANGE_OUTCOME_APPLIED,
        client_pb2.CHANGE_OUTCOME_REJECTED,
        client_pb2.CHANGE_OUTCOME_REJECTED,
    ]
    assert "check" in results[0].reason.lower()
    assert "future" in results[2].reason
    assert "no-such-list" in results[3].reason


def test_a_non_public_list_is_not_replicated_in_clear(clients: dict[str, Client]) -> None:
    recent = TODAY - dt.timedelta(days=30)
    (result,) = clients["370200"].submit(add(7, kind="watch-list", listed_on=recent))
    assert result.outcome == client_pb2.CHANGE_OUTCOME_APPLIED, result.reason
    assert clients["370200"].status(uscc(7)).entries[0].entry.list_kind == "watch-list"

    def replicated() -> bool:
        try:
            history = clients["370600"].stub.GetEntryHistory(
                client_pb2.GetEntryHistoryRequest(origin="370200", entry_id=result.entry_id),
                timeout=10,
            )
        except grpc.RpcError as exc:
            assert exc.code() is grpc.StatusCode.NOT_FOUND  # not replicated yet
            return False
        return len(history.events) == 1 and history.events[0].withheld

    wait_for(replicated, timeout_s=10)
    assert clients["370600"].status(uscc(7)).entries == []


def test_an_objection_shows_in_every_replica(clients: dict[str, Client]) -> None:
    clients["370200"].submit(add(8))
    objection = lists_pb2.ListChange(
        objection=lists_pb2.ObjectEntry(
            entry=lists_pb2.EntryRef(
                authority="青岛市市场监督管理局", decision_no="青市监信〔2026〕8号"
            ),
            objection=lists_pb2.Objection(open=True, on=TODAY.isoformat(), note="当事人提出异议"),
        )
    )
    (result,) = clients["370200"].submit(objection)
    assert result.outcome == client_pb2.CHANGE_OUTCOME_APPLIED, result.reason

    def flagged() -> bool:
        return all(
            any(v.objection_pending for v in c.status(uscc(8)).entries) for c in clients.values()
        )

    wait_for(flagged, timeout_s=10)


def test_export_pages_through_every_entry_once(clients: dict[str, Client]) -> None:
    clients["370600"].submit(*(lists_pb2.ListChange(add=entry(100 + i)) for i in range(25)))
    seen: list[str] = []
    token = ""
    while True:
        page = clients["370600"].stub.ExportEntries(
            client_pb2.ExportEntriesRequest(page_size=7, page_token=token), timeout=10
        )
        seen.extend(f"{v.origin}/{v.entry_id}" for v in page.entries)
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen))
    assert sum(1 for s in seen if s.startswith("370600/")) == 25


def test_sync_status_shows_zero_lag(clients: dict[str, Client]) -> None:
    def caught_up() -> bool:
        status = clients["371000"].stub.GetSyncStatus(client_pb2.GetSyncStatusRequest(), timeout=10)
        return all(r.lag == 0 and r.verified_size > 0 for r in status.replicas)

    wait_for(caught_up, timeout_s=15)


def test_a_date_typed_wrong_is_refused_without_echoing_it(clients: dict[str, Client]) -> None:
    listed = entry(300)
    listed.listed_on = RESIDENT
    ended = entry(301)
    ended.publicity_end = f"至{RESIDENT}"
    ref = lists_pb2.EntryRef(authority="青岛市市场监督管理局", decision_no="青市监信〔2026〕1号")
    removal = lists_pb2.Removal(
        removed_on=RESIDENT, reason=lists_pb2.REMOVAL_REASON_REPAIR, authority="青岛市发改委"
    )
    results = clients["370200"].submit(
        lists_pb2.ListChange(add=listed),
        lists_pb2.ListChange(add=ended),
        lists_pb2.ListChange(remove=lists_pb2.RemoveEntry(entry=ref, removal=removal)),
        lists_pb2.ListChange(
            objection=lists_pb2.ObjectEntry(entry=ref, objection=lists_pb2.Objection(on=RESIDENT))
        ),
    )
    fields = ["listed_on", "publicity_end", "removed_on", "on"]
    assert [r.outcome for r in results] == [client_pb2.CHANGE_OUTCOME_REJECTED] * 4
    for result, field in zip(results, fields, strict=True):
        assert result.reason.startswith(f"{field}: ")
        assert "is not a date YYYY-MM-DD" in result.reason
        assert RESIDENT not in result.reason and RESIDENT[:15] not in result.reason


@pytest.mark.parametrize(
    ("origin", "entry_id", "words"),
    [
        ("370200", RESIDENT, "entry_id must be 32 lower-case hex digits"),
        ("370200", f"{RESIDENT}{'x' * 14}", "entry_id must be 32 lower-case hex digits"),
        (RESIDENT, "0" * 32, "is not a six-digit division code"),
    ],
    ids=["id-as-entry", "32-characters", "id-as-origin"],
)
def test_entry_history_of_malformed_input_is_refused_without_echoing_it(
    clients: dict[str, Client], origin: str, entry_id: str, words: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        clients["370200"].stub.GetEntryHistory(
            client_pb2.GetEntryHistoryRequest(origin=origin, entry_id=entry_id), timeout=10
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    assert words in details
    assert RESIDENT[:15] not in details


def test_entry_history_of_an_unknown_entry_is_not_found(clients: dict[str, Client]) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        clients["370200"].stub.GetEntryHistory(
            client_pb2.GetEntryHistoryRequest(origin="370200", entry_id="0" * 32), timeout=10
        )
    assert refused.value.code() is grpc.StatusCode.NOT_FOUND
    assert refused.value.details() == f"no entry {'0' * 32} of 370200 is held here"


@pytest.mark.parametrize(
    "token",
    [
        base64.urlsafe_b64encode(b"[" * 50000).decode(),
        base64.urlsafe_b64encode(b"[" * 300).decode(),
        base64.urlsafe_b64encode(b'["370200", "red-list", "' + b"0" * 1000 + b'"]').decode(),
        "not base64 at all",
    ],
    ids=["deeply-nested", "nested", "oversized", "not-base64"],
)
def test_a_page_token_this_node_did_not_issue_is_refused(
    clients: dict[str, Client], token: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        clients["370200"].stub.ExportEntries(
            client_pb2.ExportEntriesRequest(page_token=token), timeout=10
        )
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token is not one this node issued" in (refused.value.details() or "")
