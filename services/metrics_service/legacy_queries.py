"""SQL for the Legacy Stats API, and rendering of its JSON rows.

Layers (docs/legacy-api.md): `live`, `10m` and `1h` read the live layer (metrics_service.
live_reads: 5- and 30-second rows, the newest seconds from raw) when it holds the window,
else raw beacons. Longer windows read the rollups for the hours rolled up inside the window,
and raw beacons (as minute rows built on the fly, `planner.source_relation`) for the rest,
with the window's exact bounds: summaries the hour rows, series of 15 minutes the minute
rows, series of an hour or a day the hour rows. A window with no rolled-up hour reads raw
beacons as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from edgestats_core.db import Database
from edgestats_core.metrics.definitions import (
    COUNT_METRICS,
    ROLLUP_SUMMARY_METRICS,
    SESSION_PARTIALS,
    SUMMARY_METRICS,
    StatMetric,
    pretty_duration,
)
from edgestats_core.metrics.live_rows import device_sessions_select, level_for
from edgestats_core.query import planner
from edgestats_core.query.windows import Window, floor_to
from metrics_service import live_reads
from metrics_service.legacy_params import LegacyQuery
from metrics_service.rollup_state import coverage

HOUR = timedelta(hours=1)
# series finer than a minute (live, 10m: 5 s; 1h: 30 s) only raw beacons can answer; a 1 h
# window never holds a whole rolled-up hour (it ends at any 5 s), so it stays on raw as well
ROLLUP_FINEST_RESOLUTION = 60
SCOPE_COLUMNS = ("channel_id", "stream_id", "bitrate", "representation_id")

# Summary levels: group keys (response key -> per-beacon expression; nulls group with "")
# and, for streams, the URI carried through both aggregation steps.
LEVELS: dict[str, dict[str, str]] = {
    "channel": {"channel_id": "coalesce(channel_id, '')"},
    "stream": {"stream_id": "coalesce(stream_id, '')"},
    "representation": {
        "bitrate": "coalesce(bitrate, '')",
        "representation_id": "coalesce(representation_id, '')",
    },
    "aggregate": {},
}
STREAM_URI = ("max(masked_stream_uri)", "coalesce(max(stream_uri), '')")


def _scope(query: LegacyQuery) -> tuple[str, dict]:
    """WHERE clause (tenant key first) and its parameters."""
    clauses = ['customer_id = %(customer_id)s', '"time" >= %(start)s', '"time" < %(end)s']
    params: dict = {
        "customer_id": query.customer_id,
        "start": query.window.start,
        "end": query.window.end,
    }
    for column in SCOPE_COLUMNS:
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = %({column})s")
            params[column] = value
    return " AND ".join(clauses), params


@dataclass(frozen=True)
class _Span:
    """What planner.source_relation reads of a V1Spec: the range."""

    start: datetime
    end: datetime


def usable_hours(window: Window, rolled: frozenset[datetime]) -> frozenset[datetime]:
    """The rolled-up hours a window may read from rollups: those wholly inside it, and the
    partial first hour when raw beacons no longer hold it (older than the raw retention, so
    only `2M`): that hour is then counted whole (the rollups' bucket is the hour)."""
    horizon = window.end - planner.RAW_RETENTION
    return frozenset(
        hour for hour in rolled
        if hour + HOUR <= window.end
        and (hour >= window.start or (hour + HOUR <= horizon and hour + HOUR > window.start))
    )


async def _rollup_source(
    db: Database, query: LegacyQuery, layer: str, totals: bool
) -> tuple[str, dict] | None:
    """The FROM relation and parameters of the rollup plan, or None when the window is read
    from raw beacons: no rolled-up hour helps, or too few of a window raw beacons still hold
    are rolled up (planner.mostly_rolled)."""

    window = query.window
    if window.resolution_seconds < ROLLUP_FINEST_RESOLUTION:
        return None
    rolled = await coverage(db, window.start, window.end)
    hours = usable_hours(window, rolled.hours)
    # minute rows of hours wholly inside the window (they are cut at its end)
    minutes = frozenset((hour, to) for hour, to in rolled.minutes if hour >= window.start)
    within_raw = window.start >= window.end - planner.RAW_RETENTION
    if not hours or (within_raw and not planner.mostly_rolled(
            window.start, window.end, hours, minutes)):
        return None  # raw beacons answer it as fast (or the rollups cannot help)
    relation, params = planner.source_relation(
        layer, _Span(window.start, window.end), hours, totals, exact_start=True, minutes=minutes)
    clauses = ["customer_id = ANY(%(customers)s)", '"time" >= %(start)s', '"time" < %(end)s']
    params |= {"customers": [query.customer_id],
               # rollup rows carry their bucket start; raw rows are cut at the exact start
               "start": floor_to(window.start, 3600), "end": window.end}
    for column in SCOPE_COLUMNS:
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = %({column})s")
            params[column] = value
    return f"{relation} WHERE {' AND '.join(clauses)}", params


def _window_seconds(query: LegacyQuery) -> float:
    """S for summaries; an empty window (CM at 00:00:00 on the 1st) holds no beacon: sums are 0."""
    return query.window.seconds or 1.0


def number(value: float | int | None) -> float | int | None:
    """JSON number: integral floats print without `.0`, like the gateway's printer."""
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return int(value)
    return value


def _metrics(row: dict) -> dict:
    out = {k: (int(row[k]) if k in COUNT_METRICS else number(row[k])) for k in SUMMARY_METRICS}
    out["total_pretty_viewing_time"] = pretty_duration(row["total_viewing_time"])
    return out


def _summary_sql(level: str, where: str) -> str:
    """Per-session partials grouped by the level's keys, then the summary metrics per group."""
    keys = LEVELS[level]
    inner = [f"{expr} AS {name}" for name, expr in keys.items()]
    outer = list(keys)
    if level == "stream":
        inner.append(f"{STREAM_URI[0]} AS stream_uri")
        outer.append(f"{STREAM_URI[1]} AS stream_uri")
    inner += [f"{expr} AS {name}" for name, expr in SESSION_PARTIALS.items()]
    outer += [f"{expr} AS {name}" for name, expr in SUMMARY_METRICS.items()]
    groups = ", ".join([*keys, "session_id"])
    sql = (
        f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM beacons"
        f" WHERE {where} GROUP BY {groups}) per_session"
    )
    if keys:
        order = ", ".join(f'{name} COLLATE "C"' for name in keys)
        sql += f" GROUP BY {', '.join(keys)} ORDER BY {order}"
    return sql


def _rollup_summary_sql(level: str, source: str) -> str:
    """The summary metrics per group of the level over rollup rows, in one step."""
    keys = LEVELS[level]
    columns = [f"{expr} AS {name}" for name, expr in keys.items()]
    if level == "stream":
        columns.append("coalesce(max(masked_stream_uri), '') AS stream_uri")
    columns += [f"{expr} AS {name}" for name, expr in ROLLUP_SUMMARY_METRICS.items()]
    sql = f"SELECT {', '.join(columns)} FROM {source}"
    if keys:
        ordinals = ", ".join(str(i + 1) for i in range(len(keys)))
        order = ", ".join(f'{name} COLLATE "C"' for name in keys)
        sql = f"SELECT * FROM ({sql} GROUP BY {ordinals}) g ORDER BY {order}"
    return sql


def _live_scope(query: LegacyQuery) -> live_reads.LiveScope:
    filters = {c: getattr(query, c) for c in SCOPE_COLUMNS if getattr(query, c) is not None}
    return live_reads.LiveScope((query.customer_id,), filters)


async def _summary_fetch(db: Database, query: LegacyQuery, level: str) -> list[dict]:
    """Summary rows of the level from the live layer or the rollups when they help, else
    from raw beacons."""
    seconds = {"bucket_seconds": _window_seconds(query)}
    scope = _live_scope(query)
    grouped = set(LEVELS[level]) | ({"masked_stream_uri"} if level == "stream" else set())
    live = await live_reads.source(db, query.window, scope, resolution=0,
                                   level=level_for(grouped | set(scope.filters)))
    if live is not None:
        relation, params = live
        return await db.fetch(_rollup_summary_sql(level, relation), {**params, **seconds})
    rolled = await _rollup_source(db, query, "historical-hour", totals=False)
    if rolled is not None:
        source, params = rolled
        return await db.fetch(_rollup_summary_sql(level, source), {**params, **seconds})
    where, params = _scope(query)
    return await db.fetch(_summary_sql(level, where), {**params, **seconds})


async def summary_rows(db: Database, query: LegacyQuery, level: str) -> list[dict]:
    """One row per group of the level, sorted by its key."""
    rows = await _summary_fetch(db, query, level)
    names = [*LEVELS[level], *(["stream_uri"] if level == "stream" else [])]
    return [{**{name: row[name] for name in names}, **_metrics(row)} for row in rows]


async def summary_aggregate(db: Database, query: LegacyQuery) -> dict:
    """The whole scope in one row keyed `aggregate` (zeros when there is no beacon)."""
    rows = await _summary_fetch(db, query, "aggregate")
    return {"aggregate": "aggregate", **_metrics(rows[0])}


def paginate(rows: list[dict], per_page: int, page: int) -> list[dict]:
    """The paginated shape: a one-element array with total_pages, page and results."""
    return [{
        "total_pages": math.ceil(len(rows) / per_page),
        "page": page,
        "results": rows[page * per_page:(page + 1) * per_page],
    }]


def epoch_ms(instant: datetime) -> int:
    return int(instant.timestamp()) * 1000


async def _last_bucket_query(db: Database, query: LegacyQuery) -> LegacyQuery | None:
    """The query narrowed to its latest bucket with data, or None when there is none."""
    where, params = _scope(query)
    rows = await db.fetch(f'SELECT max("time") AS latest FROM beacons WHERE {where}', params)
    latest = rows[0]["latest"]
    if latest is None:
        return None
    resolution = query.window.resolution_seconds
    start = floor_to(latest, resolution)
    window = type(query.window)(max(start, query.window.start), query.window.end, resolution)
    return LegacyQuery(**{**query.__dict__, "window": window})


async def stat_points(
    db: Database, query: LegacyQuery, metric: StatMetric, last: bool
) -> list[dict]:
    """One point per resolution bucket with any beacon in scope, oldest first."""
    live = await _live_points(db, query, metric)
    if live is not None:
        return live[-1:] if last else live
    rolled = await _rollup_points(db, query, metric)
    if rolled is not None:
        return rolled[-1:] if last else rolled
    if last:
        narrowed = await _last_bucket_query(db, query)
        if narrowed is None:
            return []
        query = narrowed
    where, params = _scope(query)
    if metric.group_column:
        sql = _by_group_sql(
            f"SELECT bucket, k, count(*) AS n FROM (SELECT DISTINCT {_BUCKET} AS bucket,"
            f" nullif({metric.group_column}, '') AS k, session_id FROM beacons WHERE {where})"
            " sessions GROUP BY 1, 2")
    else:
        sql = (f"SELECT {_BUCKET} AS bucket, {metric.expression(query.source)} AS value"
               f" FROM beacons WHERE {where} GROUP BY 1 ORDER BY 1")
    points = await _fetch_points(db, sql, params, query, metric)
    return points[-1:] if last else points


# the series bucket of a row: its `"time"` binned at the window's resolution
_BUCKET = "date_bin(%(resolution)s::interval, \"time\", timestamptz 'epoch')"


def _by_group_sql(rows: str) -> str:
    """Per bucket, the JSON object of each group key k to its n, from `rows` (bucket, k, n);
    null keys are left out, keys in byte order."""
    return (f"SELECT bucket, coalesce(json_object_agg(k, n ORDER BY k COLLATE \"C\")"
            f" FILTER (WHERE k IS NOT NULL), '{{}}') AS value FROM ({rows}) g"
            " GROUP BY bucket ORDER BY bucket")


async def _fetch_points(
    db: Database, sql: str, params: dict, query: LegacyQuery, metric: StatMetric
) -> list[dict]:
    """Run a series query (rows: bucket, value) and shape its points."""
    seconds = query.window.resolution_seconds
    rows = await db.fetch(sql, {**params, "resolution": f"{seconds} seconds",
                                "bucket_seconds": seconds})
    key = metric.response_key(query.source)
    return [{"datetime": epoch_ms(r["bucket"]), key: number(r["value"])} for r in rows]


async def _live_points(
    db: Database, query: LegacyQuery, metric: StatMetric
) -> list[dict] | None:
    """The series from the live layer (None when it cannot answer the window): the rollup
    form of the metric over live rows, device breakdowns over the device rows."""
    scope = _live_scope(query)
    live = await live_reads.source(
        db, query.window, scope, level=level_for(set(scope.filters)),
        resolution=query.window.resolution_seconds,
        dimension=metric.group_column)
    if live is None:
        return None
    relation, params = live
    return await _series_over(db, query, metric, relation, params, "value", live=True)


def _series_layer(query: LegacyQuery) -> str:
    """Minute rows for series of less than an hour (24h: 15 min), hour rows otherwise."""
    return "historical-hour" if query.window.resolution_seconds >= 3600 else "historical-minute"


async def _rollup_points(
    db: Database, query: LegacyQuery, metric: StatMetric
) -> list[dict] | None:
    """The series from the rollups (None when they do not help). The dimensionless totals
    answer metrics without a breakdown at customer scope."""
    totals = metric.reads_totals and all(getattr(query, c) is None for c in SCOPE_COLUMNS)
    rolled = await _rollup_source(db, query, _series_layer(query), totals)
    if rolled is None:
        return None
    source, params = rolled
    return await _series_over(db, query, metric, source, params, metric.group_column or "")


async def _series_over(
    db: Database, query: LegacyQuery, metric: StatMetric, relation: str, params: dict,
    key: str, live: bool = False,
) -> list[dict]:
    """The metric's rollup form per series bucket over `relation` (rollup or, `live`, live
    rows); device breakdowns per value of its `key` column (over live device rows from their
    stored estimates where a point is one row: live_rows.DEVICE_SESSIONS)."""
    assert metric.rollup_expression is not None
    expression = metric.rollup_expression(query.source)
    if metric.group_column and live:
        sql = _by_group_sql(device_sessions_select(relation, _BUCKET, key, f"nullif({key}, '')"))
    elif metric.group_column:
        sql = _by_group_sql(f"SELECT {_BUCKET} AS bucket, nullif({key}, '') AS k,"
                            f" {expression} AS n FROM {relation} GROUP BY 1, 2")
    else:
        sql = (f"SELECT {_BUCKET} AS bucket, {expression} AS value FROM {relation}"
               " GROUP BY 1 ORDER BY 1")
    return await _fetch_points(db, sql, params, query, metric)
