"""node.toml ``[matching]``: defaults, file values, environment overrides and bad values."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from federation.errors import ConfigError
from node.config import NodeConfig, load_config, render_config

MINIMAL = '[node]\ncity_code = "370200"\nname = "青岛市"\n'


def write(home: Path, text: str) -> Path:
    path = home / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    config = load_config(tmp_path, env={})
    assert config.matching_probes_per_peer_per_day == 50_000
    assert config.matching_disclosures_per_peer_per_day == 200
    assert config.matching_max_subjects_per_request == 1000
    assert config.matching_residue_pool_size == 32
    assert config.matching_workers == 0
    assert config.matching_replay_window_s == 600.0


def test_every_key_is_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        MINIMAL
        + """
[matching]
probes_per_peer_per_day = 10
disclosures_per_peer_per_day = 0
max_subjects_per_request = 50
residue_pool_size = 0
workers = 2
replay_window_s = 30
""",
    )
    config = load_config(tmp_path, env={})
    assert config.matching_probes_per_peer_per_day == 10
    assert config.matching_disclosures_per_peer_per_day == 0
    assert config.matching_max_subjects_per_request == 50
    assert config.matching_residue_pool_size == 0
    assert config.matching_workers == 2
    assert config.matching_replay_window_s == 30.0
    assert isinstance(config.matching_replay_window_s, float)


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        (
            "CREDIT_NODE_MATCHING_PROBES_PER_PEER_PER_DAY",
            "7",
            "matching_probes_per_peer_per_day",
            7,
        ),
        (
            "CREDIT_NODE_MATCHING_DISCLOSURES_PER_PEER_PER_DAY",
            "3",
            "matching_disclosures_per_peer_per_day",
            3,
        ),
        (
            "CREDIT_NODE_MATCHING_MAX_SUBJECTS_PER_REQUEST",
            " 100 ",
            "matching_max_subjects_per_request",
            100,
        ),
        ("CREDIT_NODE_MATCHING_RESIDUE_POOL_SIZE", "4", "matching_residue_pool_size", 4),
        ("CREDIT_NODE_MATCHING_WORKERS", "1", "matching_workers", 1),
        ("CREDIT_NODE_MATCHING_REPLAY_WINDOW_S", "120.5", "matching_replay_window_s", 120.5),
    ],
)
def test_environment_overrides_the_file(
    tmp_path: Path, variable: str, value: str, field: str, expected: object
) -> None:
    write(tmp_path, MINIMAL + "[matching]\nworkers = 8\nprobes_per_peer_per_day = 99\n")
    config = load_config(tmp_path, env={variable: value})
    assert getattr(config, field) == expected


@pytest.mark.parametrize(
    ("line", "where", "problem"),
    [
        ("probes_per_peer_per_day = -1", "probes_per_peer_per_day", "between 0 and"),
        ("probes_per_peer_per_day = 1.5", "probes_per_peer_per_day", "must be an integer"),
        ("probes_per_peer_per_day = '50000'", "probes_per_peer_per_day", "not a string"),
        ("disclosures_per_peer_per_day = true", "disclosures_per_peer_per_day", "a boolean"),
        ("max_subjects_per_request = 0", "max_subjects_per_request", "between 1 and"),
        ("max_subjects_per_request = 1000001", "max_subjects_per_request", "between 1 and"),
        ("residue_pool_size = -3", "residue_pool_size", "between 0 and"),
        ("workers = -1", "workers", "between 0 and"),
        ("workers = 100000", "workers", "between 0 and"),
        ("replay_window_s = 0", "replay_window_s", "positive"),
        ("replay_window_s = inf", "replay_window_s", "positive"),
        ("replay_window_s = 'long'", "replay_window_s", "must be a number"),
        ("probes_per_day = 5", "unknown key 'probes_per_day' in [matching]", "known keys"),
    ],
)
def test_bad_values_name_file_key_and_problem(
    tmp_path: Path, line: str, where: str, problem: str
) -> None:
    path = write(tmp_path, MINIMAL + f"[matching]\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})
    message = info.value.diagnostics()
    assert str(path) in message
    assert where in message
    assert problem in message


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CREDIT_NODE_MATCHING_WORKERS", "all", "'all' is not an integer"),
        ("CREDIT_NODE_MATCHING_MAX_SUBJECTS_PER_REQUEST", "0", "between 1 and"),
        ("CREDIT_NODE_MATCHING_REPLAY_WINDOW_S", "-5", "positive"),
        ("CREDIT_NODE_MATCHING_RESIDUE_POOL_SIZE", "1e3", "is not an integer"),
    ],
)
def test_bad_environment_values_name_the_variable(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={variable: value})
    assert f"environment variable {variable}" in str(info.value)
    assert message in str(info.value)


def test_constructor_validates_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[matching\] workers"):
        NodeConfig(home=tmp_path, city_code="370200", name="x", matching_workers=-2)


def test_render_round_trips_the_matching_section(tmp_path: Path) -> None:
    config = NodeConfig(
        home=tmp_path,
        city_code="371000",
        name="威海",
        matching_probes_per_peer_per_day=123,
        matching_disclosures_per_peer_per_day=4,
        matching_max_subjects_per_request=500,
        matching_residue_pool_size=8,
        matching_workers=3,
        matching_replay_window_s=90.5,
    )
    text = render_config(config)
    assert tomllib.loads(text)["matching"]["workers"] == 3
    write(tmp_path, text)
    assert load_config(tmp_path, env={}) == config


def test_render_of_defaults_is_valid(tmp_path: Path) -> None:
    config = NodeConfig(home=tmp_path, city_code="370200", name="青岛市")
    write(tmp_path, render_config(config))
    assert load_config(tmp_path, env={}) == config
