"""node.toml: defaults, environment overrides, typo protection and clear errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.errors import ConfigError
from node.config import NodeConfig, client_target, load_config, render_config, toml_string

MINIMAL = '[node]\ncity_code = "370200"\nname = "青岛市"\n'


def write(home: Path, text: str) -> Path:
    path = home / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    config = load_config(tmp_path, env={})
    assert config == NodeConfig(home=tmp_path, city_code="370200", name="青岛市")
    assert config.endpoint == "127.0.0.1:7600"
    assert config.peer_listen == "127.0.0.1:7600"
    assert config.client_listen == "127.0.0.1:7601"
    assert config.database_url == f"sqlite:///{tmp_path}/node.db"
    assert config.heartbeat_interval_s == 2.0
    assert config.peer_timeout_s == 3.0
    assert config.max_message_bytes == 4 * 1024 * 1024
    assert (config.log_level, config.log_format) == ("INFO", "json")


def test_paths(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL)
    config = load_config(tmp_path, env={})
    keys = tmp_path / "keys"
    assert config.config_path == tmp_path / "node.toml"
    assert config.member_card_path == tmp_path / "member-card.json"
    assert config.signing_key_path == keys / "signing.pem"
    assert config.tls_key_path == keys / "tls.key"
    assert config.tls_cert_path == keys / "tls.crt"
    assert config.paillier_key_path == keys / "paillier.json"
    assert config.client_token_path == keys / "client-token"


def test_relative_home_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, MINIMAL)
    monkeypatch.chdir(tmp_path.parent)
    config = load_config(Path(tmp_path.name), env={})
    assert config.home == tmp_path
    assert config.database_url == f"sqlite:///{tmp_path}/node.db"


def test_every_key_is_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        MINIMAL
        + """
[peer]
endpoint = "qingdao.example.cn:7600"
listen = "0.0.0.0:7600"
[client]
listen = "10.0.0.5:9000"
[storage]
url = "postgresql+psycopg://node@db/creditnet"
[federation]
heartbeat_interval_s = 5
peer_timeout_s = 1.5
[limits]
max_message_bytes = 1048576
[log]
level = "debug"
format = "text"
""",
    )
    config = load_config(tmp_path, env={})
    assert config.endpoint == "qingdao.example.cn:7600"
    assert config.peer_listen == "0.0.0.0:7600"
    assert config.client_listen == "10.0.0.5:9000"
    assert config.database_url == "postgresql+psycopg://node@db/creditnet"
    assert config.heartbeat_interval_s == 5.0
    assert isinstance(config.heartbeat_interval_s, float)
    assert config.peer_timeout_s == 1.5
    assert config.max_message_bytes == 1048576
    assert config.log_level == "DEBUG"
    assert config.log_format == "text"


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("CREDIT_NODE_STORAGE_URL", "postgresql+psycopg://x@y/z", "database_url", None),
        ("CREDIT_NODE_PEER_LISTEN", "0.0.0.0:7700", "peer_listen", None),
        ("CREDIT_NODE_PEER_ENDPOINT", "a.example:1", "endpoint", None),
        ("CREDIT_NODE_CLIENT_LISTEN", "127.0.0.1:8000", "client_listen", None),
        ("CREDIT_NODE_NODE_NAME", "烟台", "name", None),
        ("CREDIT_NODE_FEDERATION_HEARTBEAT_INTERVAL_S", "0.5", "heartbeat_interval_s", 0.5),
        ("CREDIT_NODE_FEDERATION_PEER_TIMEOUT_S", "10", "peer_timeout_s", 10.0),
        ("CREDIT_NODE_LIMITS_MAX_MESSAGE_BYTES", "1024", "max_message_bytes", 1024),
        ("CREDIT_NODE_LOG_LEVEL", "warning", "log_level", "WARNING"),
        ("CREDIT_NODE_LOG_FORMAT", "text", "log_format", None),
    ],
)
def test_environment_overrides_the_file(
    tmp_path: Path, variable: str, value: str, field: str, expected: object
) -> None:
    write(tmp_path, MINIMAL + '[log]\nlevel = "ERROR"\n[peer]\nlisten = "127.0.0.1:1"\n')
    config = load_config(tmp_path, env={variable: value})
    assert getattr(config, field) == (value if expected is None else expected)


def test_environment_can_supply_a_required_key(tmp_path: Path) -> None:
    write(tmp_path, '[node]\nname = "青岛市"\n')
    config = load_config(tmp_path, env={"CREDIT_NODE_NODE_CITY_CODE": "370200"})
    assert config.city_code == "370200"


def test_default_env_is_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, MINIMAL)
    monkeypatch.setenv("CREDIT_NODE_LOG_FORMAT", "text")
    assert load_config(tmp_path).log_format == "text"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CREDIT_NODE_LIMITS_MAX_MESSAGE_BYTES", "4MiB", "'4MiB' is not an integer"),
        ("CREDIT_NODE_FEDERATION_PEER_TIMEOUT_S", "soon", "'soon' is not a number"),
        ("CREDIT_NODE_FEDERATION_PEER_TIMEOUT_S", "-1", "positive"),
        ("CREDIT_NODE_PEER_LISTEN", "nowhere", "HOST:PORT"),
        ("CREDIT_NODE_LOG_LEVEL", "LOUD", "must be one of"),
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


def test_missing_file_hints_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no node configuration") as info:
        load_config(tmp_path, env={})
    assert str(tmp_path / "node.toml") in str(info.value)
    assert "credit-node init" in info.value.diagnostics()


def test_broken_toml_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[peer\nendpoint = 1\n")
    with pytest.raises(ConfigError, match=r"line 4, column") as info:
        load_config(tmp_path, env={})
    assert str(path) in str(info.value)


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_bytes(b'[node]\nname = "\xc7\xe0"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path, env={})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[peer]\nendpiont = 'a:1'\n", "unknown key 'endpiont' in \\[peer\\]"),
        ("[storge]\nurl = 'sqlite://'\n", "unknown section \\[storge\\]"),
        ("peer = 1\n", "unknown key 'peer' in \\[node\\]"),
    ],
)
def test_unknown_keys_are_refused(tmp_path: Path, extra: str, message: str) -> None:
    write(tmp_path, MINIMAL + extra)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, env={})


def test_top_level_value_is_refused(tmp_path: Path) -> None:
    write(tmp_path, 'city_code = "370200"\n' + MINIMAL)
    with pytest.raises(ConfigError, match="unknown section \\[city_code\\]"):
        load_config(tmp_path, env={})


def test_section_must_be_a_table(tmp_path: Path) -> None:
    write(tmp_path, 'log = "INFO"\n' + MINIMAL)
    with pytest.raises(ConfigError, match="must be a \\[log\\] table"):
        load_config(tmp_path, env={})


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ('[node]\ncity_code = "37020"\nname = "x"\n', "[node] city_code", "six-digit"),
        ("[node]\ncity_code = 370200\nname = 'x'\n", "[node] city_code", "quoted string"),
        ('[node]\ncity_code = "370200"\nname = ""\n', "[node] name", "1 to 100"),
        (MINIMAL + "[peer]\nendpoint = 'qingdao'\n", "[peer] endpoint", "HOST:PORT"),
        (MINIMAL + "[peer]\nlisten = 'a:0'\n", "[peer] listen", "HOST:PORT"),
        (MINIMAL + "[client]\nlisten = 7601\n", "[client] listen", "must be a string"),
        (MINIMAL + "[storage]\nurl = 'node.db'\n", "[storage] url", "SQLAlchemy URL"),
        (
            MINIMAL + "[federation]\nheartbeat_interval_s = 0\n",
            "[federation] heartbeat_interval_s",
            "positive",
        ),
        (
            MINIMAL + "[federation]\npeer_timeout_s = nan\n",
            "[federation] peer_timeout_s",
            "positive",
        ),
        (
            MINIMAL + "[federation]\npeer_timeout_s = true\n",
            "[federation] peer_timeout_s",
            "a boolean",
        ),
        (
            MINIMAL + "[limits]\nmax_message_bytes = 1.5\n",
            "[limits] max_message_bytes",
            "integer",
        ),
        (
            MINIMAL + "[limits]\nmax_message_bytes = 4294967296\n",
            "[limits] max_message_bytes",
            "between 1 and",
        ),
        (MINIMAL + "[log]\nlevel = 'TRACE'\n", "[log] level", "DEBUG, INFO"),
        (MINIMAL + "[log]\nformat = 'xml'\n", "[log] format", "json, text"),
        ('[node]\nname = "x"\n', "[node] city_code", "is missing"),
        ('[node]\ncity_code = "370200"\n', "[node] name", "is missing"),
    ],
)
def test_bad_values_name_file_key_and_problem(
    tmp_path: Path, text: str, where: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, env={})
    message = str(info.value)
    assert str(path) in message
    assert where in message
    assert problem in message


def test_constructor_validates_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[log\] level"):
        NodeConfig(home=tmp_path, city_code="370200", name="x", log_level="LOUD")


def test_render_round_trips_every_field(tmp_path: Path) -> None:
    config = NodeConfig(
        home=tmp_path,
        city_code="371000",
        name='威海 "Weihai"\\ \t',
        endpoint="[::1]:7600",
        peer_listen="0.0.0.0:7600",
        client_listen="0.0.0.0:7601",
        database_url="postgresql+psycopg://node:p%40ss@db/creditnet",
        heartbeat_interval_s=0.25,
        peer_timeout_s=7,
        max_message_bytes=123456,
        log_level="WARNING",
        log_format="text",
    )
    write(tmp_path, render_config(config))
    assert load_config(tmp_path, env={}) == config


def test_render_leaves_derived_defaults_derived(tmp_path: Path) -> None:
    config = NodeConfig(home=tmp_path, city_code="370200", name="青岛市")
    document = tomllib.loads(render_config(config))
    assert "listen" not in document["peer"]
    assert "url" not in document["storage"]
    # Changing the endpoint later moves the bind address along with it.
    write(tmp_path, render_config(config).replace("127.0.0.1:7600", "10.1.1.1:7600", 1))
    assert load_config(tmp_path, env={}).peer_listen == "10.1.1.1:7600"


@given(st.text(max_size=40))
def test_toml_string_round_trips(value: str) -> None:
    assert tomllib.loads(f"v = {toml_string(value)}")["v"] == value


@given(st.text(min_size=1, max_size=100).filter(lambda s: s.strip()))
def test_render_round_trips_any_name(name: str) -> None:
    config = NodeConfig(home=Path("/srv/node"), city_code="370200", name=name)
    document = tomllib.loads(render_config(config))
    assert document["node"]["name"] == name


@pytest.mark.parametrize(
    ("listen", "target"),
    [
        ("127.0.0.1:7601", "127.0.0.1:7601"),
        ("0.0.0.0:7601", "127.0.0.1:7601"),
        ("[::]:7601", "[::1]:7601"),
        ("[::1]:9", "[::1]:9"),
        ("node.local:7601", "node.local:7601"),
    ],
)
def test_client_target(tmp_path: Path, listen: str, target: str) -> None:
    config = NodeConfig(home=tmp_path, city_code="370200", name="x", client_listen=listen)
    assert client_target(config) == target


@given(st.floats(min_value=1e-9, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_render_round_trips_any_interval(seconds: float) -> None:
    config = NodeConfig(
        home=Path("/srv/node"), city_code="370200", name="x", heartbeat_interval_s=seconds
    )
    assert tomllib.loads(render_config(config))["federation"]["heartbeat_interval_s"] == seconds
