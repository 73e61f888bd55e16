"""The node's links to the other members: heartbeat and manifest gossip.

Every ``heartbeat_interval_s`` the node says Hello to each member over pinned mutual TLS.
The answer tells whether the member is reachable and which manifest version it holds;
when a member holds a newer version, the node fetches the versions it lacks and adopts
them only if each one is properly signed (see :class:`node.trust.TrustStore`). A refused
chain is logged and recorded as an event; nothing of it is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from creditnet.v1 import lists_pb2, peer_pb2, peer_pb2_grpc
from federation.clock import Clock
from federation.errors import CreditNetError
from federation.manifest import Manifest
from federation.member import Member
from node.background import Background
from node.service.options import channel_options
from node.service.tls import peer_channel_credentials, server_name_option
from node.storage.database import check_storable
from node.storage.repositories import EventRepository, PeerContactRepository
from node.trust import TrustStore

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 200


@dataclass
class _Link:
    member: Member
    channel: grpc.aio.Channel
    stub: peer_pb2_grpc.PeerServiceAsyncStub


class PeerLinks:
    def __init__(
        self,
        *,
        city_code: str,
        tls_key_pem: bytes,
        tls_cert_pem: bytes,
        trust: TrustStore,
        contacts: PeerContactRepository,
        events: EventRepository,
        clock: Clock,
        timeout_s: float,
        max_message_bytes: int,
        background: Background,
    ) -> None:
        self._background = background
        self._city_code = city_code
        self._key = tls_key_pem
        self._cert = tls_cert_pem
        self._trust = trust
        self._contacts = contacts
        self._events = events
        self._clock = clock
        self._timeout = timeout_s
        self._max_message_bytes = max_message_bytes
        self._links: dict[str, _Link] = {}
        self._reachable: dict[str, bool] = {}
        self._on_reachable: list[Callable[[str], None]] = []
        self._pulling: set[str] = set()
        self._closing: list[grpc.aio.Channel] = []

    def follow(self, manifest: Manifest) -> None:
        """Open channels for new or changed members, drop those that left."""
        wanted = {m.city_code: m for m in manifest.members if m.city_code != self._city_code}
        for code in list(self._links):
            link = self._links[code]
            if wanted.get(code) != link.member:
                self._closing.append(link.channel)
                del self._links[code]
        for code, member in wanted.items():
            if code not in self._links:
                self._links[code] = self._open(member)

    def _open(self, member: Member) -> _Link:
        credentials = peer_channel_credentials(member, key_pem=self._key, cert_pem=self._cert)
        options = [*channel_options(self._max_message_bytes), server_name_option(member.city_code)]
        channel = grpc.aio.secure_channel(member.endpoint, credentials, options=options)
        stub: peer_pb2_grpc.PeerServiceAsyncStub = peer_pb2_grpc.PeerServiceStub(channel)
        return _Link(member, channel, stub)

    async def heartbeat(self) -> None:
        """Say Hello to every member at once; returns when all have answered or timed out."""
        await self._close_dropped()
        await asyncio.gather(*(self._hello(link) for link in list(self._links.values())))

    async def _hello(self, link: _Link) -> None:
        manifest = self._trust.current
        code = link.member.city_code
        request = peer_pb2.HelloRequest(
            federation_id=manifest.federation_id, manifest_version=manifest.version
        )
        try:
            answer = await link.stub.Hello(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            self._failed(code, _describe(exc))
            return
        if answer.city_code != code:
            self._failed(code, f"answered as {answer.city_code!r}, expected {code}")
            return
        try:
            version = check_storable(
                answer.manifest_version, field="manifest_version", what="a manifest version"
            )
        except CreditNetError as exc:
            self._failed(code, f"answered with {exc.message}")
            return
        self._contacts.record_success(code, self._clock.now(), version)
        if self._reachable.get(code) is not True:
            self._reachable[code] = True
            log.info("peer reachable", extra={"fields": {"peer": code}})
            for listener in self._on_reachable:
                listener(code)
        if version > manifest.version:
            await self.pull_manifests(code)

    def on_reachable(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(city_code)`` whenever a member becomes reachable (again)."""
        self._on_reachable.append(listener)

    def _failed(self, code: str, error: str) -> None:
        self._contacts.record_failure(code, self._clock.now(), error)
        was = self._reachable.get(code)
        if was is not False:
            # Logged on the change only: a peer down for a day must not flood the log. A
            # peer not up yet when this node starts is not news; losing one is.
            self._reachable[code] = False
            fields = {"peer": code, "error": error}
            if was is None:
                log.info("peer not reachable yet", extra={"fields": fields})
            else:
                log.warning("peer unreachable", extra={"fields": fields})
                self._events.record(self._clock.now(), "peer.unreachable", f"{code}: {error}")

    def schedule_pull(self, city_code: str) -> None:
        """A caller told us it holds a newer manifest: fetch it soon, without blocking it."""
        if city_code in self._links and city_code not in self._pulling:
            self._background.spawn(self.pull_manifests(city_code))

    async def pull_manifests(self, city_code: str) -> None:
        link = self._links.get(city_code)
        if link is None or city_code in self._pulling:
            return
        self._pulling.add(city_code)
        try:
            ours = self._trust.current.version
            request = peer_pb2.GetManifestsRequest(after_version=ours)
            try:
                answer = await link.stub.GetManifests(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                log.warning(
                    "could not fetch newer manifests",
                    extra={"fields": {"peer": city_code, "error": _describe(exc)}},
                )
                return
            documents = [m.document for m in answer.manifests]
            if not documents or self._trust.current.version != ours:
                return
            try:
                adopted = self._trust.adopt_chain(documents, source=f"peer:{city_code}")
            except CreditNetError as exc:
                log.warning(
                    "manifest from peer refused",
                    extra={"fields": {"peer": city_code, "reason": exc.message}},
                )
                self._events.record(
                    self._clock.now(), "manifest.rejected", f"from {city_code}: {exc.message}"
                )
                return
            self._events.record(
                self._clock.now(),
                "manifest.adopted",
                f"v{adopted.version} from {city_code}",
            )
        finally:
            self._pulling.discard(city_code)

    def stub(self, city_code: str) -> peer_pb2_grpc.PeerServiceAsyncStub | None:
        link = self._links.get(city_code)
        return None if link is None else link.stub

    def announce(self, checkpoint: bytes) -> None:
        """Tell every member that our log grew (fire and forget: a member that misses the
        notice pulls at its next interval anyway)."""
        for link in list(self._links.values()):
            self._background.spawn(self._notify(link, checkpoint))

    async def _notify(self, link: _Link, checkpoint: bytes) -> None:
        request = peer_pb2.NotifyAppendedRequest(
            checkpoint=lists_pb2.SignedCheckpoint(document=checkpoint)
        )
        try:
            # wait_for_ready: a channel still in reconnect backoff delays the notice instead
            # of dropping it.
            await link.stub.NotifyAppended(request, timeout=self._timeout, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            log.info(
                "append notice not delivered",
                extra={"fields": {"peer": link.member.city_code, "error": _describe(exc)}},
            )

    async def _close_dropped(self) -> None:
        closing, self._closing = self._closing, []
        for channel in closing:
            await channel.close(grace=None)

    async def close(self) -> None:
        for link in self._links.values():
            self._closing.append(link.channel)
        self._links.clear()
        await self._close_dropped()


def _describe(exc: grpc.aio.AioRpcError) -> str:
    code = exc.code()
    name = code.name if code is not None else "UNKNOWN"
    return f"{name}: {exc.details() or ''}"[:MAX_ERROR_CHARS]
