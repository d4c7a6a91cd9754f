"""Druid SQL text → checked PostgreSQL text: the passes in order (CONTRACT §7).

Every rule is decided on the parsed tree before anything reaches PostgreSQL,
which then enforces tenancy a second time (row-level security on the reader role).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlglot import exp

from edgestats_core.metrics.rollup_rows import Coverage
from edgestats_core.tenancy.principals import Principal
from sql_query_service.druid_sql import (
    columns,
    customer_filter,
    datasources,
    empty_buckets,
    functions,
    information_schema,
    outputs,
    parameters,
    parsing,
    rollups,
    scans,
    select_star,
    statements,
)
from sql_query_service.druid_sql.problems import SqlError

# At most this many rows are answered; a query that would return more is a 400.
ROW_CAP = 100_000


def _cap_rows(tree: exp.Expression) -> None:
    """LIMIT ROW_CAP + 1 on the outer query, unless its own LIMIT is lower."""
    limit = tree.args.get("limit")
    value = limit.expression if limit is not None else None
    if isinstance(value, exp.Literal) and value.this.isdigit() and int(value.this) <= ROW_CAP:
        return
    tree.set("limit", exp.Limit(expression=exp.Literal.number(ROW_CAP + 1)))


@dataclass(frozen=True)
class Translation:
    sql: str                       # PostgreSQL, every identifier quoted
    customers: tuple[str, ...]     # what row-level security lets the query see
    # historical scans on the rollups: their relation depends on which hours are rolled up,
    # read in the query's transaction (`render`); realtime ones too
    rollups: tuple[rollups.RollupSource, ...] = ()
    # with a realtime scan on the rollups: the query on raw beacons as written, which
    # `render` answers when the rollups hold too little of its range
    fallback: str | None = None
    # the regions of the datasources scanned, each read from its region's database
    regions: tuple[str, ...] = ()
    # the customers the query's filters name (in a sharded region: whose shard runs it)
    named: tuple[str, ...] = ()

    def hours(self) -> tuple[datetime, datetime] | None:
        """The hours [from, to) whose rollup state `render` needs, or None."""
        if not self.rollups:
            return None
        return min(r.start for r in self.rollups), max(r.end for r in self.rollups)

    def render(
        self, rolled: Coverage | None = None, live: tuple[datetime, datetime] | None = None,
    ) -> str:
        """The SQL to run, given what the rollups hold (None: nothing) and what the live
        layer holds ([held_from, upto), for realtime scans; None: nothing)."""
        rolled = rolled or Coverage()
        sql = self.sql
        for source in self.rollups:
            low = source.start.replace(minute=0, second=0, microsecond=0)
            hours = frozenset(h for h in rolled.hours if low <= h < source.end)
            minutes = frozenset(m for m in rolled.minutes if low <= m[0] < source.end)
            if source.layer == "realtime":
                relation = rollups.realtime_relation_sql(source.tier, source.start, source.end,
                                                         self.customers, hours, minutes,
                                                         source.columns or (), live)
                if relation is None:  # the rollups hold too little: raw beacons as written
                    assert self.fallback is not None
                    return self.fallback
            else:
                relation = rollups.relation_sql(source.layer, source.tier, source.start,
                                                source.end, self.customers, hours,
                                                source.totals, minutes)
            sql = sql.replace(f'"{source.name}"', f"({relation})")
        return sql


def translate(
    text: str, principal: Principal, options: functions.Options, params: list | None = None,
    realtime_rollups: bool = True,
) -> Translation:
    """Parse, check every rule, and rewrite; raises SqlError (400) or Forbidden (403).
    `realtime_rollups`: realtime scans may read the minute totals (rollups.plan_realtime)."""
    try:
        return _translate(text, principal, options, params or [], realtime_rollups)
    except RecursionError:  # parsing bounds the depth: a last wall, never a 500
        raise SqlError("The query is too deeply nested") from None
    except OverflowError:  # an extreme literal met a Python date or number (rollups' ranges)
        raise SqlError("Invalid value: a literal is out of range") from None


def _translate(
    text: str, principal: Principal, options: functions.Options, params: list,
    realtime_rollups: bool,
) -> Translation:
    tree = parsing.parse(text)
    statements.check(tree)
    parameters.bind(tree, params)
    functions.check(tree)
    found = scans.resolve(tree, principal)
    columns.check(tree, principal, found)
    named = customer_filter.check(found, principal)
    select_star.expand(found, principal)
    outputs.name(tree)
    outputs.alias_derived_tables(tree)
    fill = empty_buckets.plan(tree, found, options.skip_empty_buckets)
    token = f"__source_{secrets.token_hex(12)}"
    on_rollups = {}
    for index, scan in enumerate(found):
        if scan.source.historical:
            source = rollups.plan(scan, principal.tier, options, f"{token}_{index}")
        elif realtime_rollups:
            source = rollups.plan_realtime(scan, principal.tier, options, f"{token}_{index}")
        else:
            source = None
        if source is not None:
            on_rollups[index] = source
    nodes = list(tree.walk(bfs=False))
    # Datasources become a per-translation random name, swapped for their pre-rendered
    # SELECT after rendering: copying and rendering ~50 columns per scan cost milliseconds.
    sources: dict[str, str] = {}
    for index, scan in enumerate(found):
        name = f"{token}_{index}"
        if index not in on_rollups:
            sources[name] = datasources.source_sql(scan.source.layer, principal.tier)
        alias = exp.TableAlias(this=exp.to_identifier(scan.alias, quoted=True))
        scan.table.replace(exp.Table(this=exp.to_identifier(name, quoted=True), alias=alias))
    for table in [t for t in tree.find_all(exp.Table) if information_schema.is_catalog(t)]:
        alias = exp.TableAlias(this=exp.to_identifier(table.alias_or_name, quoted=True))
        table.replace(exp.Subquery(this=information_schema.source_query(table, principal),
                                   alias=alias))
    functions.rewrite(nodes, options)
    if fill is not None:
        tree = empty_buckets.apply(tree, fill)
    _cap_rows(tree)
    try:
        sql = tree.sql(dialect="postgres", identify=True)
    except Exception as error:  # noqa: BLE001 - sqlglot cannot render some exotic trees
        raise SqlError(f"Unsupported query construct: {type(error).__name__}") from None
    for name, source in sources.items():
        sql = sql.replace(f'"{name}"', f"({source})")
    fallback = None
    if any(source.layer == "realtime" for source in on_rollups.values()):
        fallback = _translate(text, principal, options, params, False).sql
    return Translation(sql, customer_filter.allowed_customers(principal),
                       tuple(on_rollups.values()), fallback,
                       tuple(dict.fromkeys(scan.source.region for scan in found)), named)
