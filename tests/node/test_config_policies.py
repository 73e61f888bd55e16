"""node.toml [lists.*] and [ratings.*]: list policies, local rating scales, mappings and the
recognition policy are read, checked and refused with the file and table named."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.errors import ConfigError
from federation.sanctions import ListKind
from node.config import load_config

BASE = '[node]\ncity_code = "370600"\nname = "烟台"\n'


def load(tmp_path: Path, extra: str):  # type: ignore[no-untyped-def]
    (tmp_path / "node.toml").write_text(BASE + extra, encoding="utf-8")
    return load_config(tmp_path, env={})


def test_defaults_without_tables(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert not config.list_policies[ListKind.WATCH_LIST].public
    assert "tax-credit" in config.rating_scales and config.rating_mappings == {}
    assert config.recognition.issuers == ("*",)


def test_list_policy_override(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[lists.serious-dishonesty]\nreplicate_to = ["370200"]\nmax_publicity_days = 730\n',
    )
    policy = config.list_policies[ListKind.SERIOUS_DISHONESTY]
    assert policy.replicates_to("370200") and not policy.replicates_to("371000")
    assert policy.max_publicity_days == 730


def test_ratings_tables(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[ratings.scales.yantai-points]\nname = "烟台信用分"\nkind = "points"\n'
        'bands = [["A", 900, ""], ["B", "", 899]]\n'
        '[ratings.mappings.yantai-points]\nA = "A"\nB = "C"\n'
        '[ratings.recognition]\nissuers = ["370200"]\nmax_age_days = 90\n',
    )
    assert config.rating_scales["yantai-points"].grade_of(950) == "A"
    assert dict(config.rating_mappings["yantai-points"]) == {"A": "A", "B": "C"}
    assert config.recognition.issuers == ("370200",)
    assert config.recognition.max_age_days == 90


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("[lists.no-such-kind]\npublic = true\n", "no-such-kind"),
        ("[lists.watch-list]\ncolour = 1\n", "colour"),
        ('[ratings.mappings.no-such-scale]\nA = "A"\n', "no-such-scale"),
        ("[ratings.stars]\nx = 1\n", "stars"),
        ("[ratings.mappings.tax-credit]\nA = 1\n", "tax-credit"),
        ("[ratings.recognition]\nmax_age_days = -3\n", "max_age_days"),
    ],
    ids=["unknown-kind", "unknown-key", "unknown-scale", "unknown-table", "bad-grade", "bad-age"],
)
def test_bad_tables_name_file_and_table(tmp_path: Path, extra: str, words: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, extra)
    assert str(tmp_path / "node.toml") in refused.value.message
    assert words in refused.value.message
