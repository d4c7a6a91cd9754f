"""A small Python client for edgestats' typed gRPC API.

    from edgestats_client import connect, timestamp
    from edgestats.metrics.v1 import metrics_service_pb2 as metrics, types_pb2 as types

    with connect("localhost:8080", key="es_…") as client:
        answer = client.metrics.GetAudience(metrics.GetMetricRequest(
            from_date=timestamp(start), to_date=timestamp(end),
            granularity=types.GRANULARITY_MINUTE))
        for row in answer.rows:
            print(row.timestamp.ToDatetime(), row.audience)

Every call carries the key and a default deadline. Calls refused with UNAVAILABLE or
RESOURCE_EXHAUSTED are retried by gRPC's own retry policy (up to `max_attempts` in all),
after the delay the server asks for (its RetryInfo, sent to gRPC as a retry pushback) or
an exponential backoff. `error_details` reads the rich error of a failed call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import grpc
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from edgestats.metrics.v1 import (
    beacon_ingest_service_pb2_grpc,
    legacy_stats_service_pb2_grpc,
    metrics_service_pb2_grpc,
)
from edgestats.sql_query.v1 import sql_query_service_pb2_grpc
from edgestats.usage_billing.v1 import usage_ingest_service_pb2_grpc, usage_stats_service_pb2_grpc

__all__ = ["Client", "ErrorDetails", "connect", "error_details", "timestamp"]

SERVICES = (
    "edgestats.metrics.v1.MetricsService", "edgestats.metrics.v1.LegacyStatsService",
    "edgestats.metrics.v1.BeaconIngestService",
    "edgestats.sql_query.v1.SqlQueryService", "edgestats.usage_billing.v1.UsageStatsService",
    "edgestats.usage_billing.v1.UsageIngestService",
)
RETRYABLE = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")


def service_config(max_attempts: int) -> str:
    """gRPC's retry policy for every edgestats service."""
    return json.dumps({"methodConfig": [{
        "name": [{"service": name} for name in SERVICES],
        "retryPolicy": {
            "maxAttempts": max_attempts, "initialBackoff": "0.2s", "maxBackoff": "10s",
            "backoffMultiplier": 2, "retryableStatusCodes": list(RETRYABLE),
        },
    }]})


class _Defaults(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Adds the key and, when the caller gives none, the default deadline."""

    def __init__(self, key: str, timeout: float) -> None:
        self.metadata = (("authorization", f"Bearer {key}"),)
        self.timeout = timeout

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(details.method, details.timeout or self.timeout,
                            (*(details.metadata or ()), *self.metadata), details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: tuple
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


@dataclass
class Client:
    """Typed stubs over one channel. Close it (or use `with`) when done."""

    channel: grpc.Channel
    metrics: metrics_service_pb2_grpc.MetricsServiceStub = field(init=False)
    legacy: legacy_stats_service_pb2_grpc.LegacyStatsServiceStub = field(init=False)
    sql: sql_query_service_pb2_grpc.SqlQueryServiceStub = field(init=False)
    usage: usage_stats_service_pb2_grpc.UsageStatsServiceStub = field(init=False)
    ingest: beacon_ingest_service_pb2_grpc.BeaconIngestServiceStub = field(init=False)
    usage_ingest: usage_ingest_service_pb2_grpc.UsageIngestServiceStub = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = metrics_service_pb2_grpc.MetricsServiceStub(self.channel)
        self.legacy = legacy_stats_service_pb2_grpc.LegacyStatsServiceStub(self.channel)
        self.sql = sql_query_service_pb2_grpc.SqlQueryServiceStub(self.channel)
        self.usage = usage_stats_service_pb2_grpc.UsageStatsServiceStub(self.channel)
        self.ingest = beacon_ingest_service_pb2_grpc.BeaconIngestServiceStub(self.channel)
        self.usage_ingest = usage_ingest_service_pb2_grpc.UsageIngestServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(target: str, key: str, *, credentials: grpc.ChannelCredentials | None = None,
            timeout: float = 30.0, max_attempts: int = 4) -> Client:
    """A client of the edgestats gateway at `target` ("host:port") calling with `key`.
    Plain text unless `credentials` (e.g. grpc.ssl_channel_credentials()) are given."""
    options = [("grpc.service_config", service_config(max_attempts)), ("grpc.enable_retries", 1)]
    channel = (grpc.secure_channel(target, credentials, options) if credentials
               else grpc.insecure_channel(target, options))
    return Client(grpc.intercept_channel(channel, _Defaults(key, timeout)))


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp of an aware datetime (a naive one is taken as UTC)."""
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(moment)
    return out


@dataclass(frozen=True)
class ErrorDetails:
    """What a typed call's error says besides its code and message."""

    reason: str                               # ErrorInfo.reason, e.g. TIER_FORBIDDEN
    violations: list[tuple[str, str]]         # (field, description) of BadRequest
    retry_delay: timedelta | None             # RetryInfo.retry_delay


def error_details(error: grpc.RpcError) -> ErrorDetails | None:
    """The rich error of a failed call, or None when the server sent none."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return None
    reason, violations, delay = "", [], None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [(v.field, v.description) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delay = retry.retry_delay.ToTimedelta()
    return ErrorDetails(reason, violations, delay)
