"""Rollup rows (CONTRACT §4): the shape of the historical layers and how raw beacons become it.

Used by the hourly roll-up (metrics_service.rollups) and by queries that read not-yet-rolled
hours on the fly (edgestats_core.query.planner), so both produce the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from edgestats_core.beacon_columns import DIMENSIONS, MEASURES
from edgestats_core.metrics.v1_definitions import VIEWPORT_OPTIMAL, VIEWPORT_QUALIFIES

# HLL precision: log2m 14 has a 0.8 % standard error (CONTRACT §5 asks for 2 %).
HLL_LOG2M = 14
# t-digest compression: at 100 the extension keeps ~40 centroids, and a join-time digest of a
# few dozen sessions repeated every minute they play (clustered values) was 5 % rank off at
# the median, 200 still 2.3 % at p75 of merged minutes; 500 keeps it within 2 %.
TDIGEST_COMPRESSION = 500

DIMS = ", ".join(c.name for c in DIMENSIONS)
# every column of beacons_minute / beacons_hour, in table order
COLUMNS = ", ".join([
    "customer_id", '"time"', *(c.name for c in DIMENSIONS), "beacons",
    *(f"{p}_{m.name}" for m in MEASURES for p in ("sum", "count", "min", "max")),
    "sessions", "viewport_sessions", "optimal_sessions", "join_time", "downlink_speed",
])
# every column of beacons_minute_totals / beacons_hour_totals (no dimension but source)
TOTALS_COLUMNS = ", ".join([
    "customer_id", '"time"', "source", "beacons",
    *(f"{p}_{m.name}" for m in MEASURES for p in ("sum", "count", "min", "max")),
    "sessions", "viewport_sessions", "optimal_sessions", "join_time", "downlink_speed",
])
TOTALS_DIMENSIONS = frozenset({"source"})
# What the rollups hold of the hours of [%(start)s, %(end)s), one row per hour:
# (hour, NULL) when the hourly roll-up published it (both layers) and no later ingest marked
# it stale (rollup_stale); (hour, minutes_to) when the minute roller (metrics_service.
# minute_rollups) rolled [hour, minutes_to) into the minute layer only, or the hour is
# published but stale: its minute rows hold [hour, minutes_to), up to its earliest late
# minute. Whatever no row names is read from raw beacons.
COVERAGE_SQL = """
SELECT hour, NULL::timestamptz AS minutes_to FROM rollup_runs r
WHERE hour >= date_trunc('hour', %(start)s::timestamptz) AND hour < %(end)s
  AND NOT EXISTS (SELECT FROM rollup_stale s WHERE s.hour = r.hour)
UNION ALL
SELECT hour, least(rolled_to, (SELECT min(minute) FROM rollup_late_minutes l
                               WHERE l.minute >= p.hour AND l.minute < p.rolled_to))
FROM rollup_progress p
WHERE hour >= date_trunc('hour', %(start)s::timestamptz) AND hour < %(end)s
  AND rolled_to > hour AND (NOT EXISTS (SELECT FROM rollup_runs r WHERE r.hour = p.hour)
                            OR EXISTS (SELECT FROM rollup_stale s WHERE s.hour = p.hour))
"""


@dataclass(frozen=True)
class Coverage:
    """What the rollups hold of a range (COVERAGE_SQL): `hours` published in both layers,
    `minutes` as (hour, minutes_to) pairs: [hour, minutes_to) in the minute layer only."""

    hours: frozenset[datetime] = frozenset()
    minutes: frozenset[tuple[datetime, datetime]] = frozenset()

    @classmethod
    def of(cls, rows: Iterable[Sequence]) -> Coverage:
        """From COVERAGE_SQL rows (hour, minutes_to)."""
        rows = list(rows)
        return cls(frozenset(hour for hour, to in rows if to is None),
                   frozenset((hour, to) for hour, to in rows if to is not None and to > hour))


_SESSION_HLL = f"hll_add_agg(hll_hash_text(session_id), {HLL_LOG2M})"
# the viewport rules as parts of a statement with %(name)s parameters
_QUALIFIES = f"({VIEWPORT_QUALIFIES})".replace("%", "%%")
_OPTIMAL = f"({VIEWPORT_OPTIMAL})".replace("%", "%%")


def session_rows_select(where: str) -> str:
    """Per-session partials of the raw beacons matching `where`: one row per customer, minute,
    dimension values and session, with its sums, counts, minima, maxima, its viewport flags,
    its `downlink_speed` t-digest and its `join_time` (see minute_select). What minute_select
    groups; the roll-ups group it twice in one statement (minute rows and minute totals).

    The per-session t-digest is built from an array (`tdigest_add`), not by the `tdigest`
    aggregate: the aggregate allocates its whole buffer (~80 KB at compression 500) for each
    group, and a minute has a group per session: 243 ms of a 22 k-beacon minute's 333 ms
    went to that alone. Same digests (a few values are kept as they are either way)."""
    partials = ", ".join(
        f"sum({m.name}) AS sum_{m.name}, count({m.name}) AS count_{m.name},"
        f" min({m.name}) AS min_{m.name}, max({m.name}) AS max_{m.name}"
        for m in MEASURES
    )
    return f"""
        SELECT *, CASE WHEN join_at = max(join_at) OVER minute_session
                       THEN max(session_join) OVER minute_session END AS join_time
        FROM (
            SELECT customer_id, date_trunc('minute', "time") AS "time", {DIMS}, session_id,
                   count(*) AS beacons, {partials},
                   max(starting_time) FILTER (WHERE player_state = 'playing') AS session_join,
                   max("time") FILTER (WHERE player_state = 'playing'
                                       AND starting_time IS NOT NULL) AS join_at,
                   bool_or({_QUALIFIES}) AS viewport,
                   bool_or({_QUALIFIES} AND {_OPTIMAL}) AS optimal,
                   tdigest_add(NULL::tdigest, array_agg(downlink_speed)
                               FILTER (WHERE downlink_speed IS NOT NULL),
                               {TDIGEST_COMPRESSION}) AS downlink_speed
            FROM beacons
            WHERE {where}
            GROUP BY customer_id, 2, {DIMS}, session_id
        ) per_row
        WINDOW minute_session AS (PARTITION BY customer_id, "time", session_id)
    """


def sessions_merged(source: str, dims: str = DIMS) -> str:
    """Minute rows of `source` (session_rows_select's rows) per customer, minute and `dims`:
    DIMS gives the beacons_minute columns, "source" the beacons_minute_totals ones.

    The sketches are built with small states: a minute row holds a few sessions, and the
    libraries' aggregates allocate ~80-100 KB per group (hashed, a minute of 90 groups took
    26 ms there): join times from an array, session sketches as pairwise unions of one-session
    sketches (`hll_merge`) and downlink digests as pairwise unions (`tdigest_merge`). The
    totals (a few groups of thousands of sessions) keep `hll_add_agg` and `tdigest(tdigest)`,
    which hold one unpacked state per group instead of packing it at every row."""
    totals = ", ".join(
        f"sum(sum_{m.name}) AS sum_{m.name}, sum(count_{m.name}) AS count_{m.name},"
        f" min(min_{m.name}) AS min_{m.name}, max(max_{m.name}) AS max_{m.name}"
        for m in MEASURES
    )
    if dims == DIMS:
        session = f"hll_merge(hll_add(hll_empty({HLL_LOG2M}), hll_hash_text(session_id)))"
        downlink = "tdigest_merge(downlink_speed)"
    else:
        session, downlink = _SESSION_HLL, "tdigest(downlink_speed)"
    return f"""
    SELECT customer_id, "time", {dims}, sum(beacons) AS beacons, {totals},
           {session} AS sessions,
           {session} FILTER (WHERE viewport) AS viewport_sessions,
           {session} FILTER (WHERE optimal) AS optimal_sessions,
           tdigest_add(NULL::tdigest, array_agg(join_time) FILTER (WHERE join_time IS NOT NULL),
                       {TDIGEST_COMPRESSION}) AS join_time,
           {downlink} AS downlink_speed
    FROM {source}
    GROUP BY customer_id, "time", {dims}
    """


def minute_select(where: str, dims: str = DIMS) -> str:
    """Minute rollup rows (the beacons_minute columns; with `dims` "source" the
    beacons_minute_totals ones) aggregated from the raw beacons matching `where`: per-session
    partials first (session_rows_select), so the viewport flags are per session. Also the
    on-the-fly source of not-yet-rolled hours.

    Join time: a session adds exactly one value per minute, its maximum StartingTime over
    all its playing beacons of the minute, to the sketch of one row: the row of its last
    playing beacon with a known StartingTime (beacons of a session have distinct times, so
    that row is unique). A session that changes rendition, source or any other dimension
    inside a minute therefore counts once, under the dimensions it had last."""
    return sessions_merged(f"({session_rows_select(where)}) per_session", dims)


def merged_select(source: str, bucket: str, dims: str, small_groups: bool = False) -> str:
    """Rollup rows of `source` (a table or subquery with rollup columns) merged per customer,
    `bucket` and `dims`: sums of sums and counts, minima, maxima, sketch unions. Builds the
    hour rows from minute rows and the dimensionless totals from either. `small_groups`
    (groups of a few rows: hour rows from minute rows) folds the sketches pairwise
    (`hll_merge`, `tdigest_merge`, migration 015) instead of through the libraries'
    aggregates, whose ~100 KB state per group costs more than a few unions."""
    totals = ", ".join(
        f"sum(sum_{m.name}), sum(count_{m.name}), min(min_{m.name}), max(max_{m.name})"
        for m in MEASURES
    )
    hll, digest = ("hll_merge", "tdigest_merge") if small_groups else ("hll_union_agg", "tdigest")
    return f"""
    SELECT customer_id, {bucket}, {dims}, sum(beacons), {totals},
           {hll}(sessions), {hll}(viewport_sessions),
           {hll}(optimal_sessions), {digest}(join_time), {digest}(downlink_speed)
    FROM {source}
    GROUP BY customer_id, 2, {dims}
    """


def _lean_aggregates() -> dict[str, str]:
    """Each aggregate column of TOTALS_COLUMNS as one flat aggregate over raw beacons: a
    session is in the viewport/optimal sketch when one of its beacons qualifies (as in
    minute_select), but `join_time` (a per-session maximum) is null."""
    out = {"beacons": "count(*)"}
    for m in MEASURES:
        for part in ("sum", "count", "min", "max"):
            out[f"{part}_{m.name}"] = f"{part}({m.name})"
    out |= {
        "sessions": _SESSION_HLL,
        "viewport_sessions": f"{_SESSION_HLL} FILTER (WHERE {_QUALIFIES})",
        "optimal_sessions": f"{_SESSION_HLL} FILTER (WHERE {_QUALIFIES} AND {_OPTIMAL})",
        "join_time": "NULL::tdigest",
        "downlink_speed": f"tdigest(downlink_speed, {TDIGEST_COMPRESSION})",
    }
    return out


# the aggregate columns of the totals, in table order, and their flat form over raw beacons
LEAN_AGGREGATES = _lean_aggregates()


def lean_totals_select(
    where: str, unit: str, columns: tuple[str, ...] | None = None, not_before: str | None = None,
) -> str:
    """Totals rows per customer, `unit` ('minute' or 'hour') and source, aggregated from the
    raw beacons matching `where` in one flat pass (LEAN_AGGREGATES): a few times cheaper per
    beacon than minute_select. For the not-yet-rolled tail of queries that do not read
    join_time. `columns`: only these aggregate columns (default: all, TOTALS_COLUMNS);
    `not_before`: an instant the row time is raised to when the unit starts earlier."""
    names = columns if columns is not None else tuple(LEAN_AGGREGATES)
    aggregates = ", ".join(f"{LEAN_AGGREGATES[name]} AS {name}" for name in names)
    row_time = f"date_trunc('{unit}', \"time\")"
    if not_before is not None:
        row_time = f"greatest({row_time}, {not_before})"
    return f"""
    SELECT customer_id, {row_time} AS "time", source, {aggregates}
    FROM beacons
    WHERE {where}
    GROUP BY customer_id, 2, source
    """
