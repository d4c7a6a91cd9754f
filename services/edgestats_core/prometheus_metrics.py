"""The services' Prometheus metrics (prometheus_client).

Every worker process writes its values to files in `PROMETHEUS_MULTIPROC_DIR` (the
library's multiprocess mode, set by the stack before the process starts), and one exporter
per host serves them all as one scrape (edgestats_stack.metrics_exporter): counters and
histograms are summed over the workers, gauges as stated per gauge. Without the variable
the values stay in the process (unit tests, benchmarks).

Labels are bounded: services, methods and codes are the API's; a rejection's reason is the
field it names (or `body`), never the value.
"""

from __future__ import annotations

import os

import grpc
from prometheus_client import Counter, Gauge, Histogram
from psycopg.conninfo import conninfo_to_dict

# The HTTP status the gateway answers for each gRPC code (unless an error says otherwise).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.CANCELLED: 499,
}
# Latency buckets (seconds): the live windows answer in milliseconds, SQL may take 30 s.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "edgestats_rpc_requests", "Calls answered, by service, method, gRPC code, the HTTP status "
    "the gateway answers, and transport (http: transcoded by the gateway; grpc: native).",
    ["service", "method", "grpc_code", "http_status", "transport"])
LATENCY = Histogram(
    "edgestats_rpc_duration_seconds", "Time from the call's arrival in the service to its "
    "answer, by service and method.", ["service", "method"], buckets=LATENCY_BUCKETS)
RATE_LIMITED = Counter(
    "edgestats_rate_limited", "Calls refused by a key's rate limit (429), by tier.", ["tier"])
ITEMS = Counter(
    "edgestats_ingested_items", "Ingested items by kind (beacon, usage_event) and outcome "
    "(accepted: stored now; duplicate: accepted, already stored; rejected).",
    ["kind", "outcome"])
REJECTED = Counter(
    "edgestats_rejected_items", "Rejected ingested items by kind and reason (the field the "
    "rejection names, or body).", ["kind", "reason"])
STATEMENT_TIMEOUTS = Counter(
    "edgestats_statement_timeouts", "Statements PostgreSQL cancelled at their time budget.")
SQL_CANCELLED = Counter(
    "edgestats_sql_cancelled", "SQL queries cancelled by their caller (CancelQuery, DELETE).")
CACHE = Counter(
    "edgestats_result_cache_requests", "Result-cache lookups by outcome (hit: answered from "
    "the cache or a running identical query; miss: computed).", ["outcome"])
POOL = Gauge(
    "edgestats_db_pool_connections", "Connections of the services' pools by database and "
    "state (size: open; idle: available; max: the pool's limit), summed over the workers.",
    ["database", "state"], multiprocess_mode="livesum")
POOL_WAITING = Gauge(
    "edgestats_db_pool_waiting", "Requests waiting for a pooled connection now, by database.",
    ["database"], multiprocess_mode="livesum")
POOL_WAITS = Counter(
    "edgestats_db_pool_waits", "Requests that had to wait for a pooled connection.",
    ["database"])
POOL_WAIT_SECONDS = Counter(
    "edgestats_db_pool_wait_seconds", "Time requests spent waiting for a pooled connection.",
    ["database"])
ROLLUP_LAG = Gauge(
    "edgestats_rollup_lag_seconds", "Seconds between now and the newest rolled data, by "
    "region (the regions a database holds, or a shard: americas/shard-1), database and layer "
    "(live: 5-second buckets; minute; hour: published hours).",
    ["region", "database", "layer"], multiprocess_mode="livemin")
ROLLUP_NEWEST = Gauge(
    "edgestats_rollup_newest_seconds", "End of the newest rolled data (seconds since the "
    "epoch), by region, database and layer as edgestats_rollup_lag_seconds. Kept after the "
    "reporting process stops (frozen, not gone): alert on time() minus it.",
    ["region", "database", "layer"], multiprocess_mode="max")
STALE_HOURS = Gauge(
    "edgestats_rollup_stale_hours", "Hours that received beacons after they were rolled up "
    "and wait to be rolled again, by region and database.", ["region", "database"],
    multiprocess_mode="livemax")


def observe_call(service: str, method: str, transport: str, code: grpc.StatusCode,
                 http_status: int | None, seconds: float) -> None:
    """Count and time one answered call; `http_status` when the error sets its own."""
    status = http_status or HTTP_STATUS.get(code, 500)
    REQUESTS.labels(service, method, code.name, str(status), transport).inc()
    LATENCY.labels(service, method).observe(seconds)


def count_items(kind: str, accepted: int, duplicates: int,
                rejected: list[tuple[int, str]], fields: frozenset[str]) -> None:
    """Count an ingested batch: new, duplicate and rejected items (by the field named)."""
    ITEMS.labels(kind, "accepted").inc(accepted)
    ITEMS.labels(kind, "duplicate").inc(duplicates)
    ITEMS.labels(kind, "rejected").inc(len(rejected))
    for _, message in rejected:
        REJECTED.labels(kind, rejection_reason(message, fields)).inc()


def enabled() -> bool:
    """Whether values are shared with the exporter (multiprocess mode)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def rejection_reason(message: str, fields: frozenset[str]) -> str:
    """The label of a rejection: the field its message starts with, else `body`."""
    field, sep, _ = message.partition(":")
    return field if sep and field in fields else "body"


def database_label(url: str) -> str:
    """`host:port/dbname` of a connection URL (never its user or password)."""
    info = conninfo_to_dict(url)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
