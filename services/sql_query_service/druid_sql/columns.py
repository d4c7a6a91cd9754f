"""Pass 5: every column is known, within the caller's tier, and available on its layer.

A name is known when it is a datasource column (case-sensitive, as in Druid)
or a name the query itself defines (an alias, a WITH or derived table's column
list). A name of a column above the caller's tier is refused wherever it
appears, even as another table's alias: a conservative rule that cannot be
evaded by nesting.
"""

from __future__ import annotations

from sqlglot import exp

from edgestats_core.beacon_columns import BY_DRUID
from edgestats_core.tenancy.principals import Principal
from sql_query_service.druid_sql import information_schema
from sql_query_service.druid_sql.datasources import PER_SESSION
from sql_query_service.druid_sql.functions import CAST_TYPES
from sql_query_service.druid_sql.problems import SqlError, forbidden
from sql_query_service.druid_sql.scans import Scan


def _position(column: exp.Column) -> tuple[int | None, int | None]:
    meta = column.this.meta if isinstance(column.this, exp.Expression) else {}
    return meta.get("line"), meta.get("col")


def _defined_names(tree: exp.Expression) -> set[str]:
    names = {a.alias for a in tree.find_all(exp.Alias)}
    for alias in tree.find_all(exp.TableAlias):
        names.update(c.name for c in alias.columns)
    return names


def _no_op(node: exp.Expression | None) -> bool:
    """Parentheses, or a cast to text (SessionId is text; the service ignores VARCHAR(n))."""
    return isinstance(node, exp.Paren) or (
        isinstance(node, exp.Cast) and CAST_TYPES.get(node.to.this) == "text")


def unwrapped(node: exp.Expression) -> exp.Expression:
    """`node` without its no-op wrappers: `CAST((SessionId) AS VARCHAR)` → `SessionId`."""
    while _no_op(node):
        node = node.this
    return node


def _wrapped(node: exp.Expression) -> exp.Expression:
    """The outermost no-op wrapper around `node` (or `node`)."""
    while _no_op(node.parent):
        node = node.parent
    return node


def _in_distinct_count(column: exp.Column) -> bool:
    """Inside COUNT(DISTINCT …) / APPROX_COUNT_DISTINCT(…), directly or as the THEN of a
    one-branch CASE (`COUNT(DISTINCT CASE WHEN Source = 'p2p' THEN SessionId END)`), through
    no-op wrappers (`COUNT(DISTINCT (SessionId))`)."""
    node = _wrapped(column)
    parent = node.parent
    if (isinstance(parent, exp.If) and parent.args.get("true") is node
            and isinstance(parent.parent, exp.Case) and parent.parent.this is None
            and len(parent.parent.args.get("ifs") or []) == 1
            and not parent.parent.args.get("default")):
        parent = _wrapped(parent.parent).parent
    if isinstance(parent, exp.ApproxDistinct):
        return True
    if isinstance(parent, exp.Anonymous):
        return parent.name.upper().startswith("APPROX_COUNT_DISTINCT")
    return isinstance(parent, exp.Distinct) and isinstance(parent.parent, exp.Count)


def _check_layer(scans: list[Scan]) -> None:
    """Per-session columns of a historical scan → 400 naming the column and realtime."""
    for scan in scans:
        if not scan.source.historical:
            continue
        single = len(scan.scope.selected_sources) == 1
        for column in scan.scope.columns:
            reads_scan = column.table == scan.alias or (not column.table and single)
            if not reads_scan or column.name not in PER_SESSION:
                continue
            if column.name == "SessionId" and _in_distinct_count(column):
                continue
            realtime = f"sdk-{scan.source.region}-realtime"
            raise SqlError(
                f"Column {column.name} is not available on {scan.source.name}"
                f" (per-session column): query {realtime}", *_position(column)
            )


def check(tree: exp.Expression, principal: Principal, scans: list[Scan]) -> None:
    """400 for an unknown column, 403 for one above the caller's tier."""
    defined = _defined_names(tree)
    if any(information_schema.is_catalog(t) for t in tree.find_all(exp.Table)):
        defined |= information_schema.NAMES
    for column in tree.find_all(exp.Column):
        if isinstance(column.this, exp.Star):
            continue
        known = BY_DRUID.get(column.name)
        if known is not None and known.tier == "advanced" and not principal.is_advanced:
            raise forbidden(
                f"Column {column.name} is not available in the {principal.tier} tier",
                "TIER_FORBIDDEN")
        if known is None and column.name not in defined:
            raise SqlError(f"Unknown column '{column.name}'", *_position(column))
    _check_layer(scans)
