"""Signature suites and keys: Ed25519 and the SM2/SM3 国密 suite.

A :class:`PublicKey` names its suite, so that a federation can use Ed25519 (the
default) or SM2/SM3 without changing the documents that carry keys. Key ids are the
SHA-256 of the suite name and the raw public key.

Suites
------
``ed25519``
    RFC 8032 Ed25519 through pyca/cryptography. Raw public key: 32 bytes; signature:
    64 bytes; private key file: PKCS#8 PEM.

``sm2-sm3``
    SM2 digital signatures (GB/T 32918.2-2016) on the recommended curve sm2p256v1
    (GB/T 32918.5-2017), with SM3 (GB/T 32905-2016) as the hash, as government
    systems assessed under GB/T 39786-2021 (密评) expect.

    * Raw public key: the 65-byte uncompressed point ``04 || x || y``; it must lie on
      the curve (the cofactor is 1, so that is the whole public-key validation).
    * The signer's distinguishing identifier is always the default ID
      ``1234567812345678`` that GB/T 35276-2017 prescribes when the parties agree on
      no other. A signature is over e = SM3(Z_A || M) with
      Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A).
    * Signature: DER ``SEQUENCE { r INTEGER, s INTEGER }`` (GB/T 35276-2017,
      SM2Signature), as OpenSSL 3, Tongsuo, GmSSL and BouncyCastle write it. Parsing
      is strict: canonical DER only, no trailing bytes, 1 <= r, s < n.
    * Private key file: unencrypted PKCS#8 PEM (``BEGIN PRIVATE KEY``), algorithm
      id-ecPublicKey with the named curve sm2p256v1 (OID 1.2.156.10197.1.301) and an
      RFC 5915 ECPrivateKey holding the public key: exactly what ``openssl genpkey
      -algorithm SM2`` (OpenSSL 3) and Tongsuo write, so keys move to and from those
      tools and HSM import utilities. pyca/cryptography cannot read this curve, so
      the fixed DER layout is written and parsed here; only that one layout is
      accepted, and its embedded public key must match the private scalar.
      (Checked both ways with OpenSSL 3.0 ``pkeyutl -rawin -digest sm3``, which needs
      ``-pkeyopt distid:1234567812345678``: its own default ID is empty.)

Library choice for SM2
----------------------
pyca/cryptography has SM3 (used here for Z_A and e) but no SM2. The elliptic-curve
operations come from ``snowland-smx`` (import name ``pysmx``), chosen over the other
PyPI candidates after checking each on Python 3.11 against the standard vectors
(GB/T 32905 SM3 "abc" and "abcd"x16; GB/T 32918.5 / GM/T 0003.5 Annex A signature
over "message digest") and timing sign/verify on this 2-core machine:

* ``snowland-smx`` 1.1.0 (BSD-3-Clause, pure Python, released 2026): installs from
  PyPI as a universal wheel, reproduces the Annex A key pair, Z_A and (r, s) exactly,
  draws its randomness from ``secrets``. Used as below (SM3 from cryptography, the
  curve arithmetic from pysmx): sign ~4.5 ms, verify ~8 ms, key generation ~4 ms,
  fast enough for manifests, checkpoints, member cards and reports. Chosen.
* ``gmssl`` 3.2.2 (pure Python): correct on the vectors and a little slower, but draws
  SM2 nonces from ``random.choice`` (Mersenne Twister, predictable: private keys
  recoverable from a few signatures) and mangles public keys with
  ``str.lstrip("04")``. Rejected.
* ``tongsuopy`` 1.0.1 (Tongsuo binding): fastest (~0.9 ms sign, ~0.7 ms verify) and
  correct on the vectors, but last released in February 2023, bundles a fork based on
  OpenSSL 1.1.1h (2020) that only a new release could patch, has no Linux aarch64
  wheel and no sdist, and cannot set the user ID. Rejected for maintenance.
* ``gmssl-python`` 2.2.2 (ctypes): needs the GmSSL C library, which neither PyPI nor
  Debian provides; it cannot be imported here (and its module name clashes with
  ``gmssl``). Rejected.

What is done here around the library, because it does not do it: public keys are
checked to be on the curve; r and s are range-checked before verification; anything
the library raises on hostile input becomes :class:`SignatureError`; the nonce and the
private scalar are handed to its double-and-add loop as k + n or k + 2n, whichever has
one bit more than n, so that the loop length no longer reveals the scalar's bit
length (the "Minerva" class of nonce leaks); 4 and 5 go as k + 3n, because the
loop's point addition fails on 2n + 4 and 2n + 5 (see ``_fixed_length``). Pure Python
arithmetic is still not constant-time; signing is rare (checkpoints, member cards,
reports) and keys are 0600 files on the node. ``pysmx`` is imported on first SM2 use
only: importing it costs about half a second (its SM9 tables), which Ed25519 nodes
need not pay.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from federation.errors import InvalidInputError, SignatureError

ED25519: Final = "ed25519"
SM2_SM3: Final = "sm2-sm3"
SUITES = (ED25519, SM2_SM3)

#: The default distinguishing identifier of GB/T 35276-2017, used for every SM2 signer.
SM2_DEFAULT_ID: Final = b"1234567812345678"

# sm2p256v1, the recommended curve of GB/T 32918.5-2017: y^2 = x^3 + ax + b over F_p.
SM2_P: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
SM2_A: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
SM2_B: Final = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
SM2_N: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
SM2_GX: Final = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
SM2_GY: Final = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

SM2_PUBLIC_KEY_SIZE: Final = 65

# The PKCS#8 layout OpenSSL 3 and Tongsuo write for an SM2 key: PrivateKeyInfo with
# AlgorithmIdentifier {id-ecPublicKey, sm2p256v1} around an RFC 5915 ECPrivateKey
# {version 1, privateKey OCTET STRING (32), [1] publicKey BIT STRING (65)}.
_SM2_ALGORITHM = bytes.fromhex("301306072a8648ce3d020106082a811ccf5501822d")
_SM2_PKCS8_HEAD = (
    bytes.fromhex("308187020100") + _SM2_ALGORITHM + bytes.fromhex("046d306b0201010420")
)
_SM2_PKCS8_MIDDLE = bytes.fromhex("a144034200")
_SM2_PKCS8_SIZE = len(_SM2_PKCS8_HEAD) + 32 + len(_SM2_PKCS8_MIDDLE) + SM2_PUBLIC_KEY_SIZE
_PEM_PRIVATE_KEY = re.compile(
    rb"\s*-----BEGIN PRIVATE KEY-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END PRIVATE KEY-----\s*"
)


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, *, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidInputError(f"{what} is not valid base64") from None


# --- SM3 and the SM2 building blocks ---------------------------------------------------


def sm3(data: bytes) -> bytes:
    """SM3 (GB/T 32905-2016) of ``data``, through pyca/cryptography."""
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def sm2_z(public_raw: bytes, user_id: bytes = SM2_DEFAULT_ID) -> bytes:
    """Z_A of GB/T 32918.2-2016 §5.5: binds a signature to the signer's ID and public key."""
    entl = len(user_id) * 8
    if entl >= 1 << 16:
        raise InvalidInputError("an SM2 user ID is at most 8191 bytes")
    return sm3(
        entl.to_bytes(2, "big")
        + user_id
        + b"".join(v.to_bytes(32, "big") for v in (SM2_A, SM2_B, SM2_GX, SM2_GY))
        + public_raw[1:]
    )


def sm2_digest(public_raw: bytes, message: bytes, user_id: bytes = SM2_DEFAULT_ID) -> int:
    """e = SM3(Z_A || M) as an integer: the value SM2 actually signs."""
    return int.from_bytes(sm3(sm2_z(public_raw, user_id) + message), "big")


def _check_sm2_point(raw: bytes) -> None:
    if len(raw) != SM2_PUBLIC_KEY_SIZE:
        raise InvalidInputError(
            f"an SM2 public key is {SM2_PUBLIC_KEY_SIZE} bytes (04 || x || y), not {len(raw)}"
        )
    if raw[0] != 0x04:
        raise InvalidInputError("an SM2 public key must be an uncompressed point (first byte 04)")
    x = int.from_bytes(raw[1:33], "big")
    y = int.from_bytes(raw[33:], "big")
    if x >= SM2_P or y >= SM2_P or (y * y - (x * x * x + SM2_A * x + SM2_B)) % SM2_P != 0:
        raise InvalidInputError("the SM2 public key is not a point on the curve sm2p256v1")


def _sm2_library() -> Any:
    # Imported on first use: see the module docstring. The library is untyped.
    import pysmx.SM2  # type: ignore[import-untyped]

    return pysmx.SM2


def _fixed_length(scalar: int) -> int:
    # scalar + n or scalar + 2n: the same point multiple, always one bit longer than n,
    # so the library's double-and-add runs the same number of rounds for every scalar.
    padded = scalar + SM2_N
    if padded.bit_length() <= SM2_N.bit_length():
        padded += SM2_N
    # At each set bit i the loop adds P to (m - 1)P, m = padded >> i, with a general
    # addition that gives infinity instead of 2P when (m - 1)P is P itself, that is
    # for odd m = 2 (mod n). For padded in [2^256, 2^257) that is only m = n + 2 at
    # i = 1 (above, m < 2^255 and m = 2 is even; at i = 0, 2n + 2 is even), so only
    # 2n + 4 and 2n + 5: scalars 4 and 5. (The library does get (m - 1)P = -P and
    # infinity right, which scalar 1 meets.) 4 and 5 have no other 257-bit
    # representative, so they take scalar + 3n, which passes no such m. The longer
    # loop tells only that the scalar is 4 or 5: values anyone can try anyway.
    if padded >> 1 == SM2_N + 2:
        padded += SM2_N
    return padded


def _sm2_public_raw(private: int) -> bytes:
    try:
        point = _sm2_library().kG(
            _fixed_length(private), format(SM2_GX, "064x") + format(SM2_GY, "064x"), 64
        )
        public_raw = b"\x04" + bytes.fromhex(point)  # None (infinity) raises TypeError
        _check_sm2_point(public_raw)
    except (ArithmeticError, IndexError, TypeError, ValueError, InvalidInputError):
        # A library failure on this scalar: a bad key file is an input error, not a crash.
        raise InvalidInputError(
            "the SM2 library could not compute the public key of this private key"
        ) from None
    return public_raw


def _sm2_sign_digest(private: int, digest: int, nonce: int) -> tuple[int, int] | None:
    """One SM2 signing attempt (GB/T 32918.2 §6.1 A3-A6) with the given nonce.

    None when the standard says to draw another nonce (r = 0, r + k = n, s = 0).
    """
    try:
        rs = _sm2_library().Sign(
            format(digest, "064x"),
            format(private, "064x"),
            format(_fixed_length(nonce), "x"),
            64,
            Hexstr=1,
        )
    except (TypeError, ValueError):  # the library's way of reporting s = 0
        return None
    if rs is None:
        return None
    r, s = int.from_bytes(rs[:32], "big"), int.from_bytes(rs[32:], "big")
    if r == 0 or s == 0 or (r + nonce) % SM2_N == 0:
        return None
    return r, s


def _sm2_verify_digest(public_raw: bytes, digest: int, r: int, s: int) -> bool:
    """GB/T 32918.2 §7.1 B3-B7 for a validated point and in-range r, s."""
    try:
        valid = _sm2_library().Verify(
            r.to_bytes(32, "big") + s.to_bytes(32, "big"),
            format(digest, "064x"),
            public_raw[1:].hex(),
            64,
            Hexstr=1,
        )
    except (ArithmeticError, TypeError, ValueError, IndexError):
        # The library fails this way when s*G + t*P is the point at infinity.
        return False
    return valid is True


def _decode_sm2_signature(signature: bytes) -> tuple[int, int] | None:
    try:
        r, s = decode_dss_signature(signature)
    except ValueError:
        return None
    if not (0 < r < SM2_N and 0 < s < SM2_N):
        return None
    if encode_dss_signature(r, s) != signature:  # canonical DER only
        return None
    return r, s


class _Sm2PrivateKey:
    """An SM2 private scalar d, 1 <= d <= n - 2, and its public point."""

    def __init__(self, private: int, public_raw: bytes | None = None) -> None:
        if not 0 < private < SM2_N - 1:
            raise InvalidInputError("the SM2 private key is out of range")
        derived = _sm2_public_raw(private)
        if public_raw is not None and public_raw != derived:
            raise InvalidInputError("the SM2 private key does not match its public key")
        self._private = private
        self.public_raw = derived

    @classmethod
    def generate(cls) -> _Sm2PrivateKey:
        return cls(secrets.randbelow(SM2_N - 2) + 1)

    @classmethod
    def from_pkcs8(cls, der: bytes) -> _Sm2PrivateKey:
        head, middle = _SM2_PKCS8_HEAD, _SM2_PKCS8_MIDDLE
        scalar_end = len(head) + 32
        if (
            len(der) != _SM2_PKCS8_SIZE
            or not der.startswith(head)
            or der[scalar_end : scalar_end + len(middle)] != middle
        ):
            raise InvalidInputError(
                "the SM2 signing key is not in the PKCS#8 form this node reads "
                "(unencrypted, named curve sm2p256v1, with the public key; as written by "
                "`openssl genpkey -algorithm SM2`)"
            )
        private = int.from_bytes(der[len(head) : scalar_end], "big")
        return cls(private, der[scalar_end + len(middle) :])

    def to_pkcs8(self) -> bytes:
        return (
            _SM2_PKCS8_HEAD
            + self._private.to_bytes(32, "big")
            + _SM2_PKCS8_MIDDLE
            + self.public_raw
        )

    def sign(self, message: bytes) -> bytes:
        digest = sm2_digest(self.public_raw, message)
        while True:
            result = _sm2_sign_digest(self._private, digest, secrets.randbelow(SM2_N - 1) + 1)
            if result is not None:
                return encode_dss_signature(*result)


def _sm2_pkcs8_from_pem(data: bytes) -> bytes | None:
    """The DER of a PEM private key whose algorithm is SM2, else None."""
    match = _PEM_PRIVATE_KEY.fullmatch(data)
    if match is None:
        return None
    try:
        der = base64.b64decode(b"".join(match[1].split()), validate=True)
    except binascii.Error:
        return None
    # PrivateKeyInfo: SEQUENCE header (2 to 4 bytes), version 0, then the algorithm.
    return der if _SM2_ALGORITHM in der[:32] else None


def _pem(label: str, der: bytes) -> bytes:
    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        b"\n".join([f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode()])
        + b"\n"
    )


# --- public keys and signing keys ---------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    suite: str
    raw: bytes

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise InvalidInputError(f"unknown signature suite {self.suite!r}; known: {SUITES}")
        if self.suite == ED25519 and len(self.raw) != 32:
            raise InvalidInputError(f"an Ed25519 public key is 32 bytes, not {len(self.raw)}")
        if self.suite == SM2_SM3:
            _check_sm2_point(self.raw)

    @functools.cached_property
    def keyid(self) -> str:
        return hashlib.sha256(self.suite.encode() + b":" + self.raw).hexdigest()

    @functools.cached_property
    def _ed25519(self) -> ed25519.Ed25519PublicKey:
        # Loaded once: a key verifies many signatures (checkpoints, reports, statements).
        return ed25519.Ed25519PublicKey.from_public_bytes(self.raw)

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raise :class:`SignatureError` unless ``signature`` is valid for ``message``."""
        if self.suite == SM2_SM3:
            rs = _decode_sm2_signature(signature)
            if rs is None or not _sm2_verify_digest(self.raw, sm2_digest(self.raw, message), *rs):
                raise SignatureError(f"signature by key {self.keyid[:16]} does not verify")
            return
        try:
            self._ed25519.verify(signature, message)
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

    def __init__(self, private: ed25519.Ed25519PrivateKey | _Sm2PrivateKey) -> None:
        self._private = private
        if isinstance(private, _Sm2PrivateKey):
            self.public_key = PublicKey(SM2_SM3, private.public_raw)
        else:
            raw = private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            self.public_key = PublicKey(ED25519, raw)

    @property
    def suite(self) -> str:
        return self.public_key.suite

    @classmethod
    def generate(cls, suite: str = ED25519) -> SigningKey:
        if suite == ED25519:
            return cls(ed25519.Ed25519PrivateKey.generate())
        if suite == SM2_SM3:
            return cls(_Sm2PrivateKey.generate())
        raise InvalidInputError(f"unknown signature suite {suite!r}; known: {SUITES}")

    @classmethod
    def from_pem(cls, data: bytes) -> SigningKey:
        sm2_der = _sm2_pkcs8_from_pem(data)
        if sm2_der is not None:
            return cls(_Sm2PrivateKey.from_pkcs8(sm2_der))
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise InvalidInputError(f"signing key is not a valid PEM private key: {exc}") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise InvalidInputError("signing key is not an Ed25519 key nor an SM2 key")
        return cls(key)

    def to_pem(self) -> bytes:
        if isinstance(self._private, _Sm2PrivateKey):
            return _pem("PRIVATE KEY", self._private.to_pkcs8())
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)
