"""When a node publishes a new epoch of its matching table: at start-up, then once every
sync interval whatever changed meanwhile, so that an epoch never shows one change alone
(docs/private-matching.md, "What each party learns")."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from node.service.server import _match_table


class Holder:
    """The holder's two calls the loop makes, timed (the table itself is not the point)."""

    def __init__(self) -> None:
        self.refreshed: list[float] = []
        self.forgot = 0

    async def refresh(self) -> bool:
        self.refreshed.append(time.monotonic())
        return True

    def forget_expired(self) -> None:
        self.forgot += 1


def run(interval_s: float, for_s: float) -> Holder:
    config = SimpleNamespace(sync_interval_s=interval_s)  # the one setting the loop reads
    holder = Holder()

    async def scenario() -> None:
        stop = asyncio.Event()
        loop = _match_table(config, holder, stop)  # type: ignore[arg-type]
        task = asyncio.create_task(loop)
        await asyncio.sleep(for_s)
        stop.set()
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(scenario())
    return holder


def test_the_table_is_refreshed_at_start_up_then_only_each_sync_interval() -> None:
    holder = run(interval_s=60.0, for_s=1.0)
    assert len(holder.refreshed) == 1 and holder.forgot == 1


def test_refreshes_are_a_sync_interval_apart() -> None:
    holder = run(interval_s=0.3, for_s=1.0)
    gaps = [b - a for a, b in zip(holder.refreshed, holder.refreshed[1:], strict=False)]
    assert len(holder.refreshed) >= 2
    assert all(gap >= 0.29 for gap in gaps), gaps
