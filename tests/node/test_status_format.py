"""``credit-node status`` output: tables that line up with Chinese names, and what they say."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditnet.v1 import client_pb2
from node.cli.status import format_status
from node.cli.table import display_width, render_table

NOW = dt.datetime(2026, 6, 1, 8, 0, 0, tzinfo=dt.UTC)


def width(text: str) -> int:
    # Written out again here rather than imported, so the test does not trust the code.
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def column_starts(line: str, cells: Sequence[str]) -> list[int]:
    """Display column at which each (non-empty, space-free) cell starts on ``line``."""
    starts, position = [], 0
    for cell in cells:
        index = line.index(cell, position)
        starts.append(width(line[:index]))
        position = index + len(cell)
    return starts


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0), ("abc", 3), ("青岛", 4), ("青岛 Qingdao", 12), ("ＡＢ", 4), ("é", 1)],
)
def test_display_width(text: str, expected: int) -> None:
    assert display_width(text) == expected


def test_columns_line_up_with_chinese_names() -> None:
    header = ["CITY", "NAME", "STATE"]
    rows = [
        ["370200", "青岛_Qingdao", "yes"],
        ["370600", "烟台_Yantai", "NO"],
        ["371000", "威海_Weihai", "self"],
        ["999999", "x", "-"],
    ]
    lines = render_table(header, rows).splitlines()
    assert len(lines) == 5
    starts = [
        column_starts(line, cells) for line, cells in zip(lines, [header, *rows], strict=True)
    ]
    assert all(s == starts[0] for s in starts), starts
    # The name column is as wide as its widest cell (青岛_Qingdao: 2*2 + 8) plus two spaces.
    assert starts[0] == [0, 8, 8 + 12 + 2]


def test_no_trailing_spaces() -> None:
    text = render_table(["A", "LONG HEADER"], [["青岛", ""], ["x", "y"]])
    assert all(line == line.rstrip() for line in text.splitlines())


cell_text = st.text(st.sampled_from("aZ9-青岛烟台威海ＡＢ"), min_size=1, max_size=8)


@given(
    st.integers(min_value=1, max_value=5).flatmap(
        lambda n: st.tuples(
            st.lists(cell_text, min_size=n, max_size=n),
            st.lists(st.lists(cell_text, min_size=n, max_size=n), max_size=6),
        )
    )
)
def test_columns_always_line_up(table: tuple[list[str], list[list[str]]]) -> None:
    header, rows = table
    lines = render_table(header, rows).splitlines()
    starts = [
        column_starts(line, cells) for line, cells in zip(lines, [header, *rows], strict=True)
    ]
    assert all(s == starts[0] for s in starts)
    # Each column is exactly as wide as its widest cell, then two spaces.
    expected, offset = [], 0
    for column in zip(header, *rows, strict=True):
        expected.append(offset)
        offset += max(width(cell) for cell in column) + 2
    assert starts[0] == expected


# --- format_status ---------------------------------------------------------------------


def member(
    code: str,
    name: str,
    *,
    is_self: bool = False,
    reachable: bool = False,
    version: int = 0,
    contact: dt.datetime | None = None,
    error: str = "",
) -> client_pb2.MemberStatus:
    status = client_pb2.MemberStatus(
        city_code=code,
        name=name,
        endpoint=f"node-{code}.example.cn:7443",
        is_self=is_self,
        reachable=reachable,
        manifest_version=version,
        last_error=error,
    )
    if contact is not None:
        status.last_contact.FromDatetime(contact)
    return status


def event(at: dt.datetime, kind: str, detail: str) -> client_pb2.NodeEvent:
    node_event = client_pb2.NodeEvent(kind=kind, detail=detail)
    node_event.at.FromDatetime(at)
    return node_event


@pytest.fixture
def status() -> client_pb2.GetStatusResponse:
    response = client_pb2.GetStatusResponse(
        city_code="370200",
        federation_id="jiaodong",
        manifest_version=4,
        members=[
            member("370200", "青岛 Qingdao", is_self=True, reachable=True, version=4, contact=NOW),
            member(
                "370600",
                "烟台 Yantai",
                reachable=True,
                version=4,
                contact=NOW - dt.timedelta(seconds=42),
            ),
            member(
                "370700",
                "潍坊 Weifang",
                reachable=False,
                version=3,
                contact=NOW - dt.timedelta(hours=5),
                error="connection refused",
            ),
        ],
        recent_events=[
            event(NOW - dt.timedelta(minutes=1), "manifest.adopted", "version 4"),
            event(NOW - dt.timedelta(days=1), "manifest.rejected", "version 9: expired"),
        ],
    )
    response.manifest_expires.FromDatetime(NOW + dt.timedelta(days=365))
    return response


def table_rows(text: str) -> dict[str, str]:
    """The table lines of ``format_status`` output, by city code."""
    return {line.split()[0]: line for line in text.splitlines() if line[:6].isdigit()}


def test_status_header(status: client_pb2.GetStatusResponse) -> None:
    text = format_status(status, now=NOW)
    lines = text.splitlines()
    assert lines[0] == (
        "federation jiaodong  manifest v4 (expires 2027-06-01T08:00:00Z)  seen from 370200"
    )
    assert lines[1] == "2 of 3 members reachable"


def test_status_rows(status: client_pb2.GetStatusResponse) -> None:
    rows = table_rows(format_status(status, now=NOW))
    assert set(rows) == {"370200", "370600", "370700"}
    assert rows["370200"].split()[-3:] == ["self", "v4", "-"]
    assert rows["370600"].split()[-4:] == ["yes", "v4", "42s", "ago"]
    assert "connection refused" not in rows["370600"]
    assert rows["370700"].split()[-5:] == [
        "NO",
        "v3",
        "2026-06-01T03:00:00Z",  # more than two hours ago: the time itself
        "connection",
        "refused",
    ]


def test_status_table_lines_up(status: client_pb2.GetStatusResponse) -> None:
    lines = format_status(status, now=NOW).splitlines()
    header = next(line for line in lines if line.startswith("CITY"))
    starts = column_starts(header, ["CITY", "NAME", "ENDPOINT", "REACHABLE", "MANIFEST"])
    for m in status.members:
        line = table_rows("\n".join(lines))[m.city_code]
        state = "self" if m.is_self else ("yes" if m.reachable else "NO")
        cells = [m.city_code, m.name, m.endpoint, state, f"v{m.manifest_version}"]
        assert column_starts(line, cells) == starts


def test_member_never_contacted(status: client_pb2.GetStatusResponse) -> None:
    del status.members[1:]
    status.members.append(member("371000", "威海 Weihai", error="no route to host"))
    text = format_status(status, now=NOW)
    row = table_rows(text)["371000"]
    assert " NO " in row
    assert " - " in row  # no manifest version known
    assert "never" in row
    assert row.endswith("no route to host")
    assert "1 of 2 members reachable" in text


@pytest.mark.parametrize(
    ("ago", "shown"),
    [
        (dt.timedelta(seconds=0), "0s ago"),
        (dt.timedelta(seconds=119), "119s ago"),
        (dt.timedelta(seconds=120), "2m ago"),
        (dt.timedelta(minutes=119, seconds=59), "119m ago"),
        (dt.timedelta(hours=2), "2026-06-01T06:00:00Z"),
        (-dt.timedelta(seconds=30), "0s ago"),  # a peer's clock ahead of ours
    ],
)
def test_last_contact(status: client_pb2.GetStatusResponse, ago: dt.timedelta, shown: str) -> None:
    status.members[1].last_contact.FromDatetime(NOW - ago)
    assert table_rows(format_status(status, now=NOW))["370600"].endswith(shown)


def test_recent_events_listed_newest_first(status: client_pb2.GetStatusResponse) -> None:
    text = format_status(status, now=NOW)
    head, _, events = text.partition("\n\nrecent events (newest first):\n")
    assert events.splitlines() == [
        "  2026-06-01T07:59:00Z  manifest.adopted  version 4",
        "  2026-05-31T08:00:00Z  manifest.rejected  version 9: expired",
    ]
    assert "manifest.adopted" not in head


def test_no_events_no_section(status: client_pb2.GetStatusResponse) -> None:
    del status.recent_events[:]
    assert "recent events" not in format_status(status, now=NOW)


def sync_status(*, blocked: bool = False) -> client_pb2.GetSyncStatusResponse:
    response = client_pb2.GetSyncStatusResponse(
        own_log_size=120,
        replicas=[
            client_pb2.ReplicaSync(origin="370600", verified_size=80, latest_seen_size=80, lag=0),
            client_pb2.ReplicaSync(
                origin="370700",
                verified_size=10,
                latest_seen_size=15,
                lag=5,
                last_error="UNAVAILABLE: connection refused",
                blocked=blocked,
                blocked_reason="split view: two different roots signed for size 15"
                if blocked
                else "",
            ),
        ],
    )
    if blocked:
        view = response.split_views.add(
            origin="370700", reason="two different roots signed for size 15", reported_by="370600"
        )
        view.detected_at.FromDatetime(NOW)
    return response


def test_status_shows_list_log_sizes_and_lag(status: client_pb2.GetStatusResponse) -> None:
    text = format_status(status, now=NOW, sync=sync_status())
    header = text.splitlines()[2]
    assert "LIST LOG" in header and "LAG" in header
    rows = table_rows(text)
    assert rows["370200"].split()[-2:] == ["120", "-"]
    assert " 80 " in rows["370600"] and rows["370600"].split()[-1] == "0"
    # 370700 is unreachable: its own error is shown, with the replica's size and lag.
    assert rows["370700"].split()[-4:-2] == ["10", "5"]
    assert "connection refused" in rows["370700"]
    assert "SPLIT VIEWS" not in text


def test_status_shows_split_views_and_stopped_sync(status: client_pb2.GetStatusResponse) -> None:
    text = format_status(status, now=NOW, sync=sync_status(blocked=True))
    assert "SPLIT VIEWS" in text
    assert "370700: two different roots signed for size 15 (reported by 370600" in text
    assert "sync stopped: split view" in table_rows(text)["370700"]


def test_status_flags_an_expired_manifest(status: client_pb2.GetStatusResponse) -> None:
    status.manifest_expires.FromDatetime(NOW - dt.timedelta(hours=1))
    assert "EXPIRED" in format_status(status, now=NOW).splitlines()[0]
