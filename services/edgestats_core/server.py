"""Server factory: a grpc.aio server with the tenancy interceptor, health and reflection."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import multiprocess

from edgestats.metrics.v1 import (
    beacon_ingest_service_pb2,
    legacy_stats_json_service_pb2,
    legacy_stats_service_pb2,
    metrics_json_service_pb2,
    metrics_service_pb2,
)
from edgestats.sql_query.v1 import sql_query_json_service_pb2, sql_query_service_pb2
from edgestats.usage_billing.v1 import (
    oauth_service_pb2,
    usage_ingest_service_pb2,
    usage_stats_json_service_pb2,
    usage_stats_service_pb2,
)
from edgestats_core import prometheus_metrics, tracing
from edgestats_core.config import Settings
from edgestats_core.databases import Databases
from edgestats_core.peer_health import PeerHealth
from edgestats_core.tenancy.interceptor import KeyResolver, TenancyInterceptor
from edgestats_core.tenancy.rate_limits import Limit, RateLimiter

log = logging.getLogger(__name__)

# Every gRPC service of every process: each process's reflection describes them all, so that
# reflection through the gateway (which routes it to one process) shows the whole API.
ALL_SERVICES = tuple(
    service.full_name
    for module in (legacy_stats_json_service_pb2, beacon_ingest_service_pb2,
                   metrics_json_service_pb2, metrics_service_pb2, sql_query_json_service_pb2,
                   usage_stats_json_service_pb2, usage_ingest_service_pb2, oauth_service_pb2,
                   usage_stats_service_pb2, sql_query_service_pb2, legacy_stats_service_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
)
# The typed services: their callers get errors in the gRPC rich error model (rich_errors);
# the JSON services' callers get the documented JSON body.
TYPED_SERVICES = frozenset({
    "edgestats.metrics.v1.MetricsService",
    "edgestats.metrics.v1.LegacyStatsService",
    "edgestats.usage_billing.v1.UsageStatsService",
    "edgestats.sql_query.v1.SqlQueryService",
})

# Services with typed requests that the gateway also transcodes (the ingest batches): their
# native gRPC callers get the rich error model's details beside the JSON message they had.
DETAILED_SERVICES = frozenset({
    "edgestats.metrics.v1.BeaconIngestService",
    "edgestats.usage_billing.v1.UsageIngestService",
})

# Seconds in-flight calls get to finish after SIGTERM.
GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service of a process: its full name and how to add its servicer."""

    full_name: str
    add_to_server: Callable[[grpc.aio.Server], None]


def binding(grpc_module, full_name: str, servicer: object) -> ServiceBinding:
    """The binding of `servicer` as `full_name`, added with the generated module's adder."""
    add = getattr(grpc_module, f"add_{full_name.rsplit('.', 1)[1]}Servicer_to_server")
    return ServiceBinding(full_name, lambda server: add(servicer, server))


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: PeerHealth
    dbs: Databases


async def start_server(
    settings: Settings,
    bindings: Callable[[Databases, Settings], list[ServiceBinding]],
    public_methods: frozenset[str] = frozenset(),
) -> RunningServer:
    """Open the pools, build the services, bind the port (0 = any) and start serving."""
    dbs = Databases(settings)
    await dbs.open()
    limiter = RateLimiter(
        Limit(settings.rate_limit, settings.rate_burst),
        {tier: Limit(rate, burst) for tier, rate, burst in settings.rate_limits_by_tier},
        workers=settings.workers,
    )
    resolver = KeyResolver(dbs.home, settings.key_cache_seconds)
    interceptor = TenancyInterceptor(resolver, public_methods, limiter, TYPED_SERVICES,
                                     DETAILED_SERVICES)
    server = grpc.aio.server(
        interceptors=[interceptor],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            # Envoy forwards the URL as x-envoy-original-path: room for its 60 KiB header limit
            ("grpc.max_metadata_size", 256 * 1024),
        ],
    )
    services = bindings(dbs, settings)
    for service in services:
        service.add_to_server(server)
    health_servicer = PeerHealth(settings.peers)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [s.full_name for s in services]
    reflected = [*dict.fromkeys([*names, *ALL_SERVICES]), health.SERVICE_NAME,
                 reflection.SERVICE_NAME]
    reflection.enable_server_reflection(reflected, server)
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    await server.start()
    for name in [*names, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, health_servicer, dbs)


async def serve_forever(
    settings: Settings,
    bindings: Callable[[Databases, Settings], list[ServiceBinding]],
    public_methods: frozenset[str] = frozenset(),
    background: Callable[[Settings], Awaitable[None]] | None = None,
    name: str = "edgestats",
) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting and drain for GRACE_SECONDS.
    `background`: work the process does besides serving, cancelled at the stop; `name`: the
    process's service name in traces and logs."""
    tracing.setup(name)
    running = await start_server(settings, bindings, public_methods)
    tasks = [asyncio.create_task(background(settings))] if background else []
    if prometheus_metrics.enabled():
        tasks.append(asyncio.create_task(report_pools_forever(running.dbs)))
    log.info("listening on %s:%d", settings.host, running.port)
    print(f"port={running.port}", flush=True)  # read by the process launcher
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await running.health.enter_graceful_shutdown()
    await running.server.stop(GRACE_SECONDS)
    await running.health.close()
    await running.dbs.close()
    tracing.shutdown()
    if prometheus_metrics.enabled():  # this process's live gauges leave the scrape
        multiprocess.mark_process_dead(os.getpid())


async def report_pools_forever(dbs: Databases, seconds: float = 5.0) -> None:
    """Every `seconds`, the pools' sizes and waits into the Prometheus metrics."""
    while True:
        for db in dbs.all():
            db.report_stats()
        await asyncio.sleep(seconds)
