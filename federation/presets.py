"""Federations named in the planning documents, ready to be created by name.

A preset fixes a federation's id, its name and the cities that may join it, with their
GB/T 2260 administrative division codes (行政区划代码). ``credit-node federation create
--preset jiaodong`` uses it to check that every member card belongs to one of the cities.
"""

from __future__ import annotations

from dataclasses import dataclass

from federation.errors import NotFoundError
from federation.member import check_city_code


@dataclass(frozen=True)
class City:
    """A city that may be a member: division code, Chinese and English names."""

    code: str
    name_zh: str
    name_en: str

    def __post_init__(self) -> None:
        check_city_code(self.code)


@dataclass(frozen=True)
class Preset:
    """A named federation: its id (as in the manifest), its name and its cities."""

    federation_id: str
    name: str
    cities: tuple[City, ...]

    def city(self, code: str) -> City | None:
        """The city with division code ``code``, or ``None`` if it is not in this preset."""
        return next((city for city in self.cities if city.code == code), None)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(city.code for city in self.cities)


JIAODONG = Preset(
    federation_id="jiaodong",
    name="胶东经济圈",
    cities=(
        City("370200", "青岛", "Qingdao"),
        City("370600", "烟台", "Yantai"),
        City("370700", "潍坊", "Weifang"),
        City("371000", "威海", "Weihai"),
        City("371100", "日照", "Rizhao"),
    ),
)

YELLOW_RIVER = Preset(
    federation_id="yellow-river",
    name="黄河流域省会城市信用联盟",
    cities=(
        City("370100", "济南", "Jinan"),
        City("410100", "郑州", "Zhengzhou"),
        City("140100", "太原", "Taiyuan"),
        City("610100", "西安", "Xi'an"),
        City("620100", "兰州", "Lanzhou"),
        City("630100", "西宁", "Xining"),
        City("640100", "银川", "Yinchuan"),
        City("150100", "呼和浩特", "Hohhot"),
        City("510100", "成都", "Chengdu"),
    ),
)

PRESETS: dict[str, Preset] = {p.federation_id: p for p in (JIAODONG, YELLOW_RIVER)}


def preset(name: str) -> Preset:
    """The preset called ``name``; a :class:`NotFoundError` lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(f"{p.federation_id} ({p.name})" for p in PRESETS.values())
        raise NotFoundError(f"no federation preset {name!r}; known presets: {known}") from None
