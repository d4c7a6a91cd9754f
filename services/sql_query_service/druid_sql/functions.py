"""Pass 8: an allow-list of Druid functions, each rewritten to PostgreSQL with Druid semantics.

Anything not listed (PostgreSQL's own functions such as `pg_sleep`,
`current_setting`, `pg_read_file`, qualified names, casts to other types) is a
400 naming the function: the allow-list, not a deny-list, is what keeps the
catalogue and server functions out of reach.
"""

from __future__ import annotations

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
    exp.CurrentTimestamp, exp.CurrentDate,
})
ANONYMOUS = frozenset({
    "TIME_FLOOR", "TIME_SHIFT", "TIME_FORMAT", "TIME_PARSE", "TIME_EXTRACT",
    "MILLIS_TO_TIMESTAMP", "TIMESTAMP_TO_MILLIS", "APPROX_QUANTILE_DS",
    "APPROX_COUNT_DISTINCT_DS_HLL", "APPROX_COUNT_DISTINCT_DS_THETA",
    "LATEST_BY", "EARLIEST_BY", "LATEST", "EARLIEST", "NVL",
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


def _time_floor(args: list[exp.Expression], options: Options) -> exp.Expression:
    if len(args) < 2:
        raise SqlError("TIME_FLOOR needs a timestamp and a period")
    if len(args) > 2 and not isinstance(args[2], exp.Null):
        raise SqlError("TIME_FLOOR: a custom origin is not supported")
    _utc_only(args, 3, "TIME_FLOOR")
    unit, seconds = time_formats.period(_string(args[1], "The TIME_FLOOR period"))
    if unit == "seconds":
        return pg(
            f"DATE_BIN(CAST('{seconds} seconds' AS INTERVAL), __a0,"
            " CAST('1970-01-01T00:00:00Z' AS TIMESTAMPTZ))", args[0]
        )
    return pg(f"DATE_TRUNC('{unit}', __a0)", args[0])


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
    _utc_only(args, 2, "TIME_EXTRACT")
    unit = {"DOW": "ISODOW"}.get(unit, unit)
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
    "EARLIEST": _latest(False, False), "NVL": _nvl,
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
        new = _rewrite_node(node, options)
        if new is None:
            continue
        if _is_sketch(new) and not isinstance(node.parent, exp.Filter):
            new = _hll_count(new)
        node.replace(new)
