"""Synthetic, valid sanction-list entries for the demo, the tests and the benchmarks.

Identifiers are made-up USCCs with correct check characters (no real company is named);
everything else is plausible text in the fields national practice requires.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping

from federation.sanctions import DEFAULT_POLICIES, ListKind, ListPolicy, SanctionEntry
from federation.subjects import uscc_check_char

AUTHORITIES = {
    "370200": "青岛市市场监督管理局",
    "370600": "烟台市市场监督管理局",
    "370700": "潍坊市市场监督管理局",
    "371000": "威海市市场监督管理局",
    "371100": "日照市市场监督管理局",
}


def sample_uscc(city_code: str, serial: int) -> str:
    """A well-formed USCC of an enterprise (91) registered in ``city_code``."""
    body = f"91{city_code}MA{serial % 10**7:07d}"
    return body + uscc_check_char(body)


def sample_entry(
    city_code: str,
    serial: int,
    *,
    kind: ListKind = ListKind.SERIOUS_DISHONESTY,
    listed_on: dt.date,
    policies: Mapping[ListKind, ListPolicy] = DEFAULT_POLICIES,
) -> SanctionEntry:
    return SanctionEntry.create(
        list_kind=kind,
        subject_id=sample_uscc(city_code, serial),
        subject_name=f"示例贸易有限公司{serial}",
        reason="拒不履行人民法院生效判决确定的义务",
        legal_basis="《关于对失信被执行人实施联合惩戒的合作备忘录》",
        authority=AUTHORITIES.get(city_code, f"{city_code}市场监督管理局"),
        decision_no=f"信惩〔{listed_on.year}〕{serial}号",
        listed_on=listed_on,
        measures=("限制参与政府采购", "限制高消费"),
        appeal="可自收到决定书之日起六十日内申请行政复议",
        policy=policies[kind],
    )


def sample_entries(
    city_code: str, count: int, *, start: int = 0, listed_on: dt.date
) -> Iterator[SanctionEntry]:
    for serial in range(start, start + count):
        yield sample_entry(city_code, serial, listed_on=listed_on)
