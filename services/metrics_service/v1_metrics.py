"""MetricsJsonService: thin adapters from the v1 metrics RPCs and Grafana helpers to JSON bodies."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

from google.api import httpbody_pb2
from google.protobuf import json_format

from edgestats.metrics.v1 import metrics_json_service_pb2  # noqa: F401 - descriptor for reflection
from edgestats.metrics.v1 import metrics_json_service_pb2_grpc as rpc
from edgestats_core.config import Settings
from edgestats_core.databases import Databases
from edgestats_core.db import Database
from edgestats_core.errors import BadRequest, FieldError, missing, not_in_enum
from edgestats_core.http_query import QueryParams
from edgestats_core.metrics import live_rows
from edgestats_core.metrics.rollup_rows import Coverage
from edgestats_core.metrics.v1_definitions import V1_METRICS, V1Metric
from edgestats_core.query import layers, planner, v1_spec
from edgestats_core.query.granularity import (
    FIXED_SECONDS,
    NAMES,
    grafana_value,
    parse_grafana_value,
)
from edgestats_core.query.result_cache import ResultCache
from edgestats_core.query.windows import Window
from edgestats_core.tenancy.interceptor import current_principal
from metrics_service import live_reads, v1_rows
from metrics_service.legacy_stats import json_body
from metrics_service.rollup_state import coverage

SERVICE = "edgestats.metrics.v1.MetricsJsonService"

# RPC name stem -> v1 metrics path; each has a Get<stem> and a GetReseller<stem> RPC.
METRIC_RPCS: dict[str, str] = {
    "Audience": "audience",
    "AudienceByOs": "audience/os",
    "AudienceByBrowser": "audience/browsers",
    "AudienceByConnectionType": "audience/connection_types",
    "AudienceByAsn": "audience/asn",
    "Traffic": "traffic",
    "OffloadPercentage": "traffic/offload/percentage",
    "Throughput": "throughput",
    "TrafficByAsn": "traffic/asn",
    "TrafficPercentageByAsn": "traffic/asn/percentage",
    "ViewingTime": "viewing_time",
    "BufferHealth": "buffer_health",
    "JoinTime": "qoe/join_time",
    "OptimalViewportPercentage": "qoe/optimal_viewport/percentage",
    "RebufferingRatio": "qoe/rebuffering/ratio",
    "BufferFillingRate": "qoe/buffer_filling_rate",
    "DroppedFrames": "qoe/dropped_frames",
}


def body_of(request) -> dict:
    """The JSON body the caller sent: set Value fields as Python values (null as None)."""
    body: dict = {}
    for field, value in request.ListFields():
        try:
            body[field.name] = json_format.MessageToDict(value)
        except (ValueError, TypeError):  # a gRPC caller's Value with no kind set
            body[field.name] = None
    return body


class V1Answers:
    """Validates a v1 metrics body and answers it with rendered rows (the JSON rows' dicts),
    through the result cache. Both faces of the metrics service ask it."""

    def __init__(self, dbs: Databases, settings: Settings) -> None:
        self.dbs = dbs
        self.settings = settings
        self.cache: ResultCache[list[dict]] = ResultCache(settings.result_cache_seconds)

    async def rows(self, body: dict, metric: V1Metric, reseller: bool) -> list[dict]:
        """The rows of `metric` for `body` (a JSON body's fields as Python values)."""
        now = self.settings.now()
        principal = current_principal()
        spec = v1_spec.parse_body(body, principal, tier=metric.tier, reseller=reseller)
        v1_spec.check_range(spec, now)
        # each database answers for the customers whose region it holds (a reseller's may
        # span regions); rows are per customer, so the answer is their union
        groups = await self.dbs.by_database(spec.customer_ids, principal.region_of)

        async def answer() -> list[dict]:
            parts = await asyncio.gather(*(
                self._rows(db, replace(spec, customer_ids=customers), metric, now)
                for db, customers in groups))
            return v1_rows.render(spec, metric, [r for rows in parts for r in rows])

        long = spec.end - spec.start >= planner.TOTALS_PREFERRED_SPAN
        ttl = self.settings.long_result_cache_seconds if long else None
        return await self.cache.get(("v1", metric.path, spec), answer, ttl)

    def granularity_options(self, start: datetime, end: datetime) -> list[dict]:
        """The Grafana granularity choices for a range (`to_date` after `from_date`)."""
        if start >= end:
            raise BadRequest([FieldError(("query", "to_date"),
                                         "to_date must be later than from_date", "value_error")])
        current_principal()
        return layers.granularity_options(start, end, self.settings.now())

    def dashboard_layer(self, start: datetime, granularity: str) -> str:
        """The layer a dashboard should query from `start` at `granularity`."""
        current_principal()
        return layers.dashboard_layer(start, granularity, self.settings.now())

    async def _rows(self, db: Database, spec: v1_spec.V1Spec, metric: V1Metric,
                    now: datetime) -> list[dict]:
        """The aggregated rows of `spec`'s customers, all held by `db`."""
        rolled, held, plan = Coverage(), None, None
        if not spec.exact_distinct and spec.data_layer != "realtime":  # may read rollups
            if metric.path in planner.LIVE_METRICS:  # the live layer may answer it
                held = await live_reads.coverage(db)
            plan = self._live_plan(spec, metric, held)
            if plan is None:
                rolled = await coverage(db, spec.start, spec.end)
        if plan is None:
            live = (held.held_from, held.upto) if held else None  # for the raw tail
            plan = planner.plan(spec, metric, now, rolled.hours, rolled.minutes, live)
        return await db.fetch(plan.sql, plan.params)

    def _live_plan(
        self, spec: v1_spec.V1Spec, metric: V1Metric, held: live_reads.LiveCoverage | None,
    ) -> planner.Plan | None:
        """The plan over the live layer when it may answer and holds the range (the last
        hour or so), else None."""
        window = Window(spec.start, spec.end, FIXED_SECONDS.get(spec.granularity, 0))
        if held is None or not planner.reads_live(spec, metric) or not live_reads.answers(
                window, held):
            return None
        filters = dict(spec.filters)
        relation, params = live_reads.relation(
            window, held, live_reads.LiveScope(spec.customer_ids, filters),
            level=live_rows.level_for(set(filters)), resolution=window.resolution_seconds,
            dimension=planner.live_dimension(spec, metric))
        return planner.live_plan(spec, metric, relation, params)


class MetricsJsonServicer(rpc.MetricsJsonServiceServicer):
    """The JSON face: the body as sent, the rows as the documented JSON array."""

    def __init__(self, answers: V1Answers) -> None:
        self.answers = answers

    async def metric(self, request, metric: V1Metric, reseller: bool) -> httpbody_pb2.HttpBody:
        return json_body(await self.answers.rows(body_of(request), metric, reseller))

    async def ListGrafanaGranularities(self, request, context):
        params = QueryParams(request, context)
        errors: list[FieldError] = []
        start = _epoch(params, "from_date", errors)
        end = _epoch(params, "to_date", errors)
        if errors:
            raise BadRequest(errors)
        return json_body(self.answers.granularity_options(start, end))  # type: ignore[arg-type]

    async def GetGrafanaDataLayer(self, request, context):
        params = QueryParams(request, context)
        errors: list[FieldError] = []
        start = _epoch(params, "from_date", errors)
        if params.get("to_date") is not None:
            _epoch(params, "to_date", errors)
        raw = params.get("granularity")
        granularity = parse_grafana_value(raw) if raw is not None else None
        if raw is None:
            errors.append(missing("query", "granularity"))
        elif granularity is None:
            errors.append(not_in_enum("query", "granularity", [grafana_value(g) for g in NAMES]))
        if errors:
            raise BadRequest(errors)
        layer = self.answers.dashboard_layer(start, granularity)  # type: ignore[arg-type]
        return json_body({"layer": layer})


def _epoch(params: QueryParams, name: str, errors: list[FieldError]) -> datetime | None:
    raw = params.get(name)
    if raw is None:
        errors.append(missing("query", name))
        return None
    try:
        seconds = int(raw.strip())
    except ValueError:
        errors.append(FieldError(("query", name), "value is not a valid integer",
                                 "type_error.integer"))
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        errors.append(FieldError(("query", name), "timestamp out of range", "value_error"))
    return None


def add_metric_rpcs(servicer: type) -> None:
    """Give `servicer` a Get<stem> and a GetReseller<stem> RPC per metric of METRIC_RPCS, each
    calling its `metric(request, metric, reseller)` (both faces of the service)."""
    def method(metric: V1Metric, reseller: bool):
        async def call(self, request, context):
            return await self.metric(request, metric, reseller)
        return call

    for stem, path in METRIC_RPCS.items():
        setattr(servicer, f"Get{stem}", method(V1_METRICS[path], reseller=False))
        setattr(servicer, f"GetReseller{stem}", method(V1_METRICS[path], reseller=True))


add_metric_rpcs(MetricsJsonServicer)
