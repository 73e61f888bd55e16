"""List-log sync under faults, with real node processes: a receiver killed with SIGKILL in
the middle of a sync, a stream cut in the middle of a batch by a TCP proxy, a publisher
restarted during a sync, and publishers that rewrite their history (a fork, a rollback, two
different histories shown to two cities).

The bar (issue 3): replicas converge to exactly the publisher's log (equal roots), with
nothing lost or applied twice (leaves, entries and head agree, counted in the database),
and a rewritten history is detected, recorded as a split view and stops the sync.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from creditnet.v1 import client_pb2, lists_pb2
from federation.errors import CreditNetError
from node.client import NodeClient
from node.config import NodeConfig
from node.demo import DemoNode, start
from node.replication import MAX_BATCH
from node.samples import sample_entry
from node.service.convert import entry_to_wire
from tests.integration.faults import (
    LISTED_ON,
    CuttingProxy,
    LogState,
    alternative_database,
    blocked,
    copy_database,
    database_named,
    form,
    kill9,
    log_state,
    logged,
    populate,
    prefix_root,
    running,
    split_views,
    sqlite_path,
    swap_in,
    terminate,
    until,
)

pytestmark = pytest.mark.integration

P, A, B = "370200", "370600", "371000"  # publisher, replicas

# Sizes that make a sync take a couple of seconds (about 2,500 leaves a second here).
KILL_N = 6000
CUT_N = 3000
RESTART_N = 5000
FORK_N = 40
SYNC_INTERVAL_S = 1.0


@pytest.fixture(autouse=True)
def quick_sync_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    # The node processes inherit the environment: a sync and checkpoint-exchange round
    # every second instead of five keeps the waits short. Backoff is unchanged.
    monkeypatch.setenv("CREDIT_NODE_FEDERATION_SYNC_INTERVAL_S", str(SYNC_INTERVAL_S))


def matches(replica: DemoNode, want: LogState) -> bool:
    state = log_state(replica.config, P)
    return state.size == want.size and state.root == want.root


def assert_exact_copy(replicas: Sequence[DemoNode], want: LogState) -> None:
    for node in replicas:
        state = log_state(node.config, P)
        assert state.root == want.root, f"{node.member.city_code} has another root"
        assert state.consistent(), state
        assert (state.size, state.leaves, state.entries) == (want.size,) * 3, state


def add_changes(serials: range) -> list[lists_pb2.ListChange]:
    return [
        lists_pb2.ListChange(add=entry_to_wire(sample_entry(P, s, listed_on=LISTED_ON)))
        for s in serials
    ]


def answers(config: NodeConfig) -> bool:
    try:
        with NodeClient(config, timeout_s=2) as client:
            client.status()
    except CreditNetError:
        return False
    return True


# --- crashes and cuts -------------------------------------------------------------------


def test_a_receiver_killed_mid_sync_resumes_to_the_same_log(tmp_path: Path) -> None:
    fed = form(tmp_path, [P, A])
    pub, rec = fed.nodes
    populate(pub.config, range(KILL_N))
    want = log_state(pub.config, P)
    with running(fed.nodes):
        start(pub)
        start(rec)
        until(
            "the receiver is in the middle of the sync",
            lambda: 0 < log_state(rec.config, P).size < KILL_N - MAX_BATCH,
            watch=fed.nodes,
            interval_s=0.02,
        )
        kill9(rec)
        cut = log_state(rec.config, P)
        # What survived the kill is whole batches, verified: a prefix of the publisher's log.
        assert cut.consistent(), cut
        assert 0 < cut.size < KILL_N and cut.size % MAX_BATCH == 0, cut
        assert cut.root == prefix_root(pub.config, P, cut.size)

        start(rec)
        until("the receiver caught up", lambda: matches(rec, want), watch=fed.nodes)
    assert_exact_copy([rec], want)
    assert len(logged(rec, "node started")) == 2
    # Resumed where it stopped: no batch was offered twice to the store.
    assert not [m for m in logged(rec, "sync failed") if "expected" in str(m["reason"])]


def test_a_stream_cut_mid_batch_is_retried_and_applies_nothing_partial(tmp_path: Path) -> None:
    fed = form(tmp_path, [P, A], proxied=P)
    pub, rec = fed.nodes
    populate(pub.config, range(CUT_N))
    want = log_state(pub.config, P)
    # A batch of 1000 sample leaves is about 900 kB on the wire: the first connection is cut
    # inside the first batch, the second inside the second batch, the third passes.
    cut_after = [200_000, 1_300_000]
    host, port = pub.config.peer_listen.rsplit(":", 1)
    proxy_port = int(pub.member.endpoint.rsplit(":", 1)[1])
    seen: list[LogState] = []

    def caught_up() -> bool:
        seen.append(log_state(rec.config, P))
        return seen[-1].size == want.size and seen[-1].root == want.root

    with (
        CuttingProxy(proxy_port, (host, int(port)), cut_after) as proxy,
        running(fed.nodes),
    ):
        start(pub)
        start(rec)
        until("the receiver caught up", caught_up, watch=fed.nodes, interval_s=0.05)
    assert proxy.cuts == cut_after, proxy.cuts
    assert proxy.connections >= len(cut_after) + 1
    assert_exact_copy([rec], want)
    # Every state seen while it ran was whole verified batches.
    for state in seen:
        assert state.consistent() and state.size % MAX_BATCH in (0, CUT_N % MAX_BATCH), state
    failures = logged(rec, "sync failed")
    assert len(failures) >= len(cut_after), failures
    assert all(m["origin"] == P and "retry_in_s" in m for m in failures)


def test_a_publisher_restarted_mid_sync_is_followed_to_its_new_root(tmp_path: Path) -> None:
    fed = form(tmp_path, [P, A, B])
    pub, *replicas = fed.nodes
    populate(pub.config, range(RESTART_N))
    with running(fed.nodes):
        for node in fed.nodes:
            start(node)
        until(
            "a replica is in the middle of the sync",
            lambda: 0 < log_state(replicas[0].config, P).size < RESTART_N - MAX_BATCH,
            watch=fed.nodes,
            interval_s=0.02,
        )
        assert terminate(pub) == 0
        for node in replicas:
            during = log_state(node.config, P)
            assert during.consistent() and during.size % MAX_BATCH == 0, during
        start(pub)
        until("the publisher answers", lambda: answers(pub.config), watch=fed.nodes)
        with NodeClient(pub.config) as client:
            results = client.submit(add_changes(range(RESTART_N, RESTART_N + 25))).results
        assert [r.outcome for r in results] == [client_pb2.CHANGE_OUTCOME_APPLIED] * 25
        want = log_state(pub.config, P)
        assert want.size == RESTART_N + 25
        until(
            "every replica has the new root",
            lambda: all(matches(n, want) for n in replicas),
            watch=fed.nodes,
        )
    assert_exact_copy(replicas, want)


# --- rewritten histories ----------------------------------------------------------------


def test_a_forked_or_rolled_back_log_is_detected_and_stops_the_sync(tmp_path: Path) -> None:
    fed = form(tmp_path, [P, A, B])
    pub, *replicas = fed.nodes
    manifest = fed.manifest.to_bytes()
    # The honest history; a copy of it three entries short (the very same leaves); and a
    # fork: longer, other entries, signed with the publisher's real key.
    populate(pub.config, range(FORK_N - 3))
    prefix = database_named(pub.config, "prefix.db")
    copy_database(sqlite_path(pub.config), sqlite_path(prefix))
    populate(pub.config, range(FORK_N - 3, FORK_N))
    fork = alternative_database(pub.config, "fork.db", manifest)
    populate(fork, range(1000, 1000 + FORK_N + 5))
    honest = log_state(pub.config, P)
    assert log_state(prefix, P).root == prefix_root(pub.config, P, FORK_N - 3)

    with running(fed.nodes):
        for node in fed.nodes:
            start(node)
        until("both replicas hold the log", lambda: all(matches(n, honest) for n in replicas))
        assert terminate(pub) == 0
        kept = swap_in(pub, fork, keep_as="honest.db")
        start(pub)
        until(
            "both replicas detected the fork",
            lambda: all(blocked(n.config, P) for n in replicas),
            watch=fed.nodes,
        )
        for node in replicas:
            (view,) = split_views(node.config, P)
            assert view.reported_by == P and "not an extension" in view.reason, view
            assert logged(node, "split view detected: sync stopped")
        with NodeClient(replicas[0].config) as client:
            status = client.sync_status()
        (shown,) = status.split_views
        assert shown.origin == P and shown.reported_by == P
        assert shown.first.document and shown.second.document != shown.first.document
        assert [r.blocked for r in status.replicas if r.origin == P] == [True]
        # The publisher learns from the checkpoints its peers hold that it signed another
        # history.
        until(
            "the publisher sees its old checkpoint",
            lambda: bool(logged(pub, "a checkpoint signed by this node contradicts its own log")),
            watch=fed.nodes,
        )
        # Sync stays stopped: the fork's entries never reach the replicas.
        assert_exact_copy(replicas, honest)

        # Rollback: the same leaves, three fewer. Resumed replicas must refuse it too.
        assert terminate(pub) == 0
        swap_in(pub, prefix, keep_as="fork-seen.db")
        for node in replicas:
            with NodeClient(node.config) as client:
                client.resume(P)
            assert not split_views(node.config, P)
        start(pub)
        until(
            "both replicas detected the rollback",
            lambda: all(blocked(n.config, P) for n in replicas),
            watch=fed.nodes,
        )
        time.sleep(3 * SYNC_INTERVAL_S)  # a few sync and exchange rounds against the rollback
        recorded: dict[str, int] = {}
        for node in replicas:
            views = split_views(node.config, P)
            assert views and all(v.reported_by == P for v in views), views
            rollback = f"shows {FORK_N - 3} leaves after signing {FORK_N}"
            assert all(rollback in v.reason for v in views), views
            recorded[node.member.city_code] = len(views)
        assert_exact_copy(replicas, honest)

        # The honest log back: resumed, the replicas follow it again.
        assert terminate(pub) == 0
        swap_in(pub, kept, keep_as="prefix-seen.db")
        start(pub)
        until("the publisher answers", lambda: answers(pub.config), watch=fed.nodes)
        for node in replicas:
            with NodeClient(node.config) as client:
                client.resume(P)
        with NodeClient(pub.config) as client:
            client.submit(add_changes(range(FORK_N, FORK_N + 2)))
        grown = log_state(pub.config, P)
        until(
            "both replicas follow the honest log",
            lambda: all(matches(n, grown) for n in replicas),
            watch=fed.nodes,
        )
        assert all(not split_views(n.config, P) for n in replicas)
    assert_exact_copy(replicas, grown)
    # One rollback, one piece of evidence: not a new split view (and an error line) at every
    # checkpoint exchange while the publisher keeps showing it.
    assert recorded == {A: 1, B: 1}, f"split views recorded for one rollback: {recorded}"


def test_two_histories_shown_to_two_cities_are_caught_by_their_exchange(
    tmp_path: Path,
) -> None:
    fed = form(tmp_path, [P, A, B])
    pub, a, b = fed.nodes
    manifest = fed.manifest.to_bytes()
    populate(pub.config, range(FORK_N))
    other = alternative_database(pub.config, "other.db", manifest)
    populate(other, range(2000, 2000 + FORK_N))  # same size, other leaves
    first = log_state(pub.config, P)
    second = log_state(other, P)
    assert first.size == second.size and first.root != second.root

    with running(fed.nodes):
        start(pub)
        start(a)
        until("A holds the first history", lambda: matches(a, first), watch=[pub, a])
        assert terminate(a) == 0
        assert terminate(pub) == 0
        swap_in(pub, other, keep_as="first.db")
        start(pub)
        start(b)
        until("B holds the second history", lambda: matches(b, second), watch=[pub, b])
        assert terminate(pub) == 0
        # The publisher is gone; A and B compare what they hold of it.
        start(a)
        until(
            "A and B detected the split view",
            lambda: bool(split_views(a.config, P)) and bool(split_views(b.config, P)),
            watch=[a, b],
        )
        for node, peer in ((a, B), (b, A)):
            views = split_views(node.config, P)
            assert all(v.reported_by == peer and "another root" in v.reason for v in views), views
            assert blocked(node.config, P)
    assert matches(a, first) and matches(b, second)
