"""A small synchronous client for a node's client API, used by the CLI and the demo."""

from __future__ import annotations

import grpc

from creditnet.v1 import client_pb2, client_pb2_grpc
from federation.errors import UnavailableError
from federation.member import tls_server_name
from node.config import NodeConfig
from node.keystore import read_secret


class NodeClient:
    """Dials the client API of the node whose directory we can read (token and certificate)."""

    def __init__(self, config: NodeConfig, *, timeout_s: float = 5.0) -> None:
        self._config = config
        self._timeout = timeout_s
        token = read_secret(config.client_token_path).decode().strip()
        credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(root_certificates=config.tls_cert_path.read_bytes()),
            grpc.access_token_call_credentials(token),
        )
        self._channel = grpc.secure_channel(
            config.client_listen,
            credentials,
            options=[("grpc.ssl_target_name_override", tls_server_name(config.city_code))],
        )
        self._stub = client_pb2_grpc.ClientServiceStub(self._channel)

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def status(self) -> client_pb2.GetStatusResponse:
        try:
            return self._stub.GetStatus(client_pb2.GetStatusRequest(), timeout=self._timeout)
        except grpc.RpcError as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: grpc.RpcError) -> UnavailableError:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        if code is grpc.StatusCode.UNAVAILABLE:
            return UnavailableError(
                f"the node {self._config.city_code} is not answering on "
                f"{self._config.client_listen}",
                hint=f"is it running? start it with: credit-node serve --dir {self._config.home}",
            )
        name = code.name if code is not None else "error"
        return UnavailableError(f"the node refused the request ({name}): {details}")
