"""A node whose signing key is SM2/SM3: ``credit-node init --signature-suite sm2-sm3``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from federation.clock import FixedClock
from federation.errors import InvalidInputError, KeyFileError
from federation.member import Member, parse_member_card
from federation.signing import ED25519, SM2_SM3, SigningKey
from node.cli.main import main
from node.config import NodePaths
from node.identity import init_node, load_member
from node.keystore import load_node_keys, load_signing_key

NOW = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def created(tmp_path_factory: pytest.TempPathFactory) -> tuple[NodePaths, Member]:
    home = tmp_path_factory.mktemp("node") / "yantai"
    member = init_node(
        home,
        city_code="370600",
        name="烟台市",
        paillier_bits=1024,
        signature_suite=SM2_SM3,
        clock=FixedClock(NOW),
    )
    return NodePaths(home), member


def test_init_makes_an_sm2_signing_key(created: tuple[NodePaths, Member]) -> None:
    files, member = created
    key = load_signing_key(files.signing_key_path)
    assert key.suite == SM2_SM3
    assert member.signing_key == key.public_key
    assert files.signing_key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")


def test_the_card_is_signed_with_sm2_and_matches_the_keys(
    created: tuple[NodePaths, Member],
) -> None:
    files, member = created
    card = parse_member_card(files.member_card_path.read_bytes())  # checks the signature
    assert card == member
    assert card.signing_key.to_json()["suite"] == "sm2-sm3"
    keys = load_node_keys(files)
    assert load_member(files, keys) == member
    keys.signing_key.public_key.verify(keys.signing_key.sign(b"m"), b"m")


def test_the_tls_key_stays_ecdsa_p256(created: tuple[NodePaths, Member]) -> None:
    files, _ = created
    cert = x509.load_pem_x509_certificate(files.tls_cert_path.read_bytes())
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"


def test_an_sm2_key_in_the_tls_key_file_is_a_clear_error(
    created: tuple[NodePaths, Member], tmp_path: Path
) -> None:
    files, _ = created
    copy = NodePaths(tmp_path / "copy")
    copy.keys_dir.mkdir(parents=True, mode=0o700)
    for name in ("signing.pem", "tls.crt", "paillier.json", "client-token"):
        target = copy.keys_dir / name
        target.write_bytes((files.keys_dir / name).read_bytes())
        target.chmod((files.keys_dir / name).stat().st_mode & 0o777)
    copy.tls_key_path.write_bytes(files.signing_key_path.read_bytes())
    copy.tls_key_path.chmod(0o600)
    with pytest.raises(KeyFileError, match=r"tls\.key is not an ECDSA P-256 key"):
        load_node_keys(copy)


def test_init_refuses_an_unknown_suite_before_writing(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown signature suite 'sm2'"):
        init_node(tmp_path / "n", city_code="370200", paillier_bits=1024, signature_suite="sm2")
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize(
    ("extra", "suite"),
    [([], ED25519), (["--signature-suite", "sm2-sm3"], SM2_SM3)],
    ids=["default", "sm2-sm3"],
)
def test_cli_init_signature_suite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], suite: str
) -> None:
    home = tmp_path / "weihai"
    argv = ["init", "--city", "371000", "--dir", str(home), "--paillier-bits", "1024", *extra]
    assert main(argv) == 0
    out = capsys.readouterr().out
    key = SigningKey.from_pem((home / "keys" / "signing.pem").read_bytes())
    assert key.suite == suite
    assert f"({suite}, id {key.public_key.keyid})" in out


def test_cli_init_refuses_an_unknown_suite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "n"
    with pytest.raises(SystemExit) as info:
        main(["init", "--city", "370200", "--dir", str(home), "--signature-suite", "rsa"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--signature-suite" in err and "sm2-sm3" in err
    assert not home.exists()
