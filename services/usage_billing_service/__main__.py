"""Run the usage-billing service: `python -m usage_billing_service` (settings from env)."""

from __future__ import annotations

import asyncio

from edgestats.usage_billing.v1 import (
    oauth_service_pb2_grpc,
    usage_ingest_service_pb2_grpc,
    usage_stats_json_service_pb2_grpc,
    usage_stats_service_pb2_grpc,
)
from edgestats_core import json_logs
from edgestats_core.config import Settings
from edgestats_core.databases import Databases
from edgestats_core.server import ServiceBinding, binding, serve_forever
from usage_billing_service import oauth_tokens, usage_ingest, usage_stats, usage_typed


def bindings(dbs: Databases, settings: Settings) -> list[ServiceBinding]:
    db = dbs.home  # usage events, facts, accounts and OAuth clients are not regional
    answers = usage_stats.UsageAnswers(db, settings)
    stats = usage_stats.UsageStatsServicer(answers)
    ingest = usage_ingest.UsageIngestServicer(db, settings)
    tokens = oauth_tokens.OAuthServicer(db, settings)
    return [
        ServiceBinding(
            usage_stats.SERVICE,
            lambda s: usage_stats_json_service_pb2_grpc.add_UsageStatsJsonServiceServicer_to_server(
                stats, s
            ),
        ),
        ServiceBinding(
            usage_ingest.SERVICE,
            lambda s: usage_ingest_service_pb2_grpc.add_UsageIngestServiceServicer_to_server(
                ingest, s
            ),
        ),
        ServiceBinding(
            oauth_tokens.SERVICE,
            lambda s: oauth_service_pb2_grpc.add_OAuthServiceServicer_to_server(tokens, s),
        ),
        binding(usage_stats_service_pb2_grpc, usage_typed.SERVICE,
                usage_typed.UsageStatsServicer(answers)),
    ]


def main() -> None:
    json_logs.configure("edgestats-usage")
    asyncio.run(serve_forever(Settings.from_env(), bindings, oauth_tokens.PUBLIC_METHODS,
                              name="edgestats-usage"))


if __name__ == "__main__":
    main()
