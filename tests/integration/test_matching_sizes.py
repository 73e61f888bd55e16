"""Private matching against a city that keeps all six list kinds private, with small gRPC
messages: count-only batches are cut to fit one message, and a message over a peer's size
limit is told apart from the peer's daily quota.

Qingdao (370200) holds the lists and accepts messages of at most 256 KiB, as Weihai (371000)
does; Yantai (370600) keeps the default 4 MiB, so its requests can be too large for Qingdao.
With six kinds, count-only mode sends 63 blinded digests per probe, about 6.8 KB per subject
under the tests' 1024-bit keys: 256 KiB holds some 35 subjects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from creditnet.v1 import lists_pb2
from federation.errors import UnavailableError
from federation.sanctions import ListKind
from tests.integration.conftest import Federation, running_federation, wait_for
from tests.integration.test_matching import HIT, audit, client, entry, submit, uscc

pytestmark = pytest.mark.integration

QINGDAO, YANTAI, WEIHAI = "370200", "370600", "371000"
SMALL_MESSAGES = 256 * 1024
SUBJECTS = 100
#: Subject serials on Qingdao's lists, one kind each, all six kinds.
LISTED = dict(zip((7, 19, 33, 50, 71, 96), ListKind, strict=False))


def _configure(path: Path, city: str) -> None:
    text = re.sub(r"sync_interval_s = [0-9.]+", "sync_interval_s = 1.0", path.read_text())
    if city in (QINGDAO, WEIHAI):
        text = re.sub(r"max_message_bytes = \d+", f"max_message_bytes = {SMALL_MESSAGES}", text)
    if city == QINGDAO:
        text += "".join(f"\n[lists.{kind.value}]\npublic = false\n" for kind in ListKind)
    path.write_text(text)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("sizes")
    with running_federation(root, [QINGDAO, YANTAI, WEIHAI], _configure) as federation:
        changes = [
            lists_pb2.ListChange(add=entry(serial, kind=kind.value))
            for serial, kind in LISTED.items()
        ]
        submit(federation, *changes)
        yield federation


def subjects() -> list[str]:
    return [uscc(serial) for serial in range(SUBJECTS)]


def counted_at_qingdao(fed: Federation, querier: str) -> int:
    with client(fed, querier) as c:
        *_, final = c.match_batch(subjects(), QINGDAO, count_only=True)
    assert final.done
    return final.hit_count


def test_count_only_batches_are_cut_to_fit_one_message(fed: Federation) -> None:
    wait_for(lambda: counted_at_qingdao(fed, WEIHAI) == len(LISTED), timeout_s=60)
    before = audit(fed, WEIHAI).recent(direction="sent", limit=1)[0].id
    assert counted_at_qingdao(fed, WEIHAI) == len(LISTED)
    sent = [r for r in audit(fed, WEIHAI).recent(direction="sent") if r.id > before]
    # One OPRF round for the 100 subjects, then three probe requests of at most ~35 each
    # (their table's layout is what decides).
    assert sorted(r.mode for r in sent) == ["count"] * 3 + ["evaluate"]
    assert all(r.peer == QINGDAO and r.outcome == "answered" for r in sent)
    assert sum(r.subjects for r in sent if r.mode == "count") == SUBJECTS
    # Membership mode needs far fewer bytes per subject: one request, every hit with its kind.
    with client(fed, WEIHAI) as weihai:
        *_, final = weihai.match_batch(subjects(), QINGDAO)
    assert {h.index: list(h.list_kinds) for h in final.hits} == {
        serial: [kind.value] for serial, kind in LISTED.items()
    }


def test_a_message_over_the_peers_limit_is_not_taken_for_its_quota(fed: Federation) -> None:
    # Yantai cuts its requests for its own 4 MiB: Qingdao's server refuses them unread.
    wait_for(lambda: counted_at_qingdao(fed, WEIHAI) == len(LISTED), timeout_s=60)
    with client(fed, YANTAI) as yantai, pytest.raises(UnavailableError) as caught:
        list(yantai.match_batch(subjects(), QINGDAO, count_only=True))
    assert "max_message_bytes" in caught.value.message
    records = audit(fed, YANTAI).recent(direction="sent", peer=QINGDAO)
    assert records[0].mode == "count" and records[0].outcome == "failed"
    assert not [r for r in records if r.outcome == "refused"]
    # Not shown as over quota (0 left), and a one-subject check there is answered.
    with client(fed, YANTAI) as yantai:
        tables = {t.city_code: t for t in yantai.matching_status().tables}
        response = yantai.match_one(uscc(7))
    assert tables[QINGDAO].quota_left == -1
    assert {m.city_code: m.outcome for m in response.cities}[QINGDAO] == HIT
