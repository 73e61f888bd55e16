"""A federation member and its member card.

A member card is the public part of a city's node, handed to the other cities when the
federation is formed or joined: division code, name, endpoint, signing key, TLS
certificate and Paillier public key. The card is signed by the node's own signing key
(proof of possession), so a card cannot carry somebody else's key by mistake.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from federation.canonical import canonical_bytes, parse_document
from federation.errors import InvalidInputError, SignatureError
from federation.signing import PublicKey, SigningKey, b64decode, b64encode
from federation.subjects import shown

CARD_TYPE = "creditnet.member-card/v1"
CITY_CODE = re.compile(r"[1-9][0-9]{5}")
ENDPOINT = re.compile(r"(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>[0-9]{1,5})")


def check_city_code(code: object) -> str:
    """A GB/T 2260 administrative division code: six digits, not starting with 0."""
    if not isinstance(code, str) or not CITY_CODE.fullmatch(code):
        raise InvalidInputError(f"city code {shown(code)} is not a six-digit division code")
    return code


def check_endpoint(endpoint: object) -> str:
    if not isinstance(endpoint, str):
        raise InvalidInputError("endpoint must be a string HOST:PORT")
    match = ENDPOINT.fullmatch(endpoint)
    if not match or not 0 < int(match["port"]) < 65536:
        raise InvalidInputError(f"endpoint {endpoint!r} is not HOST:PORT")
    return endpoint


def certificate_fingerprint(pem: str) -> str:
    """SHA-256 of the certificate's DER form, lower-case hex: what peers are pinned to."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise InvalidInputError("TLS certificate is not a valid PEM certificate") from None
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def tls_server_name(city_code: str) -> str:
    """The DNS name in a node's certificate, checked by peers instead of the endpoint host."""
    return f"{city_code}.node.creditnet"


@dataclass(frozen=True)
class Member:
    """One city's node as the federation knows it."""

    city_code: str
    name: str
    endpoint: str
    signing_key: PublicKey
    tls_certificate: str
    paillier_n: int
    shares: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        check_city_code(self.city_code)
        check_endpoint(self.endpoint)
        if not self.name or len(self.name) > 100:
            raise InvalidInputError("member name must be 1 to 100 characters")
        if self.paillier_n < 0 or self.paillier_n.bit_length() < 1024:
            raise InvalidInputError("Paillier modulus must have at least 1024 bits")
        certificate_fingerprint(self.tls_certificate)

    @property
    def tls_fingerprint(self) -> str:
        return certificate_fingerprint(self.tls_certificate)

    def to_json(self) -> dict[str, Any]:
        return {
            "city_code": self.city_code,
            "name": self.name,
            "endpoint": self.endpoint,
            "signing_key": self.signing_key.to_json(),
            "tls_certificate": self.tls_certificate,
            "tls_cert_sha256": self.tls_fingerprint,
            "paillier_public_key": {"n": format(self.paillier_n, "x")},
            "shares": list(self.shares),
        }

    @classmethod
    def from_json(cls, value: object) -> Member:
        if not isinstance(value, dict):
            raise InvalidInputError("member must be a JSON object")
        where = f"member {value.get('city_code', '?')!s}"
        expected = {
            "city_code",
            "name",
            "endpoint",
            "signing_key",
            "tls_certificate",
            "tls_cert_sha256",
            "paillier_public_key",
            "shares",
        }
        if set(value) != expected:
            missing, extra = expected - set(value), set(value) - expected
            raise InvalidInputError(
                f"{where}: fields do not match (missing {sorted(missing)}, unknown {sorted(extra)})"
            )
        paillier = value["paillier_public_key"]
        if not isinstance(paillier, dict) or not isinstance(paillier.get("n"), str):
            raise InvalidInputError(f"{where}: paillier_public_key.n must be a hex string")
        try:
            if not re.fullmatch(r"[0-9a-fA-F]+", paillier["n"]):
                raise ValueError
            n = int(paillier["n"], 16)
        except ValueError:
            raise InvalidInputError(f"{where}: paillier_public_key.n is not hex") from None
        shares = value["shares"]
        if not isinstance(shares, list) or not all(isinstance(s, str) for s in shares):
            raise InvalidInputError(f"{where}: shares must be a list of list kinds")
        for name in ("name", "tls_certificate", "tls_cert_sha256"):
            if not isinstance(value[name], str):
                raise InvalidInputError(f"{where}: {name} must be a string")
        member = cls(
            city_code=check_city_code(value["city_code"]),
            name=value["name"],
            endpoint=check_endpoint(value["endpoint"]),
            signing_key=PublicKey.from_json(value["signing_key"], what=f"{where}.signing_key"),
            tls_certificate=value["tls_certificate"],
            paillier_n=n,
            shares=tuple(shares),
        )
        if member.tls_fingerprint != value["tls_cert_sha256"]:
            raise InvalidInputError(f"{where}: tls_cert_sha256 does not match the certificate")
        return member


def sign_member_card(member: Member, key: SigningKey) -> bytes:
    """The card document for ``member``, signed by the member's own key."""
    if key.public_key != member.signing_key:
        raise InvalidInputError("a member card must be signed by the member's own signing key")
    body = {"type": CARD_TYPE, "member": member.to_json()}
    signature = key.sign(canonical_bytes(body))
    return canonical_bytes({**body, "signature": b64encode(signature)})


def parse_member_card(data: bytes) -> Member:
    """Parse a member card and check its self-signature."""
    document = parse_document(data, what="member card")
    if document.get("type") != CARD_TYPE or set(document) != {"type", "member", "signature"}:
        raise InvalidInputError(f"not a member card (expected type {CARD_TYPE!r})")
    member = Member.from_json(document["member"])
    signature = document["signature"]
    if not isinstance(signature, str):
        raise InvalidInputError("member card signature must be a base64 string")
    body = {"type": CARD_TYPE, "member": document["member"]}
    try:
        member.signing_key.verify(
            b64decode(signature, what="card signature"), canonical_bytes(body)
        )
    except SignatureError:
        raise SignatureError(
            f"member card of {member.city_code} is not signed by its own key"
        ) from None
    return member
