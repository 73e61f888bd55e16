"""Assembles and runs a node: two gRPC servers, the heartbeat, and a clean shutdown.

- The peer server (``[peer] listen``) speaks only to members, over pinned mutual TLS.
- The client server (``[client] listen``, loopback by default) speaks only to the city's
  own platform, over TLS with the node's certificate and a bearer token.
Both serve gRPC health checking and reflection. SIGTERM or SIGINT stops the node: health
turns NOT_SERVING, new calls are refused, calls in flight get a grace period, then the
process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# The asyncio health servicer (public as grpc_health.v1.health.aio, untyped there).
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from creditnet.v1 import client_pb2, client_pb2_grpc, peer_pb2, peer_pb2_grpc
from federation.clock import Clock, SystemClock
from federation.errors import FailedPreconditionError
from federation.matching import HolderKey
from federation.member import Member
from node.background import Background
from node.config import NodeConfig
from node.identity import DEFAULT_PAILLIER_BITS, load_member
from node.keystore import NodeKeys, load_node_keys, load_or_create_oprf_key
from node.ledger import OwnLog
from node.logstore import LogStore
from node.matching.holder import MatchHolder, MatchingLimits
from node.matching.pool import MatchingPool
from node.matching.querier import MatchQuerier
from node.peers import PeerLinks
from node.queries import ListQueries
from node.ratings_desk import RatingDesk
from node.replication import Replicator
from node.reporting import ReportOffice
from node.service.client_api import ClientApi, TokenAuthInterceptor
from node.service.options import server_options
from node.service.peer_api import PeerApi
from node.service.tls import PinnedServerCredentials
from node.storage.database import Database, open_database
from node.storage.lists import EntryRepository, LogRepository, ReplicaRepository
from node.storage.matching import (
    MatchAuditRepository,
    MatchQuotaRepository,
    OwnListingRepository,
)
from node.storage.reports import RatingRepository, ReportRepository
from node.storage.repositories import (
    EventRepository,
    ManifestRepository,
    PeerContactRepository,
)
from node.trust import TrustStore, check_membership

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5.0


def _bind(
    server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials, what: str
) -> None:
    try:
        port = server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise FailedPreconditionError(
            f"cannot listen for the {what} on {address}: the port is in use or the address "
            "is not on this machine",
            hint="stop whatever holds the port, or change the address in node.toml",
        )


def _health_and_reflection(server: grpc.aio.Server, service_name: str) -> HealthServicer:
    checker = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection(
        [
            service_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    return checker


async def run_node(config: NodeConfig, *, clock: Clock | None = None) -> None:
    """Run until SIGTERM or SIGINT. Raises a CreditNetError if the node cannot start."""
    clock = clock or SystemClock()
    # Signals first: a SIGTERM that arrives while the node is still starting must stop it
    # cleanly too (it is handled as soon as start-up yields to the event loop).
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    keys = load_node_keys(config)
    me = load_member(config, keys)  # the card must be the one of these keys
    bits = keys.paillier_private.public_key.n.bit_length()
    if bits < DEFAULT_PAILLIER_BITS:
        log.warning(
            "weak Paillier key: for tests only",
            extra={"fields": {"bits": bits, "production_bits": DEFAULT_PAILLIER_BITS}},
        )
    database = open_database(config.database_url)
    try:
        await _run(config, keys=keys, me=me, database=database, clock=clock, stop=stop)
    finally:
        database.close()


async def _run(
    config: NodeConfig,
    *,
    keys: NodeKeys,
    me: Member,
    database: Database,
    clock: Clock,
    stop: asyncio.Event,
) -> None:
    trust = TrustStore(ManifestRepository(database), clock, pin_path=config.trust_pin_path)
    trust.check_pin()
    manifest = trust.check_current()
    check_membership(manifest, me)
    contacts = PeerContactRepository(database)
    events = EventRepository(database)
    logs, entries = LogRepository(database), EntryRepository(database)
    replicas = ReplicaRepository(database)
    background = Background()
    started = clock.now()

    links = PeerLinks(
        city_code=config.city_code,
        tls_key_pem=keys.tls_key_pem,
        tls_cert_pem=keys.tls_cert_pem,
        trust=trust,
        contacts=contacts,
        events=events,
        clock=clock,
        timeout_s=config.peer_timeout_s,
        max_message_bytes=config.max_message_bytes,
        background=background,
    )
    links.follow(manifest)
    own_log = OwnLog(
        store=LogStore(config.city_code, logs, entries, clock),
        entries=entries,
        signing_key=keys.signing_key,
        policies=config.list_policies,
        clock=clock,
    )
    replicator = Replicator(
        city_code=config.city_code,
        trust=trust,
        links=links,
        logs=logs,
        entries=entries,
        replicas=replicas,
        clock=clock,
        monotonic=time.monotonic,
        background=background,
    )
    links.on_reachable(replicator.schedule)
    queries = ListQueries(
        city_code=config.city_code, logs=logs, entries=entries, replicas=replicas, clock=clock
    )
    ratings = RatingDesk(
        city_code=config.city_code,
        signing_key=keys.signing_key,
        trust=trust,
        ratings=RatingRepository(database),
        scales=config.rating_scales,
        mappings=config.rating_mappings,
        policy=config.recognition,
        links=links,
        clock=clock,
    )
    ratings.publish_mappings()
    trust.on_change(ratings.follow)
    reports = ReportOffice(
        city_code=config.city_code,
        city_name=me.name,
        signing_key=keys.signing_key,
        trust=trust,
        reports=ReportRepository(database),
        queries=queries,
        ratings=ratings,
        links=links,
        clock=clock,
        list_policies=config.list_policies,
    )
    matching_pool = MatchingPool(config.matching_workers or None)
    querier = MatchQuerier(
        city_code=config.city_code,
        home=config.home,
        trust=trust,
        links=links,
        pool=matching_pool,
        audit=MatchAuditRepository(database),
        clock=clock,
        max_subjects_per_request=config.matching_max_subjects_per_request,
        residue_pool_size=config.matching_residue_pool_size,
        max_message_bytes=config.max_message_bytes,
    )
    await querier.load()
    links.on_reachable(querier.schedule)
    # This city's own table: served as left on disk until the first refresh (a loop below,
    # so that building a table never delays serving).
    match_holder = MatchHolder(
        city_code=config.city_code,
        home=config.home,
        key=HolderKey.from_phe(keys.paillier_private),
        oprf_key=load_or_create_oprf_key(config.oprf_key_path),
        signing_key=keys.signing_key,
        policies=config.list_policies,
        listings=OwnListingRepository(database),
        entries=entries,
        audit=MatchAuditRepository(database),
        quota=MatchQuotaRepository(database),
        pool=matching_pool,
        clock=clock,
        limits=MatchingLimits.from_config(config),
    )
    match_holder.load()
    pinned = PinnedServerCredentials(
        key_pem=keys.tls_key_pem, cert_pem=keys.tls_cert_pem, manifest=manifest
    )
    trust.on_change(pinned.follow)
    trust.on_change(links.follow)

    options = server_options(config.max_message_bytes)
    peer_server = grpc.aio.server(options=options)
    peer_pb2_grpc.add_PeerServiceServicer_to_server(
        PeerApi(
            city_code=config.city_code,
            trust=trust,
            links=links,
            contacts=contacts,
            own_log=own_log,
            replicator=replicator,
            logs=logs,
            reports=reports,
            ratings=ratings,
            clock=clock,
            match_holder=match_holder,
            match_querier=querier,
        ),
        peer_server,
    )
    peer_health = _health_and_reflection(
        peer_server, peer_pb2.DESCRIPTOR.services_by_name["PeerService"].full_name
    )
    _bind(peer_server, config.peer_listen, pinned.credentials(), "peer API")

    client_server = grpc.aio.server(
        options=options, interceptors=[TokenAuthInterceptor(keys.client_token)]
    )
    client_pb2_grpc.add_ClientServiceServicer_to_server(
        ClientApi(
            city_code=config.city_code,
            trust=trust,
            contacts=contacts,
            events=events,
            own_log=own_log,
            queries=queries,
            replicator=replicator,
            links=links,
            reports=reports,
            ratings=ratings,
            matching=querier,
            clock=clock,
            heartbeat_interval_s=config.heartbeat_interval_s,
            started=started,
        ),
        client_server,
    )
    client_health = _health_and_reflection(
        client_server, client_pb2.DESCRIPTOR.services_by_name["ClientService"].full_name
    )
    _bind(
        client_server,
        config.client_listen,
        grpc.ssl_server_credentials([(keys.tls_key_pem, keys.tls_cert_pem)]),
        "client API",
    )

    await peer_server.start()
    await client_server.start()
    for checker in (peer_health, client_health):
        await checker.set("", health_pb2.HealthCheckResponse.SERVING)
    _tune_garbage_collector()
    log.info(
        "node started",
        extra={
            "fields": {
                "peer_listen": config.peer_listen,
                "client_listen": config.client_listen,
                "manifest_version": manifest.version,
                "members": len(manifest.members),
            }
        },
    )
    audit_heads = asyncio.create_task(_log_audit_heads(MatchAuditRepository(database), stop))
    loops = [
        asyncio.create_task(_heartbeat(config, trust, links, stop)),
        asyncio.create_task(
            _sync(config, own_log, replicator, links, reports, ratings, querier, stop)
        ),
        asyncio.create_task(querier.run_refill(stop)),
        asyncio.create_task(_match_table(config, match_holder, stop)),
    ]
    try:
        await stop.wait()
    finally:
        log.info("node stopping", extra={"fields": {"grace_s": SHUTDOWN_GRACE_S}})
        for checker in (peer_health, client_health):
            await checker.enter_graceful_shutdown()
        for task in loops:
            task.cancel()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await background.close()
        await querier.close()
        await asyncio.gather(
            peer_server.stop(SHUTDOWN_GRACE_S), client_server.stop(SHUTDOWN_GRACE_S)
        )
        # After the servers: a probe answered during the grace period still has its pool.
        await asyncio.to_thread(matching_pool.close)
        await links.close()
        await audit_heads  # its last line: the head as the node leaves it
        log.info("node stopped")


#: Allocations between two collections of the cyclic garbage collector's young generation
#: (CPython's default: 700).
GC_YOUNG_THRESHOLD = 50_000


def _tune_garbage_collector() -> None:
    """Keep the cyclic garbage collector off the hot paths of a long-running node.

    What start-up built (modules, gRPC and SQLAlchemy state, caches) lives as long as the
    process: frozen, full collections no longer walk it. Replication and verification make
    many short-lived objects that reference counting frees: the young generation is
    collected every 50,000 allocations rather than every 700. With the defaults, collections
    took about a third of a replica's CPU while it applied a peer's log (docs/operations.md).
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


#: Seconds between two looks at the audit's head (logged when it changed).
AUDIT_HEAD_EVERY_S = 3600.0


async def _log_audit_heads(
    audit: MatchAuditRepository, stop: asyncio.Event, every_s: float = AUDIT_HEAD_EVERY_S
) -> None:
    """Log the audit's head (``audit head``: rows and link) at start, every ``every_s``
    when it changed, and once the node stops: kept by whatever keeps the node's log, the
    heads anchor the chain outside the database (``credit-node audit verify --head``)."""
    logged: tuple[int, str] | None = None
    while True:
        try:
            head = await asyncio.to_thread(audit.head)
            if head != logged:
                log.info("audit head", extra={"fields": {"rows": head[0], "head": head[1]}})
                logged = head
        except Exception:
            log.exception("audit head not read")
        if stop.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every_s)


async def _heartbeat(
    config: NodeConfig, trust: TrustStore, links: PeerLinks, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            trust.refresh()
            await links.heartbeat()
        except Exception:
            # A failing round must not end the loop: the next one may succeed.
            log.exception("heartbeat round failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=config.heartbeat_interval_s)


async def _sync(
    config: NodeConfig,
    own_log: OwnLog,
    replicator: Replicator,
    links: PeerLinks,
    reports: ReportOffice,
    ratings: RatingDesk,
    querier: MatchQuerier,
    stop: asyncio.Event,
) -> None:
    """Pull every city's log, swap checkpoints, and emit removals at end of publicity; pull
    the other cities' report status lists and ratings; fetch changes of their matching
    tables (in the background: a whole table can take a while).
    Changes also arrive between rounds: an owner tells its peers as soon as it records one."""
    while not stop.is_set():
        try:
            if own_log.sweep_expired() and own_log.store.checkpoint:
                links.announce(own_log.store.checkpoint)
            querier.schedule_all()
            await replicator.sync_all()
            await replicator.exchange_all()
            await reports.pull_status_lists()
            await ratings.pull_all()
        except Exception:
            log.exception("sync round failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=config.sync_interval_s)


async def _match_table(config: NodeConfig, holder: MatchHolder, stop: asyncio.Event) -> None:
    """Keep this city's matching table in line with its lists, at start-up and then once
    every sync interval, whatever changed meanwhile: each new epoch mixes every change of
    its interval, so that the bins it changes do not point at one change (a refresh right
    after each change would publish each one on its own; see docs/private-matching.md). A
    removal stops matching within a sync interval. Forget request ids past their replay
    window."""
    while not stop.is_set():
        try:
            await holder.refresh()
            holder.forget_expired()
        except Exception:
            log.exception("matching table refresh failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=config.sync_interval_s)
