"""A node's identity: creating it (``credit-node init``) and loading it back consistently.

The identity is the signing key (Ed25519 by default, or SM2/SM3 for a federation that
uses the 国密 suite; see :mod:`federation.signing`), the TLS key and self-signed
certificate (ECDSA P-256, RFC 5280 profile below), the Paillier key pair, the client API
token, and the public member card built from them and signed by the signing key. Peers do
not rely on a CA: they pin the certificate's SHA-256 fingerprint from the federation
manifest and check the DNS name ``<city>.node.creditnet`` in its subjectAltName. The TLS
key stays ECDSA P-256 whatever the signature suite: gRPC's BoringSSL has no SM2 TLS.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from phe import paillier

from federation.clock import Clock, SystemClock
from federation.errors import AlreadyExistsError, CreditNetError, InvalidInputError, KeyFileError
from federation.matching import OprfKey
from federation.member import (
    Member,
    certificate_fingerprint,
    check_city_code,
    check_endpoint,
    parse_member_card,
    sign_member_card,
    tls_server_name,
)
from federation.signing import ED25519, SUITES, SigningKey
from node.config import (
    DEFAULT_CLIENT_LISTEN,
    DEFAULT_ENDPOINT,
    NodeConfig,
    NodeFiles,
    NodePaths,
    render_config,
)
from node.keystore import (
    KEYS_DIR_MODE,
    MIN_PAILLIER_BITS,
    PUBLIC_MODE,
    NodeKeys,
    new_client_token,
    paillier_to_json,
    read_public,
    write_file,
    write_secret,
)

DEFAULT_PAILLIER_BITS = 2048
MAX_PAILLIER_BITS = 8192
# Certificates live as long as browsers accept for a server certificate (CA/B Forum's old
# 825-day cap); the hour of back-dating absorbs clock skew between cities.
CERT_VALIDITY = dt.timedelta(days=825)
CERT_BACKDATE = dt.timedelta(hours=1)


def preset_city_name(city_code: str) -> str | None:
    """The city's name from the federation presets, if that module knows the code."""
    try:
        # Imported by name: the presets module is optional for this function.
        presets = importlib.import_module("federation.presets")
    except ImportError:
        return None
    for preset in getattr(presets, "PRESETS", {}).values():
        for city in getattr(preset, "cities", ()):
            if getattr(city, "code", None) == city_code:
                name = getattr(city, "name_zh", None) or getattr(city, "name_en", None)
                return str(name) if name else None
    return None


def init_node(
    home: Path,
    *,
    city_code: str,
    name: str | None = None,
    endpoint: str = DEFAULT_ENDPOINT,
    peer_listen: str | None = None,
    client_listen: str = DEFAULT_CLIENT_LISTEN,
    paillier_bits: int = DEFAULT_PAILLIER_BITS,
    signature_suite: str = ED25519,
    force: bool = False,
    clock: Clock | None = None,
) -> Member:
    """Create a node's keys, certificate, member card and ``node.toml`` in ``home``.

    ``signature_suite`` is the suite of the signing key (:data:`~federation.signing.SUITES`):
    it must be the one the federation signs with. Refuses to touch an existing identity
    unless ``force``: replacing keys makes the node a stranger to a federation that knows
    its old card.
    """
    clock = clock or SystemClock()
    check_city_code(city_code)
    check_endpoint(endpoint)
    check_endpoint(client_listen)
    if peer_listen is not None:
        check_endpoint(peer_listen)
    if signature_suite not in SUITES:
        raise InvalidInputError(
            f"unknown signature suite {signature_suite!r}; choose one of {', '.join(SUITES)}"
        )
    if not MIN_PAILLIER_BITS <= paillier_bits <= MAX_PAILLIER_BITS:
        raise InvalidInputError(
            f"Paillier key size must be {MIN_PAILLIER_BITS} to {MAX_PAILLIER_BITS} bits, "
            f"not {paillier_bits}"
        )
    if name is None:
        name = preset_city_name(city_code)
        if name is None:
            raise InvalidInputError(
                f"city {city_code} is not in any federation preset, so it needs a name",
                hint="pass --name, for example --name 青岛市",
            )
    if not name.strip() or len(name) > 100:
        raise InvalidInputError("the city name must be 1 to 100 characters")
    home = Path(home).absolute()
    if home.exists() and not home.is_dir():
        raise InvalidInputError(f"{home} exists and is not a directory")
    config = NodeConfig(
        home=home,
        city_code=city_code,
        name=name,
        endpoint=endpoint,
        peer_listen=peer_listen or "",
        client_listen=client_listen,
    )
    existing = [path for path in config.identity_paths if path.exists() or path.is_symlink()]
    if existing and not force:
        raise AlreadyExistsError(
            f"{home} already holds a node identity ({', '.join(p.name for p in existing)})",
            hint="use --force to replace it with new keys; the federation must then "
            "accept the new member card",
        )

    # Everything is generated before anything is written.
    signing_key = SigningKey.generate(signature_suite)
    tls_key = ec.generate_private_key(ec.SECP256R1())
    tls_cert_pem = self_signed_certificate(tls_key, city_code, now=clock.now())
    paillier_public, paillier_private = paillier.generate_paillier_keypair(n_length=paillier_bits)
    member = Member(
        city_code=city_code,
        name=name,
        endpoint=endpoint,
        signing_key=signing_key.public_key,
        tls_certificate=tls_cert_pem.decode("ascii"),
        paillier_n=paillier_public.n,
    )
    card = sign_member_card(member, signing_key)
    tls_key_pem = tls_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

    try:
        home.mkdir(parents=True, exist_ok=True)
        config.keys_dir.mkdir(mode=KEYS_DIR_MODE, exist_ok=True)
        # mkdir's mode is narrowed by the umask, and an existing directory keeps its own.
        config.keys_dir.chmod(KEYS_DIR_MODE)
    except OSError as exc:
        raise KeyFileError(f"cannot create {config.keys_dir}: {exc.strerror}") from None
    writes: list[tuple[Path, bytes, bool]] = [
        (config.signing_key_path, signing_key.to_pem(), True),
        (config.tls_key_path, tls_key_pem, True),
        (config.paillier_key_path, paillier_to_json(paillier_private), True),
        (config.client_token_path, new_client_token().encode("ascii"), True),
        (config.oprf_key_path, OprfKey.generate().to_pem(), True),
        (config.tls_cert_path, tls_cert_pem, False),
        (config.member_card_path, card, False),
        # Last: a node.toml means the directory holds a complete identity. Kept 0600 like
        # the keys: it may come to hold a database password.
        (config.config_path, render_config(config).encode("utf-8"), True),
    ]
    written: list[Path] = []
    try:
        for path, data, secret in writes:
            if secret:
                write_secret(path, data, force=force)
            else:
                write_file(path, data, mode=PUBLIC_MODE, force=force)
            written.append(path)
    except BaseException:
        # Leave no half identity behind that would block the next attempt.
        if not force:
            _remove(written)
        raise
    return member


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def self_signed_certificate(
    key: ec.EllipticCurvePrivateKey, city_code: str, *, now: dt.datetime
) -> bytes:
    """The node's TLS certificate, PEM: an end-entity certificate for both TLS roles."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"creditnet node {city_code}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CERT_BACKDATE)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(tls_server_name(city_code))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def load_member(home_or_config: Path | NodeFiles, keys: NodeKeys | None = None) -> Member:
    """Read ``member-card.json`` and, given the keys, check that the card is theirs.

    A card that does not match the keys on disk would have peers reject every call, so
    it is caught at start-up instead.
    """
    files = home_or_config if isinstance(home_or_config, NodeFiles) else NodePaths(home_or_config)
    path = files.member_card_path
    data = read_public(path, what="member card")
    try:
        member = parse_member_card(data)
    except CreditNetError as exc:
        raise KeyFileError(f"{path}: {exc.message}") from None
    if keys is None:
        return member
    mismatches = []
    if member.signing_key != keys.signing_key.public_key:
        mismatches.append("signing key")
    if member.tls_fingerprint != _fingerprint(keys.tls_cert_pem):
        mismatches.append("TLS certificate")
    if member.paillier_n != int(keys.paillier_public.n):
        mismatches.append("Paillier key")
    if mismatches:
        raise KeyFileError(
            f"{path} does not match the keys in {files.keys_dir} ({', '.join(mismatches)})",
            hint="restore the matching files, or create a new identity with init --force",
        )
    return member


def _fingerprint(pem: bytes) -> str | None:
    try:
        return certificate_fingerprint(pem.decode("ascii"))
    except (UnicodeDecodeError, CreditNetError):
        return None
