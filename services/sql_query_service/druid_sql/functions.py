"""Pass 8: an allow-list of Druid functions, each rewritten to PostgreSQL with Druid semantics.

Anything not listed (PostgreSQL's own functions such as `pg_sleep`,
`current_setting`, `pg_read_file`, qualified names, casts to other types) is a
400 naming the function: the allow-list, not a deny-list, is what keeps the
catalogue and server functions out of reach.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlglot
from sqlglot import exp

from sql_query_service.druid_sql import time_formats
from sql_query_service.druid_sql.problems import SqlError

# log2m of the HyperLogLog sketches: σ ≈ 0.8 %, within the 2 % bound (CONTRACT §5).
HLL_LOG2M = 14


@dataclass(frozen=True)
class Options:
    now: datetime                       # CURRENT_TIMESTAMP (the service's clock)
    approximate_count_distinct: bool = True
    skip_empty_buckets: bool = False    # Druid's context.skipEmptyBuckets


# Functions and constructs passed through unchanged: same name and meaning in PostgreSQL.
KEPT: frozenset[type] = frozenset({
    exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max, exp.Stddev, exp.StddevSamp, exp.StddevPop,
    exp.Variance, exp.VariancePop, exp.Coalesce, exp.Nullif, exp.Case, exp.If, exp.Greatest,
    exp.Least, exp.Lower, exp.Upper, exp.Length, exp.Substring, exp.Trim, exp.Replace,
    exp.StrPosition, exp.Left, exp.Right, exp.Pad, exp.RegexpLike, exp.Abs, exp.Ln, exp.Exp,
    exp.Sqrt, exp.Pow, exp.Sign, exp.Floor, exp.Ceil, exp.Extract, exp.DateTrunc,
    exp.RowNumber, exp.Rank, exp.DenseRank, exp.Lag, exp.Lead, exp.FirstValue, exp.LastValue,
    exp.NthValue, exp.Ntile, exp.CumeDist, exp.PercentRank, exp.Cast, exp.Round, exp.Log,
    exp.Mod, exp.Trunc, exp.Concat, exp.ApproxDistinct, exp.ApproxQuantile,
    exp.CurrentTimestamp, exp.CurrentDate, exp.RegexpExtract, exp.GroupConcat, exp.ArrayAgg,
})
ANONYMOUS = frozenset({
    "TIME_FLOOR", "TIME_SHIFT", "TIME_FORMAT", "TIME_PARSE", "TIME_EXTRACT",
    "MILLIS_TO_TIMESTAMP", "TIMESTAMP_TO_MILLIS", "APPROX_QUANTILE_DS",
    "APPROX_COUNT_DISTINCT_DS_HLL", "APPROX_COUNT_DISTINCT_DS_THETA",
    "LATEST_BY", "EARLIEST_BY", "LATEST", "EARLIEST", "NVL", "TIMESTAMPADD", "TIMESTAMPDIFF",
})
CAST_TYPES = {
    exp.DataType.Type.INT: "int", exp.DataType.Type.BIGINT: "int",
    exp.DataType.Type.SMALLINT: "int", exp.DataType.Type.TINYINT: "int",
    exp.DataType.Type.FLOAT: "double", exp.DataType.Type.DOUBLE: "double",
    exp.DataType.Type.DECIMAL: "double", exp.DataType.Type.VARCHAR: "text",
    exp.DataType.Type.CHAR: "text", exp.DataType.Type.TEXT: "text",
    exp.DataType.Type.TIMESTAMP: "timestamp", exp.DataType.Type.TIMESTAMPTZ: "timestamp",
    exp.DataType.Type.DATE: "date", exp.DataType.Type.BOOLEAN: "boolean",
}
TIME_UNITS = {"SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "QUARTER", "YEAR"}
EXTRACT_UNITS = TIME_UNITS | {"EPOCH", "DOW", "DOY", "ISODOW", "MILLISECOND"}

# Operators sqlglot models as Func subclasses (AND, OR, =, IN, BETWEEN, LIKE, …).
_OPERATORS = (exp.Binary, exp.Unary, exp.Connector, exp.Predicate)

_TEMPLATES: dict[str, exp.Expression] = {}


def pg(template: str, *nodes: exp.Expression) -> exp.Expression:
    """A PostgreSQL expression from `template`, with `__a0`, `__a1`… replaced by `nodes`."""
    if template not in _TEMPLATES:
        _TEMPLATES[template] = sqlglot.parse_one(template, read="postgres")
    tree = _TEMPLATES[template].copy()
    for column in list(tree.find_all(exp.Column)):
        if column.name.startswith("__a") and column.name[3:].isdigit():
            column.replace(nodes[int(column.name[3:])].copy())
    return tree


def _string(node: exp.Expression, what: str) -> str:
    if isinstance(node, exp.Literal) and node.is_string:
        return node.this
    raise SqlError(f"{what} must be a string literal")


def _utc_only(args: list[exp.Expression], index: int, name: str) -> None:
    if len(args) <= index or isinstance(args[index], exp.Null):
        return
    if _string(args[index], f"{name} time zone").upper() not in ("UTC", "ETC/UTC", "Z"):
        raise SqlError(f"{name}: only the UTC time zone is supported")


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _zone(args: list[exp.Expression], index: int, name: str) -> str | None:
    """The IANA time zone at args[index]; None for UTC (or no time zone)."""
    if len(args) <= index or isinstance(args[index], exp.Null):
        return None
    text = _string(args[index], f"{name} time zone")
    if text.upper() in ("UTC", "ETC/UTC", "Z", "GMT", "+00:00"):
        return None
    if text not in _zones():  # also what keeps the name safe to quote
        raise SqlError(f"{name}: unknown time zone '{text}'")
    return text


_EPOCH = "CAST('1970-01-01T00:00:00Z' AS TIMESTAMPTZ)"
_UNIT_NAMES = ("YEAR", "MONTH", "WEEK", "DAY", "HOUR", "MINUTE", "SECOND")


def _time_floor(args: list[exp.Expression], options: Options) -> exp.Expression:
    """Druid's PeriodGranularity: a single-unit period of 1 floors to the calendar unit; a
    multiple or an origin counts whole periods from the origin (default: 1970-01-01 in
    the time zone); calendar units (days and longer) follow the time zone's wall clock."""
    if len(args) < 2 or len(args) > 4:
        raise SqlError("TIME_FLOOR needs a timestamp and a period (then an origin, a time zone)")
    text = _string(args[1], "The TIME_FLOOR period")
    years, months, weeks, days, hours, minutes, seconds = time_formats.period_fields(text)
    origin = args[2] if len(args) > 2 and not isinstance(args[2], exp.Null) else None
    if isinstance(origin, exp.Literal) and origin.is_string:
        origin = pg("CAST(__a0 AS TIMESTAMPTZ)", origin)
    zone = _zone(args, 3, "TIME_FLOOR")
    fields = (years, months, weeks, days, hours, minutes, seconds)
    time = args[0]
    if zone is None and origin is None:  # UTC from the epoch: the cheapest forms
        try:
            unit, length = time_formats.period(text)
        except SqlError:
            unit, length = "", 0
        if unit == "seconds":
            return pg(f"DATE_BIN(CAST('{length} seconds' AS INTERVAL), __a0, {_EPOCH})", time)
        if unit:
            return pg(f"DATE_TRUNC('{unit}', __a0)", time)
    tz = zone or "UTC"
    if origin is None and sorted(fields)[-2] == 0 and max(fields) == 1:  # P1M, PT1H, P1W…
        unit = _UNIT_NAMES[fields.index(1)]
        return pg(f"DATE_TRUNC('{unit}', __a0, '{tz}')", time)
    local = f"(__a0 AT TIME ZONE '{tz}')"
    local_origin = (f"(__a1 AT TIME ZONE '{tz}')" if origin is not None
                    else "CAST('1970-01-01 00:00:00' AS TIMESTAMP)")
    nodes = (time, origin) if origin is not None else (time,)
    if years or months:
        if weeks or days or hours or minutes or seconds:
            raise SqlError(f"Unsupported period '{text}': months cannot be mixed with days or time")
        step = years * 12 + months
        count = (f"((EXTRACT(YEAR FROM {local}) - EXTRACT(YEAR FROM {local_origin})) * 12"
                 f" + EXTRACT(MONTH FROM {local}) - EXTRACT(MONTH FROM {local_origin}))")
        candidate = (f"({local_origin} + CAST(FLOOR({count} / {step}) * {step} AS DOUBLE PRECISION)"
                     " * CAST('1 month' AS INTERVAL))")
        return pg(f"(CASE WHEN {candidate} > {local} THEN {candidate}"
                  f" - CAST('{step} months' AS INTERVAL) ELSE {candidate} END) AT TIME ZONE '{tz}'",
                  *nodes)
    length = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds
    if weeks or days:  # calendar days: the wall clock of the time zone
        return pg(f"DATE_BIN(CAST('{length} seconds' AS INTERVAL), {local}, {local_origin})"
                  f" AT TIME ZONE '{tz}'", *nodes)
    absolute_origin = ("CAST(__a1 AS TIMESTAMPTZ)" if origin is not None
                       else f"({local_origin} AT TIME ZONE '{tz}')")
    return pg(f"DATE_BIN(CAST('{length} seconds' AS INTERVAL), __a0, {absolute_origin})", *nodes)


def _time_shift(args: list[exp.Expression], options: Options) -> exp.Expression:
    if len(args) < 3:
        raise SqlError("TIME_SHIFT needs a timestamp, a period and a step")
    _utc_only(args, 3, "TIME_SHIFT")
    text = _string(args[1], "The TIME_SHIFT period")
    if not time_formats._PERIOD.match(text.upper()):
        raise SqlError(f"Invalid ISO-8601 period '{text}'")
    return pg(f"__a0 + (__a1) * CAST('{text.upper()}' AS INTERVAL)", args[0], args[2])


def _time_format(args: list[exp.Expression], options: Options) -> exp.Expression:
    if not args:
        raise SqlError("TIME_FORMAT needs a timestamp")
    pattern = time_formats.ISO
    if len(args) > 1 and not isinstance(args[1], exp.Null):
        pattern = time_formats.to_char_pattern(_string(args[1], "The TIME_FORMAT pattern"))
    _utc_only(args, 2, "TIME_FORMAT")
    return exp.Anonymous(this="TO_CHAR", expressions=[args[0], exp.Literal.string(pattern)])


def _time_parse(args: list[exp.Expression], options: Options) -> exp.Expression:
    if not args:
        raise SqlError("TIME_PARSE needs a string")
    _utc_only(args, 2, "TIME_PARSE")
    if len(args) > 1 and not isinstance(args[1], exp.Null):
        pattern = time_formats.to_char_pattern(_string(args[1], "The TIME_PARSE pattern"))
        return pg(f"edgestats_sql.time_parse(CAST(__a0 AS TEXT), '{pattern.replace(chr(39), '')}')",
                  args[0])
    return pg("edgestats_sql.time_parse(CAST(__a0 AS TEXT), NULL)", args[0])


def _time_extract(args: list[exp.Expression], options: Options) -> exp.Expression:
    unit = _string(args[1], "The TIME_EXTRACT unit").upper() if len(args) > 1 else "MILLISECOND"
    if unit not in EXTRACT_UNITS or len(args) > 3:
        raise SqlError(f"Unsupported TIME_EXTRACT unit '{unit}'")
    zone = _zone(args, 2, "TIME_EXTRACT")
    unit = {"DOW": "ISODOW"}.get(unit, unit)
    if zone is not None and unit != "EPOCH":
        return pg(f"CAST(EXTRACT({unit} FROM __a0 AT TIME ZONE '{zone}') AS BIGINT)", args[0])
    return pg(f"CAST(EXTRACT({unit} FROM __a0) AS BIGINT)", args[0])


def _hll(value: exp.Expression) -> exp.Expression:
    return pg(f"HLL_ADD_AGG(HLL_HASH_ANY(__a0), {HLL_LOG2M})", value)


def _hll_count(sketch: exp.Expression) -> exp.Expression:
    return pg("COALESCE(CAST(ROUND(HLL_CARDINALITY(__a0)) AS BIGINT), 0)", sketch)


def _approx_distinct(args: list[exp.Expression], options: Options) -> exp.Expression:
    if len(args) != 1:
        raise SqlError("APPROX_COUNT_DISTINCT takes one expression")
    return _hll(args[0])


def _quantile(args: list[exp.Expression], options: Options) -> exp.Expression:
    if len(args) < 2:
        raise SqlError("APPROX_QUANTILE_DS needs an expression and a fraction")
    fraction = args[1]
    if not (isinstance(fraction, exp.Literal) and not fraction.is_string
            and 0 <= float(fraction.this) <= 1):
        raise SqlError("The quantile must be a number between 0 and 1")
    return pg("PERCENTILE_CONT(__a1) WITHIN GROUP (ORDER BY __a0)", args[0], fraction)


def _latest(descending: bool, with_time: bool):
    def rewrite(args: list[exp.Expression], options: Options) -> exp.Expression:
        time = args[1] if with_time and len(args) > 1 else exp.column("__time", quoted=True)
        if not args or (with_time and len(args) < 2):
            raise SqlError("LATEST_BY/EARLIEST_BY need an expression and a timestamp")
        order = "DESC" if descending else "ASC"
        return pg(
            f"(ARRAY_AGG(__a0 ORDER BY __a1 {order}) FILTER(WHERE __a0 IS NOT NULL))[1]",
            args[0], time,
        )
    return rewrite


_INTERVAL_UNITS = {"SECOND": "1 second", "MINUTE": "1 minute", "HOUR": "1 hour",
                   "DAY": "1 day", "WEEK": "7 days", "MONTH": "1 month", "QUARTER": "3 months",
                   "YEAR": "1 year"}
_UNIT_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400, "WEEK": 604800}
_UNIT_MONTHS = {"MONTH": 1, "QUARTER": 3, "YEAR": 12}


def _unit(node: exp.Expression, name: str) -> str:
    unit = node.name.upper() if isinstance(node, exp.Var | exp.Column) else ""
    unit = unit.removeprefix("SQL_TSI_")
    if unit not in _INTERVAL_UNITS:
        raise SqlError(f"{name}: unsupported time unit '{node.sql(dialect='druid')[:40]}'")
    return unit


def _timestampadd(args: list[exp.Expression], options: Options) -> exp.Expression:
    """TIMESTAMPADD(unit, count, t) = t shifted by count units (calendar units clamp the day)."""
    if len(args) != 3:
        raise SqlError("TIMESTAMPADD needs a unit, a count and a timestamp")
    step = _INTERVAL_UNITS[_unit(args[0], "TIMESTAMPADD")]
    return pg(f"__a1 + CAST(__a0 AS BIGINT) * CAST('{step}' AS INTERVAL)", args[1], args[2])


def _timestampdiff(args: list[exp.Expression], options: Options) -> exp.Expression:
    """TIMESTAMPDIFF(unit, t1, t2): whole units from t1 to t2 (negative when t2 is earlier),
    months/quarters/years counted on the calendar as in Calcite."""
    if len(args) != 3:
        raise SqlError("TIMESTAMPDIFF needs a unit and two timestamps")
    unit = _unit(args[0], "TIMESTAMPDIFF")
    if unit in _UNIT_SECONDS:
        return pg(f"CAST(TRUNC(EXTRACT(EPOCH FROM __a1 - __a0) / {_UNIT_SECONDS[unit]})"
                  " AS BIGINT)", args[1], args[2])
    return pg("CAST(TRUNC((EXTRACT(YEAR FROM AGE(__a1, __a0)) * 12"
              f" + EXTRACT(MONTH FROM AGE(__a1, __a0))) / {_UNIT_MONTHS[unit]}) AS BIGINT)",
              args[1], args[2])


def _regexp_extract(node: exp.RegexpExtract) -> exp.Expression:
    """REGEXP_EXTRACT(s, pattern[, index]): the index-th capture group of the first match
    (0 or absent: the whole match), null when nothing matches."""
    pattern = node.expression
    if not (isinstance(pattern, exp.Literal) and pattern.is_string):
        raise SqlError("The REGEXP_EXTRACT pattern must be a string literal")
    index = node.args.get("position") or node.args.get("group")
    if index is None:
        group = 0
    elif isinstance(index, exp.Literal) and not index.is_string and index.this.isdigit():
        group = int(index.this)
    else:
        raise SqlError("The REGEXP_EXTRACT index must be a non-negative integer")
    return pg(f"REGEXP_SUBSTR(CAST(__a0 AS TEXT), __a1, 1, 1, '', {group})", node.this, pattern)


def _string_agg(node: exp.GroupConcat) -> exp.Expression:
    """STRING_AGG(expr, separator[, maxBytes]): non-null values joined (DISTINCT allowed)."""
    value, separator = node.this, node.args.get("separator")
    if separator is None:
        raise SqlError("STRING_AGG needs an expression and a separator")
    if isinstance(value, exp.Distinct):
        inner = exp.Distinct(expressions=[pg("CAST(__a0 AS TEXT)", value.expressions[0])])
        return exp.GroupConcat(this=inner, separator=separator)
    if isinstance(value, exp.Order):
        raise SqlError("STRING_AGG does not take ORDER BY")
    return exp.GroupConcat(this=pg("CAST(__a0 AS TEXT)", value), separator=separator)


def _array_agg(node: exp.ArrayAgg) -> exp.Expression:
    """ARRAY_AGG(expr[, maxBytes]) / ARRAY_AGG(DISTINCT expr[, maxBytes]): nulls included."""
    value = node.this
    if isinstance(value, exp.Distinct):
        return exp.ArrayAgg(this=exp.Distinct(expressions=[value.expressions[0]]))
    if isinstance(value, exp.Order):
        raise SqlError("ARRAY_AGG does not take ORDER BY")
    return exp.ArrayAgg(this=value)


def _millis_to_timestamp(args, options):
    return pg("TO_TIMESTAMP(CAST(__a0 AS DOUBLE PRECISION) / 1000.0)", args[0])


def _timestamp_to_millis(args, options):
    return pg("CAST(FLOOR(EXTRACT(EPOCH FROM __a0) * 1000) AS BIGINT)", args[0])


def _nvl(args, options):
    return exp.Coalesce(this=args[0], expressions=args[1:])


REWRITE_ANONYMOUS: dict[str, Callable[[list[exp.Expression], Options], exp.Expression]] = {
    "TIME_FLOOR": _time_floor, "TIME_SHIFT": _time_shift, "TIME_FORMAT": _time_format,
    "TIME_PARSE": _time_parse, "TIME_EXTRACT": _time_extract,
    "MILLIS_TO_TIMESTAMP": _millis_to_timestamp, "TIMESTAMP_TO_MILLIS": _timestamp_to_millis,
    "APPROX_QUANTILE_DS": _quantile, "APPROX_COUNT_DISTINCT_DS_HLL": _approx_distinct,
    "APPROX_COUNT_DISTINCT_DS_THETA": _approx_distinct, "LATEST_BY": _latest(True, True),
    "EARLIEST_BY": _latest(False, True), "LATEST": _latest(True, False),
    "EARLIEST": _latest(False, False), "NVL": _nvl, "TIMESTAMPADD": _timestampadd,
    "TIMESTAMPDIFF": _timestampdiff,
}


def check(tree: exp.Expression) -> None:
    """400 for a function or cast type outside the allow-list."""
    for node in tree.walk():
        if isinstance(node, exp.Dot):
            raise SqlError("Qualified names are only allowed for columns")
        if isinstance(node, exp.Anonymous):
            if node.name.upper() not in ANONYMOUS:
                raise SqlError(f"Unknown function '{node.name}'")
        elif (isinstance(node, exp.Func) and not isinstance(node, _OPERATORS)
              and type(node) not in KEPT):
            raise SqlError(f"Unknown function '{node.sql_name()}'")
        if isinstance(node, exp.Cast) and node.to.this not in CAST_TYPES:
            raise SqlError(f"Unsupported CAST type '{node.to.sql(dialect='druid')}'")
        if isinstance(node, exp.TryCast):
            raise SqlError("TRY_CAST is not supported")


def _cast(node: exp.Cast, options: Options) -> exp.Expression:
    """CAST with Druid semantics: a string that is not a number casts to null, never an error."""
    value, kind = node.this, CAST_TYPES[node.to.this]
    numeric_literal = isinstance(value, exp.Literal) and not value.is_string
    is_time = isinstance(value, exp.Column) and value.name == "__time"
    if kind == "int":
        if is_time:
            return _timestamp_to_millis([value], options)
        if numeric_literal:
            return pg("CAST(TRUNC(__a0) AS BIGINT)", value)
        return pg("edgestats_sql.to_bigint(CAST(__a0 AS TEXT))", value)
    if kind == "double":
        if numeric_literal:
            return pg("CAST(__a0 AS DOUBLE PRECISION)", value)
        return pg("edgestats_sql.to_double(CAST(__a0 AS TEXT))", value)
    if kind == "text":
        return pg("CAST(__a0 AS TEXT)", value)
    if kind in ("timestamp", "date"):
        if is_time:
            stamp = value
        elif isinstance(value, exp.Literal) and value.is_string:
            stamp = pg("CAST(__a0 AS TIMESTAMPTZ)", value)
        else:
            stamp = pg("edgestats_sql.time_parse(CAST(__a0 AS TEXT), NULL)", value)
        return pg("DATE_TRUNC('day', __a0)", stamp) if kind == "date" else stamp
    return pg("CAST(__a0 AS BOOLEAN)", value)


def _floor_or_ceil(node: exp.Floor | exp.Ceil) -> exp.Expression | None:
    unit = node.args.get("to")
    if unit is None:
        return None
    name = unit.name.upper()
    if name not in TIME_UNITS:
        raise SqlError(f"Unsupported time unit '{unit.name}'")
    if isinstance(node, exp.Floor):
        return pg(f"DATE_TRUNC('{name}', __a0)", node.this)
    return pg(
        f"DATE_TRUNC('{name}', __a0) + CASE WHEN DATE_TRUNC('{name}', __a0) = __a0"
        f" THEN CAST('0 seconds' AS INTERVAL) ELSE CAST('1 {name}' AS INTERVAL) END", node.this
    )


def _concat(node: exp.Concat) -> exp.Expression:
    parts = [pg("CAST(__a0 AS TEXT)", p) for p in node.expressions]
    result = parts[0]
    for part in parts[1:]:
        result = exp.DPipe(this=result, expression=part)
    return exp.Paren(this=result)


def _count(node: exp.Count, options: Options) -> exp.Expression | None:
    distinct = node.this
    if not isinstance(distinct, exp.Distinct):
        return None
    if len(distinct.expressions) != 1:
        raise SqlError("COUNT(DISTINCT …) takes one expression")
    return _hll(distinct.expressions[0]) if options.approximate_count_distinct else None


def _rewrite_node(node: exp.Expression, options: Options) -> exp.Expression | None:
    """The PostgreSQL form of one node whose children are already rewritten, or None to keep it."""
    if isinstance(node, exp.Anonymous):
        handler = REWRITE_ANONYMOUS.get(node.name.upper())
        return handler(list(node.expressions), options) if handler else None
    if isinstance(node, exp.Count):
        return _count(node, options)
    if isinstance(node, exp.ApproxDistinct):
        return _hll(node.this)
    if isinstance(node, exp.ApproxQuantile):
        return _quantile([node.this, node.args["quantile"]], options)
    if isinstance(node, exp.Filter) and _is_sketch(node.this):
        return _hll_count(node)
    if isinstance(node, (exp.Floor, exp.Ceil)):
        return _floor_or_ceil(node)
    if isinstance(node, exp.Cast):
        return _cast(node, options)
    if isinstance(node, exp.Round) and node.args.get("decimals") is not None:
        return pg("ROUND(CAST(__a0 AS NUMERIC), __a1)", node.this, node.args["decimals"])
    if isinstance(node, exp.Trunc):
        decimals = node.args.get("decimals")
        if decimals is None:
            return pg("TRUNC(__a0)", node.this)
        return pg("TRUNC(CAST(__a0 AS NUMERIC), __a1)", node.this, decimals)
    if isinstance(node, exp.Log):
        if node.expression is None:
            return pg("LN(__a0)", node.this)
        if isinstance(node.this, exp.Literal) and node.this.this == "10":
            return pg("LOG(CAST(__a0 AS DOUBLE PRECISION))", node.expression)
        return pg("LOG(CAST(__a0 AS NUMERIC), CAST(__a1 AS NUMERIC))", node.this, node.expression)
    if isinstance(node, exp.Mod):
        return pg("MOD(CAST(__a0 AS NUMERIC), CAST(__a1 AS NUMERIC))", node.this, node.expression)
    if isinstance(node, exp.Concat):
        return _concat(node)
    if isinstance(node, exp.RegexpExtract):
        return _regexp_extract(node)
    if isinstance(node, exp.GroupConcat):
        return _string_agg(node)
    if isinstance(node, exp.ArrayAgg):
        return _array_agg(node)
    if isinstance(node, exp.CurrentTimestamp):
        return pg(f"CAST('{options.now.isoformat()}' AS TIMESTAMPTZ)")
    if isinstance(node, exp.CurrentDate):
        return pg(f"CAST('{options.now.date().isoformat()}T00:00:00Z' AS TIMESTAMPTZ)")
    return None


def _is_sketch(node: exp.Expression) -> bool:
    return isinstance(node, exp.Anonymous) and node.name.upper() == "HLL_ADD_AGG"


def rewrite(nodes: list[exp.Expression], options: Options) -> None:
    """Rewrite `nodes` (a pre-order walk taken before any change) children first, in place."""
    for node in reversed(nodes):
        if isinstance(node, exp.Table) or node.parent is None and not isinstance(node, exp.Query):
            continue
        if node._meta and node._meta.get("final"):  # already PostgreSQL (rollups.final)
            continue
        new = _rewrite_node(node, options)
        if new is None:
            continue
        if _is_sketch(new) and not isinstance(node.parent, exp.Filter):
            new = _hll_count(new)
        node.replace(new)
