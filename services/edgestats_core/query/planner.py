"""The v1 query planner: data source, bucket SQL and composed query for a V1Spec (pure).

`plan(spec, metric, now)` never reads a clock; the servicer passes `now`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from edgestats_core.metrics.definitions import V1Metric
from edgestats_core.query.granularity import CALENDAR_MONTHS, FIXED_SECONDS
from edgestats_core.query.v1_spec import V1Spec


@dataclass(frozen=True)
class Plan:
    """SQL with named parameters; rows are (bucket, customer_id[, grp], aggregates…)."""

    sql: str
    params: dict
    layer: str


def choose_layer(spec: V1Spec, now: datetime) -> str:
    """The layer that answers: the one named, else `realtime` (raw beacons) for now.

    Once rollups exist (issue #3) this picks the cheapest layer able to answer and
    `source_relation` merges the not-yet-rolled tail from raw beacons.
    """
    return spec.data_layer or "realtime"


def source_relation(layer: str, spec: V1Spec, now: datetime) -> str:
    """The FROM clause the metric aggregates read: the one place a data source is chosen.

    Every layer reads raw `beacons` today (exact for sums, counts, distinct counts and
    quantiles). To serve `historical-minute`/`historical-hour` from rollups, return a
    relation exposing the beacon columns the metric uses (or rollup partials together with
    metric definitions over them), UNION ALL the raw tail after the last rolled-up hour.
    """
    return "beacons"


def bucket_sql(granularity: str) -> str:
    """The bucket start of `"time"` as a UTC timestamp (aligned as in buckets.align)."""
    utc = "(\"time\" AT TIME ZONE 'UTC')"
    if granularity == "week":
        return f"date_trunc('week', {utc})"   # ISO weeks start on Monday
    if granularity in CALENDAR_MONTHS:
        unit = {"month": "month", "quarter": "quarter", "year": "year"}[granularity]
        return f"date_trunc('{unit}', {utc})"
    seconds = FIXED_SECONDS[granularity]
    return f"date_bin('{seconds} seconds'::interval, {utc}, timestamp '1970-01-01')"


def _where(spec: V1Spec) -> tuple[str, dict]:
    clauses = ["customer_id = ANY(%(customers)s)", '"time" >= %(start)s', '"time" < %(end)s']
    params: dict = {"customers": list(spec.customer_ids), "start": spec.start, "end": spec.end}
    for i, (column, value) in enumerate(spec.filters):
        clauses.append(f"{column} = %(f{i})s")
        params[f"f{i}"] = value
    return " AND ".join(clauses), params


def plan(spec: V1Spec, metric: V1Metric, now: datetime) -> Plan:
    """The query of one metric over the spec's beacons, grouped by bucket and customer."""
    layer = choose_layer(spec, now)
    where, params = _where(spec)
    source = source_relation(layer, spec, now)
    keys = [f"{bucket_sql(spec.granularity)} AS bucket", "customer_id"]
    names = ["bucket", "customer_id"]
    if metric.group:
        keys.append(f"nullif({metric.group[1]}, '') AS grp")
        names.append("grp")
    outer = [f"{expr} AS {name}" for name, expr in metric.aggregates.items()]
    by = ", ".join(names)
    if metric.session_partials:
        inner = keys + ["session_id"] + [
            f"{expr} AS {name}" for name, expr in metric.session_partials.items()]
        sql = (f"SELECT {by}, {', '.join(outer)} FROM (SELECT {', '.join(inner)}"
               f" FROM {source} WHERE {where} GROUP BY {by}, session_id) per_session"
               f" GROUP BY {by}")
    else:
        sql = f"SELECT {', '.join(keys + outer)} FROM {source} WHERE {where} GROUP BY {by}"
    if metric.group:
        totals = [f"sum({column}) OVER (PARTITION BY bucket, customer_id) AS {name}"
                  for name, column in (metric.bucket_totals or {}).items()]
        sql = (f"SELECT * FROM (SELECT *{''.join(', ' + t for t in totals)} FROM ({sql}) g)"
               " grouped WHERE grp IS NOT NULL")
    return Plan(sql, params, layer)
