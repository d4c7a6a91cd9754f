"""Pass 10: Druid's zero-filled time series (CONTRACT §7).

A query grouped only by a time floor of `__time`, over one datasource with a
bounded `__time` range (`>=`/`>` and `<`/`<=` string literals), returns every
bucket of the range: empty buckets have 0 for counts and null for everything
else, unless `context.skipEmptyBuckets` is true. Anything more complex (a
LIMIT, HAVING, another dimension, an order other than time) is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlglot
from sqlglot import exp

from sql_query_service.druid_sql import time_formats
from sql_query_service.druid_sql.problems import SqlError
from sql_query_service.druid_sql.scans import Scan

MAX_BUCKETS = 100_000
_UNIT_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
_CALENDAR_STEP = {"week": "1 week", "month": "1 month", "quarter": "3 months", "year": "1 year"}


@dataclass(frozen=True)
class Fill:
    time_alias: str
    first: datetime
    last: datetime
    step: str                      # a PostgreSQL interval
    aliases: tuple[str, ...]
    zero: frozenset[str]           # the count columns: 0 in an empty bucket


def _bucket(expression: exp.Expression) -> tuple[str, int] | None:
    """('seconds', n) or (calendar unit, 1) of a time floor of __time, else None."""
    def is_time(node: exp.Expression) -> bool:
        return isinstance(node, exp.Column) and node.name == "__time"

    if (isinstance(expression, exp.Anonymous) and expression.name.upper() == "TIME_FLOOR"
            and len(expression.expressions) == 2 and is_time(expression.expressions[0])):
        period = expression.expressions[1]
        if isinstance(period, exp.Literal) and period.is_string:
            try:
                return time_formats.period(period.this)
            except SqlError:
                return None
    if isinstance(expression, exp.Floor) and expression.args.get("to") and is_time(expression.this):
        unit = expression.args["to"].name.upper()
        if unit in _UNIT_SECONDS:
            return "seconds", _UNIT_SECONDS[unit]
        if unit.lower() in _CALENDAR_STEP:
            return unit.lower(), 1
    return None


def _floor(moment: datetime, unit: str, seconds: int) -> datetime:
    if unit == "seconds":
        epoch = int(moment.timestamp())
        return datetime.fromtimestamp(epoch - epoch % seconds, UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "week":
        return day - timedelta(days=day.weekday())
    month = {"month": day.month, "quarter": day.month - (day.month - 1) % 3, "year": 1}[unit]
    return day.replace(day=1, month=month)


def _instant(node: exp.Expression) -> datetime | None:
    if isinstance(node, exp.Cast) and node.to.this in (exp.DataType.Type.TIMESTAMP,
                                                        exp.DataType.Type.TIMESTAMPTZ):
        node = node.this
    if not (isinstance(node, exp.Literal) and node.is_string):
        return None
    try:
        moment = datetime.fromisoformat(node.this.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _bounds(select: exp.Select) -> tuple[datetime, datetime, bool] | None:
    """(start, end, end inclusive) from top-level `__time` comparisons with literals."""
    where = select.args.get("where")
    start = end = None
    inclusive = False
    for predicate in (where.this.flatten() if where and isinstance(where.this, exp.And)
                      else [where.this] if where else []):
        if not isinstance(predicate, exp.GTE | exp.GT | exp.LT | exp.LTE):
            continue
        column, value = predicate.this, predicate.expression
        if not (isinstance(column, exp.Column) and column.name == "__time"):
            continue
        moment = _instant(value)
        if moment is None:
            continue
        if isinstance(predicate, exp.GTE | exp.GT):
            start = moment if start is None else max(start, moment)
        else:
            end, inclusive = moment, isinstance(predicate, exp.LTE)
    return (start, end, inclusive) if start and end and start < end else None


def _projection_index(select: exp.Select, grouped: exp.Expression) -> int | None:
    if isinstance(grouped, exp.Literal) and not grouped.is_string and grouped.this.isdigit():
        index = int(grouped.this) - 1
        return index if 0 <= index < len(select.expressions) else None
    for index, projection in enumerate(select.expressions):
        named = isinstance(grouped, exp.Column) and not grouped.table
        if named and projection.alias == grouped.name:
            return index
        if projection.unalias() == grouped:
            return index
    return None


def _is_count(node: exp.Expression) -> bool:
    node = node.this if isinstance(node, exp.Filter) else node
    return isinstance(node, exp.Count | exp.ApproxDistinct) or (
        isinstance(node, exp.Anonymous) and node.name.upper().startswith("APPROX_COUNT_DISTINCT"))


def plan(tree: exp.Expression, scans: list[Scan], skip: bool) -> Fill | None:
    """The fill a Druid time series query needs, or None (projections already aliased)."""
    if skip or not isinstance(tree, exp.Select) or len(scans) != 1:
        return None
    if scans[0].scope.expression is not tree or tree.args.get("joins") or tree.args.get("distinct"):
        return None
    group = tree.args.get("group")
    if not group or len(group.expressions) != 1 or any(
            tree.args.get(k) for k in ("having", "limit", "offset", "qualify")):
        return None
    index = _projection_index(tree, group.expressions[0])
    bucket = _bucket(tree.expressions[index].unalias()) if index is not None else None
    bounds = _bounds(tree)
    aliases = tuple(p.alias for p in tree.expressions)
    if bucket is None or bounds is None or len(set(aliases)) != len(aliases):
        return None
    order = tree.args.get("order")
    if order and not (len(order.expressions) == 1 and not order.expressions[0].args.get("desc")
                      and _projection_index(tree, order.expressions[0].this) == index):
        return None
    unit, seconds = bucket
    start, end, inclusive = bounds
    first = _floor(start, unit, seconds)
    last = _floor(end if inclusive else end - timedelta(microseconds=1), unit, seconds)
    if unit == "seconds" and (last - first).total_seconds() / seconds >= MAX_BUCKETS:
        return None
    step = f"{seconds} seconds" if unit == "seconds" else _CALENDAR_STEP[unit]
    zero = frozenset(p.alias for p in tree.expressions if _is_count(p.unalias()))
    return Fill(aliases[index], first, last, step, aliases, zero)


def apply(tree: exp.Expression, fill: Fill) -> exp.Expression:
    """The rewritten query LEFT JOINed to every bucket of the range, in time order."""
    tree.set("order", None)
    outer = sqlglot.parse_one(
        f"SELECT 1 FROM GENERATE_SERIES(CAST('{fill.first.isoformat()}' AS TIMESTAMPTZ),"
        f" CAST('{fill.last.isoformat()}' AS TIMESTAMPTZ), CAST('{fill.step}' AS INTERVAL))"
        ' AS "__b"("__bucket") LEFT JOIN (SELECT 1) AS "__q" ON TRUE ORDER BY "__b"."__bucket"',
        read="postgres",
    )
    outer.find(exp.Subquery).set("this", tree)
    outer.args["joins"][0].set("on", exp.EQ(
        this=exp.column(fill.time_alias, table="__q", quoted=True),
        expression=exp.column("__bucket", table="__b", quoted=True)))
    projections = []
    for alias in fill.aliases:
        value: exp.Expression = exp.column(alias, table="__q", quoted=True)
        if alias == fill.time_alias:
            value = exp.column("__bucket", table="__b", quoted=True)
        elif alias in fill.zero:
            value = exp.Coalesce(this=value, expressions=[exp.Literal.number(0)])
        projections.append(exp.alias_(value, alias, quoted=True))
    outer.set("expressions", projections)
    return outer
