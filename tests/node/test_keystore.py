"""Secret files: written 0600, refused when group or others can reach them, loaded checked."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from federation.errors import AlreadyExistsError, KeyFileError
from federation.signing import SigningKey
from node.config import NodePaths
from node.identity import init_node
from node.keystore import (
    NodeKeys,
    check_token,
    load_client_token,
    load_node_keys,
    load_or_create_oprf_key,
    read_secret,
    write_file,
    write_secret,
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def node_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("node")
    init_node(home, city_code="370200", name="青岛", paillier_bits=1024)
    return home


@pytest.fixture
def node_copy(node_home: Path, tmp_path: Path) -> NodePaths:
    """A private copy of the node directory that a test may break."""
    home = tmp_path / "copy"
    (home / "keys").mkdir(parents=True, mode=0o700)
    for name in ("node.toml", "member-card.json"):
        (home / name).write_bytes((node_home / name).read_bytes())
    for source in (node_home / "keys").iterdir():
        target = home / "keys" / source.name
        target.write_bytes(source.read_bytes())
        target.chmod(mode_of(source))
    return NodePaths(home)


# --- write_secret / write_file -------------------------------------------------------------


def test_write_secret_creates_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    old = os.umask(0)
    try:
        write_secret(path, b"s3cret")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"s3cret"
    assert mode_of(path) == 0o600


def test_write_secret_refuses_existing_file_without_force(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"old")
    with pytest.raises(AlreadyExistsError, match="already exists") as info:
        write_secret(path, b"new")
    assert "--force" in info.value.diagnostics()
    assert path.read_bytes() == b"old"


def test_write_secret_with_force_replaces_and_narrows_mode(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_secret(path, b"new", force=True)
    assert path.read_bytes() == b"new"
    assert mode_of(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"], "temp file left behind"


def test_write_file_uses_the_given_mode(tmp_path: Path) -> None:
    path = tmp_path / "public"
    write_file(path, b"data", mode=0o644)
    assert mode_of(path) == 0o644


def test_write_secret_does_not_follow_a_planted_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "secret"
    link.symlink_to(target)
    with pytest.raises(AlreadyExistsError):
        write_secret(link, b"s3cret")
    assert not target.exists()


# --- read_secret ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700 | 0o070, 0o620])
def test_read_secret_refuses_group_or_world_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "signing.pem"
    path.write_bytes(b"key")
    path.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        read_secret(path)
    message = str(info.value)
    assert str(path) in message
    assert f"{mode:04o}" in message
    assert f"chmod 600 {path}" in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_read_secret_accepts_owner_only_files(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "signing.pem"
    path.write_bytes(b"key")
    path.chmod(mode)
    assert read_secret(path) == b"key"


def test_read_secret_missing_file_names_it_and_hints_init(tmp_path: Path) -> None:
    path = tmp_path / "nope.pem"
    with pytest.raises(KeyFileError, match=r"nope\.pem is missing") as info:
        read_secret(path)
    assert "credit-node init" in info.value.diagnostics()


def test_read_secret_refuses_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "dir"
    path.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_secret(path)


def test_read_secret_refuses_a_fifo_without_hanging(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_secret(path)


def test_read_secret_follows_symlink_but_checks_target_mode(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.write_bytes(b"key")
    target.chmod(0o644)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(KeyFileError, match="0644"):
        read_secret(link)
    target.chmod(0o600)
    assert read_secret(link) == b"key"


# --- load_node_keys -----------------------------------------------------------------------------


def test_load_node_keys_round_trip(node_home: Path) -> None:
    keys = load_node_keys(node_home)
    assert isinstance(keys, NodeKeys)
    assert keys.paillier_private.public_key == keys.paillier_public
    assert keys.paillier_public.n.bit_length() >= 1024
    # The Paillier pair really works together.
    assert keys.paillier_private.decrypt(keys.paillier_public.encrypt(42)) == 42
    # The signing key signs what its public key verifies.
    keys.signing_key.public_key.verify(keys.signing_key.sign(b"m"), b"m")
    assert keys.tls_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert keys.tls_cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert keys.client_token == (node_home / "keys" / "client-token").read_text()
    assert keys.client_token not in repr(keys)


def test_load_node_keys_refuses_a_readable_key(node_copy: NodePaths) -> None:
    node_copy.tls_key_path.chmod(0o640)
    with pytest.raises(KeyFileError, match=r"tls\.key has mode 0640"):
        load_node_keys(node_copy)


BROKEN_FILES = [
    ("signing.pem", b"not a pem", "signing.pem: signing key is not a valid PEM"),
    ("tls.key", b"garbage", r"tls\.key is not an unencrypted PEM private key"),
    ("paillier.json", b"{not json", r"paillier\.json is not valid JSON"),
    ("paillier.json", b'{"n": "ff"}', "exactly"),
    ("paillier.json", b'{"n": "zz", "p": "1", "q": "1"}', "hexadecimal"),
    ("paillier.json", b'{"n": "ff", "p": "f", "q": "11"}', "fewer than 1024 bits"),
    ("client-token", b"short", "valid token"),
    ("client-token", b"\xff" * 40, "ASCII"),
]


@pytest.mark.parametrize(("name", "content", "message"), BROKEN_FILES)
def test_load_node_keys_reports_broken_files(
    node_copy: NodePaths, name: str, content: bytes, message: str
) -> None:
    path = node_copy.keys_dir / name
    path.write_bytes(content)
    with pytest.raises(KeyFileError, match=message):
        load_node_keys(node_copy)


def test_load_node_keys_refuses_a_signing_key_of_the_wrong_type(node_copy: NodePaths) -> None:
    # A valid PEM private key, but ECDSA rather than Ed25519.
    node_copy.signing_key_path.write_bytes(node_copy.tls_key_path.read_bytes())
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_node_keys(node_copy)


def test_load_node_keys_refuses_a_tls_key_of_the_wrong_type(node_copy: NodePaths) -> None:
    node_copy.tls_key_path.write_bytes(SigningKey.generate().to_pem())
    with pytest.raises(KeyFileError, match="not an ECDSA P-256 key"):
        load_node_keys(node_copy)


def test_load_node_keys_refuses_paillier_factors_that_do_not_match(
    node_copy: NodePaths,
) -> None:
    document = json.loads(node_copy.paillier_key_path.read_text())
    document["p"] = format(int(document["p"], 16) + 2, "x")
    node_copy.paillier_key_path.write_text(json.dumps(document))
    with pytest.raises(KeyFileError, match="not two distinct factors"):
        load_node_keys(node_copy)


def test_load_node_keys_refuses_a_tls_key_of_another_certificate(
    node_copy: NodePaths, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    init_node(other, city_code="370600", name="烟台", paillier_bits=1024)
    node_copy.tls_key_path.write_bytes((other / "keys" / "tls.key").read_bytes())
    with pytest.raises(KeyFileError, match="does not belong to the certificate"):
        load_node_keys(node_copy)


def test_load_node_keys_missing_certificate(node_copy: NodePaths) -> None:
    node_copy.tls_cert_path.unlink()
    with pytest.raises(KeyFileError, match=r"tls\.crt is missing"):
        load_node_keys(node_copy)


def test_load_client_token_strips_a_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "client-token"
    write_secret(path, b"A" * 43 + b"\n")
    assert load_client_token(path) == "A" * 43


# --- check_token ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("presented", "expected", "ok"),
    [
        ("abc", "abc", True),
        ("abd", "abc", False),
        ("ab", "abc", False),
        ("", "", False),
        ("", "abc", False),
        ("青岛", "abc", False),
    ],
)
def test_check_token(presented: str, expected: str, ok: bool) -> None:
    assert check_token(presented, expected) is ok


def test_the_oprf_key_is_created_0600_on_first_use_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "oprf.key"
    path.parent.mkdir(mode=0o700)
    first = load_or_create_oprf_key(path)
    assert mode_of(path) == 0o600
    assert load_or_create_oprf_key(path).fingerprint() == first.fingerprint()
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_oprf_key(path)
    path.chmod(0o600)
    path.write_bytes(b"not a key")
    with pytest.raises(KeyFileError, match=r"oprf\.key"):
        load_or_create_oprf_key(path)


def test_init_writes_the_oprf_key(node_home: Path) -> None:
    path = NodePaths(node_home).oprf_key_path
    assert mode_of(path) == 0o600
    assert load_or_create_oprf_key(path).fingerprint()
