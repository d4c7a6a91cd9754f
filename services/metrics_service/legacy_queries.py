"""SQL for the Legacy Stats API over raw beacons, and rendering of its JSON rows."""

from __future__ import annotations

import math
from datetime import datetime

from edgestats_core.db import Database
from edgestats_core.metrics.definitions import (
    COUNT_METRICS,
    SESSION_PARTIALS,
    SUMMARY_METRICS,
    StatMetric,
    pretty_duration,
)
from edgestats_core.query.windows import floor_to
from metrics_service.legacy_params import LegacyQuery

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
    for column in ("channel_id", "stream_id", "bitrate", "representation_id"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = %({column})s")
            params[column] = value
    return " AND ".join(clauses), params


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


async def summary_rows(db: Database, query: LegacyQuery, level: str) -> list[dict]:
    """One row per group of the level, sorted by its key."""
    where, params = _scope(query)
    rows = await db.fetch(
        _summary_sql(level, where), {**params, "bucket_seconds": _window_seconds(query)}
    )
    names = [*LEVELS[level], *(["stream_uri"] if level == "stream" else [])]
    return [{**{name: row[name] for name in names}, **_metrics(row)} for row in rows]


async def summary_aggregate(db: Database, query: LegacyQuery) -> dict:
    """The whole scope in one row keyed `aggregate` (zeros when there is no beacon)."""
    where, params = _scope(query)
    rows = await db.fetch(
        _summary_sql("aggregate", where), {**params, "bucket_seconds": _window_seconds(query)}
    )
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
    if last:
        narrowed = await _last_bucket_query(db, query)
        if narrowed is None:
            return []
        query = narrowed
    where, params = _scope(query)
    params |= {"resolution": f"{query.window.resolution_seconds} seconds",
               "bucket_seconds": query.window.resolution_seconds}
    bucket = "date_bin(%(resolution)s::interval, \"time\", timestamptz 'epoch')"
    key = metric.response_key(query.source)
    if metric.group_column:
        sql = (
            f"SELECT bucket, coalesce(json_object_agg(k, n ORDER BY k COLLATE \"C\")"
            f" FILTER (WHERE k IS NOT NULL), '{{}}')"
            f" AS value FROM (SELECT bucket, k, count(*) AS n FROM (SELECT DISTINCT"
            f" {bucket} AS bucket, nullif({metric.group_column}, '') AS k, session_id"
            f" FROM beacons WHERE {where}) sessions GROUP BY 1, 2) g"
            " GROUP BY bucket ORDER BY bucket"
        )
    else:
        sql = (
            f"SELECT {bucket} AS bucket, {metric.expression(query.source)} AS value"
            f" FROM beacons WHERE {where} GROUP BY 1 ORDER BY 1"
        )
    rows = await db.fetch(sql, params)
    points = [{"datetime": epoch_ms(r["bucket"]), key: number(r["value"])} for r in rows]
    return points[-1:] if last else points
