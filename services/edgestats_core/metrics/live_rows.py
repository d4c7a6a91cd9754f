"""Live rows (issue #14): the shape of the live layer and how raw beacons become it.

beacons_live holds, per customer and 5-, 30- or 300-second bucket, the sums and counts the
legacy metrics read (`definitions.ROLLUP_SUMMARY_METRICS`, `StatMetric.rollup_expression`:
the same column names as the rollups) split by source and p2p_compatible, with the bucket's
sessions as a HyperLogLog; beacons_live_devices, per 5-, 30- or 60-second bucket, the
sessions per device dimension value and all of them (`ALL_SESSIONS`). Each bucket has rows
of four levels (`LEVELS`): the whole customer, per channel, per stream, per rendition
(channel, stream, bitrate, representation).

Used by the live roller (metrics_service.live_rollups) and by the queries that aggregate the
not-yet-rolled seconds on the fly (metrics_service.live_reads), so both produce the same rows.
"""

from __future__ import annotations

from edgestats_core.metrics.rollup_rows import HLL_LOG2M

LIVE_WIDTH = 5      # seconds: the live and 10m series resolution
COARSE_WIDTH = 30   # seconds: the 1h series resolution
MINUTE_WIDTH = 60   # seconds: v1 minute points (beacons_live_devices only)
BLOCK_WIDTH = 300   # seconds: whole 5 minutes of summaries and v1 five-minute series
# every bucket width, finest first: each coarser row merges whole rows of the one before
WIDTHS = (LIVE_WIDTH, COARSE_WIDTH, BLOCK_WIDTH)
# beacons_live_devices keeps series widths: device breakdowns are 5 s or 30 s points, and the
# whole audience (ALL_SESSIONS) of a v1 minute point is one 60-second row
DEVICE_WIDTHS = (LIVE_WIDTH, COARSE_WIDTH, MINUTE_WIDTH)
TABLE_WIDTHS = {"beacons_live": WIDTHS, "beacons_live_devices": DEVICE_WIDTHS}
# Edge rows (beacons_live only): besides its buckets, each 5-minute block [B, B + 300) has a
# row for every prefix [B, x) and every suffix [x, B + 300) of its 5-second grid, so that a
# window reads one row per group for its part of a block it starts or ends inside (a 10m
# summary: suffix, block, prefix). A row holds [time, time + width); prefixes and suffixes
# that are buckets already (widths 5 and 30 at the block's ends) are not stored twice, so
# (time, width) names one row either way, and edge rows never have a bucket width.
SCOPE = ("channel_id", "stream_id", "masked_stream_uri", "bitrate", "representation_id")
SPLIT = ("source", "p2p_compatible")
MEASURES = (
    "cdn_downlink_throughput", "p2p_downlink_throughput", "total_downlink_throughput",
    "viewing_time", "buffering_time", "playing_time", "buffer_health",
    "aggregate_buffer_filling_rate", "dropped_frames", "cdn_response_time", "p2p_response_time",
)
DEVICE_DIMENSIONS = ("os_name", "browser_name", "connection_type")
# beacons_live_devices' dimension whose one value ('') holds every session of its bucket and
# scope, whatever their source or p2p_compatible: v1 audience reads one row (and its stored
# estimate) per point instead of unions of beacons_live's source/p2p_compatible splits
ALL_SESSIONS = "all"
DEVICE_SCOPE = ("channel_id", "stream_id", "bitrate", "representation_id")

# Row levels: the scope columns a level's rows keep (the others are null). A query reads the
# coarsest level that keeps every column it filters or groups by (`level_for`): a customer's
# totals are a few rows a bucket, its per-channel rows a few per channel.
LEVELS: dict[int, tuple[str, ...]] = {
    0: (),
    1: ("channel_id",),
    2: ("channel_id", "stream_id", "masked_stream_uri"),
    3: SCOPE,
}
DEVICE_LEVELS: dict[int, tuple[str, ...]] = {
    0: (), 1: ("channel_id",), 2: ("channel_id", "stream_id"), 3: DEVICE_SCOPE,
}

# What the live layer holds (one row, none before the live roller first ran): [held_from,
# upto) is complete; upto is where it was rolled to, or its earliest late bucket.
COVERAGE_SQL = """
SELECT held_from, least(rolled_to, (SELECT min(bucket) FROM live_late_buckets)) AS upto
FROM live_progress
"""
# Distinct sessions of a group of beacons_live_devices rows (a device series point and value)
# given `siblings`, the group's row count: a lone row's stored estimate (a whole bucket of
# one value, most points), else the union of the rows' sketches (a window's edges, raw rows).
DEVICE_SESSIONS = ("coalesce(round(CASE WHEN count(*) = 1 THEN min(sessions_estimate)"
                   " ELSE hll_union_cardinality(sessions) FILTER (WHERE siblings > 1) END),"
                   " 0)::bigint")


def device_sessions_select(relation: str, bucket: str, key: str, shown: str) -> str:
    """Distinct sessions (`DEVICE_SESSIONS`) of the beacons_live_devices rows of `relation`
    per `bucket` (an SQL expression of "time") and `key` column: columns bucket, k (`shown`,
    an expression of the key) and n."""
    rows = (f"SELECT *, {bucket} AS bucket, {shown} AS k, count(*) OVER"
            f" (PARTITION BY {bucket}, {key}) AS siblings FROM {relation}")
    return f"SELECT bucket, k, {DEVICE_SESSIONS} AS n FROM ({rows}) r GROUP BY 1, 2"


# the aggregate columns of the rollup totals (rollup_rows.TOTALS_COLUMNS) a live row has
TOTALS_COLUMNS = frozenset({"beacons", "sessions",
                            *(f"{p}_{m}" for m in MEASURES for p in ("sum", "count"))})

_SESSION_HLL = f"hll_add_agg(hll_hash_text(session_id), {HLL_LOG2M})"


def level_for(columns: set[str] | frozenset[str]) -> int:
    """The coarsest level whose rows keep every scope column of `columns` (others ignored)."""
    needed = set(columns) & set(SCOPE)
    return min(level for level, kept in LEVELS.items() if needed <= set(kept))


def _bucket(width: int) -> str:
    return f"date_bin('{width} seconds', \"time\", timestamptz 'epoch')"


def _grouping(
    levels: dict[int, tuple[str, ...]], rest: tuple[str, ...], level: int | None,
) -> tuple[str, str, str]:
    """(the `level` column, the scope columns, the GROUP BY) for rows of one level, or of
    every level at once (`level` None: the roller's, one pass with grouping sets)."""
    scope = levels[max(levels)]

    def keys(kept: tuple[str, ...]) -> str:
        return ", ".join(("customer_id", "bucket", *kept, *rest))

    if level is not None:
        kept = levels[level]
        columns = ", ".join(c if c in kept else f"NULL::text AS {c}" for c in scope)
        return str(level), columns, keys(kept)
    # a level's rows are those whose deepest grouped scope column is its last one
    cases = " ".join(f"WHEN GROUPING({kept[-1]}) = 0 THEN {n}"
                     for n, kept in sorted(levels.items(), reverse=True) if kept)
    sets = ", ".join(f"({keys(kept)})" for kept in levels.values())
    return f"CASE {cases} ELSE 0 END", ", ".join(scope), f"GROUPING SETS ({sets})"


def live_select(where: str, level: int | None = None) -> str:
    """beacons_live rows (in table order) at 5-second buckets from the raw beacons matching
    `where`: of every level (`level` None, the roller's), or of one."""
    level_column, scope, group_by = _grouping(LEVELS, SPLIT, level)
    measures = ", ".join(f"sum({m}) AS sum_{m}, count({m}) AS count_{m}" for m in MEASURES)
    return f"""
    SELECT customer_id, ({level_column})::smallint AS level, {LIVE_WIDTH}::smallint AS width,
           bucket AS "time", {scope}, {", ".join(SPLIT)},
           count(*) AS beacons, {measures}, {_SESSION_HLL} AS sessions
    FROM (SELECT *, {_bucket(LIVE_WIDTH)} AS bucket FROM beacons WHERE {where}) b
    GROUP BY {group_by}
    """


def live_devices_select(
    where: str, level: int | None = None, dimensions: tuple[str, ...] = DEVICE_DIMENSIONS,
) -> str:
    """beacons_live_devices rows at 5-second buckets from the raw beacons matching `where`,
    for `dimensions` (column names of beacons, or ALL_SESSIONS, stored as the `dimension`
    value). A null value is stored as '' (with the empty ones): a bucket whose beacons have
    no value still has a (valueless) series point. The roller makes the ALL_SESSIONS rows
    from beacons_live's instead (`all_sessions_select`): the same sketches, fewer rows to
    merge than beacons to hash."""
    level_column, scope, group_by = _grouping(DEVICE_LEVELS, ("dimension", "value"), level)
    values = ", ".join(f"('{d}', {'NULL::text' if d == ALL_SESSIONS else d})"
                       for d in dimensions)
    return _with_estimate(f"""
    SELECT customer_id, ({level_column})::smallint AS level, {LIVE_WIDTH}::smallint AS width,
           bucket AS "time", {scope}, dimension, value, {_SESSION_HLL} AS sessions
    FROM (SELECT b.*, {_bucket(LIVE_WIDTH)} AS bucket, d.dimension, coalesce(d.value, '') AS value
          FROM beacons b CROSS JOIN LATERAL (VALUES {values}) AS d (dimension, value)
          WHERE {where}) b
    GROUP BY {group_by}
    """)


def all_sessions_select() -> str:
    """The ALL_SESSIONS rows of beacons_live_devices at 5-second buckets in [%(start)s,
    %(end)s), from beacons_live's 5-second rows there: per level and device scope, the union
    of the rows' sketches over their source/p2p_compatible splits (and stream URIs)."""
    return _with_estimate(f"""
    SELECT customer_id, level, width, "time", {", ".join(DEVICE_SCOPE)},
           '{ALL_SESSIONS}'::text AS dimension, ''::text AS value,
           hll_union_agg(sessions) AS sessions
    FROM beacons_live
    WHERE width = {LIVE_WIDTH} AND "time" >= %(start)s AND "time" < %(end)s
    GROUP BY customer_id, level, width, "time", {", ".join(DEVICE_SCOPE)}
    """)


def _with_estimate(select: str) -> str:
    """beacons_live_devices rows of `select` (its columns up to `sessions`) with the sketch's
    estimate, `sessions_estimate`, computed once."""
    return f"SELECT d.*, hll_cardinality(d.sessions) FROM ({select}) d"


# a beacons_live row's group (besides customer and level) and its sums merged over rows
_LIVE_KEYS = ", ".join((*SCOPE, *SPLIT))
_LIVE_MERGED = ", ".join(["sum(beacons)", *(f"sum(sum_{m}), sum(count_{m})" for m in MEASURES)])


def coarse_select(table: str, width: int = COARSE_WIDTH) -> str:
    """`width`-second rows of `table` (beacons_live or beacons_live_devices) merged from its
    rows of the next finer width (`TABLE_WIDTHS`) in [%(start)s, %(end)s)."""
    widths = TABLE_WIDTHS[table]
    finer = widths[widths.index(width) - 1]
    if table == "beacons_live":
        keys, merged = _LIVE_KEYS, _LIVE_MERGED
    else:
        keys, merged = ", ".join((*DEVICE_SCOPE, "dimension", "value")), ""
    aggregates = f"{merged + ', ' if merged else ''}hll_union_agg(sessions) AS sessions"
    select = f"""
    SELECT customer_id, level, {width}::smallint, {_bucket(width)} AS bucket,
           {keys}, {aggregates}
    FROM {table}
    WHERE width = {finer} AND "time" >= %(start)s AND "time" < %(end)s
    GROUP BY customer_id, level, bucket, {keys}
    """
    return select if table == "beacons_live" else _with_estimate(select)


def edge_select(table: str = "beacons_live") -> str:
    """The row [%(time)s, %(time)s + %(width)s seconds) of `table` merged from two adjacent
    rows named by (time, width): %(a_time)s/%(a_width)s and %(b_time)s/%(b_width)s (an edge
    row extended by a 5-second row), per customer, level and group."""
    return f"""
    SELECT customer_id, level, %(width)s::smallint, %(time)s::timestamptz, {_LIVE_KEYS},
           {_LIVE_MERGED}, hll_union_agg(sessions)
    FROM {table}
    WHERE ("time" = %(a_time)s AND width = %(a_width)s)
       OR ("time" = %(b_time)s AND width = %(b_width)s)
    GROUP BY customer_id, level, {_LIVE_KEYS}
    """
