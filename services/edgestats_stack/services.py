"""The gRPC service processes of edgestats and what the gateway routes to each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    """One service process kind: `python -m module`, its Envoy cluster and its gRPC services."""

    module: str
    cluster: str
    grpc_services: tuple[str, ...]


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        "metrics_service",
        "metrics",
        (
            "edgestats.metrics.v1.LegacyStatsJsonService",
            "edgestats.metrics.v1.BeaconIngestService",
            "edgestats.metrics.v1.MetricsJsonService",
            "edgestats.metrics.v1.MetricsService",
            "edgestats.metrics.v1.LegacyStatsService",
        ),
    ),
    ServiceSpec("sql_query_service", "sql", ("edgestats.sql_query.v1.SqlQueryJsonService",
                                             "edgestats.sql_query.v1.SqlQueryService")),
    ServiceSpec(
        "usage_billing_service",
        "usage",
        (
            "edgestats.usage_billing.v1.UsageStatsJsonService",
            "edgestats.usage_billing.v1.UsageIngestService",
            "edgestats.usage_billing.v1.OAuthService",
            "edgestats.usage_billing.v1.UsageStatsService",
        ),
    ),
)
