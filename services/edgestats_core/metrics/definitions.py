"""The Legacy Stats API's metric formulas (CONTRACT §5): SQL aggregates over raw beacons and
the same metrics over rollup rows (beacons_minute / beacons_hour and their totals).

The v1 formulas are in v1_definitions.py; rollup rows in rollup_rows.py.

Over rollup rows sums, counts, minima and maxima are exact (sums of partial sums); distinct
sessions are HyperLogLog estimates (log2m 14, σ 0.8 %, exact while the sketch is explicit),
which CONTRACT §5 allows for distinct counts by default. Every legacy metric has a rollup
form: the device counts are sessions with a beacon matching a predicate on rollup
dimensions (`source`, `p2p_compatible`, `os_name`, ...), i.e. a union of the rows' session
sketches filtered by that predicate.

`%(bucket_seconds)s` is the bucket (or window) length S the throughput divides by.
Source-dependent metrics take the validated source (`cdn` or `p2p`), never user text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from math import floor

# Summaries aggregate in two steps. First one row per (group, session) of these partials:
# distinct-session counts then become count(*) of per-session flags, which PostgreSQL
# hashes instead of sorting every beacon (count(DISTINCT ...) always sorts).
SESSION_PARTIALS: dict[str, str] = {
    "cdn_kbit": "sum(cdn_downlink_throughput)",
    "p2p_kbit": "sum(p2p_downlink_throughput)",
    "total_kbit": "sum(total_downlink_throughput)",
    "on_cdn": "bool_or(source = 'cdn' AND p2p_compatible)",
    "on_p2p": "bool_or(source = 'p2p')",
    "not_compatible": "bool_or(NOT p2p_compatible)",
    "cdn_viewing": "sum(viewing_time) FILTER (WHERE source = 'cdn')",
    "p2p_viewing": "sum(viewing_time) FILTER (WHERE source = 'p2p')",
    "viewing": "sum(viewing_time)",
}

# Then the summary metrics over those rows, in the seed's key order.
SUMMARY_METRICS: dict[str, str] = {
    "cdn_throughput": "coalesce(sum(cdn_kbit), 0) / %(bucket_seconds)s",
    "p2p_throughput": "coalesce(sum(p2p_kbit), 0) / %(bucket_seconds)s",
    "total_throughput": "coalesce(sum(total_kbit), 0) / %(bucket_seconds)s",
    "cdn_devices": "count(*) FILTER (WHERE on_cdn)",
    "p2p_devices": "count(*) FILTER (WHERE on_p2p)",
    "not_compatible_devices": "count(*) FILTER (WHERE not_compatible)",
    "cdn_viewing_time": "coalesce(sum(cdn_viewing), 0)",
    "p2p_viewing_time": "coalesce(sum(p2p_viewing), 0)",
    "total_viewing_time": "coalesce(sum(viewing), 0)",
}
COUNT_METRICS = frozenset({"cdn_devices", "p2p_devices", "not_compatible_devices"})


def distinct_sessions(where: str = "") -> str:
    """Over rollup rows: the estimated distinct sessions of the rows matching `where` (0 when
    none), an integer."""
    only = _only_where(where)
    return f"coalesce(round(hll_union_cardinality(sessions){only}), 0)::bigint"


def rolled_avg(column: str, where: str = "") -> str:
    """Over rollup rows: the mean of the non-null values of `column` (Σ sums ÷ Σ counts, null
    over nothing), as a double."""
    only = _only_where(where)
    return f"sum(sum_{column}){only}::float8 / nullif(sum(count_{column}){only}, 0)::float8"


def _only_where(where: str) -> str:
    return f" FILTER (WHERE {where})" if where else ""


# The summary metrics over rollup rows in one step (the sketches replace the per-session step).
ROLLUP_SUMMARY_METRICS: dict[str, str] = {
    "cdn_throughput": "coalesce(sum(sum_cdn_downlink_throughput), 0) / %(bucket_seconds)s",
    "p2p_throughput": "coalesce(sum(sum_p2p_downlink_throughput), 0) / %(bucket_seconds)s",
    "total_throughput": "coalesce(sum(sum_total_downlink_throughput), 0) / %(bucket_seconds)s",
    "cdn_devices": distinct_sessions("source = 'cdn' AND p2p_compatible"),
    "p2p_devices": distinct_sessions("source = 'p2p'"),
    "not_compatible_devices": distinct_sessions("NOT p2p_compatible"),
    "cdn_viewing_time": "coalesce(sum(sum_viewing_time) FILTER (WHERE source = 'cdn'), 0)",
    "p2p_viewing_time": "coalesce(sum(sum_viewing_time) FILTER (WHERE source = 'p2p'), 0)",
    "total_viewing_time": "coalesce(sum(sum_viewing_time), 0)",
}
assert list(ROLLUP_SUMMARY_METRICS) == list(SUMMARY_METRICS)


def pretty_duration(seconds: float) -> str:
    """`total_pretty_viewing_time`: str(timedelta) of the floored seconds.

    >>> pretty_duration(93784.9)
    '1 day, 2:03:04'
    """
    return str(timedelta(seconds=floor(seconds)))


def _source_avg(column: str) -> Callable[[str | None], str]:
    return lambda source: f"avg({column}::float8){_only(source)}"


def _rolled_source_avg(column: str) -> Callable[[str | None], str]:
    return lambda source: rolled_avg(column, f"source = '{source}'" if source else "")


def _only(source: str | None) -> str:
    """An aggregate FILTER selecting beacons of `source` (none when no source is given)."""
    return f" FILTER (WHERE source = '{source}')" if source else ""


def ratio(numerator: str, denominator: str, where: str) -> str:
    """Σ numerator ÷ Σ denominator, 0 when the denominator sums to 0 or nothing."""
    return f"coalesce(sum({numerator}){where} / nullif(sum({denominator}){where}, 0), 0)"


_RESPONSE_TIME = {"cdn": "cdn_response_time", "p2p": "p2p_response_time"}
_THROUGHPUT = {"cdn": "cdn_downlink_throughput", "p2p": "p2p_downlink_throughput"}


@dataclass(frozen=True)
class StatMetric:
    """A legacy /stats series metric: its response key, tier and SQL aggregate."""

    key: str                 # may contain {source}
    source: str              # required | optional | none
    tier: str
    expression: Callable[[str | None], str]
    # For device breakdowns: the column whose distinct sessions are counted per value.
    group_column: str | None = None
    # the same aggregate over rollup rows (per value for device breakdowns)
    rollup_expression: Callable[[str | None], str] | None = None
    # whether the dimensionless totals (only `source` kept) can answer it
    reads_totals: bool = True

    def response_key(self, source: str | None) -> str:
        return self.key.format(source=source)


STAT_METRICS: dict[str, StatMetric] = {
    "throughput": StatMetric(
        "agg_throughput_{source}", "required", "lite",
        lambda s: f"coalesce(sum({_THROUGHPUT[s or 'cdn']}), 0) / %(bucket_seconds)s",
        rollup_expression=lambda s: (
            f"coalesce(sum(sum_{_THROUGHPUT[s or 'cdn']}), 0) / %(bucket_seconds)s"),
    ),
    "buffer_health": StatMetric(
        "avg_buffer_health_{source}", "required", "lite",
        _source_avg("buffer_health"), rollup_expression=_rolled_source_avg("buffer_health"),
    ),
    "rebuffering": StatMetric(
        "rebuffering_ratio", "optional", "advanced",
        lambda s: ratio("buffering_time", "playing_time", _only(s)),
        rollup_expression=lambda s: ratio("sum_buffering_time", "sum_playing_time", _only(s)),
    ),
    "content_request_response_times": StatMetric(
        "avg_content_request_response_times_{source}", "required", "advanced",
        lambda s: f"avg({_RESPONSE_TIME[s or 'cdn']})",
        rollup_expression=lambda s: rolled_avg(_RESPONSE_TIME[s or "cdn"]),
    ),
    "buffer_filling_rate": StatMetric(
        "avg_buffer_filling_rate_{source}", "required", "advanced",
        _source_avg("aggregate_buffer_filling_rate"),
        rollup_expression=_rolled_source_avg("aggregate_buffer_filling_rate"),
    ),
    "dropped_frames": StatMetric(
        "avg_dropped_frames_{source}", "required", "advanced", _source_avg("dropped_frames"),
        rollup_expression=_rolled_source_avg("dropped_frames"),
    ),
    # distinct sessions per value: the session sketches of the value's rows (full rollup only)
    "os": StatMetric("operating_systems", "none", "advanced", lambda s: "", "os_name",
                     lambda s: distinct_sessions(), reads_totals=False),
    "platforms": StatMetric("platforms", "none", "advanced", lambda s: "", "browser_name",
                            lambda s: distinct_sessions(), reads_totals=False),
    "connection_types": StatMetric(
        "connection_types", "none", "advanced", lambda s: "", "connection_type",
        lambda s: distinct_sessions(), reads_totals=False,
    ),
}
