"""The sm2-sm3 suite: SM3 and SM2 against the standards' vectors, keys, strict parsing.

Vectors are data, in ``vectors/sm2_sm3.json`` (each with its source): GB/T 32905-2016
Appendix A for SM3, GB/T 32918.5-2017 (GM/T 0003.5-2012) Annex A for SM2, and keys and
signatures made by OpenSSL 3 and Tongsuo for interoperability.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from federation import signing
from federation.errors import InvalidInputError, SignatureError
from federation.signing import (
    ED25519,
    SM2_DEFAULT_ID,
    SM2_N,
    SM2_P,
    SM2_SM3,
    PublicKey,
    SigningKey,
    sm2_digest,
    sm2_z,
    sm3,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "sm2_sm3.json").read_text(encoding="utf-8")
)
ANNEX_A = VECTORS["sm2_sign"][0]
MESSAGE = "胶东经济圈 manifest v1".encode()


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def n(text: str) -> int:
    return int(text, 16)


def vector_id(vector: dict[str, Any]) -> str:
    return str(vector["source"])[:40]


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate(SM2_SM3)


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate(SM2_SM3)


@pytest.fixture(scope="module")
def signature(key: SigningKey) -> bytes:
    return key.sign(MESSAGE)


# --- the standards' vectors -------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["sm3"], ids=vector_id)
def test_sm3_standard_vectors(vector: dict[str, Any]) -> None:
    assert sm3(vector["message"].encode()) == h(vector["digest"])


def test_annex_a_key_pair() -> None:
    private = signing._Sm2PrivateKey(n(ANNEX_A["private_key"]))
    assert private.public_raw == h(ANNEX_A["public_key"])


def test_annex_a_z_and_digest() -> None:
    public = h(ANNEX_A["public_key"])
    user_id = ANNEX_A["user_id"].encode()
    assert user_id == SM2_DEFAULT_ID
    assert sm2_z(public, user_id) == h(ANNEX_A["za"])
    assert sm2_digest(public, ANNEX_A["message"].encode()) == n(ANNEX_A["e"])


def test_annex_a_signature_with_the_standards_nonce() -> None:
    # Runs the real signing path, including the fixed-length nonce handed to the library.
    result = signing._sm2_sign_digest(n(ANNEX_A["private_key"]), n(ANNEX_A["e"]), n(ANNEX_A["k"]))
    assert result == (n(ANNEX_A["r"]), n(ANNEX_A["s"]))
    assert encode_dss_signature(*result) == h(ANNEX_A["signature_der"])


def test_annex_a_signature_verifies() -> None:
    public = PublicKey(SM2_SM3, h(ANNEX_A["public_key"]))
    public.verify(h(ANNEX_A["signature_der"]), ANNEX_A["message"].encode())  # does not raise


def test_annex_a_signature_is_bound_to_the_user_id() -> None:
    public = h(ANNEX_A["public_key"])
    other_id = sm2_digest(public, ANNEX_A["message"].encode(), b"ALICE123@YAHOO.COM")
    assert not signing._sm2_verify_digest(public, other_id, n(ANNEX_A["r"]), n(ANNEX_A["s"]))


@pytest.mark.parametrize("vector", VECTORS["sm2_foreign_signatures"], ids=vector_id)
def test_signatures_made_by_openssl_verify(vector: dict[str, Any]) -> None:
    public = PublicKey(SM2_SM3, h(vector["public_key"]))
    public.verify(h(vector["signature_der"]), vector["message"].encode())
    with pytest.raises(SignatureError):
        public.verify(h(vector["signature_der"]), vector["message"].encode() + b" ")


@pytest.mark.parametrize("vector", VECTORS["sm2_pkcs8"], ids=vector_id)
def test_pkcs8_written_by_tongsuo_and_openssl_loads_and_is_written_identically(
    vector: dict[str, Any],
) -> None:
    pem = vector["pem"].encode("ascii")
    key = SigningKey.from_pem(pem)
    assert key.public_key == PublicKey(
        SM2_SM3, signing._Sm2PrivateKey(n(vector["private_key"])).public_raw
    )
    assert key.to_pem() == pem


def test_curve_constants_agree_with_the_library() -> None:
    lib = signing._sm2_library()._SM2  # P, a and b are not re-exported
    assert (lib.sm2_P, lib.sm2_a, lib.sm2_b, lib.sm2_N) == (
        SM2_P,
        signing.SM2_A,
        signing.SM2_B,
        SM2_N,
    )
    assert int(lib.sm2_G, 16) == (signing.SM2_GX << 256) | signing.SM2_GY


# --- sign and verify -------------------------------------------------------------------


def test_sign_verify_round_trip(key: SigningKey, signature: bytes) -> None:
    assert key.suite == SM2_SM3
    assert len(key.public_key.raw) == 65 and key.public_key.raw[0] == 4
    r, s = decode_dss_signature(signature)
    assert 0 < r < SM2_N and 0 < s < SM2_N
    assert encode_dss_signature(r, s) == signature  # DER, GB/T 35276
    key.public_key.verify(signature, MESSAGE)


def test_signatures_are_randomised(key: SigningKey, signature: bytes) -> None:
    again = key.sign(MESSAGE)
    assert again != signature
    key.public_key.verify(again, MESSAGE)


@settings(max_examples=15, deadline=None)
@given(st.binary(max_size=300))
def test_round_trip_any_message(message: bytes) -> None:
    key = SigningKey.generate(SM2_SM3)
    key.public_key.verify(key.sign(message), message)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda m: m + b".", id="appended"),
        pytest.param(lambda m: m[:-1], id="truncated"),
        pytest.param(lambda m: bytes([m[0] ^ 1]) + m[1:], id="bit-flip"),
        pytest.param(lambda m: b"", id="empty"),
    ],
)
def test_tampered_message_is_refused(key: SigningKey, signature: bytes, mangle: Any) -> None:
    with pytest.raises(SignatureError, match=f"key {key.public_key.keyid[:16]} does not verify"):
        key.public_key.verify(signature, mangle(MESSAGE))


def _rs(signature: bytes) -> tuple[int, int]:
    return decode_dss_signature(signature)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: s[:-1], id="truncated"),
        pytest.param(lambda s: s + b"\x00", id="trailing-byte"),
        pytest.param(lambda s: b"", id="empty"),
        pytest.param(lambda s: s[:-1] + bytes([s[-1] ^ 1]), id="bit-flip-in-s"),
        pytest.param(lambda s: s[:10] + bytes([s[10] ^ 0x80]) + s[11:], id="bit-flip-in-r"),
        pytest.param(lambda s: encode_dss_signature(_rs(s)[0] + 1, _rs(s)[1]), id="r+1"),
        pytest.param(lambda s: encode_dss_signature(_rs(s)[0], _rs(s)[1] + 1), id="s+1"),
        pytest.param(lambda s: encode_dss_signature(_rs(s)[1], _rs(s)[0]), id="r-s-swapped"),
        pytest.param(lambda s: encode_dss_signature(_rs(s)[0] + SM2_N, _rs(s)[1]), id="r+n"),
        pytest.param(lambda s: encode_dss_signature(_rs(s)[0], _rs(s)[1] + SM2_N), id="s+n"),
        pytest.param(lambda s: encode_dss_signature(0, _rs(s)[1]), id="r=0"),
        pytest.param(lambda s: encode_dss_signature(_rs(s)[0], 0), id="s=0"),
        pytest.param(lambda s: encode_dss_signature(SM2_N, _rs(s)[1]), id="r=n"),
        pytest.param(lambda s: encode_dss_signature(_rs(s)[0], SM2_N - _rs(s)[0]), id="r+s=n"),
        pytest.param(
            lambda s: _rs(s)[0].to_bytes(32, "big") + _rs(s)[1].to_bytes(32, "big"),
            id="raw-r-s",
        ),
        pytest.param(lambda s: bytes([0x30, 0x81, s[1]]) + s[2:], id="non-minimal-length"),
        pytest.param(
            lambda s: b"\x30" + bytes([s[1] + 1]) + b"\x02" + bytes([s[3] + 1]) + b"\x00" + s[4:],
            id="padded-integer",
        ),
    ],
)
def test_mangled_signature_is_refused(key: SigningKey, signature: bytes, mangle: Any) -> None:
    with pytest.raises(SignatureError):
        key.public_key.verify(mangle(signature), MESSAGE)


@pytest.mark.parametrize(
    ("r", "s", "accepted"),
    [
        (1, 1, True),
        (SM2_N - 1, SM2_N - 1, True),
        (0, 1, False),
        (1, 0, False),
        (SM2_N, 1, False),
        (1, SM2_N, False),
        (1, SM2_N + 1, False),  # s + n would otherwise pass the library's check for s = 1
    ],
)
def test_signature_parsing_keeps_r_and_s_in_range(r: int, s: int, accepted: bool) -> None:
    parsed = signing._decode_sm2_signature(encode_dss_signature(r, s))
    assert parsed == ((r, s) if accepted else None)


def test_annex_a_signature_with_a_sign_byte_stripped_is_refused() -> None:
    # r has its top bit set, so DER needs the leading zero; without it r reads as negative.
    public = PublicKey(SM2_SM3, h(ANNEX_A["public_key"]))
    der = h(ANNEX_A["signature_der"])
    with pytest.raises(SignatureError):
        public.verify(b"\x30\x45\x02\x20" + der[5:], ANNEX_A["message"].encode())


def test_signature_whose_check_point_is_at_infinity_is_refused() -> None:
    # With s + (r + s)d = 0 (mod n), s*G + t*P is the point at infinity: the library
    # fails on it, which must come out as a plain refusal.
    d = n(ANNEX_A["private_key"])
    r = 12345
    s = (-r * d * pow(1 + d, -1, SM2_N)) % SM2_N
    public = PublicKey(SM2_SM3, h(ANNEX_A["public_key"]))
    with pytest.raises(SignatureError):
        public.verify(encode_dss_signature(r, s), ANNEX_A["message"].encode())


def test_wrong_key_is_refused(key: SigningKey, other_key: SigningKey, signature: bytes) -> None:
    with pytest.raises(SignatureError):
        other_key.public_key.verify(signature, MESSAGE)


def test_suites_do_not_cross(key: SigningKey, signature: bytes) -> None:
    ed = SigningKey.generate(ED25519)
    with pytest.raises(SignatureError):
        key.public_key.verify(ed.sign(MESSAGE), MESSAGE)
    with pytest.raises(SignatureError):
        ed.public_key.verify(signature, MESSAGE)
    with pytest.raises(InvalidInputError, match="32 bytes, not 65"):
        PublicKey(ED25519, key.public_key.raw)
    with pytest.raises(InvalidInputError, match="65 bytes"):
        PublicKey(SM2_SM3, ed.public_key.raw)


@settings(max_examples=200, deadline=None)
@given(signature=st.binary(max_size=80), message=st.binary(max_size=40))
def test_verify_raises_only_signature_error_on_random_bytes(
    key: SigningKey, signature: bytes, message: bytes
) -> None:
    with pytest.raises(SignatureError):
        key.public_key.verify(signature, message)


@settings(max_examples=60, deadline=None)
@given(
    r=st.one_of(st.integers(0, 2**264), st.sampled_from([1, SM2_N - 1, SM2_N, SM2_N + 1])),
    s=st.one_of(st.integers(0, 2**264), st.sampled_from([1, SM2_N - 1, SM2_N, SM2_N + 1])),
)
def test_verify_raises_only_signature_error_on_random_r_and_s(
    key: SigningKey, r: int, s: int
) -> None:
    with pytest.raises(SignatureError):
        key.public_key.verify(encode_dss_signature(r, s), MESSAGE)


# The scalars whose 257-bit representative 2n + k makes the library's double-and-add
# add a point to itself (see signing._fixed_length): they go as 3n + k, 258 bits.
SPECIAL_SCALARS = (4, 5)


@settings(max_examples=200)
@given(st.one_of(st.integers(1, SM2_N - 1), st.sampled_from(SPECIAL_SCALARS)))
def test_scalars_reach_the_library_with_a_fixed_bit_length(k: int) -> None:
    # Every scalar but 4 and 5 keeps its 257-bit k + n or k + 2n; 4 and 5 are one bit
    # longer, which tells only that the scalar is one of them.
    padded = signing._fixed_length(k)
    special = k in SPECIAL_SCALARS
    assert padded.bit_length() == SM2_N.bit_length() + (2 if special else 1)
    assert padded % SM2_N == k
    if special:
        assert padded == k + 3 * SM2_N
    else:
        assert padded == (k + SM2_N if k + SM2_N >= 2**256 else k + 2 * SM2_N)


def _adds_of_a_point_to_itself(padded: int) -> list[int]:
    # The steps at which pysmx's MSB-first double-and-add (_jac_scalar_mult) would add
    # P to an accumulator that already holds P, followed on multiples of P mod n.
    held: int | None = None
    bad = []
    for i in range(padded.bit_length() - 1, -1, -1):
        if held is not None:
            held = 2 * held % SM2_N
        if (padded >> i) & 1:
            if held == 1:
                bad.append(i)
            held = 1 if held is None else (held + 1) % SM2_N
    return bad


@settings(max_examples=200)
@given(
    st.one_of(
        st.integers(1, SM2_N - 1),
        st.integers(1, 64),
        st.integers(SM2_N - 64, SM2_N - 1),
        st.integers(2**256 - SM2_N - 64, 2**256 - SM2_N + 64),
    )
)
def test_padded_scalars_never_make_the_library_add_a_point_to_itself(k: int) -> None:
    # Its general addition returns infinity for P + P: 2n + 4 and 2n + 5 did that at
    # i = 1 (prefix n + 2), and gave no public key for 4 and G for 5.
    assert _adds_of_a_point_to_itself(signing._fixed_length(k)) == []
    assert _adds_of_a_point_to_itself(2 * SM2_N + 4) == [1]  # the old padding of 4


@pytest.mark.parametrize("k", [1, 2**256 - SM2_N - 1, 2**256 - SM2_N, SM2_N - 1])
def test_fixed_bit_length_at_the_edges(k: int) -> None:
    padded = signing._fixed_length(k)
    assert padded.bit_length() == 257 and padded % SM2_N == k


# --- public keys -----------------------------------------------------------------------


def _point(x: int, y: int) -> bytes:
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


ANNEX_PUBLIC = h(ANNEX_A["public_key"])
ANNEX_X, ANNEX_Y = n(ANNEX_A["public_key"][2:66]), n(ANNEX_A["public_key"][66:])


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        pytest.param(ANNEX_PUBLIC[1:], "65 bytes .* not 64", id="no-prefix"),
        pytest.param(ANNEX_PUBLIC + b"\x00", "not 66", id="long"),
        pytest.param(b"", "not 0", id="empty"),
        pytest.param(b"\x02" + ANNEX_PUBLIC[1:33] + b"\x00" * 32, "uncompressed", id="02"),
        pytest.param(b"\x00" * 65, "uncompressed", id="zeros"),
        pytest.param(_point(ANNEX_X, ANNEX_Y + 1), "not a point on the curve", id="off-curve"),
        pytest.param(_point(ANNEX_X, 0), "not a point on the curve", id="y-zero"),
        pytest.param(_point(ANNEX_X, SM2_P), "not a point on the curve", id="y=p"),
        pytest.param(_point(2**256 - 1, ANNEX_Y), "not a point on the curve", id="x-max"),
    ],
)
def test_public_key_must_be_a_valid_point(raw: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        PublicKey(SM2_SM3, raw)


def _small_x_point() -> tuple[int, int]:
    # A curve point with x < 2^256 - p, so that x + p still fits in 32 bytes. p = 3 mod 4,
    # so a square root is a single power.
    for x in range(1000):
        rhs = (x**3 + signing.SM2_A * x + signing.SM2_B) % SM2_P
        y = pow(rhs, (SM2_P + 1) // 4, SM2_P)
        if y * y % SM2_P == rhs:
            return x, y
    raise AssertionError("no point found")


def test_unreduced_coordinates_are_refused() -> None:
    x, y = _small_x_point()
    PublicKey(SM2_SM3, _point(x, y))  # the reduced point is a valid key
    with pytest.raises(InvalidInputError, match="not a point on the curve"):
        PublicKey(SM2_SM3, _point(x + SM2_P, y))


def test_keyid_is_sha256_of_suite_and_point(key: SigningKey, other_key: SigningKey) -> None:
    assert key.public_key.keyid == hashlib.sha256(b"sm2-sm3:" + key.public_key.raw).hexdigest()
    assert key.public_key.keyid != other_key.public_key.keyid


def test_keyid_differs_from_an_ed25519_key() -> None:
    sm2 = SigningKey.generate(SM2_SM3).public_key
    ed = SigningKey.generate(ED25519).public_key
    assert sm2.keyid != ed.keyid
    assert len(sm2.keyid) == len(ed.keyid) == 64


def test_json_round_trip(key: SigningKey) -> None:
    value = key.public_key.to_json()
    assert value == {
        "suite": "sm2-sm3",
        "public_key": base64.b64encode(key.public_key.raw).decode(),
    }
    assert PublicKey.from_json(value) == key.public_key


def test_from_json_refuses_an_off_curve_key() -> None:
    value = {"suite": "sm2-sm3", "public_key": signing.b64encode(_point(1, 1))}
    with pytest.raises(InvalidInputError, match="not a point on the curve"):
        PublicKey.from_json(value, what="members[0].signing_key")


# --- signing keys ----------------------------------------------------------------------


def test_generate_defaults_to_ed25519() -> None:
    assert SigningKey.generate().suite == ED25519
    assert len(SigningKey.generate().sign(MESSAGE)) == 64


def test_generate_refuses_an_unknown_suite() -> None:
    with pytest.raises(InvalidInputError, match="unknown signature suite 'sm2'"):
        SigningKey.generate("sm2")


def test_pem_round_trip(key: SigningKey) -> None:
    pem = key.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert pem.endswith(b"-----END PRIVATE KEY-----\n")
    loaded = SigningKey.from_pem(pem)
    assert loaded.public_key == key.public_key
    assert loaded.to_pem() == pem
    key.public_key.verify(loaded.sign(MESSAGE), MESSAGE)


def test_pem_with_crlf_line_ends_loads(key: SigningKey) -> None:
    assert SigningKey.from_pem(key.to_pem().replace(b"\n", b"\r\n")).public_key == key.public_key


def _der(pem: bytes) -> bytes:
    body = b"".join(pem.strip().splitlines()[1:-1])
    return base64.b64decode(body)


def _armour(der: bytes) -> bytes:
    return signing._pem("PRIVATE KEY", der)


ANNEX_DER = _der(VECTORS["sm2_pkcs8"][0]["pem"].encode())


def _with_scalar(value: int) -> bytes:
    start = len(signing._SM2_PKCS8_HEAD)
    return ANNEX_DER[:start] + value.to_bytes(32, "big") + ANNEX_DER[start + 32 :]


@pytest.mark.parametrize(
    ("der", "fragment"),
    [
        pytest.param(ANNEX_DER[:-1], "PKCS#8 form", id="truncated"),
        pytest.param(ANNEX_DER + b"\x00", "PKCS#8 form", id="trailing-byte"),
        pytest.param(ANNEX_DER[:-66] + b"\xa2" + ANNEX_DER[-65:], "PKCS#8 form", id="bad-tag"),
        pytest.param(_with_scalar(0), "out of range", id="d=0"),
        pytest.param(_with_scalar(SM2_N - 1), "out of range", id="d=n-1"),
        pytest.param(_with_scalar(SM2_N), "out of range", id="d=n"),
        pytest.param(_with_scalar(2), "does not match its public key", id="other-public-key"),
    ],
)
def test_from_pem_is_strict_about_sm2_keys(der: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        SigningKey.from_pem(_armour(der))


def test_from_pem_refuses_an_sm2_key_in_sec1_form() -> None:
    # "EC PRIVATE KEY" (RFC 5915 alone), as `openssl ec` would write it: not supported.
    inner = ANNEX_DER[len(signing._SM2_PKCS8_HEAD) - 7 :]
    assert inner.startswith(b"\x30\x6b\x02\x01\x01")
    with pytest.raises(InvalidInputError, match="not a valid PEM private key"):
        SigningKey.from_pem(signing._pem("EC PRIVATE KEY", inner))


def test_from_pem_still_refuses_other_key_types() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(InvalidInputError, match="not an Ed25519 key nor an SM2 key"):
        SigningKey.from_pem(pem)


def test_ed25519_keys_are_unchanged() -> None:
    # The Ed25519 path stays pyca/cryptography's PKCS#8 and 64-byte signatures.
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key = SigningKey.from_pem(pem)
    assert key.suite == ED25519
    assert key.to_pem() == pem
    assert key.sign(MESSAGE) == private.sign(MESSAGE)


@settings(max_examples=150)
@given(index=st.integers(0, len(ANNEX_DER) - 1), flip=st.integers(1, 255))
def test_any_changed_byte_of_an_sm2_key_file_is_refused(index: int, flip: int) -> None:
    der = bytearray(ANNEX_DER)
    der[index] ^= flip
    with pytest.raises(InvalidInputError):
        SigningKey.from_pem(_armour(bytes(der)))


@settings(max_examples=100)
@given(st.binary(max_size=200))
def test_from_pem_raises_only_invalid_input_on_garbage_after_the_sm2_algorithm(
    der: bytes,
) -> None:
    with pytest.raises(InvalidInputError):
        SigningKey.from_pem(_armour(b"\x30\x81\x87\x02\x01\x00" + signing._SM2_ALGORITHM + der))


# --- k*G and signatures against an independent affine reference ------------------------

Affine = tuple[int, int] | None  # None is the point at infinity
G = (signing.SM2_GX, signing.SM2_GY)


def _affine_add(p1: Affine, p2: Affine) -> Affine:
    # Textbook affine addition on y^2 = x^3 + ax + b over F_p, doubling included.
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % SM2_P == 0:
        return None
    if p1 == p2:
        slope = (3 * x1 * x1 + signing.SM2_A) * pow(2 * y1, -1, SM2_P)
    else:
        slope = (y2 - y1) * pow(x2 - x1, -1, SM2_P)
    x3 = (slope * slope - x1 - x2) % SM2_P
    return x3, (slope * (x1 - x3) - y1) % SM2_P


def _affine_mul(k: int, point: Affine) -> Affine:
    result: Affine = None
    for bit in bin(k)[2:]:
        result = _affine_add(result, result)
        if bit == "1":
            result = _affine_add(result, point)
    return result


def _raw(point: Affine) -> bytes:
    assert point is not None
    return _point(*point)


EDGE_SCALARS = [
    *range(1, 17),
    *range(SM2_N - 16, SM2_N),  # n - 1 is no private key, but is a nonce
    2**256 - SM2_N - 1,  # the last scalar padded with 2n
    2**256 - SM2_N,  # the first padded with n
]


def test_the_affine_reference_reproduces_annex_a() -> None:
    assert _raw(_affine_mul(n(ANNEX_A["private_key"]), G)) == h(ANNEX_A["public_key"])
    assert _affine_mul(SM2_N, G) is None


@pytest.mark.parametrize("k", EDGE_SCALARS)
def test_public_point_matches_the_affine_reference(k: int) -> None:
    # Old padding: 4 raised TypeError (the library's infinity), 5 gave G instead of 5G.
    assert signing._sm2_public_raw(k) == _raw(_affine_mul(k, G))


@settings(max_examples=20, deadline=None)
@given(st.integers(1, SM2_N - 1))
def test_public_point_of_any_scalar_matches_the_affine_reference(k: int) -> None:
    assert signing._sm2_public_raw(k) == _raw(_affine_mul(k, G))


@pytest.mark.parametrize("nonce", EDGE_SCALARS)
def test_signatures_with_edge_nonces_are_correct_and_verify(nonce: int) -> None:
    # Old padding: nonce 4 came back as "draw again", nonce 5 signed with x(G) for x(5G)
    # and the signature did not verify.
    d, e = n(ANNEX_A["private_key"]), n(ANNEX_A["e"])
    point = _affine_mul(nonce, G)
    assert point is not None
    r = (e + point[0]) % SM2_N
    s = pow(1 + d, -1, SM2_N) * (nonce - r * d) % SM2_N
    assert signing._sm2_sign_digest(d, e, nonce) == (r, s)
    assert signing._sm2_verify_digest(h(ANNEX_A["public_key"]), e, r, s)


@pytest.mark.parametrize("d", SPECIAL_SCALARS)
def test_key_file_with_scalar_4_or_5_loads_and_signs(d: int) -> None:
    # Regression: d = 4 crashed the loader with a bare TypeError, d = 5 was refused
    # as "does not match its public key" because the library computed G for 5G.
    public = _raw(_affine_mul(d, G))
    start = len(signing._SM2_PKCS8_HEAD)
    der = ANNEX_DER[:start] + d.to_bytes(32, "big") + ANNEX_DER[start + 32 : -65] + public
    key = SigningKey.from_pem(_armour(der))
    assert key.public_key.raw == public
    key.public_key.verify(key.sign(MESSAGE), MESSAGE)


@pytest.mark.parametrize(
    "kg",
    [
        pytest.param(lambda k, point, size: None, id="infinity"),
        pytest.param(lambda k, point, size: 1 // 0, id="raises"),
        pytest.param(lambda k, point, size: "00" * 64, id="off-curve"),
        pytest.param(lambda k, point, size: "zz", id="not-hex"),
    ],
)
def test_a_library_failure_on_the_public_key_is_an_input_error(
    monkeypatch: pytest.MonkeyPatch, kg: Any
) -> None:
    class FailingLibrary:
        kG = staticmethod(kg)

    monkeypatch.setattr(signing, "_sm2_library", lambda: FailingLibrary)
    with pytest.raises(InvalidInputError, match="could not compute the public key"):
        SigningKey.from_pem(VECTORS["sm2_pkcs8"][0]["pem"].encode("ascii"))
