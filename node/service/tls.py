"""Mutual TLS pinned to the federation manifest.

Every node has a self-signed certificate (CA=false) whose SHA-256 fingerprint is in the
manifest. The peer port accepts only client certificates that are, byte for byte, one of
the members' certificates: the trust bundle is the members' certificates themselves, so no
public CA and no other certificate can pass the handshake. The servicer then maps the
presented certificate to a member by fingerprint (``peer_member``). When a new manifest
is adopted, the next handshake uses the new bundle (``dynamic_ssl_server_credentials``).

Outgoing calls trust exactly the one certificate of the member being called, and check
the name ``<city>.node.creditnet`` instead of the endpoint host.
"""

from __future__ import annotations

import hashlib
import threading

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from federation.manifest import Manifest
from federation.member import Member, tls_server_name


def members_bundle(manifest: Manifest) -> bytes:
    # One certificate per line block: a PEM without its final newline would otherwise glue
    # onto the next one and make the whole bundle unreadable.
    return b"".join(
        m.tls_certificate.encode("ascii").rstrip(b"\n") + b"\n" for m in manifest.members
    )


class PinnedServerCredentials:
    """Server credentials whose client-certificate bundle follows the current manifest."""

    def __init__(self, *, key_pem: bytes, cert_pem: bytes, manifest: Manifest) -> None:
        self._pair = [(key_pem, cert_pem)]
        self._lock = threading.Lock()
        self._bundle = members_bundle(manifest)
        self._served: bytes | None = None

    def follow(self, manifest: Manifest) -> None:
        with self._lock:
            self._bundle = members_bundle(manifest)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC core before each handshake, on its own thread.
        with self._lock:
            if self._served == self._bundle:
                return None
            self._served = self._bundle
            return grpc.ssl_server_certificate_configuration(self._pair, self._bundle)

    def credentials(self) -> grpc.ServerCredentials:
        initial = self._fetch()
        assert initial is not None
        # grpc-stubs types the fetcher as never returning None; gRPC documents None as
        # "keep the current configuration".
        return grpc.dynamic_ssl_server_credentials(
            initial,
            self._fetch,  # type: ignore[arg-type]
            require_client_authentication=True,
        )


def peer_fingerprint(auth_context: dict[str, list[bytes]]) -> str | None:
    """Fingerprint of the certificate the caller presented, if any."""
    pems = auth_context.get("x509_pem_cert")
    if not pems:
        return None
    cert = x509.load_pem_x509_certificate(pems[0])
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def peer_channel_credentials(
    member: Member, *, key_pem: bytes, cert_pem: bytes
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=member.tls_certificate.encode("ascii"),
        private_key=key_pem,
        certificate_chain=cert_pem,
    )


def server_name_option(city_code: str) -> tuple[str, str]:
    return ("grpc.ssl_target_name_override", tls_server_name(city_code))
