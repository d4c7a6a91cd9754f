"""UsageStatsJsonService: the Statistics resource (seed 004): daily facts, tag facts, top tags."""

from __future__ import annotations

from edgestats.usage_billing.v1 import usage_stats_json_service_pb2  # noqa: F401 - descriptor for reflection
from edgestats.usage_billing.v1 import usage_stats_json_service_pb2_grpc as rpc
from edgestats_core.config import Settings
from edgestats_core.db import Database
from edgestats_core.tenancy.interceptor import current_principal
from usage_billing_service import stats_answers, stats_params, stats_queries
from usage_billing_service.rendering import render

SERVICE = "edgestats.usage_billing.v1.UsageStatsJsonService"


class UsageStatsServicer(rpc.UsageStatsJsonServiceServicer):
    """Each method validates, reads and renders; errors are the documented bodies."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def GetStats(self, request, context):
        query = stats_params.parse_stats(request, context, current_principal())
        now = self.settings.now()
        rows = await stats_queries.daily_rows(self.db, query, now)
        facts = stats_answers.daily_facts(rows, query.type, query.user_id, query.base_url, now)
        return render(facts, query.rendering)

    async def GetTagStats(self, request, context):
        query = stats_params.parse_tags(request, context, current_principal(), tag=True)
        rows = await stats_queries.tag_rows(self.db, query, self.settings.now())
        facts = stats_answers.tag_facts(rows, query.tag, query.base_url, query.aggregate)
        return render(facts, query.rendering)

    async def GetTopTags(self, request, context):
        query = stats_params.parse_tags(request, context, current_principal(), tag=False)
        totals = await stats_queries.tag_totals(self.db, query, self.settings.now())
        return render(stats_answers.top_tags(totals, query.base_url), query.rendering)
