"""The node's private keys on disk: written 0600 from birth, refused when others can read them.

Like OpenSSH with its private keys, the node will not use a secret file that group or
others can access: a key that may have leaked is reported, not silently used. Files are
opened first and checked through the open descriptor, so the file that is checked is the
file that is read.

Files (see :class:`node.config.NodeFiles`): ``keys/signing.pem`` (Ed25519 or SM2,
PKCS#8 PEM: see :mod:`federation.signing`),
``keys/tls.key`` (ECDSA P-256, PKCS#8 PEM) with ``keys/tls.crt``, ``keys/paillier.json``
(``{"n", "p", "q"}`` in hex), ``keys/client-token`` (bearer token of the client API) and
``keys/oprf.key`` (the private-matching OPRF key, P-256 PKCS#8 PEM; created on first use
by a node initialised before it existed: :func:`load_or_create_oprf_key`).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from phe import paillier

from federation.errors import AlreadyExistsError, CreditNetError, KeyFileError
from federation.matching import MatchingError, OprfKey
from federation.signing import SigningKey
from node.config import NodeConfig, NodeFiles, NodePaths

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
KEYS_DIR_MODE = 0o700
MIN_PAILLIER_BITS = 1024
MIN_TOKEN_CHARS = 32
MAX_SECRET_BYTES = 1024 * 1024
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")


# --- writing ----------------------------------------------------------------------------


def write_secret(path: Path, data: bytes, *, force: bool = False) -> None:
    """Write a secret file with mode 0600 (never wider, not even for a moment)."""
    write_file(path, data, mode=SECRET_MODE, force=force)


def write_file(path: Path, data: bytes, *, mode: int, force: bool = False) -> None:
    """Write ``data`` to ``path`` with ``mode``.

    Without ``force`` an existing file is an :class:`AlreadyExistsError`. With ``force``
    the data goes to a temporary file next to ``path`` that then replaces it, so a
    reader sees the old file or the new one, never a half-written one.
    """
    path = Path(path)
    if not force:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        except FileExistsError:
            raise AlreadyExistsError(
                f"{path} already exists", hint="use --force to replace it"
            ) from None
        except OSError as exc:
            raise KeyFileError(f"cannot create {path}: {exc.strerror}") from None
        _write_fd(fd, data, mode, path)
        return
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError as exc:
        raise KeyFileError(f"cannot create {temp}: {exc.strerror}") from None
    try:
        _write_fd(fd, data, mode, path)
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def _write_fd(fd: int, data: bytes, mode: int, path: Path) -> None:
    try:
        # The umask may have narrowed the mode; make it exactly what was asked for.
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


# --- reading ----------------------------------------------------------------------------


def read_secret(path: Path) -> bytes:
    """Read a secret file, refusing it if it is missing, not a regular file, or 0o077-open."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO planted at the path must not hang the node.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} is missing",
            hint="create the node's keys with: credit-node init --city CODE --dir DIR",
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"key file {path} has mode {mode:04o}: group or others can access it, "
                f"so it is refused; fix it with: chmod 600 {path}"
            )
        if info.st_size > MAX_SECRET_BYTES:
            raise KeyFileError(f"key file {path} is too large ({info.st_size} bytes)")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_public(path: Path, *, what: str) -> bytes:
    """Read a public file of the node (certificate, member card)."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(
            f"{what} {path} is missing",
            hint="create the node's identity with: credit-node init --city CODE --dir DIR",
        ) from None
    except OSError as exc:
        # A directory in its place, a mode that shuts the operator out: nothing to create.
        raise KeyFileError(
            f"cannot read {what} {path}: {exc.strerror}",
            hint="it must be a file the operator can read; restore it from a backup of the "
            "node directory",
        ) from None


# --- the keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeKeys:
    """The node's private material, loaded and checked."""

    signing_key: SigningKey
    tls_key_pem: bytes
    tls_cert_pem: bytes
    paillier_public: Any  # phe.paillier.PaillierPublicKey (phe is untyped)
    paillier_private: Any  # phe.paillier.PaillierPrivateKey
    client_token: str

    def __repr__(self) -> str:
        # Keep secrets out of logs and tracebacks.
        return f"NodeKeys(signing_key={self.signing_key.public_key.keyid[:16]}, ...)"


def _files(home_or_config: Path | NodeFiles) -> NodeFiles:
    if isinstance(home_or_config, NodeFiles):
        return home_or_config
    return NodePaths(Path(home_or_config))


def load_node_keys(home_or_config: Path | NodeConfig | NodePaths) -> NodeKeys:
    """Load every private key of a node directory, with a clear error for each broken file."""
    files = _files(home_or_config)
    signing_key = load_signing_key(files.signing_key_path)
    tls_key_pem = read_secret(files.tls_key_path)
    tls_cert_pem = read_public(files.tls_cert_path, what="TLS certificate")
    check_tls_pair(tls_key_pem, tls_cert_pem, key_path=files.tls_key_path)
    private = load_paillier_key(files.paillier_key_path)
    return NodeKeys(
        signing_key=signing_key,
        tls_key_pem=tls_key_pem,
        tls_cert_pem=tls_cert_pem,
        paillier_public=private.public_key,
        paillier_private=private,
        client_token=load_client_token(files.client_token_path),
    )


def load_signing_key(path: Path) -> SigningKey:
    data = read_secret(path)
    try:
        return SigningKey.from_pem(data)
    except CreditNetError as exc:
        raise KeyFileError(f"{path}: {exc.message}") from None


def check_tls_pair(key_pem: bytes, cert_pem: bytes, *, key_path: Path) -> None:
    """The TLS key must be an ECDSA P-256 PEM key and belong to the certificate."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except UnsupportedAlgorithm:
        # An SM2 key (e.g. the signing key copied here) is a key cryptography cannot load.
        raise KeyFileError(f"{key_path} is not an ECDSA P-256 key") from None
    except (ValueError, TypeError):
        raise KeyFileError(f"{key_path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KeyFileError(f"{key_path} is not an ECDSA P-256 key")
    cert_path = key_path.with_name("tls.crt")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise KeyFileError(f"{cert_path} is not a PEM certificate") from None
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, raw) != key.public_key().public_bytes(der, raw):
        raise KeyFileError(
            f"{key_path} does not belong to the certificate {cert_path}",
            hint="restore the matching pair, or create a new identity with init --force",
        )


def paillier_to_json(private: Any) -> bytes:
    """The ``paillier.json`` form of a phe private key."""
    document = {
        "n": format(private.public_key.n, "x"),
        "p": format(private.p, "x"),
        "q": format(private.q, "x"),
    }
    return json.dumps(document, sort_keys=True).encode("ascii") + b"\n"


def load_paillier_key(path: Path) -> Any:
    """Load ``paillier.json`` as a phe ``PaillierPrivateKey``, checking that p*q = n."""
    data = read_secret(path)
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyFileError(f"{path} is not valid JSON") from None
    if not isinstance(document, dict) or set(document) != {"n", "p", "q"}:
        raise KeyFileError(f'{path} must be a JSON object with exactly "n", "p" and "q"')
    numbers: dict[str, int] = {}
    for name in ("n", "p", "q"):
        value = document[name]
        if not isinstance(value, str) or not _HEX.match(value):
            raise KeyFileError(f"{path}: {name!r} must be a hexadecimal string")
        numbers[name] = int(value, 16)
    n, p, q = numbers["n"], numbers["p"], numbers["q"]
    if n.bit_length() < MIN_PAILLIER_BITS:
        raise KeyFileError(f"{path}: the modulus has fewer than {MIN_PAILLIER_BITS} bits")
    if p <= 1 or q <= 1 or p == q or p * q != n:
        raise KeyFileError(f"{path}: p and q are not two distinct factors of n")
    public = paillier.PaillierPublicKey(n)
    return paillier.PaillierPrivateKey(public, p, q)


def load_or_create_oprf_key(path: Path) -> OprfKey:
    """The node's OPRF key for private matching; a new one (0600) if there is none yet.

    The key lives as long as the node's Paillier key: it does not rotate with the table
    seed. Losing it only makes the holder rebuild its table under a new key.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        # Another process may create it first: then that one is used.
        with contextlib.suppress(AlreadyExistsError):
            write_secret(path, OprfKey.generate().to_pem())
    try:
        return OprfKey.from_pem(read_secret(path))
    except MatchingError as exc:
        raise KeyFileError(f"{path}: {exc.message}") from None


def new_client_token() -> str:
    return secrets.token_urlsafe(32)


def load_client_token(path_or_files: Path | NodeFiles) -> str:
    """The client API bearer token (also what a local CLI presents)."""
    path = (
        path_or_files.client_token_path
        if isinstance(path_or_files, NodeFiles)
        else Path(path_or_files)
    )
    try:
        token = read_secret(path).decode("ascii").strip()
    except UnicodeDecodeError:
        raise KeyFileError(f"{path} is not an ASCII token") from None
    if len(token) < MIN_TOKEN_CHARS or not _TOKEN.match(token):
        raise KeyFileError(
            f"{path} does not hold a valid token "
            f"(at least {MIN_TOKEN_CHARS} URL-safe base64 characters)"
        )
    return token


def check_token(presented: str, expected: str) -> bool:
    """Compare a presented bearer token with the expected one in constant time."""
    if not expected:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))
