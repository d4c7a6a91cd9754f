"""Reading the live layer (metrics_service.live_rollups): the FROM relation of a legacy live
window's query, rows of the layer where it is complete and the newest seconds aggregated on
the fly from raw beacons into the same rows (edgestats_core.metrics.live_rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from edgestats_core.db import Database
from edgestats_core.metrics.live_rows import (
    BLOCK_WIDTH,
    COVERAGE_SQL,
    DEVICE_WIDTHS,
    LIVE_WIDTH,
    WIDTHS,
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


def row_spans(
    first: datetime, upto: datetime, widths: tuple[int, ...] = WIDTHS,
) -> list[tuple[int, datetime, datetime]]:
    """[first, upto) (whole 5-second buckets) as the fewest rows of `widths` (bucket widths,
    finest first, the first 5): (width, start, end) spans of rows of that width. With
    5-minute rows, a range that starts or ends on a block's end reads the block's edge rows
    (live_rows): 00:35–10:35 is a suffix row for 00:35–05:00, a block row, a prefix row for
    10:00–10:35. Otherwise the coarsest width's whole buckets fill the middle and finer ones
    the edges (00:35–04:35: 5-second rows for 00:35–01:00, 30-second rows for 01:00–04:30, a
    5-second row for 04:30–04:35).
    """
    if first >= upto:
        return []
    width, finer = widths[-1], widths[:-1]
    if not finer:
        return [(width, first, upto)]
    low, high = ceil_to(first, width), floor_to(upto, width)
    if width == BLOCK_WIDTH and low <= high:  # not strictly inside one block: edge rows
        return [span for span in ((int((low - first).total_seconds()), first, low),
                                  (width, low, high),
                                  (int((upto - high).total_seconds()), high, upto))
                if span[1] < span[2]]
    if low >= high:
        return row_spans(first, upto, finer)
    return [*row_spans(first, low, finer), (width, low, high), *row_spans(high, upto, finer)]


def relation(
    window: Window, held: LiveCoverage, scope: LiveScope, *, level: int, resolution: int,
    dimension: str | None = None,
) -> tuple[str, dict]:
    """beacons_live rows (or, with `dimension`, beacons_live_devices rows of that dimension)
    holding exactly the beacons of the window in scope: rows of `level` (live_rows.LEVELS:
    the coarsest that keeps the scope's columns and what the query groups by); for what the
    layer holds, the fewest rows of the widths that divide `resolution` (the series bucket,
    0 for one bucket: summaries), e.g. for a 10m summary a block's suffix, a block and a
    block's prefix (`row_spans`); and rows aggregated from raw beacons
    for [held.upto, window.end) and, when the window starts or ends inside a 5-second bucket
    (v1 ranges), for that partial bucket (its row is timed at the bucket's start); none when
    the layer holds the whole window."""
    first = ceil_to(window.start, LIVE_WIDTH)
    # whole 5-second rows up to here (a range ending inside a bucket reads that one raw)
    upto = max(floor_to(min(held.upto, window.end), LIVE_WIDTH), first)
    widths = tuple(w for w in (DEVICE_WIDTHS if dimension else WIDTHS) if resolution % w == 0)
    assert widths[:1] == (LIVE_WIDTH,), "series buckets are whole 5 seconds"
    params: dict = {"live_customers": list(scope.customer_ids), "level": level,
                    "start": window.start, "first": first, "upto": upto, "end": window.end}
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
    spans = []
    for n, (width, low, high) in enumerate(row_spans(first, upto, widths)):
        # the rows starting in [low, high - width]: one for an edge row
        spans.append(f'(width = {width} AND "time" >= %(from_{n})s AND "time" <= %(last_{n})s)')
        params |= {f"from_{n}": low, f"last_{n}": high - timedelta(seconds=width)}
    held_rows = (
        f"SELECT * FROM {table} WHERE customer_id = ANY(%(live_customers)s)"
        f" AND level = %(level)s{filters} AND ({' OR '.join(spans) or 'false'})")
    if upto >= window.end and first == window.start:  # nothing to read raw: no raw scan to plan
        return f"({held_rows}) AS rows", params
    return f"({held_rows} UNION ALL {tail}) AS rows", params


def answers(window: Window, held: LiveCoverage | None) -> bool:
    """Whether the layer (holding `held`) answers the window: at most `LONGEST`, starting
    where it holds, something of it rolled (else raw beacons answer it as fast)."""
    if window.end - window.start > LONGEST or ceil_to(window.start, LIVE_WIDTH) >= window.end:
        return False
    return held is not None and held.held_from <= window.start < held.upto


async def source(
    db: Database, window: Window, scope: LiveScope, *, level: int, resolution: int,
    dimension: str | None = None,
) -> tuple[str, dict] | None:
    """`relation` for the window, or None when the layer does not answer it (`answers`)."""
    held = await coverage(db)
    if held is None or not answers(window, held):
        return None
    return relation(window, held, scope, level=level, resolution=resolution,
                    dimension=dimension)
