"""The v1 query planner: data source, bucket SQL and composed query for a V1Spec (pure).

`plan(spec, metric, now)` never reads a clock; the servicer passes `now`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from edgestats_core.metrics import live_rows, rollup_rows
from edgestats_core.metrics.v1_definitions import V1Metric
from edgestats_core.query.granularity import CALENDAR_MONTHS, FIXED_SECONDS
from edgestats_core.query.v1_spec import V1Spec
from edgestats_core.query.windows import ceil_to, floor_to

REALTIME_FINEST_COARSE = 1800  # thirty_minute
REALTIME_SPAN = timedelta(hours=48)
RAW_RETENTION = timedelta(days=30)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
# below this the range is mostly the not-yet-rolled recent hours: raw beacons answer as fast
TOTALS_PREFERRED_SPAN = timedelta(hours=6)
MAX_UNROLLED_HOURS = 3
# (hour, minutes_to): [hour, minutes_to) is in the minute layer only (rollup_rows.Coverage)
Minutes = frozenset[tuple[datetime, datetime]]


@dataclass(frozen=True)
class Plan:
    """SQL with named parameters; rows are (bucket, customer_id[, grp], aggregates…)."""

    sql: str
    params: dict
    layer: str


def reads_totals(spec: V1Spec, metric: V1Metric | None) -> bool:
    """Whether the dimensionless totals (per customer, bucket and source) can answer: no
    filter or breakdown on a dimension they dropped."""
    columns = {column for column, _ in spec.filters}
    if metric is not None and metric.group:
        columns.add(metric.group[1])
    return columns <= rollup_rows.TOTALS_DIMENSIONS


def reads_session_maxima(metric: V1Metric) -> bool:
    """Whether the metric's rollup form reads per-session maxima (join time): exact from
    the minute rollups only at minute buckets."""
    return any("join_time" in expr for expr in (metric.rollup_aggregates or {}).values())


def choose_layer(
    spec: V1Spec, now: datetime, metric: V1Metric | None = None,
    rolled_hours: frozenset[datetime] | None = None, minutes: Minutes = frozenset(),
) -> str:
    """The layer that answers (CONTRACT §4, §6).

    Exact distinct counts only come from raw beacons. Otherwise the named layer. Join time
    (`reads_session_maxima`) at buckets other than a minute reads raw beacons over a range
    the realtime layer may scan (up to 48 h, within its 30 days): one value per session and
    bucket, as realtime. Else the
    cheapest that can answer: a query the rollup totals answer (`reads_totals`) at whole
    minutes, over `TOTALS_PREFERRED_SPAN` or more or over hours the minute roller has
    reached (`minutes`), when the range is `mostly_rolled`, reads them (a few rows a minute
    instead of every beacon); else raw beacons for
    what the realtime layer may serve (seconds to thirty minutes, up to 48 h, within its 30
    days); else the hour rollups for hourly or coarser buckets and the minute rollups below.
    """
    if spec.exact_distinct:
        return "realtime"
    if spec.data_layer:
        return spec.data_layer
    seconds = FIXED_SECONDS.get(spec.granularity)
    if (metric is not None and reads_session_maxima(metric) and seconds != 60
            and spec.end - spec.start <= REALTIME_SPAN and spec.start >= now - RAW_RETENTION):
        # a bucket coarser than a minute from minute sketches counts a session once per
        # minute; raw beacons count it once per bucket, as the realtime metric does (over
        # what the realtime layer may scan: a longer range reads the rollups)
        return "realtime"
    rollup = "historical-hour" if seconds is None or seconds >= 3600 else "historical-minute"
    if (metric is not None and reads_totals(spec, metric) and (seconds is None or seconds % 60 == 0)
            and (spec.end - spec.start >= TOTALS_PREFERRED_SPAN or minutes)
            and rolled_hours is not None
            and mostly_rolled(spec.start, spec.end, rolled_hours, minutes)):
        return rollup
    realtime = (
        seconds is not None and seconds <= REALTIME_FINEST_COARSE
        and spec.end - spec.start <= REALTIME_SPAN and spec.start >= now - RAW_RETENTION
    )
    return "realtime" if realtime else rollup


# v1 metrics whose rollup form reads only what the live layer keeps (edgestats_core.metrics.
# live_rows: sums and counts of its measures, the session sketch), and the filters it keeps
LIVE_METRICS = frozenset({
    "audience", "traffic", "traffic/offload/percentage", "throughput", "viewing_time",
    "buffer_health", "qoe/rebuffering/ratio", "qoe/buffer_filling_rate", "qoe/dropped_frames",
})
LIVE_FILTERS = frozenset({"source", "p2p_compatible", "channel_id", "stream_id", "bitrate",
                          "representation_id"})


def reads_live(spec: V1Spec, metric: V1Metric) -> bool:
    """Whether the live layer may answer (when it holds the range): no layer named, counts
    approximate, a fixed granularity of whole 5 seconds, no breakdown, filters it keeps."""
    seconds = FIXED_SECONDS.get(spec.granularity)
    return (not spec.exact_distinct and spec.data_layer is None and metric.path in LIVE_METRICS
            and not metric.group and seconds is not None and seconds % 5 == 0
            and all(column in LIVE_FILTERS for column, _ in spec.filters))


def live_dimension(spec: V1Spec, metric: V1Metric) -> str | None:
    """The beacons_live_devices dimension the live layer answers the metric from, or None
    for beacons_live: audience, unless filtered by what device rows do not split by (source,
    p2p_compatible), reads the whole-audience rows (live_rows.ALL_SESSIONS), one per minute
    point."""
    if metric.path == "audience" and all(c in live_rows.DEVICE_SCOPE for c, _ in spec.filters):
        return live_rows.ALL_SESSIONS
    return None


def live_plan(spec: V1Spec, metric: V1Metric, relation: str, params: dict) -> Plan:
    """The metric's rollup form over live rows (`relation`, metrics_service.live_reads, of
    the `live_dimension`), grouped by bucket and customer like `plan`."""
    bucket = bucket_sql(spec.granularity)
    if live_dimension(spec, metric) is not None:  # a point of one row reads its estimate
        points = live_rows.device_sessions_select(relation, bucket, "customer_id", "customer_id")
        sql = f"SELECT bucket, k AS customer_id, n AS audience FROM ({points}) p"
        return Plan(sql, params, "live")
    outer = [f"{expr} AS {name}" for name, expr in (metric.rollup_aggregates or {}).items()]
    sql = (f"SELECT {bucket} AS bucket, customer_id, {', '.join(outer)}"
           f" FROM {relation} GROUP BY 1, 2")
    return Plan(sql, params, "live")


def hour_ranges(hours: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Hour starts merged into contiguous [from, to) ranges, in order."""
    ranges: list[tuple[datetime, datetime]] = []
    for hour in sorted(hours):
        if ranges and ranges[-1][1] == hour:
            ranges[-1] = (ranges[-1][0], hour + HOUR)
        else:
            ranges.append((hour, hour + HOUR))
    return ranges


def unrolled_ranges(
    start: datetime, end: datetime, rolled_hours: frozenset[datetime],
    minutes: Minutes = frozenset(),
) -> list[tuple[datetime, datetime]]:
    """What of the hours of [start, end) the rollups do not hold (neither a rolled hour nor
    the rolled minutes of one, `minutes`), merged into contiguous [from, to) ranges."""
    minutes_to = dict(minutes)
    ranges: list[tuple[datetime, datetime]] = []
    hour = floor_to(start, 3600)
    while hour < end:
        if hour not in rolled_hours:
            low = minutes_to.get(hour, hour)
            if ranges and ranges[-1][1] == low:
                ranges[-1] = (ranges[-1][0], hour + HOUR)
            else:
                ranges.append((low, hour + HOUR))
        hour += HOUR
    return ranges


def minute_ranges(
    start: datetime, end: datetime, rolled_hours: frozenset[datetime], minutes: Minutes
) -> list[tuple[datetime, datetime]]:
    """The [hour, minutes_to) parts of hours of [start, end) held by minute rows only (the
    minute roller's), minutes_to floored to a whole minute at `end`, in order."""
    last = floor_to(end, 60)
    return sorted((hour, min(to, last)) for hour, to in minutes
                  if hour not in rolled_hours and min(to, last) > hour
                  and hour >= floor_to(start, 3600))


def _spans(prefix: str, ranges: list[tuple[datetime, datetime]], params: dict) -> str:
    """`("time" >= … AND "time" < …) OR …` over the ranges, their bounds added to params."""
    for i, (low, high) in enumerate(ranges):
        params[f"{prefix}_from_{i}"], params[f"{prefix}_to_{i}"] = low, high
    return " OR ".join(f'("time" >= %({prefix}_from_{i})s AND "time" < %({prefix}_to_{i})s)'
                       for i in range(len(ranges)))


def mostly_rolled(
    start: datetime, end: datetime, rolled_hours: frozenset[datetime],
    minutes: Minutes = frozenset(),
) -> bool:
    """Whether rollups beat raw beacons for [start, end): at most MAX_UNROLLED_HOURS of it,
    and at most half of it, would be aggregated from raw on the fly (the current hour past
    the minute roller, an hour being rolled up, a partial edge), which costs more per beacon
    than a plain raw query."""
    held = frozenset(minute_ranges(start, end, rolled_hours, minutes))
    raw = sum((min(high, end) - max(low, start)
               for low, high in unrolled_ranges(start, end, rolled_hours, held)
               if high > start and low < end), timedelta())
    return raw <= min(MAX_UNROLLED_HOURS * HOUR, (end - start) / 2)


def source_relation(
    layer: str, spec: V1Spec, rolled_hours: frozenset[datetime], totals: bool = False,
    exact_start: bool = False, lean_tail: bool = False, minutes: Minutes = frozenset(),
    live: tuple[datetime, datetime] | None = None,
) -> tuple[str, dict]:
    """The FROM relation the metric aggregates read (and its parameters): the one place a
    data source is chosen.

    `realtime` reads raw beacons. A historical layer reads its rollup table (or, with
    `totals`, its dimensionless totals) for the hours already rolled up and, for the other
    hours of the range, minute rows aggregated on the fly from raw beacons
    (`rollup_rows.minute_select`), each as explicit time ranges so that PostgreSQL prunes
    partitions: the result never has a gap, and no hour is read twice (CONTRACT §4).
    `minutes` (hour, minutes_to): hours the minute roller has rolled up to minutes_to, read
    from the minute rows (or minute totals) up to there and from raw beacons after.

    `exact_start` (the legacy windows, which start at any 5 s): the on-the-fly part also
    reads only beacons at or after `spec.start` (parameter `raw_start`), so a partial first
    hour left out of `rolled_hours` is counted exactly from raw beacons.

    `lean_tail` (with `totals`, for aggregates that do not read `join_time`): the on-the-fly
    part is `rollup_rows.lean_totals_select`, one flat pass over the raw beacons; with
    `live` ([held_from, upto) of the live layer, for metrics that read only what it keeps:
    `LIVE_METRICS`) its whole 5-second buckets there come from the live layer's
    whole-customer rows instead (`_live_totals`).
    """
    if layer == "realtime":
        return "beacons", {}
    table = "beacons_minute" if layer == "historical-minute" else "beacons_hour"
    columns = rollup_rows.COLUMNS
    if totals:
        table, columns = f"{table}_totals", rollup_rows.TOTALS_COLUMNS
    parts, params = [], {}
    rolled = [(low, high) for low, high in hour_ranges(rolled_hours)
              if high > spec.start and low < spec.end]
    if rolled:  # contiguous ranges, not a list of hours: one comparison per range and row
        parts.append(f"SELECT {columns} FROM {table}"
                     ' WHERE customer_id = ANY(%(customers)s) AND "time" >= %(start)s'
                     f' AND "time" < %(end)s AND ({_spans("rolled", rolled, params)})')
    held = minute_ranges(spec.start, spec.end, rolled_hours, minutes)
    if held:  # minute rows (whatever the layer: the outer query buckets them)
        minute_table = "beacons_minute_totals" if totals else "beacons_minute"
        parts.append(f"SELECT {columns} FROM {minute_table}"
                     ' WHERE customer_id = ANY(%(customers)s) AND "time" >= %(start)s'
                     f' AND "time" < %(end)s AND ({_spans("minutes", held, params)})')
    raw = unrolled_ranges(spec.start, spec.end, rolled_hours, frozenset(held))
    if raw:
        spans = _spans("raw", raw, params)
        lower = ""
        if exact_start:
            lower, params["raw_start"] = ' AND "time" >= %(raw_start)s', spec.start
        where = f'customer_id = ANY(%(customers)s) AND "time" < %(end)s{lower} AND ({spans})'
        if totals and lean_tail:
            unit = "minute" if layer == "historical-minute" else "hour"
            if live is not None and not exact_start:
                # cut at the range's end, as `where` cuts the raw beacons
                raw, from_live = _split_live(
                    [(low, min(high, spec.end)) for low, high in raw if low < spec.end], live)
                if from_live:
                    parts.append(_live_totals(from_live, unit, params))
                spans = _spans("raw", raw, params) if raw else "false"
                where = f'customer_id = ANY(%(customers)s) AND "time" < %(end)s AND ({spans})'
            parts.append(rollup_rows.lean_totals_select(where, unit))
        elif totals:  # minute totals rows: grouped by source only
            parts.append(rollup_rows.minute_select(where, "source"))
        else:
            parts.append(rollup_rows.minute_select(where))
    if not parts:  # an empty range
        parts.append(f"SELECT {columns} FROM {table} WHERE false")
    return "(" + " UNION ALL ".join(parts) + ") AS rows", params


def _merged(ranges: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Non-empty ranges sorted and merged where they touch or overlap."""
    merged: list[tuple[datetime, datetime]] = []
    for low, high in sorted(r for r in ranges if r[1] > r[0]):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def exact_totals_relation(
    start: datetime, end: datetime, rolled_hours: frozenset[datetime], minutes: Minutes,
    columns: tuple[str, ...] | None = None, live: tuple[datetime, datetime] | None = None,
) -> tuple[str, dict] | None:
    """Totals rows (customer_id, "time", source and `columns`, default every aggregate
    column of TOTALS_COLUMNS) holding exactly the beacons of [start, end): the minute totals
    of the whole minutes in it that the rollups hold (rolled hours, the minute roller's
    minutes), the live layer's whole-customer 5-second rows where it holds the rest (`live`:
    [held_from, upto)) and `columns` are all it keeps, and rows aggregated from raw beacons
    per minute for the rest, all timed at the minute or at `start` when later, so that
    conditions on the exact time hold on every row as on its beacons, and TIME_FLOOR by whole
    minutes puts them in their beacons' bucket. None when the rollups hold too little of the
    range to beat raw beacons (as `mostly_rolled`). For realtime SQL scans that only read
    what the totals keep (sql_query_service rollups.plan_realtime)."""
    first = floor_to(start, 60) + (timedelta() if start == floor_to(start, 60) else MINUTE)
    last = floor_to(end, 60)
    held = _merged((max(low, first), min(high, last))
                   for low, high in [*hour_ranges(rolled_hours), *minutes])
    edges = [start, *(bound for low_high in held for bound in low_high), end]
    raw = _merged(zip(edges[::2], edges[1::2], strict=True))  # the gaps between held ranges
    names = columns if columns is not None else tuple(rollup_rows.LEAN_AGGREGATES)
    from_live: list[tuple[datetime, datetime]] = []
    if raw and live is not None and set(names) <= live_rows.TOTALS_COLUMNS:
        raw, from_live = _split_live(raw, live)
    unrolled = sum((high - low for low, high in raw), timedelta())
    if not (held or from_live) or unrolled > min(MAX_UNROLLED_HOURS * HOUR, (end - start) / 2):
        return None
    params: dict = {"exact_start": start}
    parts = []
    if held:
        parts.append(f'SELECT customer_id, "time", source, {", ".join(names)}'
                     " FROM beacons_minute_totals WHERE customer_id = ANY(%(customers)s)"
                     f" AND ({_spans('held', held, params)})")
    if from_live:  # the live layer's whole-customer 5-second rows, timed as below
        parts.append(
            'SELECT customer_id, greatest(date_trunc(\'minute\', "time"), %(exact_start)s)'
            f' AS "time", source, {", ".join(names)} FROM beacons_live'
            " WHERE customer_id = ANY(%(customers)s) AND level = 0"
            f" AND width = {live_rows.LIVE_WIDTH} AND ({_spans('live', from_live, params)})")
    if raw:
        parts.append(rollup_rows.lean_totals_select(
            f"customer_id = ANY(%(customers)s) AND ({_spans('raw', raw, params)})", "minute",
            names, "%(exact_start)s"))
    return "(" + " UNION ALL ".join(parts) + ") AS rows", params


def _live_totals(ranges: list[tuple[datetime, datetime]], unit: str, params: dict) -> str:
    """Totals rows (rollup_rows.TOTALS_COLUMNS) of `unit` from the live layer's whole-customer
    5-second rows of `ranges`: null where the live layer keeps nothing (only metrics that
    read none of those columns may read them)."""
    kept = live_rows.TOTALS_COLUMNS
    columns = [name.strip() for name in rollup_rows.TOTALS_COLUMNS.split(",")][3:]
    nulls = {"sessions": "hll", "viewport_sessions": "hll", "optimal_sessions": "hll",
             "join_time": "tdigest", "downlink_speed": "tdigest"}

    def column(name: str) -> str:
        if name in kept:
            return f"sum({name})" if name != "sessions" else "hll_union_agg(sessions)"
        kind = nulls.get(name, "bigint" if name.startswith("count_") else "float8")
        return f"NULL::{kind}"

    return (f"SELECT customer_id, date_trunc('{unit}', \"time\") AS \"time\", source,"
            f" {', '.join(f'{column(n)} AS {n}' for n in columns)} FROM beacons_live"
            " WHERE customer_id = ANY(%(customers)s) AND level = 0"
            f" AND width = {live_rows.LIVE_WIDTH} AND ({_spans('live', ranges, params)})"
            " GROUP BY 1, 2, 3")


def _split_live(
    ranges: list[tuple[datetime, datetime]], live: tuple[datetime, datetime],
) -> tuple[list[tuple[datetime, datetime]], list[tuple[datetime, datetime]]]:
    """(what raw beacons still answer, what the live layer's whole 5-second rows answer) of
    `ranges`, given the live layer holds [live[0], live[1])."""
    width = live_rows.LIVE_WIDTH
    raw, held = [], []
    for low, high in ranges:
        a = ceil_to(max(low, live[0]), width)
        b = floor_to(min(high, live[1]), width)
        if b <= a:
            raw.append((low, high))
            continue
        held.append((a, b))
        raw += [r for r in ((low, a), (b, high)) if r[1] > r[0]]
    return raw, held


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


def plan(
    spec: V1Spec, metric: V1Metric, now: datetime,
    rolled_hours: frozenset[datetime] = frozenset(), minutes: Minutes = frozenset(),
    live: tuple[datetime, datetime] | None = None,
) -> Plan:
    """The query of one metric over the spec's beacons, grouped by bucket and customer.

    `rolled_hours`, `minutes`: what the rollups hold of the range (rollup_rows.Coverage,
    read by the caller); `live`: what the live layer holds ([held_from, upto)), for the
    not-yet-rolled tail of the totals.
    """
    layer = choose_layer(spec, now, metric, rolled_hours, minutes)
    where, params = _where(spec)
    totals = layer != "realtime" and reads_totals(spec, metric)
    lean = not reads_session_maxima(metric)
    held = live if metric.path in LIVE_METRICS and not metric.group else None
    source, source_params = source_relation(layer, spec, rolled_hours, totals, lean_tail=lean,
                                            minutes=minutes, live=held)
    params.update(source_params)
    historical = layer != "realtime"
    if historical:
        # rollup rows carry their bucket start: the range starts at the layer's bucket
        params["start"] = floor_to(spec.start, 60 if layer == "historical-minute" else 3600)
    keys = [f"{bucket_sql(spec.granularity)} AS bucket", "customer_id"]
    names = ["bucket", "customer_id"]
    if metric.group:
        keys.append(f"nullif({metric.group[1]}, '') AS grp")
        names.append("grp")
    aggregates = metric.rollup_aggregates if historical else metric.aggregates
    outer = [f"{expr} AS {name}" for name, expr in (aggregates or {}).items()]
    by = ", ".join(names)
    if metric.session_partials and not historical:  # sketches replace the per-session step
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
