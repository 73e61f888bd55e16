"""Test cities: signing keys, a self-signed TLS certificate and a Paillier modulus each.

Key material that is slow to make is made once per session: one real Paillier modulus
(shared by every test city: the manifest does not look inside it) and one TLS certificate
per (city, generation). Signing keys are Ed25519 and cheap, so each test city gets fresh ones.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from phe import paillier

from federation.clock import FixedClock
from federation.member import Member, sign_member_card, tls_server_name
from federation.presets import PRESETS
from federation.signing import SigningKey

NOW = dt.datetime(2026, 6, 1, 8, 0, 0, tzinfo=dt.UTC)
YEAR = dt.timedelta(days=365)


@functools.cache
def paillier_n() -> int:
    public_key, _private_key = paillier.generate_paillier_keypair(n_length=1024)
    n: int = public_key.n
    return n


@functools.cache
def tls_certificate(city_code: str, generation: int = 0) -> tuple[str, bytes]:
    """A self-signed certificate for the city's node name, and its private key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, tls_server_name(city_code))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2035, 1, 1, tzinfo=dt.UTC))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(tls_server_name(city_code))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), key_pem


def city_name(city_code: str) -> str:
    for known in PRESETS.values():
        city = known.city(city_code)
        if city is not None:
            return f"{city.name_zh} {city.name_en}"
    return f"City {city_code}"


@dataclasses.dataclass(frozen=True)
class TestCity:
    """A city's node as tests need it: the public member card and the private signing key."""

    __test__ = False  # not a test class, despite the name

    member: Member
    key: SigningKey
    tls_generation: int = 0

    @property
    def code(self) -> str:
        return self.member.city_code

    def card(self) -> bytes:
        return sign_member_card(self.member, self.key)

    def with_new_key(self) -> TestCity:
        """The same city after rotating its signing key."""
        key = SigningKey.generate()
        return dataclasses.replace(
            self, member=dataclasses.replace(self.member, signing_key=key.public_key), key=key
        )

    def with_new_endpoint(self, endpoint: str) -> TestCity:
        return dataclasses.replace(self, member=dataclasses.replace(self.member, endpoint=endpoint))

    def write_node_dir(self, directory: Path) -> Path:
        """The files of an initialised node that ``federation sign --dir`` reads."""
        (directory / "keys").mkdir(parents=True, exist_ok=True)
        (directory / "member-card.json").write_bytes(self.card())
        key_file = directory / "keys" / "signing.pem"
        key_file.write_bytes(self.key.to_pem())
        key_file.chmod(0o600)
        return directory


def make_city(city_code: str, *, tls_generation: int = 0, port: int = 7443) -> TestCity:
    key = SigningKey.generate()
    certificate, _tls_key = tls_certificate(city_code, tls_generation)
    member = Member(
        city_code=city_code,
        name=city_name(city_code),
        endpoint=f"node-{city_code}.example.cn:{port}",
        signing_key=key.public_key,
        tls_certificate=certificate,
        paillier_n=paillier_n(),
        shares=("serious-dishonesty",),
    )
    return TestCity(member=member, key=key, tls_generation=tls_generation)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def city_factory() -> Callable[..., TestCity]:
    return make_city
