"""credit-node init's identity: files, modes, the certificate profile and the member card."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from federation.clock import FixedClock
from federation.errors import AlreadyExistsError, InvalidInputError, KeyFileError
from federation.member import Member, parse_member_card
from node.config import NodePaths, load_config
from node.identity import init_node, load_member, preset_city_name
from node.keystore import load_node_keys

NOW = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC)
SECRETS = ("signing.pem", "tls.key", "paillier.json", "client-token", "oprf.key")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def created(tmp_path_factory: pytest.TempPathFactory) -> tuple[NodePaths, Member]:
    home = tmp_path_factory.mktemp("node") / "qingdao"
    member = init_node(
        home,
        city_code="370200",
        name="青岛市",
        endpoint="node.qingdao.example:7600",
        paillier_bits=1024,
        clock=FixedClock(NOW),
    )
    return NodePaths(home), member


def test_init_creates_every_file_with_its_mode(created: tuple[NodePaths, Member]) -> None:
    files, _ = created
    assert mode_of(files.keys_dir) == 0o700
    for name in SECRETS:
        assert mode_of(files.keys_dir / name) == 0o600, name
    assert mode_of(files.tls_cert_path) == 0o644
    assert mode_of(files.member_card_path) == 0o644
    assert mode_of(files.config_path) == 0o600  # may hold a database password
    assert sorted(p.name for p in files.keys_dir.iterdir()) == sorted((*SECRETS, "tls.crt"))


def test_member_card_parses_and_matches_the_keys(created: tuple[NodePaths, Member]) -> None:
    files, member = created
    card = parse_member_card(files.member_card_path.read_bytes())
    assert card == member
    assert card.city_code == "370200"
    assert card.name == "青岛市"
    assert card.endpoint == "node.qingdao.example:7600"
    keys = load_node_keys(files)
    assert card.signing_key == keys.signing_key.public_key
    assert card.paillier_n == keys.paillier_public.n
    assert card.tls_certificate.encode() == keys.tls_cert_pem
    assert load_member(files, keys) == member


def test_config_written_by_init_loads(created: tuple[NodePaths, Member]) -> None:
    files, _ = created
    config = load_config(files.home, env={})
    assert config.city_code == "370200"
    assert config.name == "青岛市"
    assert config.endpoint == "node.qingdao.example:7600"
    assert config.peer_listen == "node.qingdao.example:7600"
    assert config.client_listen == "127.0.0.1:7601"
    assert config.database_url == f"sqlite:///{files.home}/node.db"


def test_certificate_profile(created: tuple[NodePaths, Member]) -> None:
    files, _ = created
    cert = x509.load_pem_x509_certificate(files.tls_cert_path.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=creditnet node 370200"
    assert cert.issuer == cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["370200.node.creditnet"]
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.not_valid_before_utc == NOW - dt.timedelta(hours=1)
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=825)
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"


def test_init_refuses_to_overwrite_without_force(
    created: tuple[NodePaths, Member],
) -> None:
    files, _ = created
    before = {p: p.read_bytes() for p in files.identity_paths}
    with pytest.raises(AlreadyExistsError, match="already holds a node identity") as info:
        init_node(files.home, city_code="370200", name="青岛市", paillier_bits=1024)
    assert "--force" in info.value.diagnostics()
    assert {p: p.read_bytes() for p in files.identity_paths} == before


@pytest.mark.parametrize(
    "leftover", ["node.toml", "member-card.json", "keys/signing.pem", "keys/client-token"]
)
def test_any_single_identity_file_blocks_init(tmp_path: Path, leftover: str) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / leftover).write_text("x")
    with pytest.raises(AlreadyExistsError, match=Path(leftover).name):
        init_node(tmp_path, city_code="370200", name="青岛市", paillier_bits=1024)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [Path(leftover).name]


def test_force_replaces_every_key(tmp_path: Path) -> None:
    first = init_node(tmp_path, city_code="370200", name="青岛市", paillier_bits=1024)
    old_token = (tmp_path / "keys" / "client-token").read_bytes()
    (tmp_path / "keys").chmod(0o755)
    second = init_node(tmp_path, city_code="370200", name="青岛市", paillier_bits=1024, force=True)
    assert second.signing_key != first.signing_key
    assert second.tls_fingerprint != first.tls_fingerprint
    assert second.paillier_n != first.paillier_n
    assert (tmp_path / "keys" / "client-token").read_bytes() != old_token
    assert parse_member_card((tmp_path / "member-card.json").read_bytes()) == second
    assert mode_of(tmp_path / "keys") == 0o700
    for name in SECRETS:
        assert mode_of(tmp_path / "keys" / name) == 0o600
    load_member(tmp_path, load_node_keys(tmp_path))


def test_name_defaults_to_the_preset_city() -> None:
    assert preset_city_name("370200") == "青岛"
    assert preset_city_name("110000") is None


def test_init_without_name_outside_presets_asks_for_one(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="needs a name") as info:
        init_node(tmp_path, city_code="110000", paillier_bits=1024)
    assert "--name" in info.value.diagnostics()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"city_code": "37020"}, "six-digit"),
        ({"city_code": "070200"}, "six-digit"),
        ({"endpoint": "no-port"}, "HOST:PORT"),
        ({"client_listen": "127.0.0.1:70000"}, "HOST:PORT"),
        ({"peer_listen": "10.0.0.1"}, "HOST:PORT"),
        ({"paillier_bits": 512}, "1024 to 8192"),
        ({"name": ""}, "1 to 100"),
    ],
)
def test_init_validates_its_arguments(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {
        "city_code": "370200",
        "name": "青岛市",
        "paillier_bits": 1024,
        **kwargs,
    }
    with pytest.raises(InvalidInputError, match=message):
        init_node(tmp_path / "n", **arguments)  # type: ignore[arg-type]
    assert not (tmp_path / "n").exists()


def test_init_refuses_a_file_as_home(tmp_path: Path) -> None:
    home = tmp_path / "file"
    home.write_text("")
    with pytest.raises(InvalidInputError, match="not a directory"):
        init_node(home, city_code="370200", name="青岛市", paillier_bits=1024)


def test_load_member_detects_a_card_of_other_keys(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    init_node(a, city_code="370200", name="青岛市", paillier_bits=1024)
    init_node(b, city_code="370200", name="青岛市", paillier_bits=1024)
    (a / "member-card.json").write_bytes((b / "member-card.json").read_bytes())
    with pytest.raises(KeyFileError, match="signing key, TLS certificate, Paillier key"):
        load_member(a, load_node_keys(a))


def test_load_member_reports_a_tampered_card(tmp_path: Path) -> None:
    init_node(tmp_path, city_code="370200", name="青岛市", paillier_bits=1024)
    card = tmp_path / "member-card.json"
    card.write_bytes(card.read_bytes().replace("青岛市".encode(), "烟台市".encode()))
    with pytest.raises(KeyFileError, match=r"member-card\.json: member card of 370200"):
        load_member(tmp_path)
