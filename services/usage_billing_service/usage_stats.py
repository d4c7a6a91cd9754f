"""UsageStatsJsonService: the Statistics resource (seed 004): daily facts, tag facts, top tags.

UsageAnswers reads and builds the answers (fact dicts) of validated queries; this JSON face
and the typed UsageStatsService (usage_typed) both ask it.
"""

from __future__ import annotations

from edgestats.usage_billing.v1 import usage_stats_json_service_pb2  # noqa: F401 - descriptor for reflection
from edgestats.usage_billing.v1 import usage_stats_json_service_pb2_grpc as rpc
from edgestats_core.config import Settings
from edgestats_core.db import Database
from edgestats_core.tenancy.interceptor import current_principal
from usage_billing_service import stats_answers, stats_params, stats_queries
from usage_billing_service.rendering import render
from usage_billing_service.stats_params import StatsQuery, TagQuery

SERVICE = "edgestats.usage_billing.v1.UsageStatsJsonService"


class UsageAnswers:
    """The facts of a validated query, as the JSON answer's `stats` list."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def stats(self, query: StatsQuery) -> list[dict]:
        """Daily (or aggregated) facts of one type."""
        now = self.settings.now()
        rows = await stats_queries.daily_rows(self.db, query, now)
        return stats_answers.daily_facts(rows, query.type, query.user_id, query.base_url, now)

    async def tag_stats(self, query: TagQuery) -> list[dict]:
        """Hourly (or aggregated) facts of the query's tag per application."""
        rows = await stats_queries.tag_rows(self.db, query, self.settings.now())
        return stats_answers.tag_facts(rows, query.tag, query.base_url, query.aggregate)

    async def top_tags(self, query: TagQuery) -> list[dict]:
        """Per application, its 10 tags with the most bandwidth."""
        totals = await stats_queries.tag_totals(self.db, query, self.settings.now())
        return stats_answers.top_tags(totals, query.base_url)


class UsageStatsServicer(rpc.UsageStatsJsonServiceServicer):
    """Each method validates, asks and renders; errors are the documented bodies."""

    def __init__(self, answers: UsageAnswers) -> None:
        self.answers = answers

    async def GetStats(self, request, context):
        query = stats_params.parse_stats(request, context, current_principal())
        return render(await self.answers.stats(query), query.rendering)

    async def GetTagStats(self, request, context):
        query = stats_params.parse_tags(request, context, current_principal(), tag=True)
        return render(await self.answers.tag_stats(query), query.rendering)

    async def GetTopTags(self, request, context):
        query = stats_params.parse_tags(request, context, current_principal(), tag=False)
        return render(await self.answers.top_tags(query), query.rendering)
