"""How the querier cuts a screening into probe requests (node.matching.querier.match_batch)
when the holder's table changes under it: every request must still fit in one message.

The OPRF round and the sending of one probe request (``_evaluate``, ``_probe_once``) are
replaced by stand-ins that record what would go on the wire; the cutting, the retry after
"table out of date" and the joining of answers are the real code. The probes themselves are
tested through real nodes in tests/integration/test_matching*.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from federation.matching import TableHeader, TableLayout, probe_message_bytes
from node.matching.querier import MatchMode, MatchQuerier, Outcome, _ProbeAnswer
from tests.integration.test_matching import uscc

MiB = 1024 * 1024
HOLDER = "370200"
N = (1 << 2047) | secrets.randbits(2046) | 1  # a 2048-bit modulus: the production size


def header(kinds: int, epoch: int) -> TableHeader:
    layout = TableLayout(
        n=N, seed=bytes(16), bins=1 << 16, kinds=tuple(f"kind-{i}" for i in range(kinds))
    )
    return TableHeader(HOLDER, "ab" * 16, epoch, layout, bytes(32), dt.datetime.now(dt.UTC))


class Sent:
    """What the stand-ins saw: each probe request as (table epoch, keys, bytes)."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, list[str], int]] = []


def querier(tmp_path: Path, held: TableHeader, fresh: TableHeader, sent: Sent) -> MatchQuerier:
    trust = SimpleNamespace(current=SimpleNamespace(member=lambda city: object(), members=[]))
    clock = SimpleNamespace(now=lambda: dt.datetime.now(dt.UTC))
    unused = cast(Any, None)
    q = MatchQuerier(
        city_code="370600",
        home=tmp_path,
        trust=cast(Any, trust),
        links=unused,
        pool=unused,
        audit=unused,
        clock=cast(Any, clock),
        max_subjects_per_request=1000,
        residue_pool_size=0,
        max_message_bytes=4 * MiB,
    )
    peer = q._peer(HOLDER)
    peer.header = held

    async def evaluate(_peer: Any, keys: Sequence[str]) -> list[int]:
        return [0] * len(keys)

    async def probe_once(
        _peer: Any, table: TableHeader, keys: Sequence[str], values: Sequence[int], mode: Any
    ) -> tuple[_ProbeAnswer, bool]:
        size = probe_message_bytes(table.layout, len(keys), count_only=mode is MatchMode.COUNT)
        sent.requests.append((table.epoch, list(keys), size))
        if table.epoch != fresh.epoch:  # the holder: "table out of date; fetch epoch 2"
            return _ProbeAnswer(Outcome.UNAVAILABLE, detail="table out of date"), True
        assert len(values) == len(keys)
        answer = _ProbeAnswer(
            Outcome.NO_HIT,
            kinds=[("kind-0",) if key.endswith(("0", "5")) else () for key in keys],
            count=sum(1 for key in keys if key.endswith(("0", "5"))),
            request_ids=[secrets.token_bytes(16)],
        )
        return answer, False

    async def replicate(city: str) -> TableHeader:
        peer.header = fresh
        return fresh

    async def prefetch(city: str, subjects: int) -> None:
        return None

    q._evaluate = evaluate  # type: ignore[method-assign]
    q._probe_once = probe_once  # type: ignore[method-assign]
    q.replicate = replicate  # type: ignore[method-assign]
    q._prefetch = prefetch  # type: ignore[method-assign]
    return q


def test_a_table_with_more_kinds_mid_batch_is_probed_in_requests_that_fit(
    tmp_path: Path,
) -> None:
    # Cut for five private kinds (1,000 subjects fit in 4 MiB); the holder then makes a
    # sixth kind private, and the copy held is out of date.
    sent = Sent()
    q = querier(tmp_path, held=header(5, 1), fresh=header(6, 2), sent=sent)
    subjects = [uscc(i) for i in range(1500)]
    result = asyncio.run(q.match_batch(subjects, HOLDER, MatchMode.COUNT))
    answered = [(keys, size) for epoch, keys, size in sent.requests if epoch == 2]
    assert len(answered) > 2  # 1,000 then 500 subjects cut, each cut again to fit
    assert all(size <= 4 * MiB for _keys, size in answered)
    # Every subject probed once against the new table, in order (the keys are the
    # querier's subject keys, one per subject).
    assert sum(len(keys) for keys, _size in answered) == len(subjects)
    assert len({key for keys, _size in answered for key in keys}) == len(subjects)
    assert result.hit_count == sum(
        1 for keys, _size in answered for key in keys if key.endswith(("0", "5"))
    )
    assert len(result.request_ids) == len(answered)
