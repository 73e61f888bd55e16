"""Ed25519 signing keys, public keys, key ids and their JSON form."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.errors import InvalidInputError, SignatureError
from federation.signing import ED25519, PublicKey, SigningKey, b64decode, b64encode

MESSAGE = "胶东经济圈 manifest v1".encode()


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate()


# --- sign and verify ---------------------------------------------------------------


def test_sign_verify_round_trip(key: SigningKey) -> None:
    signature = key.sign(MESSAGE)
    assert len(signature) == 64
    key.public_key.verify(signature, MESSAGE)  # does not raise


@settings(max_examples=25)
@given(st.binary(max_size=256))
def test_sign_verify_round_trip_any_message(message: bytes) -> None:
    key = SigningKey.generate()
    key.public_key.verify(key.sign(message), message)


def test_wrong_message_is_refused(key: SigningKey) -> None:
    signature = key.sign(MESSAGE)
    with pytest.raises(SignatureError, match=f"key {key.public_key.keyid[:16]} does not verify"):
        key.public_key.verify(signature, MESSAGE + b".")


def test_wrong_key_is_refused(key: SigningKey, other_key: SigningKey) -> None:
    with pytest.raises(SignatureError):
        other_key.public_key.verify(key.sign(MESSAGE), MESSAGE)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: s[:-1], id="truncated"),
        pytest.param(lambda s: s[:32], id="half"),
        pytest.param(lambda s: b"", id="empty"),
        pytest.param(lambda s: s + b"\x00", id="extended"),
        pytest.param(lambda s: bytes([s[0] ^ 1]) + s[1:], id="bit-flip"),
    ],
)
def test_mangled_signature_is_refused(key: SigningKey, mangle: Any) -> None:
    with pytest.raises(SignatureError):
        key.public_key.verify(mangle(key.sign(MESSAGE)), MESSAGE)


# --- PublicKey -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suite", "raw", "fragment"),
    [
        pytest.param("sm2", b"\x01" * 32, "unknown signature suite 'sm2'", id="unknown-suite"),
        pytest.param("Ed25519", b"\x01" * 32, "unknown signature suite", id="suite-case"),
        pytest.param(ED25519, b"\x01" * 31, "32 bytes, not 31", id="short"),
        pytest.param(ED25519, b"\x01" * 33, "32 bytes, not 33", id="long"),
        pytest.param(ED25519, b"", "32 bytes, not 0", id="empty"),
    ],
)
def test_public_key_checks_suite_and_length(suite: str, raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        PublicKey(suite, raw)


def test_keyid_is_sha256_of_suite_and_raw_key(key: SigningKey) -> None:
    public = key.public_key
    assert public.keyid == hashlib.sha256(b"ed25519:" + public.raw).hexdigest()
    assert public.keyid == PublicKey(ED25519, bytes(public.raw)).keyid


def test_keyid_differs_between_keys(key: SigningKey, other_key: SigningKey) -> None:
    assert key.public_key.keyid != other_key.public_key.keyid


def test_json_round_trip(key: SigningKey) -> None:
    value = key.public_key.to_json()
    assert value == {"suite": "ed25519", "public_key": b64encode(key.public_key.raw)}
    assert PublicKey.from_json(value) == key.public_key


def _good() -> dict[str, Any]:
    return SigningKey.generate().public_key.to_json()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param("ed25519", "must be an object", id="not-a-dict"),
        pytest.param(None, "must be an object", id="none"),
        pytest.param({"suite": "ed25519"}, "must be an object", id="missing-key"),
        pytest.param({"public_key": _good()["public_key"]}, "must be an object", id="no-suite"),
        pytest.param({**_good(), "extra": 1}, "must be an object", id="extra-field"),
        pytest.param({**_good(), "suite": 1}, "must be strings", id="suite-int"),
        pytest.param({**_good(), "public_key": None}, "must be strings", id="key-none"),
        pytest.param({**_good(), "public_key": ["AA=="]}, "must be strings", id="key-list"),
        pytest.param({**_good(), "public_key": "not base64!"}, "not valid base64", id="not-b64"),
        pytest.param({**_good(), "public_key": "AAA"}, "not valid base64", id="bad-padding"),
        pytest.param({**_good(), "public_key": "密钥"}, "not valid base64", id="non-ascii"),
        pytest.param(
            {**_good(), "public_key": b64encode(b"\x00" * 16)}, "32 bytes, not 16", id="short"
        ),
        pytest.param({**_good(), "suite": "rsa"}, "unknown signature suite", id="unknown-suite"),
    ],
)
def test_from_json_refuses(value: Any, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        PublicKey.from_json(value, what="members[0].signing_key")


def test_from_json_error_names_the_key() -> None:
    with pytest.raises(InvalidInputError, match=r"^members\[2\]\.signing_key\.public_key"):
        PublicKey.from_json({"suite": "ed25519", "public_key": "!"}, what="members[2].signing_key")


def test_b64_round_trip_and_strictness() -> None:
    assert b64decode(b64encode(b"\x00\xff"), what="x") == b"\x00\xff"
    with pytest.raises(InvalidInputError, match=r"^sig is not valid base64$"):
        b64decode("AA\nAA==", what="sig")


# --- SigningKey ----------------------------------------------------------------------


def test_pem_round_trip(key: SigningKey) -> None:
    pem = key.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = SigningKey.from_pem(pem)
    assert loaded.public_key == key.public_key
    key.public_key.verify(loaded.sign(MESSAGE), MESSAGE)


def test_from_pem_loads_a_key_made_by_cryptography() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert SigningKey.from_pem(pem).public_key == PublicKey(ED25519, raw)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not a key at all", id="garbage"),
        pytest.param(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", id="bad-body"
        ),
        pytest.param(base64.b64encode(b"\x30\x00"), id="bare-base64"),
    ],
)
def test_from_pem_refuses_garbage(data: bytes) -> None:
    with pytest.raises(InvalidInputError, match="not a valid PEM private key"):
        SigningKey.from_pem(data)


def test_from_pem_refuses_encrypted_key() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    with pytest.raises(InvalidInputError):
        SigningKey.from_pem(pem)


def test_from_pem_refuses_a_non_ed25519_key() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(InvalidInputError, match="not an Ed25519 key"):
        SigningKey.from_pem(pem)
