"""LegacyStatsJsonService: thin adapters from the Legacy Stats RPCs to JSON bodies, and
LegacyAnswers, the validation, queries and result cache it shares with the typed face
(legacy_typed.LegacyStatsServicer)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from google.api import httpbody_pb2

from edgestats.metrics.v1 import legacy_stats_json_service_pb2  # noqa: F401 - descriptor for reflection
from edgestats.metrics.v1 import legacy_stats_json_service_pb2_grpc as rpc
from edgestats_core.config import Settings
from edgestats_core.databases import Databases
from edgestats_core.db import Database
from edgestats_core.errors import FieldError
from edgestats_core.http_query import QueryParams
from edgestats_core.metrics.definitions import STAT_METRICS
from edgestats_core.query import planner
from edgestats_core.query.result_cache import ResultCache
from edgestats_core.tenancy.interceptor import current_principal
from metrics_service import legacy_params, legacy_queries

SERVICE = "edgestats.metrics.v1.LegacyStatsJsonService"
PUBLIC_METHODS = frozenset({f"/{SERVICE}/Ping", f"/{SERVICE}/PingDb"})


def json_body(value: object) -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(content_type="application/json", data=orjson.dumps(value))


PONG = httpbody_pb2.HttpBody(content_type="text/plain", data=b"pong")


class LegacyAnswers:
    """Validates Legacy Stats parameters and answers them with the rendered JSON values
    (rows, the paginated shape or points), through the result cache: identical questions
    (same tenant, scope and window) share one execution. Both faces of the Legacy Stats
    API ask it."""

    def __init__(self, dbs: Databases, settings: Settings) -> None:
        self.dbs = dbs
        self.settings = settings
        self.cache: ResultCache[object] = ResultCache(settings.result_cache_seconds)

    def ttl(self, query) -> float | None:
        """Windows of 6 h and more keep an answer longer (Settings.long_result_cache_seconds)."""
        if query.window.seconds >= planner.TOTALS_PREFERRED_SPAN.total_seconds():
            return self.settings.long_result_cache_seconds
        return None

    async def db(self) -> Database:
        """The database of the caller's data (the legacy API is per customer)."""
        principal = current_principal()
        return await self.dbs.reader(principal.region, principal.customer_id)

    async def summaries(self, params: QueryParams, level: str,
                        problems: Sequence[FieldError] = ()) -> list[dict]:
        """The summary rows of `level` (channel, stream, representation), or the paginated
        shape (a one-element list) when the parameters ask for pages."""
        query = legacy_params.parse(params, current_principal(), self.settings.now(),
                                    paginate=True, problems=problems)
        db = await self.db()

        async def answer() -> list[dict]:
            rows = await legacy_queries.summary_rows(db, query, level)
            if query.paginated:
                return legacy_queries.paginate(rows, query.per_page, query.page)
            return rows

        return await self.cache.get(("summary", level, query), answer, self.ttl(query))

    async def aggregate(self, params: QueryParams, problems: Sequence[FieldError] = ()) -> dict:
        """The whole scope's summary row, keyed `aggregate`."""
        query = legacy_params.parse(params, current_principal(), self.settings.now(),
                                    problems=problems)
        db = await self.db()

        async def answer() -> dict:
            return await legacy_queries.summary_aggregate(db, query)

        return await self.cache.get(("aggregate", query), answer, self.ttl(query))

    async def points(self, params: QueryParams, metric_name: str, last: bool,
                     problems: Sequence[FieldError] = ()) -> list[dict]:
        """The points of a STAT_METRICS series (only the latest when `last`)."""
        metric = STAT_METRICS[metric_name]
        query = legacy_params.parse_stats(params, current_principal(), self.settings.now(),
                                          metric, problems)
        db = await self.db()

        async def answer() -> list[dict]:
            return await legacy_queries.stat_points(db, query, metric, last)

        return await self.cache.get((metric_name, last, query), answer, self.ttl(query))


class LegacyStatsServicer(rpc.LegacyStatsJsonServiceServicer):
    """The JSON face: the query parameters as sent, the answers as documented JSON bodies."""

    def __init__(self, answers: LegacyAnswers) -> None:
        self.answers = answers

    async def Ping(self, request, context):
        return PONG

    async def PingDb(self, request, context):
        for db in self.answers.dbs.primaries():
            await db.ping()
        return PONG

    async def _summary(self, request, context, level: str):
        return json_body(await self.answers.summaries(QueryParams(request, context), level))

    async def ListChannelSummaries(self, request, context):
        return await self._summary(request, context, "channel")

    async def ListStreamSummaries(self, request, context):
        return await self._summary(request, context, "stream")

    async def ListRepresentationSummaries(self, request, context):
        return await self._summary(request, context, "representation")

    async def GetSummaryAggregate(self, request, context):
        return json_body([await self.answers.aggregate(QueryParams(request, context))])


def _stat_method(metric_name: str, last: bool):
    async def method(self: LegacyStatsServicer, request, context):
        params = QueryParams(request, context)
        return json_body(await self.answers.points(params, metric_name, last))

    return method


# RPC name stem -> metric of STAT_METRICS; each has a series and a LastPoint RPC.
STAT_RPCS = {
    "ThroughputAgg": "throughput",
    "BufferHealthAvg": "buffer_health",
    "RebufferingRatio": "rebuffering",
    "ContentRequestResponseTimesAvg": "content_request_response_times",
    "BufferFillingRateAvg": "buffer_filling_rate",
    "DroppedFramesAvg": "dropped_frames",
    "OperatingSystems": "os",
    "Platforms": "platforms",
    "ConnectionTypes": "connection_types",
}
for _stem, _metric in STAT_RPCS.items():
    setattr(LegacyStatsServicer, f"Get{_stem}", _stat_method(_metric, last=False))
    setattr(LegacyStatsServicer, f"Get{_stem}LastPoint", _stat_method(_metric, last=True))
