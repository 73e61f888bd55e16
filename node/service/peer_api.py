"""The peer API servicer: thin, identifies the calling member, answers from the trust store."""

from __future__ import annotations

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from creditnet.v1 import manifest_pb2, peer_pb2, peer_pb2_grpc
from federation.clock import Clock
from federation.errors import FailedPreconditionError, PermissionDeniedError
from federation.member import Member
from node.peers import PeerLinks
from node.service.errors import translate_errors
from node.service.tls import peer_fingerprint
from node.storage.repositories import PeerContactRepository
from node.trust import TrustStore

MAX_MANIFESTS_PER_ANSWER = 64


class PeerApi(peer_pb2_grpc.PeerServiceServicer):
    def __init__(
        self,
        *,
        city_code: str,
        trust: TrustStore,
        links: PeerLinks,
        contacts: PeerContactRepository,
        clock: Clock,
    ) -> None:
        self._city_code = city_code
        self._trust = trust
        self._links = links
        self._contacts = contacts
        self._clock = clock

    def _caller(self, context: grpc.aio.ServicerContext[object, object]) -> Member:
        """The member whose pinned certificate the caller presented; fail closed otherwise."""
        manifest = self._trust.check_current()
        fingerprint = peer_fingerprint(context.auth_context())  # type: ignore[arg-type]
        member = manifest.member_by_fingerprint(fingerprint) if fingerprint else None
        if member is None or member.city_code == self._city_code:
            raise PermissionDeniedError(
                f"the caller's certificate is not a member of federation manifest "
                f"v{manifest.version}"
            )
        return member

    @translate_errors
    async def Hello(
        self,
        request: peer_pb2.HelloRequest,
        context: grpc.aio.ServicerContext[peer_pb2.HelloRequest, peer_pb2.HelloResponse],
    ) -> peer_pb2.HelloResponse:
        caller = self._caller(context)  # type: ignore[arg-type]
        manifest = self._trust.current
        if request.federation_id != manifest.federation_id:
            raise FailedPreconditionError(
                f"this node belongs to federation {manifest.federation_id!r}, "
                f"not {request.federation_id!r}"
            )
        now = self._clock.now()
        self._contacts.record_success(caller.city_code, now, request.manifest_version)
        if request.manifest_version > manifest.version:
            self._links.schedule_pull(caller.city_code)
        server_time = Timestamp()
        server_time.FromDatetime(now)
        return peer_pb2.HelloResponse(
            city_code=self._city_code,
            federation_id=manifest.federation_id,
            manifest_version=manifest.version,
            server_time=server_time,
        )

    @translate_errors
    async def GetManifests(
        self,
        request: peer_pb2.GetManifestsRequest,
        context: grpc.aio.ServicerContext[
            peer_pb2.GetManifestsRequest, peer_pb2.GetManifestsResponse
        ],
    ) -> peer_pb2.GetManifestsResponse:
        self._caller(context)  # type: ignore[arg-type]
        documents = self._trust.documents_after(request.after_version)[:MAX_MANIFESTS_PER_ANSWER]
        return peer_pb2.GetManifestsResponse(
            manifests=[manifest_pb2.SignedManifest(document=d) for d in documents]
        )
