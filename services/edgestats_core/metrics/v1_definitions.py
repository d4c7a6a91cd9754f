"""The Edge Analytics v1 metric formulas (CONTRACT §5, §6): SQL aggregates over raw beacons
and the same aggregates over rollup rows, with the functions that turn them into row values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from edgestats_core.metrics.definitions import distinct_sessions, ratio, rolled_avg

# A v1 metric is SQL aggregates per (bucket, customer[, group]) and a `finish` turning one
# aggregated row (None for an empty bucket) and the bucket's full length S into the row's
# values, in the documented key order. Metrics with `session_partials` aggregate in two
# steps: first one row per (bucket, customer[, group], session) of those partials, then
# `aggregates` over them (distinct sessions become count(*), join time a quantile over
# per-session values).

# A beacon counts for the optimal viewport when playing or buffering with a known resolution;
# it is optimal when the viewport is at most 1 % larger than the video (either side) or it
# plays the top rendition ("1 of N": renditions are numbered from the best).
VIEWPORT_QUALIFIES = (
    "player_state IN ('playing', 'buffering')"
    " AND video_resolution_width > 0 AND video_resolution_height > 0"
)
VIEWPORT_OPTIMAL = (
    "((viewport_height - video_resolution_height)::float8 / video_resolution_height <= 0.01"
    " OR (viewport_width - video_resolution_width)::float8 / video_resolution_width <= 0.01"
    " OR left(representation_id, 4) = '1 of')"
)
JOIN_TIME_QUANTILES = (0.25, 0.5, 0.75, 0.95)
BYTES_PER_KBIT = 125


def _zero(value: float | None) -> float:
    return 0.0 if value is None else value


def _pct(part: float | None, whole: float | None) -> float:
    """100 × part ÷ whole, 0 when the whole is 0 or nothing."""
    return 100.0 * part / whole if part is not None and whole else 0.0


def _optimal(row: dict | None, _: float) -> dict:
    sessions = row["sessions"] if row else 0
    if not sessions:
        return {"optimal_percentage": None, "suboptimal_percentage": None}
    optimal = 100.0 * row["optimal_sessions"] / sessions  # type: ignore[index]
    return {"optimal_percentage": optimal, "suboptimal_percentage": 100.0 - optimal}


def _join_time(row: dict | None, _: float) -> dict:
    values = (row or {}).get("quantiles") or [None] * 4
    return dict(zip(("p25", "median", "p75", "p95"), values, strict=True))


@dataclass(frozen=True)
class V1Metric:
    """One v1 metrics path: tier, grouping column, SQL aggregates and the row builder."""

    path: str
    tier: str
    keys: tuple[str, ...]                      # metric keys of a row, in order
    aggregates: dict[str, str]
    finish: Callable[[dict | None, float], dict]
    session_partials: dict[str, str] | None = None
    group: tuple[str, str] | None = None       # (response key, beacon column)
    # grouped metrics that also need the bucket's total over every group
    bucket_totals: dict[str, str] | None = None
    counts: frozenset[str] = frozenset()       # keys printed as JSON integers
    # the same aggregates over rollup rows (historical layers): sums of partial sums,
    # sketch unions for distinct sessions and quantiles
    rollup_aggregates: dict[str, str] | None = None


def _audience_by(path: str, key: str, column: str) -> V1Metric:
    return V1Metric(
        path, "advanced", ("audience",), {"audience": "count(DISTINCT session_id)"},
        lambda row, s: {"audience": row["audience"] if row else 0},
        group=(key, column), counts=frozenset({"audience"}),
    )


def _sums(keys: dict[str, str], scale: str = "") -> dict[str, str]:
    return {key: f"sum({column}){scale}" for key, column in keys.items()}


_KBIT = {"cdn": "cdn_downlink_throughput", "p2p": "p2p_downlink_throughput",
         "total": "total_downlink_throughput"}

_V1_METRICS: dict[str, V1Metric] = {m.path: m for m in (
    V1Metric(
        "audience", "lite", ("audience",), {"audience": "count(DISTINCT session_id)"},
        lambda row, s: {"audience": row["audience"] if row else 0},
        counts=frozenset({"audience"}),
    ),
    _audience_by("audience/os", "os_name", "os_name"),
    _audience_by("audience/browsers", "browser_name", "browser_name"),
    _audience_by("audience/connection_types", "connection_type", "connection_type"),
    _audience_by("audience/asn", "asn_name", "as_name"),
    V1Metric(
        "traffic", "lite", ("cdn_traffic", "p2p_traffic", "total_traffic"),
        _sums({f"{k}_traffic": c for k, c in _KBIT.items()}, f" * {BYTES_PER_KBIT}"),
        lambda row, s: {f"{k}_traffic": _zero((row or {}).get(f"{k}_traffic")) for k in _KBIT},
    ),
    V1Metric(
        "traffic/offload/percentage", "lite", ("offload_percentage",),
        _sums({"p2p": _KBIT["p2p"], "total": _KBIT["total"]}),
        lambda row, s: {"offload_percentage": _pct((row or {}).get("p2p"),
                                                   (row or {}).get("total"))},
    ),
    V1Metric(
        "throughput", "lite", ("cdn_throughput", "p2p_throughput", "total_throughput"),
        _sums(_KBIT),
        lambda row, s: {f"{k}_throughput": _zero((row or {}).get(k)) / s for k in _KBIT},
    ),
    V1Metric(
        "traffic/asn", "advanced", ("traffic",),
        {"traffic": f"coalesce(sum(total_downlink_throughput), 0) * {BYTES_PER_KBIT}"},
        lambda row, s: {"traffic": row["traffic"] if row else 0.0},
        group=("asn_name", "as_name"),
    ),
    V1Metric(
        "traffic/asn/percentage", "advanced", ("traffic_percentage",),
        {"traffic": "coalesce(sum(total_downlink_throughput), 0)"},
        lambda row, s: {"traffic_percentage": _pct((row or {}).get("traffic"),
                                                   (row or {}).get("bucket_traffic"))},
        group=("asn_name", "as_name"),
        bucket_totals={"bucket_traffic": "traffic"},
    ),
    V1Metric(
        "viewing_time", "lite", ("cdn_viewing_time", "p2p_viewing_time", "total_viewing_time"),
        {"cdn_viewing_time": "sum(viewing_time) FILTER (WHERE source = 'cdn')",
         "p2p_viewing_time": "sum(viewing_time) FILTER (WHERE source = 'p2p')",
         "total_viewing_time": "sum(viewing_time)"},
        lambda row, s: {k: _zero((row or {}).get(k)) for k in
                        ("cdn_viewing_time", "p2p_viewing_time", "total_viewing_time")},
    ),
    V1Metric(
        "buffer_health", "lite", ("avg_buffer_health",),
        {"avg_buffer_health": "avg(buffer_health)"},
        lambda row, s: {"avg_buffer_health": (row or {}).get("avg_buffer_health")},
    ),
    V1Metric(
        "qoe/join_time", "lite", ("p25", "median", "p75", "p95"),
        # exact (linear interpolation) over raw sessions; rollups will use a t-digest
        {"quantiles": f"percentile_cont(ARRAY{list(JOIN_TIME_QUANTILES)}::float8[])"
                      " WITHIN GROUP (ORDER BY join_ms)"},
        _join_time,
        session_partials={
            "join_ms": "max(starting_time) FILTER (WHERE player_state = 'playing')"},
    ),
    V1Metric(
        "qoe/optimal_viewport/percentage", "lite",
        ("optimal_percentage", "suboptimal_percentage"),
        {"sessions": "count(*) FILTER (WHERE qualifies)",
         "optimal_sessions": "count(*) FILTER (WHERE optimal)"},
        _optimal,
        session_partials={
            "qualifies": f"coalesce(bool_or({VIEWPORT_QUALIFIES}), false)",
            "optimal": f"coalesce(bool_or(({VIEWPORT_QUALIFIES}) AND {VIEWPORT_OPTIMAL}), false)",
        },
    ),
    V1Metric(
        "qoe/rebuffering/ratio", "advanced", ("rebuffering_ratio",),
        {"rebuffering_ratio": ratio("buffering_time", "playing_time", "")},
        lambda row, s: {"rebuffering_ratio": _zero((row or {}).get("rebuffering_ratio"))},
    ),
    V1Metric(
        "qoe/buffer_filling_rate", "advanced", ("avg_buffer_filling_rate",),
        {"avg_buffer_filling_rate": "avg(aggregate_buffer_filling_rate)"},
        lambda row, s: {"avg_buffer_filling_rate": (row or {}).get("avg_buffer_filling_rate")},
    ),
    V1Metric(
        "qoe/dropped_frames", "advanced", ("avg_dropped_frames",),
        {"avg_dropped_frames": "avg(dropped_frames::float8)"},
        lambda row, s: {"avg_dropped_frames": (row or {}).get("avg_dropped_frames")},
    ),
)}


# --- the v1 aggregates over rollup rows (historical layers, CONTRACT §4) -------------------

_DISTINCT_SESSIONS = distinct_sessions()
_ROLLUP_AGGREGATES: dict[str, dict[str, str]] = {
    "audience": {"audience": _DISTINCT_SESSIONS},
    "audience/os": {"audience": _DISTINCT_SESSIONS},
    "audience/browsers": {"audience": _DISTINCT_SESSIONS},
    "audience/connection_types": {"audience": _DISTINCT_SESSIONS},
    "audience/asn": {"audience": _DISTINCT_SESSIONS},
    "traffic": {f"{k}_traffic": f"sum(sum_{c}) * {BYTES_PER_KBIT}" for k, c in _KBIT.items()},
    "traffic/offload/percentage": {"p2p": f"sum(sum_{_KBIT['p2p']})",
                                   "total": f"sum(sum_{_KBIT['total']})"},
    "throughput": {k: f"sum(sum_{c})" for k, c in _KBIT.items()},
    "traffic/asn": {"traffic": f"coalesce(sum(sum_{_KBIT['total']}), 0) * {BYTES_PER_KBIT}"},
    "traffic/asn/percentage": {"traffic": f"coalesce(sum(sum_{_KBIT['total']}), 0)"},
    "viewing_time": {
        "cdn_viewing_time": "sum(sum_viewing_time) FILTER (WHERE source = 'cdn')",
        "p2p_viewing_time": "sum(sum_viewing_time) FILTER (WHERE source = 'p2p')",
        "total_viewing_time": "sum(sum_viewing_time)",
    },
    "buffer_health": {"avg_buffer_health": rolled_avg("buffer_health")},
    # tdigest_percentile over digests is itself the aggregate that merges them
    "qoe/join_time": {"quantiles": "tdigest_percentile(join_time,"
                                   f" ARRAY{list(JOIN_TIME_QUANTILES)}::float8[])"},
    "qoe/optimal_viewport/percentage": {
        # a union of nothing (no such session) is null: none
        "sessions": "coalesce(round(hll_union_cardinality(viewport_sessions)), 0)",
        "optimal_sessions": "coalesce(round(hll_union_cardinality(optimal_sessions)), 0)",
    },
    "qoe/rebuffering/ratio": {
        "rebuffering_ratio": ratio("sum_buffering_time", "sum_playing_time", "")},
    "qoe/buffer_filling_rate": {
        "avg_buffer_filling_rate": rolled_avg("aggregate_buffer_filling_rate")},
    "qoe/dropped_frames": {"avg_dropped_frames": rolled_avg("dropped_frames")},
}
V1_METRICS: dict[str, V1Metric] = {
    path: replace(metric, rollup_aggregates=_ROLLUP_AGGREGATES[path])
    for path, metric in _V1_METRICS.items()
}
