"""Members, their checks, and self-signed member cards."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from federation.canonical import canonical_bytes, parse_document
from federation.errors import InvalidInputError, SignatureError
from federation.member import (
    CARD_TYPE,
    Member,
    certificate_fingerprint,
    check_city_code,
    check_endpoint,
    parse_member_card,
    sign_member_card,
    tls_server_name,
)
from federation.signing import SigningKey, b64encode
from tests.federation.conftest import TestCity, make_city, tls_certificate


@pytest.fixture(scope="module")
def qingdao() -> TestCity:
    return make_city("370200")


@pytest.fixture(scope="module")
def yantai() -> TestCity:
    return make_city("370600")


# --- city codes and endpoints ----------------------------------------------------------


@pytest.mark.parametrize("code", ["370200", "110000", "999999", "100000"])
def test_city_code_accepted(code: str) -> None:
    assert check_city_code(code) == code


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("37020", id="five-digits"),
        pytest.param("3702000", id="seven-digits"),
        pytest.param("070200", id="leading-zero"),
        pytest.param("370200\n", id="trailing-newline"),
        pytest.param(" 370200", id="leading-space"),
        pytest.param("", id="empty"),
        pytest.param("37020a", id="letter"),
        pytest.param("3\uff170200", id="fullwidth-digit"),  # ７ (U+FF17)
        pytest.param("3\u0967\u0966200", id="devanagari-digits"),
    ],
)
def test_city_code_refused(code: str) -> None:
    with pytest.raises(InvalidInputError, match="not a six-digit division code"):
        check_city_code(code)


@pytest.mark.parametrize(
    "typed", ["11010519491231002X", "city 11010519491231002X", "110105194912310"]
)
def test_a_city_code_refused_is_not_echoed_in_clear(typed: str) -> None:
    # An identifier typed into the city field must not reach a message, log or audit row.
    with pytest.raises(InvalidInputError) as refused:
        check_city_code(typed)
    assert "110105194912310" not in refused.value.message
    assert "[hidden]" in refused.value.message


@pytest.mark.parametrize("code", [370200, None, b"370200", ["370200"]])
def test_city_code_must_be_a_string(code: object) -> None:
    with pytest.raises(InvalidInputError):
        check_city_code(code)


@given(st.integers(min_value=100000, max_value=999999))
def test_every_six_digit_code_not_starting_with_zero_is_accepted(number: int) -> None:
    assert check_city_code(str(number)) == str(number)


@pytest.mark.parametrize(
    "endpoint",
    [
        "node.qingdao.example.cn:7443",
        "10.0.0.1:1",
        "localhost:65535",
        "[::1]:7600",
        "[2001:db8::1]:443",
        "node-1:7600",
    ],
)
def test_endpoint_accepted(endpoint: str) -> None:
    assert check_endpoint(endpoint) == endpoint


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param("host:0", id="port-0"),
        pytest.param("host:65536", id="port-65536"),
        pytest.param("host:99999", id="port-99999"),
        pytest.param("host:123456", id="six-digit-port"),
        pytest.param("host:7443\n", id="trailing-newline"),
        pytest.param("host", id="missing-port"),
        pytest.param("host:", id="empty-port"),
        pytest.param(":7443", id="missing-host"),
        pytest.param("::1:7600", id="unbracketed-ipv6"),
        pytest.param("host name:7443", id="space"),
        pytest.param("https://host:7443", id="url"),
        pytest.param("host:7443/path", id="path"),
        pytest.param("host:\uff17\uff14\uff14\uff13", id="fullwidth-port"),
    ],
)
def test_endpoint_refused(endpoint: str) -> None:
    with pytest.raises(InvalidInputError, match="is not HOST:PORT"):
        check_endpoint(endpoint)


@pytest.mark.parametrize("endpoint", [7443, None, b"host:7443"])
def test_endpoint_must_be_a_string(endpoint: object) -> None:
    with pytest.raises(InvalidInputError, match="must be a string"):
        check_endpoint(endpoint)


# --- certificates ----------------------------------------------------------------------


def test_certificate_fingerprint_is_sha256_of_der() -> None:
    pem, _key = tls_certificate("370200")
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)
    fingerprint = certificate_fingerprint(pem)
    assert fingerprint == hashlib.sha256(der).hexdigest()
    assert fingerprint == certificate_fingerprint(pem)
    assert fingerprint != certificate_fingerprint(tls_certificate("370600")[0])


@pytest.mark.parametrize(
    "pem",
    [
        pytest.param("", id="empty"),
        pytest.param("garbage", id="garbage"),
        pytest.param(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", id="bad-body"
        ),
        pytest.param("-----BEGIN CERTIFICATE-----\n证书\n-----END CERTIFICATE-----\n", id="cjk"),
    ],
)
def test_certificate_fingerprint_refuses_garbage(pem: str) -> None:
    with pytest.raises(InvalidInputError, match="not a valid PEM certificate"):
        certificate_fingerprint(pem)


def test_tls_server_name() -> None:
    assert tls_server_name("370200") == "370200.node.creditnet"


# --- Member ----------------------------------------------------------------------------


def test_member_json_round_trip(qingdao: TestCity) -> None:
    value = qingdao.member.to_json()
    assert value["tls_cert_sha256"] == qingdao.member.tls_fingerprint
    assert value["paillier_public_key"] == {"n": format(qingdao.member.paillier_n, "x")}
    assert Member.from_json(value) == qingdao.member
    # Through canonical bytes too: what actually travels.
    assert Member.from_json(parse_document(canonical_bytes(value))) == qingdao.member


def _member_json(city: TestCity) -> dict[str, Any]:
    return copy.deepcopy(city.member.to_json())


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        pytest.param(lambda v: v.pop("shares"), r"missing \['shares'\]", id="missing"),
        pytest.param(lambda v: v.update(owner="x"), r"unknown \['owner'\]", id="extra"),
        pytest.param(
            lambda v: v.update(tls_cert_sha256="0" * 64), "does not match", id="fingerprint"
        ),
        pytest.param(
            lambda v: v.update(tls_cert_sha256=None), "must be a string", id="fingerprint-none"
        ),
        pytest.param(
            lambda v: v.update(paillier_public_key={"n": "xyz"}), "not hex", id="paillier-not-hex"
        ),
        pytest.param(
            lambda v: v.update(paillier_public_key={"n": 12345}),
            "must be a hex string",
            id="paillier-int",
        ),
        pytest.param(
            lambda v: v.update(paillier_public_key="ff"), "must be a hex string", id="paillier-str"
        ),
        pytest.param(
            lambda v: v.update(paillier_public_key={"n": "ff" * 100}),
            "at least 1024 bits",
            id="small-modulus",
        ),
        pytest.param(lambda v: v.update(shares="list"), "shares must be a list", id="shares-str"),
        pytest.param(lambda v: v.update(shares=[1]), "shares must be a list", id="shares-int"),
        pytest.param(lambda v: v.update(name=""), "1 to 100 characters", id="empty-name"),
        pytest.param(lambda v: v.update(name="x" * 101), "1 to 100 characters", id="long-name"),
        pytest.param(lambda v: v.update(name=1), "name must be a string", id="name-int"),
        pytest.param(lambda v: v.update(city_code="37020"), "division code", id="city-code"),
        pytest.param(lambda v: v.update(endpoint="host"), "HOST:PORT", id="endpoint"),
        pytest.param(lambda v: v.update(signing_key={}), "signing_key", id="signing-key"),
        pytest.param(lambda v: v.update(tls_certificate="x"), "PEM", id="certificate"),
    ],
)
def test_member_from_json_refuses(qingdao: TestCity, change: Any, fragment: str) -> None:
    value = _member_json(qingdao)
    change(value)
    with pytest.raises(InvalidInputError, match=fragment):
        Member.from_json(value)


@pytest.mark.parametrize("value", [None, [], "member"])
def test_member_from_json_refuses_non_objects(value: object) -> None:
    with pytest.raises(InvalidInputError, match="must be a JSON object"):
        Member.from_json(value)


def test_member_from_json_refuses_negative_modulus(qingdao: TestCity) -> None:
    # int(..., 16) accepts a sign; bit_length() ignores it, so only an explicit check helps.
    value = _member_json(qingdao)
    value["paillier_public_key"]["n"] = "-" + value["paillier_public_key"]["n"]
    with pytest.raises(InvalidInputError):
        Member.from_json(value)


def test_member_refuses_negative_modulus_directly(qingdao: TestCity) -> None:
    with pytest.raises(InvalidInputError):
        dataclasses.replace(qingdao.member, paillier_n=-qingdao.member.paillier_n)


def test_member_from_json_error_names_the_city(qingdao: TestCity) -> None:
    value = _member_json(qingdao)
    value["tls_cert_sha256"] = "0" * 64
    with pytest.raises(InvalidInputError, match=r"^member 370200: "):
        Member.from_json(value)


# --- member cards ----------------------------------------------------------------------


def test_card_round_trip(qingdao: TestCity) -> None:
    card = sign_member_card(qingdao.member, qingdao.key)
    document = parse_document(card)
    assert set(document) == {"type", "member", "signature"}
    assert document["type"] == CARD_TYPE
    assert card == canonical_bytes(document)  # a card is itself canonical
    assert parse_member_card(card) == qingdao.member


def test_sign_member_card_refuses_someone_elses_key(qingdao: TestCity, yantai: TestCity) -> None:
    with pytest.raises(InvalidInputError, match="member's own signing key"):
        sign_member_card(qingdao.member, yantai.key)


def _forge(document: dict[str, Any], key: SigningKey) -> bytes:
    """A card whose signature is made by ``key`` over the body of ``document``."""
    body = {"type": document["type"], "member": document["member"]}
    return canonical_bytes({**body, "signature": b64encode(key.sign(canonical_bytes(body)))})


def test_card_signed_by_another_key_is_refused(qingdao: TestCity, yantai: TestCity) -> None:
    document = parse_document(qingdao.card())
    with pytest.raises(SignatureError, match="member card of 370200 is not signed by its own key"):
        parse_member_card(_forge(document, yantai.key))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("endpoint", "evil.example.com:7443"),
        ("name", "Somewhere else"),
        ("shares", []),
    ],
)
def test_tampered_card_is_refused(qingdao: TestCity, field: str, value: Any) -> None:
    document = parse_document(qingdao.card())
    assert document["member"][field] != value
    document["member"][field] = value
    with pytest.raises(SignatureError):
        parse_member_card(canonical_bytes(document))


def test_card_with_swapped_key_is_refused(qingdao: TestCity, yantai: TestCity) -> None:
    # Somebody else's key in the card, the original signature kept.
    document = parse_document(qingdao.card())
    document["member"]["signing_key"] = yantai.key.public_key.to_json()
    with pytest.raises(SignatureError):
        parse_member_card(canonical_bytes(document))


def test_card_whitespace_does_not_matter(qingdao: TestCity) -> None:
    # The signature is over the canonical form, not over the bytes received.
    pretty = json.dumps(parse_document(qingdao.card()), indent=2, ensure_ascii=False).encode()
    assert parse_member_card(pretty) == qingdao.member


@pytest.mark.parametrize(
    ("change", "error", "fragment"),
    [
        pytest.param(
            lambda d: d.update(type="creditnet.manifest/v1"),
            InvalidInputError,
            "not a member card",
            id="wrong-type",
        ),
        pytest.param(lambda d: d.pop("type"), InvalidInputError, "not a member card", id="no-type"),
        pytest.param(
            lambda d: d.update(note="hi"), InvalidInputError, "not a member card", id="extra-field"
        ),
        pytest.param(
            lambda d: d.pop("signature"), InvalidInputError, "not a member card", id="no-signature"
        ),
        pytest.param(
            lambda d: d.update(signature=42), InvalidInputError, "base64 string", id="sig-int"
        ),
        pytest.param(
            lambda d: d.update(signature="!!"), InvalidInputError, "base64", id="sig-not-b64"
        ),
        pytest.param(
            lambda d: d.update(signature=d["signature"][:-8] + "AAAAAA=="),
            SignatureError,
            "not signed by its own key",
            id="sig-altered",
        ),
        pytest.param(
            lambda d: d.update(signature=b64encode(b"\x00" * 10)),
            SignatureError,
            "not signed by its own key",
            id="sig-short",
        ),
        pytest.param(
            lambda d: d.update(member="370200"),
            InvalidInputError,
            "must be a JSON object",
            id="member-str",
        ),
    ],
)
def test_malformed_card_is_refused(
    qingdao: TestCity, change: Any, error: type[Exception], fragment: str
) -> None:
    document = parse_document(qingdao.card())
    change(document)
    with pytest.raises(error, match=fragment):
        parse_member_card(canonical_bytes(document))


def test_card_that_is_not_json_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"^member card is not valid JSON"):
        parse_member_card(b"{")


def test_card_with_lone_surrogate_is_refused_as_invalid_input(qingdao: TestCity) -> None:
    # A \ud800 escape parses to a str that cannot be encoded back to UTF-8: the card must
    # be refused as invalid input, not crash with UnicodeEncodeError on the way to verify.
    text = json.dumps(parse_document(qingdao.card()), ensure_ascii=False)
    name = qingdao.member.name
    card = text.replace(json.dumps(name, ensure_ascii=False), '"\\ud800"', 1).encode()
    assert b"\\ud800" in card
    with pytest.raises(InvalidInputError):
        parse_member_card(card)
