"""Run the metrics service: `python -m metrics_service` (settings from the environment)."""

from __future__ import annotations

import asyncio
import logging

import psycopg

from edgestats.metrics.v1 import (
    beacon_ingest_service_pb2_grpc,
    legacy_stats_json_service_pb2_grpc,
    legacy_stats_service_pb2_grpc,
    metrics_json_service_pb2_grpc,
    metrics_service_pb2_grpc,
)
from edgestats_core import json_logs, prometheus_metrics, sharding
from edgestats_core.config import Settings, data_databases
from edgestats_core.databases import Databases
from edgestats_core.server import ServiceBinding, binding, serve_forever
from metrics_service import (
    beacon_ingest,
    legacy_stats,
    legacy_typed,
    live_rollups,
    minute_rollups,
    rollup_lag,
    v1_metrics,
    v1_typed,
)

log = logging.getLogger(__name__)


def bindings(dbs: Databases, settings: Settings) -> list[ServiceBinding]:
    answers = v1_metrics.V1Answers(dbs, settings)
    legacy = legacy_stats.LegacyAnswers(dbs, settings)
    return [
        binding(legacy_stats_json_service_pb2_grpc, legacy_stats.SERVICE,
                legacy_stats.LegacyStatsServicer(legacy)),
        binding(beacon_ingest_service_pb2_grpc, beacon_ingest.SERVICE,
                beacon_ingest.BeaconIngestServicer(dbs, settings)),
        binding(metrics_json_service_pb2_grpc, v1_metrics.SERVICE,
                v1_metrics.MetricsJsonServicer(answers)),
        binding(metrics_service_pb2_grpc, v1_typed.SERVICE, v1_typed.MetricsServicer(answers)),
        binding(legacy_stats_service_pb2_grpc, legacy_typed.SERVICE,
                legacy_typed.LegacyStatsServicer(legacy)),
    ]


async def rollers(settings: Settings) -> None:
    """The process's background work: the minute roller and the live roller of every
    database that holds beacons (a sharded region's shards), and their lag for Prometheus."""
    while True:  # a coordinator names its shards once it answers
        try:
            databases = await asyncio.to_thread(
                sharding.labelled, data_databases(settings.database_url, settings.region_urls))
            break
        except psycopg.Error as error:
            log.warning("cannot list the databases to roll, retrying: %s", error)
            await asyncio.sleep(5)
    reporters = ([rollup_lag.report_forever(settings, url, regions)
                  for regions, url in databases.items()]
                 if prometheus_metrics.enabled() else [])
    await asyncio.gather(*(roller
                           for url in databases.values()
                           for roller in (minute_rollups.roll_minutes_forever(settings, url),
                                          live_rollups.roll_live_forever(settings, url))),
                         *reporters)


def main() -> None:
    json_logs.configure("edgestats-metrics")
    asyncio.run(serve_forever(Settings.from_env(), bindings, legacy_stats.PUBLIC_METHODS,
                              rollers, name="edgestats-metrics"))


if __name__ == "__main__":
    main()
