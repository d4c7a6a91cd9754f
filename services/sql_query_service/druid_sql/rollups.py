"""Pass 10b: historical scans read the rollup tables (CONTRACT §4, issue #5).

A scan of `sdk-{region}-historical-minute|hour` whose every use fits what a rollup row
can answer is rewritten onto the rollup columns and reads `beacons_minute` /
`beacons_hour` for the hours already rolled up plus, for the hours not rolled yet,
minute rows computed on the fly from raw beacons (`planner.source_relation`, the same
relation the v1 metrics read: no gap, no double count). What fits:

- the scan is the only source of an aggregated SELECT (GROUP BY or aggregates);
- outside aggregates, only `__time`, `CustomerId` and the 22 rolled-up dimensions;
- `COUNT(*)` → Σ beacons; `SUM/MIN/MAX/COUNT/AVG(measure)` → the measure's sum / min /
  max / count columns (AVG = Σ sum ÷ Σ count); the same aggregates of an expression of
  dimensions are weighted by the row's beacon count (MIN/MAX and `COUNT(DISTINCT …)`
  of dimensions need no weight);
- `COUNT(DISTINCT SessionId)` (approximate), `APPROX_COUNT_DISTINCT(SessionId)` and
  `COUNT(DISTINCT CASE WHEN <dimensions> THEN SessionId END)` → the union of the HLL
  session sketches;
- `APPROX_QUANTILE_DS(DownlinkSpeed|StartingTime, q)` → the t-digests (`StartingTime`:
  the join-time digest, per session and minute the max StartingTime of its playing
  beacons, CONTRACT §5);
- `FILTER (WHERE <dimensions>)` on any of these.

Anything else (an exact distinct count, a measure outside those aggregates or in a
filter, LATEST/EARLIEST, a window over rows, a join in the same SELECT) keeps the raw
beacons viewed at the layer's granularity, which only cover the raw retention (30
days): such a scan whose `__time` range starts earlier (or, when aggregated, has no
start) is refused with a 400 that says why.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlglot
from sqlglot import exp

from edgestats_core.beacon_columns import BY_DRUID, BY_NAME, COLUMNS, DIMENSIONS, MEASURES
from edgestats_core.metrics import rollup_rows
from edgestats_core.query import planner
from sql_query_service.druid_sql import time_formats
from sql_query_service.druid_sql.columns import unwrapped
from sql_query_service.druid_sql.functions import Options
from sql_query_service.druid_sql.problems import SqlError
from sql_query_service.druid_sql.scans import Scan

HOUR = timedelta(hours=1)
RAW_RETENTION = planner.RAW_RETENTION
# Rollups are kept 13 months (a little more, so no partition is cut short) and a beacon
# may be up to 5 minutes in the future (ingest validation): the widest range a scan reads.
ROLLUP_RETENTION = timedelta(days=400)
FUTURE = timedelta(minutes=5)

DIMENSION_NAMES = frozenset({"__time", "CustomerId", *(c.druid for c in DIMENSIONS)})
# what the dimensionless totals tables (beacons_{minute,hour}_totals) still have
TOTALS_DIMENSIONS = frozenset({"__time", "CustomerId",
                               *(BY_NAME[n].druid for n in rollup_rows.TOTALS_DIMENSIONS)})
MEASURE_NAMES = {c.druid: c for c in MEASURES}
# APPROX_QUANTILE_DS over these reads a t-digest column of the rollup rows
DIGESTS = {"DownlinkSpeed": "__downlink_speed", "StartingTime": "__join_time"}
_DISTINCT_ANONYMOUS = ("APPROX_COUNT_DISTINCT_DS_HLL", "APPROX_COUNT_DISTINCT_DS_THETA")
_AGGREGATE_ANONYMOUS = frozenset({
    "APPROX_QUANTILE_DS", *_DISTINCT_ANONYMOUS, "LATEST_BY", "EARLIEST_BY", "LATEST",
    "EARLIEST", "STRING_AGG", "ARRAY_AGG",
})


class NoFit(Exception):
    """The scan cannot be answered from rollup rows (the message says why)."""


# --- the scan's __time range ------------------------------------------------------------


def _instant(node: exp.Expression, now: datetime) -> datetime | None:
    """The value of a constant timestamp expression, or None when it is not one (or not a
    Python datetime: PostgreSQL then decides, e.g. 400 timestamp out of range)."""
    try:
        return _constant_instant(node, now)
    except (OverflowError, ValueError, OSError):
        return None


def _constant_instant(node: exp.Expression, now: datetime) -> datetime | None:
    if isinstance(node, exp.Paren):
        return _instant(node.this, now)
    if isinstance(node, exp.Literal) and node.is_string:
        try:
            moment = datetime.fromisoformat(node.this.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if isinstance(node, exp.Cast) and node.to.this in (
            exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.DATE):
        return _instant(node.this, now)
    if isinstance(node, exp.CurrentTimestamp):
        return now
    if isinstance(node, exp.CurrentDate):
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if isinstance(node, exp.Add | exp.Sub) and isinstance(node.expression, exp.Interval):
        base, step = _instant(node.this, now), _interval(node.expression)
        if base is None or step is None:
            return None
        return base + step if isinstance(node, exp.Add) else base - step
    if isinstance(node, exp.Anonymous) and node.name.upper() == "TIME_SHIFT":
        args = node.expressions
        if len(args) == 3 and isinstance(args[1], exp.Literal) and isinstance(args[2], exp.Literal):
            base = _instant(args[0], now)
            try:
                unit, seconds = time_formats.period(args[1].this)
                steps = int(args[2].this) if not args[2].is_string else None
            except (SqlError, ValueError):
                return None
            if base is None or unit != "seconds" or steps is None:
                return None
            return base + timedelta(seconds=seconds * steps)
    if isinstance(node, exp.Anonymous) and node.name.upper() in ("TIME_PARSE",):
        return _instant(node.expressions[0], now) if len(node.expressions) == 1 else None
    if isinstance(node, exp.Anonymous) and node.name.upper() == "MILLIS_TO_TIMESTAMP":
        value = node.expressions[0] if node.expressions else None
        if isinstance(value, exp.Literal) and not value.is_string:
            return datetime.fromtimestamp(float(value.this) / 1000, UTC)
    return None


_UNITS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400, "WEEK": 604800}


def _interval(node: exp.Interval) -> timedelta | None:
    unit = node.args.get("unit")
    name = unit.name.upper().rstrip("S") if unit is not None else ""
    value = node.this
    if name not in _UNITS or not isinstance(value, exp.Literal):
        return None
    try:
        return timedelta(seconds=float(value.this) * _UNITS[name])
    except ValueError:
        return None


def _is_time(node: exp.Expression, scan: Scan) -> bool:
    return (isinstance(node, exp.Column) and node.name == "__time"
            and node.table in ("", scan.alias))


def _conjuncts(condition: exp.Expression | None) -> list[exp.Expression]:
    if condition is None:
        return []
    if isinstance(condition, exp.Paren):
        return _conjuncts(condition.this)
    if isinstance(condition, exp.And):
        return _conjuncts(condition.left) + _conjuncts(condition.right)
    return [condition]


def time_range(scan: Scan, now: datetime) -> tuple[datetime | None, datetime | None]:
    """[start, end) hours that hold every bucket the scan's top-level `__time` conditions
    keep (None: unbounded on that side)."""
    select = scan.scope.expression
    where = select.args.get("where") if isinstance(select, exp.Select) else None
    conjuncts = _conjuncts(where.this) if where else []
    for join in (select.args.get("joins") or []) if isinstance(select, exp.Select) else []:
        conjuncts += _conjuncts(join.args.get("on"))
    start: datetime | None = None
    end: datetime | None = None

    def lower(moment: datetime | None) -> None:
        nonlocal start
        if moment is not None:
            start = moment if start is None else max(start, moment)

    def upper(moment: datetime | None) -> None:
        nonlocal end
        if moment is not None:  # any end instant: the hour holding it is included
            end = moment if end is None else min(end, moment)

    for predicate in conjuncts:
        if isinstance(predicate, exp.Between) and _is_time(predicate.this, scan):
            lower(_instant(predicate.args["low"], now))
            upper(_instant(predicate.args["high"], now))
            continue
        if not isinstance(predicate, exp.GTE | exp.GT | exp.LT | exp.LTE | exp.EQ):
            continue
        column, value = predicate.this, predicate.expression
        flipped = False
        if not _is_time(column, scan):
            column, value, flipped = value, column, True
            if not _is_time(column, scan):
                continue
        moment = _instant(value, now)
        is_lower = isinstance(predicate, exp.GTE | exp.GT) != flipped
        if isinstance(predicate, exp.EQ):
            lower(moment)
            upper(moment)
        elif is_lower:
            lower(moment)
        else:
            upper(moment)
    return start, end


def hours(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    """The whole hours [from, to) a rollup scan reads, clamped to what can hold data."""
    earliest = _floor_hour(now - ROLLUP_RETENTION)
    latest = _floor_hour(now + FUTURE) + HOUR
    low = earliest if start is None else min(max(_floor_hour(start), earliest), latest)
    high = latest if end is None else max(min(_floor_hour(end) + HOUR, latest), low)
    return low, high


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# --- does the scan fit rollup rows? -------------------------------------------------------


def _scan_column(node: exp.Expression, scan: Scan) -> bool:
    return (isinstance(node, exp.Column) and node.table in ("", scan.alias)
            and node.name in BY_DRUID)


def _columns(node: exp.Expression, scan: Scan) -> list[exp.Column]:
    return [c for c in node.find_all(exp.Column) if _scan_column(c, scan)]


def _dimensions_only(node: exp.Expression | None, scan: Scan) -> bool:
    if node is None:
        return True
    if any(_is_aggregate(n) for n in node.walk()):
        return False
    return all(c.name in DIMENSION_NAMES for c in _columns(node, scan))


def _is_aggregate(node: exp.Expression) -> bool:
    if isinstance(node, exp.AggFunc):
        return True
    return isinstance(node, exp.Anonymous) and node.name.upper() in _AGGREGATE_ANONYMOUS


def _col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


_FINAL: dict[str, exp.Expression] = {}


def final(template: str, *nodes: exp.Expression) -> exp.Expression:
    """A PostgreSQL expression from `template` (`__a0`… = `nodes`) that functions.rewrite
    leaves alone: only the substituted user expressions are rewritten there."""
    if template not in _FINAL:
        _FINAL[template] = sqlglot.parse_one(template, read="postgres")
    tree = _FINAL[template].copy()
    for node in tree.walk():
        node.meta["final"] = True
    for column in list(tree.find_all(exp.Column)):
        if column.name.startswith("__a") and column.name[3:].isdigit():
            column.replace(nodes[int(column.name[3:])].copy())
    return tree


def _when(condition: exp.Expression | None, value: exp.Expression) -> exp.Expression:
    """`value`, or `CASE WHEN condition THEN value END` under a FILTER condition."""
    if condition is None:
        return value
    return final("CASE WHEN __a0 THEN __a1 END", condition, value)


def _and(a: exp.Expression | None, b: exp.Expression | None) -> exp.Expression | None:
    if a is None or b is None:
        return a or b
    return exp.And(this=exp.Paren(this=a.copy()), expression=exp.Paren(this=b.copy()))


def _sessions_argument(node: exp.Expression, scan: Scan) -> exp.Expression | None | bool:
    """For a distinct count's argument: the condition under which SessionId counts (None:
    always), or False when it is not SessionId / `CASE WHEN <dimensions> THEN SessionId END`
    (either through no-op wrappers: `(SessionId)`, `CAST(SessionId AS VARCHAR)`)."""
    node = unwrapped(node)
    if _scan_column(node, scan) and node.name == "SessionId":
        return None
    if (isinstance(node, exp.Case) and node.this is None and len(node.args.get("ifs") or []) == 1
            and isinstance(node.args.get("default"), exp.Null | type(None))):
        branch = node.args["ifs"][0]
        then = branch.args.get("true")
        then = unwrapped(then) if then is not None else None
        if (then is not None and _scan_column(then, scan) and then.name == "SessionId"
                and _dimensions_only(branch.this, scan)):
            return branch.this
    return False


def _hll(condition: exp.Expression | None) -> exp.Expression:
    return final("COALESCE(CAST(ROUND(HLL_CARDINALITY(HLL_UNION_AGG(__a0))) AS BIGINT), 0)",
                 _when(condition, _col("__sessions")))


def _weighted_count(value: exp.Expression, condition: exp.Expression | None) -> exp.Expression:
    return final("SUM(CASE WHEN __a0 IS NOT NULL THEN __a1 END)",
                 _when(condition, value), _col("__beacons"))


def _rollup_form(
    node: exp.Expression, condition: exp.Expression | None, scan: Scan, approximate: bool
) -> exp.Expression | None:
    """The rollup form of aggregate `node` under a FILTER `condition`; None: keep it as it is
    (an aggregate of dimensions that duplicates do not change); NoFit: not answerable."""
    if not _dimensions_only(condition, scan):
        raise NoFit("a FILTER on a measure")
    if isinstance(node, exp.Count):
        arg = node.this
        if isinstance(arg, exp.Distinct):
            values = arg.expressions
            if len(values) == 1:
                sessions = _sessions_argument(values[0], scan)
                if sessions is not False:
                    if not approximate:
                        raise NoFit("an exact COUNT(DISTINCT SessionId)")
                    return _hll(_and(condition, sessions))
            if all(_dimensions_only(v, scan) for v in values):
                return None
            raise NoFit("a distinct count of a measure")
        if isinstance(arg, exp.Star) or (isinstance(arg, exp.Literal) and not arg.is_string):
            return final("COALESCE(SUM(__a0), 0)", _when(condition, _col("__beacons")))
        if _scan_column(arg, scan) and arg.name in MEASURE_NAMES:
            return final("COALESCE(SUM(__a0), 0)",
                         _when(condition, _col(f"__count_{arg.name}")))
        if _dimensions_only(arg, scan):
            return final("COALESCE(__a0, 0)", _weighted_count(arg, condition))
        raise NoFit("COUNT of an expression of measures")
    if isinstance(node, exp.ApproxDistinct) or (
            isinstance(node, exp.Anonymous) and node.name.upper() in _DISTINCT_ANONYMOUS):
        value = node.this if isinstance(node, exp.ApproxDistinct) else node.expressions[0]
        sessions = _sessions_argument(value, scan)
        if sessions is not False:
            return _hll(_and(condition, sessions))
        if _dimensions_only(value, scan):
            return None
        raise NoFit("a distinct count of a measure")
    if isinstance(node, exp.Sum | exp.Min | exp.Max | exp.Avg):
        arg = node.this
        name = {exp.Sum: "SUM", exp.Min: "MIN", exp.Max: "MAX", exp.Avg: "AVG"}[type(node)]
        if _scan_column(arg, scan) and arg.name in MEASURE_NAMES:
            if name == "AVG":
                return final("__a0 / NULLIF(__a1, 0)",
                             final("SUM(__a0)", _when(condition, _col(f"__sum_{arg.name}"))),
                             final("SUM(__a0)", _when(condition, _col(f"__count_{arg.name}"))))
            column = _col(f"__{name.lower()}_{arg.name}")
            return final(f"{name}(__a0)", _when(condition, column))
        if not _dimensions_only(arg, scan):
            raise NoFit(f"{name} of an expression of measures")
        if name in ("MIN", "MAX"):
            return None
        weighted = final("SUM(__a0 * __a1)", _when(condition, arg), _col("__beacons"))
        if name == "SUM":
            return weighted
        return final("__a0 / NULLIF(__a1, 0)", weighted, _weighted_count(arg, condition))
    if isinstance(node, exp.ApproxQuantile) or (
            isinstance(node, exp.Anonymous) and node.name.upper() == "APPROX_QUANTILE_DS"):
        args = ([node.this, node.args.get("quantile")] if isinstance(node, exp.ApproxQuantile)
                else list(node.expressions))
        value = args[0] if args else None
        if value is None or not (_scan_column(value, scan) and value.name in DIGESTS):
            raise NoFit("APPROX_QUANTILE_DS of a column without a rollup sketch")
        fraction = args[1] if len(args) > 1 else None
        if not (isinstance(fraction, exp.Literal) and not fraction.is_string
                and 0 <= float(fraction.this) <= 1):
            raise SqlError("The quantile must be a number between 0 and 1")
        return final("TDIGEST_PERCENTILE(__a0, CAST(__a1 AS DOUBLE PRECISION))",
                     _when(condition, _col(DIGESTS[value.name])), fraction)
    raise NoFit(f"{node.sql_name() if not isinstance(node, exp.Anonymous) else node.name}"
                " has no rollup form")


def _in_window(node: exp.Expression) -> bool:
    parent = node.parent
    if isinstance(parent, exp.Filter):
        node, parent = parent, parent.parent
    return isinstance(parent, exp.Window) and parent.this is node


def _own_nodes(select: exp.Expression):
    """The nodes of `select` outside its nested queries (other scopes)."""
    return select.walk(prune=lambda n: n is not select and isinstance(n, exp.Query | exp.Subquery))


@dataclass(frozen=True)
class Fit:
    replacements: list[tuple[exp.Expression, exp.Expression]]
    totals: bool   # no dimension but Source: the dimensionless totals tables answer


def rewrite_plan(scan: Scan, approximate: bool) -> Fit:
    """The (node, replacement) pairs that put the scan's SELECT on rollup rows; NoFit when
    it cannot be."""
    select = scan.scope.expression
    if not isinstance(select, exp.Select):
        raise NoFit("not a SELECT")
    if len(scan.scope.selected_sources) != 1 or select.args.get("joins"):
        raise NoFit("a join in the same SELECT")
    own = list(_own_nodes(select))
    aggregates = [n for n in own if _is_aggregate(n) and not _in_window(n)]
    if not aggregates and not select.args.get("group"):
        raise NoFit("rows are not aggregated")
    replacements: list[tuple[exp.Expression, exp.Expression]] = []
    replaced: list[exp.Expression] = []
    for node in own:
        if not _is_aggregate(node):
            continue
        if _in_window(node):  # SUM(COUNT(*)) OVER (): only aggregates inside, never rows
            inner = [n for n in node.walk() if n is not node and _is_aggregate(n)]
            loose = [c for c in _columns(node, scan)
                     if not any(c in set(i.walk()) for i in inner)]
            if loose:
                raise NoFit("a window function over rows")
            continue
        if any(n is not node and _is_aggregate(n) for n in node.walk()):
            raise NoFit("nested aggregates")
        wrapper = node.parent if isinstance(node.parent, exp.Filter) else None
        condition = wrapper.expression.this if wrapper is not None else None
        form = _rollup_form(node, condition, scan, approximate)
        if form is not None:
            target = wrapper if wrapper is not None else node
            replacements.append((target, form))
            replaced.append(target)
    covered = {id(n) for target in replaced for n in target.walk()}
    dimensions: set[str] = set()
    for column in (n for n in own if isinstance(n, exp.Column)):  # scope.columns may be stale
        if not _scan_column(column, scan):
            continue
        if column.name in DIMENSION_NAMES:
            dimensions.add(column.name)
        elif id(column) not in covered:
            raise NoFit(f"{column.name} is read outside SUM/MIN/MAX/AVG/COUNT")
    return Fit(replacements, dimensions <= TOTALS_DIMENSIONS)


def apply(replacements: list[tuple[exp.Expression, exp.Expression]]) -> None:
    for node, new in replacements:
        node.replace(new)


# --- the relation a rollup scan reads ---------------------------------------------------


@dataclass(frozen=True)
class _Span:
    """What planner.source_relation reads of a V1Spec: the range."""

    start: datetime
    end: datetime


def _projection(layer: str, tier: str, totals: bool) -> str:
    time = '"time"' if layer == "historical-minute" else "date_trunc('hour', \"time\")"
    allowed = {c.druid for c in COLUMNS if tier == "advanced" or c.tier == "lite"}
    if totals:
        allowed &= TOTALS_DIMENSIONS | set(MEASURE_NAMES)
    parts = ['customer_id AS "CustomerId"', f'{time} AS "__time"']
    parts += [f'{c.name} AS "{c.druid}"' for c in DIMENSIONS if c.druid in allowed]
    parts.append('beacons AS "__beacons"')
    for m in MEASURES:
        if m.druid in allowed:
            parts += [f'{p}_{m.name} AS "__{p}_{m.druid}"' for p in ("sum", "count", "min", "max")]
    parts += ['sessions AS "__sessions"', 'join_time AS "__join_time"',
              'downlink_speed AS "__downlink_speed"']
    return ", ".join(parts)


def _literal(value: object) -> str:
    if isinstance(value, datetime):
        return f"CAST('{value.astimezone(UTC).isoformat()}' AS timestamptz)"
    if isinstance(value, list | tuple):
        if all(isinstance(v, datetime) for v in value):
            inner = ",".join(f'"{v.astimezone(UTC).isoformat()}"' for v in value)
            return "'{" + inner + "}'"
        return "ARRAY[" + ",".join(_literal(v) for v in value) + "]::text[]" if value else \
            "CAST(ARRAY[] AS text[])"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"cannot render {type(value).__name__}")


_PARAMETER = re.compile(r"%\((\w+)\)s|%%")


@functools.lru_cache(maxsize=512)  # same hours, same rollup state: the same text (the hour)
def relation_sql(
    layer: str, tier: str, start: datetime, end: datetime, customers: tuple[str, ...],
    rolled_hours: frozenset[datetime], totals: bool = False,
    minutes: planner.Minutes = frozenset(),
) -> str:
    """The SELECT a rollup scan reads: planner.source_relation with its parameters bound as
    literals (our own values: hours and the caller's customer ids), Druid column names."""
    relation, params = planner.source_relation(layer, _Span(start, end), rolled_hours, totals,
                                               minutes=minutes)
    params = {**params, "customers": list(customers), "start": start, "end": end}
    bound = _PARAMETER.sub(
        lambda m: "%" if m.group(0) == "%%" else _literal(params[m.group(1)]), relation)
    return f"SELECT {_projection(layer, tier, totals)} FROM {bound}"


@dataclass(frozen=True)
class RollupSource:
    """A datasource reference to replace, once the rolled hours are known, by its relation."""

    name: str          # the placeholder identifier in the rendered SQL
    layer: str
    tier: str
    start: datetime
    end: datetime
    totals: bool = False
    # a realtime scan's aggregate columns of the totals (rollup_rows.LEAN_AGGREGATES names)
    columns: tuple[str, ...] | None = None


def check_raw_fallback(scan: Scan, why: str, start: datetime | None, now: datetime,
                       aggregated: bool) -> None:
    """400 when a scan that needs raw beacons reaches before their retention."""
    if start is not None and start >= now - RAW_RETENTION:
        return
    if start is None and not aggregated:
        return
    days = RAW_RETENTION.days
    raise SqlError(
        f"{scan.source.name}: this query needs the raw beacons ({why}), which are kept"
        f" {days} days: limit __time to the last {days} days, or use only COUNT(*),"
        " SUM/MIN/MAX/AVG/COUNT of measures, approximate COUNT(DISTINCT SessionId) and"
        " dimensions, which the rollups answer for 13 months"
    )


def plan(scan: Scan, tier: str, options: Options, name: str) -> RollupSource | None:
    """The RollupSource of a historical scan that fits rollup rows (its SELECT rewritten in
    place), or None when it reads raw beacons (400 when they do not reach back far enough)."""
    start, end = time_range(scan, options.now)
    try:
        fit = rewrite_plan(scan, options.approximate_count_distinct)
    except NoFit as why:
        select = scan.scope.expression
        aggregated = isinstance(select, exp.Select) and (
            bool(select.args.get("group")) or any(_is_aggregate(n) for n in _own_nodes(select)))
        check_raw_fallback(scan, str(why), start, options.now, aggregated)
        return None
    apply(fit.replacements)
    low, high = hours(start, end, options.now)
    return RollupSource(name, scan.source.layer, tier, low, high, fit.totals)


# --- realtime scans on the rollups (issue #8) ---------------------------------------------
# A realtime scan reads raw beacons, to the second. When it only needs what the minute
# totals keep — it fits them (`rewrite_plan`, Source the only dimension, no join time), it
# has a lower `__time` bound within the raw retention, and reads `__time` only in those
# bounds or through TIME_FLOOR by whole minutes — the whole minutes of its range that the
# rollups hold come from the minute totals and the rest from raw beacons, aggregated per
# minute and timed so that every time condition holds as on the beacons
# (planner.exact_totals_relation): the same answer, from a few rows a minute instead of
# every beacon. When the rollups hold too little of the range the query runs on raw
# beacons as written (Translation.fallback).

_RANGE = (exp.GTE, exp.GT, exp.LT, exp.LTE)
_FLIPPED = {exp.GT: exp.LT, exp.GTE: exp.LTE, exp.LT: exp.GT, exp.LTE: exp.GTE}
_TICK = timedelta(microseconds=1)


def _time_floor_by_minutes(node: exp.Expression) -> bool:
    """TIME_FLOOR(__time, period) with a period of whole minutes (or calendar units)."""
    if not (isinstance(node, exp.Anonymous) and node.name.upper() == "TIME_FLOOR"
            and len(node.expressions) == 2 and isinstance(node.expressions[1], exp.Literal)):
        return False
    try:
        unit, seconds = time_formats.period(node.expressions[1].this)
    except SqlError:
        return False
    return unit != "seconds" or seconds % 60 == 0


def exact_bounds(scan: Scan, now: datetime) -> tuple[datetime, datetime | None]:
    """[start, end) of the scan's top-level `__time` range conditions (end None: open);
    NoFit when it has no lower bound or reads `__time` any other way than in those
    conditions or through TIME_FLOOR by whole minutes."""
    select = scan.scope.expression
    if not isinstance(select, exp.Select):
        raise NoFit("not a SELECT")
    where = select.args.get("where")
    start: datetime | None = None
    end: datetime | None = None
    allowed: set[int] = set()

    def bound(column: exp.Expression, op: type, value: exp.Expression) -> None:
        nonlocal start, end
        moment = _instant(value, now)
        if moment is None:
            return
        allowed.add(id(column))
        if op in (exp.GT, exp.GTE):  # > t: from the next instant on
            moment += _TICK if op is exp.GT else timedelta()
            start = moment if start is None else max(start, moment)
        else:  # <= t: up to the next instant
            moment += _TICK if op is exp.LTE else timedelta()
            end = moment if end is None else min(end, moment)

    for predicate in _conjuncts(where.this) if where else []:
        if isinstance(predicate, exp.Between) and _is_time(predicate.this, scan):
            bound(predicate.this, exp.GTE, predicate.args["low"])
            bound(predicate.this, exp.LTE, predicate.args["high"])
        elif isinstance(predicate, _RANGE) and _is_time(predicate.this, scan):
            bound(predicate.this, type(predicate), predicate.expression)
        elif isinstance(predicate, _RANGE) and _is_time(predicate.expression, scan):
            bound(predicate.expression, _FLIPPED[type(predicate)], predicate.this)
    for column in (n for n in _own_nodes(select) if _is_time(n, scan)):
        if id(column) not in allowed and not _time_floor_by_minutes(column.parent):
            raise NoFit("__time is read to the second")
    if start is None:
        raise NoFit("no lower __time bound")
    return start, end


def plan_realtime(scan: Scan, tier: str, options: Options, name: str) -> RollupSource | None:
    """The RollupSource of a realtime scan the minute totals can answer exactly (its SELECT
    rewritten in place), or None: it reads raw beacons as written."""
    try:
        start, end = exact_bounds(scan, options.now)
        fit = rewrite_plan(scan, options.approximate_count_distinct)
    except NoFit:
        return None
    reads_join_time = any(c.name == DIGESTS["StartingTime"]
                          for _, new in fit.replacements for c in new.find_all(exp.Column))
    if not fit.totals or reads_join_time or start < options.now - RAW_RETENTION:
        return None
    latest = options.now + FUTURE
    end = latest if end is None else min(end, latest)
    if end <= start:
        return None
    apply(fit.replacements)
    read = {c.name for c in _own_nodes(scan.scope.expression) if isinstance(c, exp.Column)}
    # at least one (a query of dimensions only still needs a row per minute and source)
    columns = tuple(pg for alias, pg in _aggregate_aliases(tier).items() if alias in read)
    columns = columns or ("beacons",)
    return RollupSource(name, "realtime", tier, start, end, True, columns)


def _aggregate_aliases(tier: str) -> dict[str, str]:
    """Druid-side name → totals column of what a realtime scan on the totals may read
    (as `_projection` names them)."""
    aliases = {"__beacons": "beacons", "__sessions": "sessions",
               "__downlink_speed": "downlink_speed"}
    for m in MEASURES:
        if tier == "advanced" or m.tier == "lite":
            aliases |= {f"__{p}_{m.druid}": f"{p}_{m.name}" for p in ("sum", "count", "min", "max")}
    return aliases


@functools.lru_cache(maxsize=512)
def realtime_relation_sql(
    tier: str, start: datetime, end: datetime, customers: tuple[str, ...],
    rolled_hours: frozenset[datetime], minutes: planner.Minutes, columns: tuple[str, ...],
    live: tuple[datetime, datetime] | None = None,
) -> str | None:
    """The SELECT a realtime scan on the rollups reads (planner.exact_totals_relation with
    only the aggregate `columns` it reads, the live layer's rows where it holds `live` and
    the columns, parameters bound as literals, Druid column names), or None: raw beacons
    answer."""
    found = planner.exact_totals_relation(start, end, rolled_hours, minutes, columns, live)
    if found is None:
        return None
    relation, params = found
    params = {**params, "customers": list(customers)}
    bound = _PARAMETER.sub(
        lambda m: "%" if m.group(0) == "%%" else _literal(params[m.group(1)]), relation)
    names = {pg: alias for alias, pg in _aggregate_aliases(tier).items()}
    projection = ['customer_id AS "CustomerId"', '"time" AS "__time"', 'source AS "Source"',
                  *(f'{pg} AS "{names[pg]}"' for pg in columns)]
    return f"SELECT {', '.join(projection)} FROM {bound}"
