"""UsageStatsService: daily usage facts, tag facts and top tags (stub, being built)."""

from __future__ import annotations

from edgestats.usage_billing.v1 import usage_stats_service_pb2_grpc as rpc
from edgestats_core.config import Settings
from edgestats_core.db import Database

SERVICE = "edgestats.usage_billing.v1.UsageStatsService"


class UsageStatsServicer(rpc.UsageStatsServiceServicer):
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
