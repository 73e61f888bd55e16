"""Signature suites and keys.

A :class:`PublicKey` names its suite, so that a federation can use Ed25519 (the
default) or, later, the SM2/SM3 国密 suite without changing the documents that carry
keys. Key ids are the SHA-256 of the suite name and the raw public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from federation.errors import InvalidInputError, SignatureError

ED25519 = "ed25519"
SUITES = (ED25519,)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, *, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidInputError(f"{what} is not valid base64") from None


@dataclass(frozen=True)
class PublicKey:
    suite: str
    raw: bytes

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise InvalidInputError(f"unknown signature suite {self.suite!r}; known: {SUITES}")
        if self.suite == ED25519 and len(self.raw) != 32:
            raise InvalidInputError(f"an Ed25519 public key is 32 bytes, not {len(self.raw)}")

    @property
    def keyid(self) -> str:
        return hashlib.sha256(self.suite.encode() + b":" + self.raw).hexdigest()

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raise :class:`SignatureError` unless ``signature`` is valid for ``message``."""
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            raise SignatureError(f"signature by key {self.keyid[:16]} does not verify") from None

    def to_json(self) -> dict[str, str]:
        return {"suite": self.suite, "public_key": b64encode(self.raw)}

    @classmethod
    def from_json(cls, value: object, *, what: str = "key") -> PublicKey:
        if not isinstance(value, dict) or set(value) != {"suite", "public_key"}:
            raise InvalidInputError(f"{what} must be an object with 'suite' and 'public_key'")
        suite, encoded = value["suite"], value["public_key"]
        if not isinstance(suite, str) or not isinstance(encoded, str):
            raise InvalidInputError(f"{what}: 'suite' and 'public_key' must be strings")
        return cls(suite, b64decode(encoded, what=f"{what}.public_key"))


class SigningKey:
    """A node's private signing key. Loaded from a 0600 file by the node's keystore."""

    def __init__(self, private: ed25519.Ed25519PrivateKey) -> None:
        self._private = private
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public_key = PublicKey(ED25519, raw)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, data: bytes) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(f"signing key is not a valid PEM private key: {exc}") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise InvalidInputError("signing key is not an Ed25519 key")
        return cls(key)

    def to_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)
