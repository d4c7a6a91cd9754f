"""Reading the live layer (metrics_service.live_rollups): the FROM relation of a legacy live
window's query, rows of the layer where it is complete and the newest seconds aggregated on
the fly from raw beacons into the same rows (edgestats_core.metrics.live_rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from edgestats_core.db import Database
from edgestats_core.metrics.live_rows import (
    COARSE_WIDTH,
    COVERAGE_SQL,
    LIVE_WIDTH,
    live_devices_select,
    live_select,
)
from edgestats_core.query.windows import Window, ceil_to, floor_to

# the longest window the layer answers (it keeps 90 minutes: live_rollups.RETENTION)
LONGEST = timedelta(hours=1)


@dataclass(frozen=True)
class LiveCoverage:
    held_from: datetime
    upto: datetime


async def coverage(db: Database) -> LiveCoverage | None:
    rows = await db.fetch(COVERAGE_SQL)
    return LiveCoverage(rows[0]["held_from"], rows[0]["upto"]) if rows else None


@dataclass(frozen=True)
class LiveScope:
    """Whose beacons a query reads: the customers and filters (column of the live rows ->
    value: the legacy scope, v1 dimension filters)."""

    customer_ids: tuple[str, ...]
    filters: dict[str, str]


def relation(
    window: Window, held: LiveCoverage, scope: LiveScope, *, level: int, coarse: bool,
    dimension: str | None = None,
) -> tuple[str, dict]:
    """beacons_live rows (or, with `dimension`, beacons_live_devices rows of that dimension)
    holding exactly the beacons of the window in scope: rows of `level` (live_rows.LEVELS:
    the coarsest that keeps the scope's columns and what the query groups by); 30-second
    rows for the whole 30-second buckets of the window the layer holds when `coarse`
    (summaries, 30-second series), 5-second rows for the rest it holds,
    and rows aggregated from raw beacons for [held.upto, window.end) and, when the window
    starts or ends inside a 5-second bucket (v1 ranges), for that partial bucket (its row is
    timed at the bucket's start)."""
    first = ceil_to(window.start, LIVE_WIDTH)
    # whole 5-second rows up to here (a range ending inside a bucket reads that one raw)
    upto = max(floor_to(min(held.upto, window.end), LIVE_WIDTH), first)
    # the 30-second buckets read from 30-second rows (none: an empty range)
    low, high = ceil_to(first, COARSE_WIDTH), floor_to(upto, COARSE_WIDTH)
    if not coarse or high <= low:
        low = high = first
    params: dict = {"live_customers": list(scope.customer_ids), "level": level,
                    "start": window.start, "first": first, "upto": upto, "end": window.end,
                    "coarse_from": low, "coarse_to": high}
    filters = ""
    for column, value in scope.filters.items():
        filters += f" AND {column} = %(scope_{column})s"
        params[f"scope_{column}"] = value
    raw_where = ('customer_id = ANY(%(live_customers)s) AND (("time" >= %(upto)s'
                 ' AND "time" < %(end)s) OR ("time" >= %(start)s AND "time" < %(first)s))'
                 f'{filters}')
    if dimension is None:
        table, tail = "beacons_live", live_select(raw_where, level)
    else:
        table, tail = "beacons_live_devices", live_devices_select(raw_where, level, (dimension,))
        filters += " AND dimension = %(dimension)s"
        params["dimension"] = dimension
    held_rows = (
        f"SELECT * FROM {table} WHERE customer_id = ANY(%(live_customers)s)"
        " AND level = %(level)s"
        f"{filters} AND ((width = {COARSE_WIDTH}"
        ' AND "time" >= %(coarse_from)s AND "time" < %(coarse_to)s)'
        f' OR (width = {LIVE_WIDTH} AND "time" >= %(first)s AND "time" < %(upto)s'
        ' AND NOT ("time" >= %(coarse_from)s AND "time" < %(coarse_to)s)))')
    return f"({held_rows} UNION ALL {tail}) AS rows", params


def answers(window: Window, held: LiveCoverage | None) -> bool:
    """Whether the layer (holding `held`) answers the window: at most `LONGEST`, starting
    where it holds, something of it rolled (else raw beacons answer it as fast)."""
    if window.end - window.start > LONGEST or ceil_to(window.start, LIVE_WIDTH) >= window.end:
        return False
    return held is not None and held.held_from <= window.start < held.upto


async def source(
    db: Database, window: Window, scope: LiveScope, *, level: int, coarse: bool,
    dimension: str | None = None,
) -> tuple[str, dict] | None:
    """`relation` for the window, or None when the layer does not answer it (`answers`)."""
    held = await coverage(db)
    if held is None or not answers(window, held):
        return None
    return relation(window, held, scope, level=level, coarse=coarse, dimension=dimension)
