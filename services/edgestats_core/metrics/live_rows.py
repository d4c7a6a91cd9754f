"""Live rows (issue #14): the shape of the live layer and how raw beacons become it.

beacons_live holds, per customer and 5- or 30-second bucket, the sums and counts the legacy
metrics read (`definitions.ROLLUP_SUMMARY_METRICS`, `StatMetric.rollup_expression`: the same
column names as the rollups) split by source and p2p_compatible, with the bucket's sessions
as a HyperLogLog; beacons_live_devices the sessions per device dimension value. Rows with
`scoped` carry the legacy scope (channel, stream, bitrate, rendition); rows without it are
the whole customer, for unscoped queries (a few rows a bucket instead of one per scope).

Used by the live roller (metrics_service.live_rollups) and by the queries that aggregate the
not-yet-rolled seconds on the fly (metrics_service.live_reads), so both produce the same rows.
"""

from __future__ import annotations

from edgestats_core.metrics.rollup_rows import HLL_LOG2M

LIVE_WIDTH = 5      # seconds: the live and 10m series resolution
COARSE_WIDTH = 30   # seconds: the 1h series resolution
SCOPE = ("channel_id", "stream_id", "masked_stream_uri", "bitrate", "representation_id")
SPLIT = ("source", "p2p_compatible")
MEASURES = (
    "cdn_downlink_throughput", "p2p_downlink_throughput", "total_downlink_throughput",
    "viewing_time", "buffering_time", "playing_time", "buffer_health",
    "aggregate_buffer_filling_rate", "dropped_frames", "cdn_response_time", "p2p_response_time",
)
DEVICE_DIMENSIONS = ("os_name", "browser_name", "connection_type")
DEVICE_SCOPE = ("channel_id", "stream_id", "bitrate", "representation_id")

_SESSION_HLL = f"hll_add_agg(hll_hash_text(session_id), {HLL_LOG2M})"


def _bucket(width: int) -> str:
    return f"date_bin('{width} seconds', \"time\", timestamptz 'epoch')"


def _grouping(
    scope: tuple[str, ...], rest: tuple[str, ...], scoped: bool | None,
) -> tuple[str, str]:
    """(the `scoped` column, the GROUP BY) for whole-customer rows, scoped rows or both."""
    whole = ", ".join(("customer_id", "bucket", *rest))
    every = ", ".join(("customer_id", "bucket", *scope, *rest))
    if scoped is None:
        return (f"GROUPING({scope[0]}) = 0", f"GROUPING SETS (({whole}), ({every}))")
    return ("true", every) if scoped else ("false", whole)


def _scope_columns(scope: tuple[str, ...], scoped: bool | None) -> str:
    """The scope columns of a row (null on whole-customer rows)."""
    if scoped is False:
        return ", ".join(f"NULL::text AS {c}" for c in scope)
    return ", ".join(scope)


def live_select(where: str, scoped: bool | None = None) -> str:
    """beacons_live rows (in table order) at 5-second buckets from the raw beacons matching
    `where`: both kinds (`scoped` None, the roller's), or only scoped / whole-customer rows."""
    scoped_column, group_by = _grouping(SCOPE, SPLIT, scoped)
    measures = ", ".join(f"sum({m}) AS sum_{m}, count({m}) AS count_{m}" for m in MEASURES)
    return f"""
    SELECT customer_id, {scoped_column} AS scoped, {LIVE_WIDTH}::smallint AS width,
           bucket AS "time", {_scope_columns(SCOPE, scoped)}, {", ".join(SPLIT)},
           count(*) AS beacons, {measures}, {_SESSION_HLL} AS sessions
    FROM (SELECT *, {_bucket(LIVE_WIDTH)} AS bucket FROM beacons WHERE {where}) b
    GROUP BY {group_by}
    """


def live_devices_select(
    where: str, scoped: bool | None = None, dimensions: tuple[str, ...] = DEVICE_DIMENSIONS,
) -> str:
    """beacons_live_devices rows at 5-second buckets from the raw beacons matching `where`,
    for `dimensions` (column names of beacons, stored as the `dimension` value). A null value
    is stored as '' (with the empty ones): a bucket whose beacons have no value still has a
    (valueless) series point."""
    scoped_column, group_by = _grouping(DEVICE_SCOPE, ("dimension", "value"), scoped)
    values = ", ".join(f"('{d}', {d})" for d in dimensions)
    return f"""
    SELECT customer_id, {scoped_column} AS scoped, {LIVE_WIDTH}::smallint AS width,
           bucket AS "time", {_scope_columns(DEVICE_SCOPE, scoped)}, dimension, value,
           {_SESSION_HLL} AS sessions
    FROM (SELECT b.*, {_bucket(LIVE_WIDTH)} AS bucket, d.dimension, coalesce(d.value, '') AS value
          FROM beacons b CROSS JOIN LATERAL (VALUES {values}) AS d (dimension, value)
          WHERE {where}) b
    GROUP BY {group_by}
    """


def coarse_select(table: str) -> str:
    """30-second rows of `table` (beacons_live or beacons_live_devices) merged from its
    5-second rows in [%(start)s, %(end)s)."""
    if table == "beacons_live":
        keys = ", ".join((*SCOPE, *SPLIT))
        merged = ", ".join(["sum(beacons)", *(f"sum(sum_{m}), sum(count_{m})" for m in MEASURES)])
    else:
        keys, merged = ", ".join((*DEVICE_SCOPE, "dimension", "value")), ""
    aggregates = f"{merged + ', ' if merged else ''}hll_union_agg(sessions)"
    return f"""
    SELECT customer_id, scoped, {COARSE_WIDTH}::smallint, {_bucket(COARSE_WIDTH)} AS bucket,
           {keys}, {aggregates}
    FROM {table}
    WHERE width = {LIVE_WIDTH} AND "time" >= %(start)s AND "time" < %(end)s
    GROUP BY customer_id, scoped, bucket, {keys}
    """
