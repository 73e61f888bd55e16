"""The node's configuration: ``DIR/node.toml`` plus ``CREDIT_NODE_*`` environment overrides.

One :class:`NodeConfig` object is the only way the rest of the node learns its settings.
The file is TOML (https://toml.io/en/v1.0.0), read with :mod:`tomllib`; every key is
validated here, so a typo or a bad value stops the node at start-up with a message that
names the file, the key and the problem instead of failing later in a peer call.

An environment variable ``CREDIT_NODE_<SECTION>_<KEY>`` (for example
``CREDIT_NODE_STORAGE_URL`` or ``CREDIT_NODE_PEER_LISTEN``) overrides the file's value,
which is how containers inject a database URL or a bind address.

The directory layout of a node (``node.toml``, ``member-card.json`` and ``keys/``) is
fixed and defined once, in :class:`NodeFiles`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from federation.errors import ConfigError, CreditNetError, InvalidInputError
from federation.member import check_city_code, check_endpoint
from federation.ratings import (
    PRESET_SCALES,
    RatingScale,
    RecognitionPolicy,
    policy_from_config,
    scales_from_config,
)
from federation.sanctions import DEFAULT_POLICIES, ListKind, ListPolicy, policies_from_config

CONFIG_FILE = "node.toml"
LISTS_SECTION = "lists"
RATINGS_SECTION = "ratings"
MEMBER_CARD_FILE = "member-card.json"
KEYS_DIR = "keys"
ENV_PREFIX = "CREDIT_NODE_"

DEFAULT_PEER_PORT = 7600
DEFAULT_CLIENT_PORT = 7601
DEFAULT_ENDPOINT = f"127.0.0.1:{DEFAULT_PEER_PORT}"
DEFAULT_CLIENT_LISTEN = f"127.0.0.1:{DEFAULT_CLIENT_PORT}"
DEFAULT_HEARTBEAT_INTERVAL_S = 2.0
DEFAULT_PEER_TIMEOUT_S = 3.0
DEFAULT_SYNC_INTERVAL_S = 5.0
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# gRPC message limits are signed 32-bit integers.
MAX_MESSAGE_BYTES_LIMIT = 2**31 - 1
# [matching]: private matching against this node's non-public lists (docs/private-matching.md).
DEFAULT_MATCH_PROBES_PER_PEER_PER_DAY = 50_000
DEFAULT_MATCH_DISCLOSURES_PER_PEER_PER_DAY = 200
DEFAULT_MATCH_MAX_SUBJECTS_PER_REQUEST = 1000
DEFAULT_MATCH_RESIDUE_POOL_SIZE = 32
DEFAULT_MATCH_WORKERS = 0  # 0: one process per core
DEFAULT_MATCH_REPLAY_WINDOW_S = 600.0
# Bounds that keep a probe request well under any sane message size, and counters in range.
MAX_MATCH_SUBJECTS_PER_REQUEST = 100_000
MAX_MATCH_DAILY_QUOTA = 10**9
MAX_MATCH_RESIDUE_POOL_SIZE = 100_000
MAX_MATCH_WORKERS = 1024
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "text")

LogFormat = Literal["json", "text"]


class NodeFiles:
    """Where a node keeps its files, relative to its home directory.

    Shared by :class:`NodePaths` (a bare directory) and :class:`NodeConfig`.
    """

    home: Path

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE

    @property
    def member_card_path(self) -> Path:
        return self.home / MEMBER_CARD_FILE

    @property
    def keys_dir(self) -> Path:
        return self.home / KEYS_DIR

    @property
    def signing_key_path(self) -> Path:
        return self.keys_dir / "signing.pem"

    @property
    def tls_key_path(self) -> Path:
        return self.keys_dir / "tls.key"

    @property
    def tls_cert_path(self) -> Path:
        return self.keys_dir / "tls.crt"

    @property
    def paillier_key_path(self) -> Path:
        return self.keys_dir / "paillier.json"

    @property
    def client_token_path(self) -> Path:
        return self.keys_dir / "client-token"

    @property
    def trust_pin_path(self) -> Path:
        """The manifests this node trusts, pinned outside its database (node.trust)."""
        return self.keys_dir / "trust-pin.json"

    @property
    def oprf_key_path(self) -> Path:
        """The private-matching OPRF key (P-256 scalar, PKCS#8 PEM; docs/private-matching.md)."""
        return self.keys_dir / "oprf.key"

    @property
    def identity_paths(self) -> tuple[Path, ...]:
        """Every file ``credit-node init`` writes."""
        return (
            self.config_path,
            self.member_card_path,
            self.signing_key_path,
            self.tls_key_path,
            self.tls_cert_path,
            self.paillier_key_path,
            self.client_token_path,
            self.oprf_key_path,
        )


@dataclass(frozen=True)
class NodePaths(NodeFiles):
    """The file layout of a node directory, without reading its configuration."""

    home: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).absolute())


class _BadValue(Exception):
    """A value failed validation; the caller adds where it came from."""


# --- validators: take a raw value, return the typed value or raise _BadValue -----------


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _BadValue(f"must be a string, not {_describe(value)}")
    return value


def _city_code(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        raise _BadValue(f'must be a quoted string (city_code = "{value}")')
    try:
        return check_city_code(_string(value))
    except CreditNetError as exc:
        raise _BadValue(exc.message) from None


def _name(value: object) -> str:
    name = _string(value)
    if not name.strip() or len(name) > 100:
        raise _BadValue("must be 1 to 100 characters")
    return name


def _endpoint(value: object) -> str:
    try:
        return check_endpoint(_string(value))
    except CreditNetError as exc:
        raise _BadValue(exc.message) from None


def _database_url(value: object) -> str:
    url = _string(value)
    if "://" not in url:
        raise _BadValue("must be a SQLAlchemy URL such as sqlite:///path or postgresql+psycopg://")
    return url


def _positive_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _BadValue(f"must be a number, not {_describe(value)}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise _BadValue(f"must be a positive number, not {value!r}")
    return number


def _message_limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadValue(f"must be an integer, not {_describe(value)}")
    if not 0 < value <= MAX_MESSAGE_BYTES_LIMIT:
        raise _BadValue(f"must be between 1 and {MAX_MESSAGE_BYTES_LIMIT}, not {value}")
    return value


def _whole_number(low: int, high: int) -> Callable[[object], int]:
    """A validator for an integer in ``[low, high]``."""

    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _BadValue(f"must be an integer, not {_describe(value)}")
        if not low <= value <= high:
            raise _BadValue(f"must be between {low} and {high}, not {value}")
        return value

    return check


def _log_level(value: object) -> str:
    level = _string(value).upper()
    if level not in LOG_LEVELS:
        raise _BadValue(f"must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
    return level


def _log_format(value: object) -> str:
    fmt = _string(value).lower()
    if fmt not in LOG_FORMATS:
        raise _BadValue(f"must be one of {', '.join(LOG_FORMATS)}, not {value!r}")
    return fmt


def _describe(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        type(value), f"a TOML {type(value).__name__}"
    )


@dataclass(frozen=True)
class _Setting:
    section: str
    key: str
    field: str
    check: Callable[[object], object]
    # How an environment variable's text becomes a value before ``check`` sees it.
    env_type: type[str] | type[int] | type[float] = str

    @property
    def env_name(self) -> str:
        return f"{ENV_PREFIX}{self.section}_{self.key}".upper()

    @property
    def where(self) -> str:
        return f"[{self.section}] {self.key}"


SETTINGS = (
    _Setting("node", "city_code", "city_code", _city_code),
    _Setting("node", "name", "name", _name),
    _Setting("peer", "endpoint", "endpoint", _endpoint),
    _Setting("peer", "listen", "peer_listen", _endpoint),
    _Setting("client", "listen", "client_listen", _endpoint),
    _Setting("storage", "url", "database_url", _database_url),
    _Setting("federation", "heartbeat_interval_s", "heartbeat_interval_s", _positive_float, float),
    _Setting("federation", "peer_timeout_s", "peer_timeout_s", _positive_float, float),
    _Setting("federation", "sync_interval_s", "sync_interval_s", _positive_float, float),
    _Setting("limits", "max_message_bytes", "max_message_bytes", _message_limit, int),
    _Setting(
        "matching",
        "probes_per_peer_per_day",
        "matching_probes_per_peer_per_day",
        _whole_number(0, MAX_MATCH_DAILY_QUOTA),
        int,
    ),
    _Setting(
        "matching",
        "disclosures_per_peer_per_day",
        "matching_disclosures_per_peer_per_day",
        _whole_number(0, MAX_MATCH_DAILY_QUOTA),
        int,
    ),
    _Setting(
        "matching",
        "max_subjects_per_request",
        "matching_max_subjects_per_request",
        _whole_number(1, MAX_MATCH_SUBJECTS_PER_REQUEST),
        int,
    ),
    _Setting(
        "matching",
        "residue_pool_size",
        "matching_residue_pool_size",
        _whole_number(0, MAX_MATCH_RESIDUE_POOL_SIZE),
        int,
    ),
    _Setting("matching", "workers", "matching_workers", _whole_number(0, MAX_MATCH_WORKERS), int),
    _Setting("matching", "replay_window_s", "matching_replay_window_s", _positive_float, float),
    _Setting("log", "level", "log_level", _log_level),
    _Setting("log", "format", "log_format", _log_format),
)
_REQUIRED = ("city_code", "name")


@dataclass(frozen=True)
class NodeConfig(NodeFiles):
    """Everything a node is configured with. Build it with :func:`load_config`.

    ``peer_listen`` and ``database_url`` left empty mean "the default": the advertised
    endpoint, and ``sqlite:///<home>/node.db``.
    """

    home: Path
    city_code: str
    name: str
    endpoint: str = DEFAULT_ENDPOINT
    peer_listen: str = ""
    client_listen: str = DEFAULT_CLIENT_LISTEN
    database_url: str = ""
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    peer_timeout_s: float = DEFAULT_PEER_TIMEOUT_S
    sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S
    # Which list kinds are shared in clear with whom, and their publicity periods
    # ([lists.<slug>] tables; see federation.sanctions.DEFAULT_POLICIES).
    list_policies: Mapping[ListKind, ListPolicy] = dataclasses.field(
        default_factory=lambda: MappingProxyType(dict(DEFAULT_POLICIES))
    )
    # [ratings]: this city's local scales, their mappings onto the common scale, and
    # which other cities' ratings it recognises (see federation.ratings).
    rating_scales: Mapping[str, RatingScale] = dataclasses.field(
        default_factory=lambda: MappingProxyType(dict(PRESET_SCALES))
    )
    rating_mappings: Mapping[str, Mapping[str, str]] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    recognition: RecognitionPolicy = dataclasses.field(default_factory=RecognitionPolicy)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # [matching]: per calling city and UTC day, how many subjects it may probe and how many
    # disclosures it may ask for; the largest probe request; precomputed randomness kept per
    # peer; worker processes for the Paillier arithmetic (0: the cores); how long a probe's
    # request id is remembered (and how far its sent_at may be from now, at most).
    matching_probes_per_peer_per_day: int = DEFAULT_MATCH_PROBES_PER_PEER_PER_DAY
    matching_disclosures_per_peer_per_day: int = DEFAULT_MATCH_DISCLOSURES_PER_PEER_PER_DAY
    matching_max_subjects_per_request: int = DEFAULT_MATCH_MAX_SUBJECTS_PER_REQUEST
    matching_residue_pool_size: int = DEFAULT_MATCH_RESIDUE_POOL_SIZE
    matching_workers: int = DEFAULT_MATCH_WORKERS
    matching_replay_window_s: float = DEFAULT_MATCH_REPLAY_WINDOW_S
    log_level: str = "INFO"
    log_format: LogFormat = "json"

    def __post_init__(self) -> None:
        home = Path(self.home).absolute()
        object.__setattr__(self, "home", home)
        if not self.peer_listen:
            object.__setattr__(self, "peer_listen", self.endpoint)
        if not self.database_url:
            object.__setattr__(self, "database_url", default_database_url(home))
        for setting in SETTINGS:
            value = getattr(self, setting.field)
            try:
                object.__setattr__(self, setting.field, setting.check(value))
            except _BadValue as exc:
                raise ConfigError(f"node configuration: {setting.where}: {exc}") from None


def default_database_url(home: Path) -> str:
    return f"sqlite:///{Path(home).absolute() / 'node.db'}"


def load_config(home: Path, env: Mapping[str, str] | None = None) -> NodeConfig:
    """Read ``home/node.toml``, apply ``CREDIT_NODE_*`` overrides from ``env``, validate.

    ``env`` defaults to :data:`os.environ`; pass ``{}`` to ignore the environment.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    path = Path(home).absolute() / CONFIG_FILE
    document = _read_toml(path)
    values = _from_document(document, path)
    for setting in SETTINGS:
        text = environ.get(setting.env_name)
        if text is None:
            continue
        source = f"environment variable {setting.env_name}"
        values[setting.field] = _checked(setting, _convert_env(setting, text, source), source)
    for field in _REQUIRED:
        if field not in values:
            setting = next(s for s in SETTINGS if s.field == field)
            raise ConfigError(
                f"{path}: {setting.where} is missing",
                hint=f"add it to the [{setting.section}] section, or re-run credit-node init",
            )
    return NodeConfig(home=path.parent, **values)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"no node configuration at {path}",
            hint=f"create a node first: credit-node init --city CODE --dir {path.parent}",
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        # The message carries "(at line L, column C)".
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _from_document(document: dict[str, Any], path: Path) -> dict[str, Any]:
    by_section: dict[str, dict[str, _Setting]] = {}
    for setting in SETTINGS:
        by_section.setdefault(setting.section, {})[setting.key] = setting
    values: dict[str, Any] = {}
    for section, table in document.items():
        if section == RATINGS_SECTION:
            try:
                values.update(_ratings(table))
            except CreditNetError as exc:
                raise ConfigError(f"{path}: {exc.message}") from None
            continue
        if section == LISTS_SECTION:
            try:
                values["list_policies"] = MappingProxyType(policies_from_config(table))
            except CreditNetError as exc:
                raise ConfigError(f"{path}: {exc.message}") from None
            continue
        known = by_section.get(section)
        if known is None:
            raise ConfigError(
                f"{path}: unknown section [{section}]",
                hint="known sections: "
                + ", ".join(f"[{s}]" for s in [*by_section, LISTS_SECTION, RATINGS_SECTION]),
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} must be a [{section}] table")
        for key, value in table.items():
            found = known.get(key)
            if found is None:
                raise ConfigError(
                    f"{path}: unknown key {key!r} in [{section}]",
                    hint=f"known keys in [{section}]: {', '.join(known)}",
                )
            values[found.field] = _checked(found, value, str(path))
    return values


def _ratings(table: object) -> dict[str, Any]:
    """``[ratings.scales.*]``, ``[ratings.mappings.<scale>]`` and ``[ratings.recognition]``."""
    if not isinstance(table, dict):
        raise InvalidInputError("[ratings] must be a table")
    unknown = sorted(set(table) - {"scales", "mappings", "recognition"})
    if unknown:
        raise InvalidInputError(
            f"[ratings]: unknown table {unknown[0]!r}; known: scales, mappings, recognition"
        )
    values: dict[str, Any] = {}
    scales = scales_from_config(table.get("scales", {}))
    values["rating_scales"] = MappingProxyType(scales)
    mappings = table.get("mappings", {})
    if not isinstance(mappings, dict):
        raise InvalidInputError("[ratings.mappings] must hold one table per scale")
    checked: dict[str, Mapping[str, str]] = {}
    for scale_id, grades in mappings.items():
        if scale_id not in scales:
            raise InvalidInputError(
                f"[ratings.mappings.{scale_id}]: no such scale; known: {', '.join(sorted(scales))}"
            )
        if not isinstance(grades, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in grades.items()
        ):
            raise InvalidInputError(
                f"[ratings.mappings.{scale_id}] must map each local grade to a common grade"
            )
        checked[scale_id] = MappingProxyType(dict(grades))
    values["rating_mappings"] = MappingProxyType(checked)
    if "recognition" in table:
        values["recognition"] = policy_from_config(table["recognition"])
    return values


def _convert_env(setting: _Setting, text: str, source: str) -> object:
    if setting.env_type is str:
        return text
    try:
        return setting.env_type(text.strip())
    except ValueError:
        kind = "an integer" if setting.env_type is int else "a number"
        raise ConfigError(f"{source}: {text!r} is not {kind}") from None


def _checked(setting: _Setting, value: object, source: str) -> object:
    try:
        return setting.check(value)
    except _BadValue as exc:
        where = source if source.startswith("environment") else f"{source}: {setting.where}"
        raise ConfigError(f"{where}: {exc}") from None


def client_target(config: NodeConfig) -> str:
    """The ``host:port`` a CLI on this machine dials to reach the node's client API.

    A wildcard bind address is not something one can connect to, so it becomes loopback.
    """
    host, _, port = config.client_listen.rpartition(":")
    if host in ("0.0.0.0", ""):  # noqa: S104 - recognising a bind-all address, not binding
        host = "127.0.0.1"
    elif host in ("[::]", "[0:0:0:0:0:0:0:0]"):
        host = "[::1]"
    return f"{host}:{port}"


# --- rendering ------------------------------------------------------------------------


def toml_string(value: str) -> str:
    """A TOML basic string: escapes quotes, backslashes and control characters."""
    out = ['"']
    for char in value:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def render_config(config: NodeConfig) -> str:
    """The ``node.toml`` text for ``config``; :func:`load_config` reads it back unchanged.

    Values equal to their default that depend on other values (the peer bind address,
    the database URL) are written as comments, so that they keep following the value
    they derive from.
    """
    s = toml_string
    peer_listen = f"listen = {s(config.peer_listen)}"
    if config.peer_listen == config.endpoint:
        peer_listen = f"# listen = {s(config.peer_listen)}  # bind address; default: endpoint"
    storage = f"url = {s(config.database_url)}"
    if config.database_url == default_database_url(config.home):
        storage = '# url = "postgresql+psycopg://user@host/creditnet"  # default: node.db here'
    lines = [
        "# Configuration of a credit federation node; written by `credit-node init`.",
        "# Each key can be overridden by an environment variable CREDIT_NODE_<SECTION>_<KEY>.",
        "",
        "[node]",
        "# GB/T 2260 division code of the city this node serves.",
        f"city_code = {s(config.city_code)}",
        f"name = {s(config.name)}",
        "",
        "[peer]",
        "# Advertised HOST:PORT other members dial (it is in member-card.json).",
        f"endpoint = {s(config.endpoint)}",
        peer_listen,
        "",
        "[client]",
        "# Client API for the city's own platform; authenticated by keys/client-token.",
        f"listen = {s(config.client_listen)}",
        "",
        "[storage]",
        storage,
        "",
        "[federation]",
        f"heartbeat_interval_s = {config.heartbeat_interval_s!r}",
        f"peer_timeout_s = {config.peer_timeout_s!r}",
        "# How often this node pulls the other cities' list logs (it is also told at once",
        "# when a city records a change).",
        f"sync_interval_s = {config.sync_interval_s!r}",
        "",
        "[limits]",
        f"max_message_bytes = {config.max_message_bytes}",
        "",
        "[matching]",
        "# Private matching of other cities' subjects against this city's non-public lists:",
        "# per calling city and UTC day, subjects it may probe and disclosures it may ask for.",
        f"probes_per_peer_per_day = {config.matching_probes_per_peer_per_day}",
        f"disclosures_per_peer_per_day = {config.matching_disclosures_per_peer_per_day}",
        f"max_subjects_per_request = {config.matching_max_subjects_per_request}",
        "# Precomputed randomness per peer, and worker processes (0: one per core).",
        f"residue_pool_size = {config.matching_residue_pool_size}",
        f"workers = {config.matching_workers}",
        "# How long a probe's request id is remembered (replays are refused).",
        f"replay_window_s = {config.matching_replay_window_s!r}",
        "",
        "[log]",
        f"level = {s(config.log_level)}",
        f"format = {s(config.log_format)}",
        "",
        "# Per list kind: shared in clear with whom, and publicity periods (defaults from",
        "# 发改办财金〔2019〕527号 and NDRC Order 58). A kind that is not public is never",
        "# replicated in clear. Example:",
        "# [lists.serious-dishonesty]",
        '# replicate_to = "*"            # or a list of city codes',
        "# min_publicity_days = 182",
        "# max_publicity_days = 1095",
        "# [lists.watch-list]",
        "# public = false",
        "",
    ]
    return "\n".join(lines)
