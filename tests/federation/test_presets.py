"""Federation presets: the cities and division codes named in the planning documents."""

from __future__ import annotations

import pytest

from federation.errors import InvalidInputError, NotFoundError
from federation.manifest import FEDERATION_ID
from federation.presets import PRESETS, City, preset


@pytest.mark.parametrize(
    ("name", "federation_name", "cities"),
    [
        (
            "jiaodong",
            "胶东经济圈",
            [
                ("370200", "青岛", "Qingdao"),
                ("370600", "烟台", "Yantai"),
                ("370700", "潍坊", "Weifang"),
                ("371000", "威海", "Weihai"),
                ("371100", "日照", "Rizhao"),
            ],
        ),
        (
            "yellow-river",
            "黄河流域省会城市信用联盟",
            [
                ("370100", "济南", "Jinan"),
                ("410100", "郑州", "Zhengzhou"),
                ("140100", "太原", "Taiyuan"),
                ("610100", "西安", "Xi'an"),
                ("620100", "兰州", "Lanzhou"),
                ("630100", "西宁", "Xining"),
                ("640100", "银川", "Yinchuan"),
                ("150100", "呼和浩特", "Hohhot"),
                ("510100", "成都", "Chengdu"),
            ],
        ),
    ],
)
def test_preset_cities(name: str, federation_name: str, cities: list[tuple[str, ...]]) -> None:
    found = preset(name)
    assert found.federation_id == name
    assert found.name == federation_name
    assert [(c.code, c.name_zh, c.name_en) for c in found.cities] == cities
    assert found.codes == tuple(code for code, _, _ in cities)
    for code, zh, en in cities:
        assert found.city(code) == City(code, zh, en)


def test_preset_ids_are_valid_federation_ids_and_codes_unique() -> None:
    assert set(PRESETS) == {"jiaodong", "yellow-river"}
    for federation in PRESETS.values():
        assert FEDERATION_ID.fullmatch(federation.federation_id)
        assert len(set(federation.codes)) == len(federation.codes)


def test_city_outside_preset() -> None:
    assert preset("jiaodong").city("370100") is None  # Jinan is in the other alliance
    assert preset("yellow-river").city("370200") is None


def test_unknown_preset_lists_known_ones() -> None:
    with pytest.raises(NotFoundError) as caught:
        preset("jiaodong-peninsula")
    message = str(caught.value)
    assert message.startswith("no federation preset 'jiaodong-peninsula'; known presets:")
    assert "jiaodong (胶东经济圈)" in message
    assert "yellow-river (黄河流域省会城市信用联盟)" in message


def test_city_code_is_checked() -> None:
    with pytest.raises(InvalidInputError, match="six-digit"):
        City("37020", "青岛", "Qingdao")
