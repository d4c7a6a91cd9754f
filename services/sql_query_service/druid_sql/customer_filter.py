"""Pass 6: every datasource scan is filtered on the caller's CustomerId (CONTRACT §7).

The filter must be a top-level conjunct of the scan's own WHERE (or JOIN … ON):
`CustomerId = 'id'`, `'id' = CustomerId` or `CustomerId IN ('a', 'b')`, with only
the caller's customers (a reseller's own list). An `OR` around it, a filter
in another SELECT, or a computed value does not count.
"""

from __future__ import annotations

from sqlglot import exp

from edgestats_core.tenancy.principals import Principal
from sql_query_service.druid_sql.problems import SqlError, forbidden
from sql_query_service.druid_sql.scans import Scan


def allowed_customers(principal: Principal) -> tuple[str, ...]:
    """The CustomerIds the caller may read."""
    if principal.is_customer and principal.customer_id:
        return (principal.customer_id,)
    return tuple(principal.customers)


def _conjuncts(condition: exp.Expression | None) -> list[exp.Expression]:
    if condition is None:
        return []
    condition = condition.unnest()
    if isinstance(condition, exp.And):
        return _conjuncts(condition.left) + _conjuncts(condition.right)
    return [condition]


def _customer_values(predicate: exp.Expression, scan: Scan, single: bool) -> list | None:
    """The literal customer ids the predicate pins the scan to, or None if it does not."""
    def is_customer_column(node: exp.Expression) -> bool:
        return (
            isinstance(node, exp.Column) and node.name == "CustomerId"
            and (node.table == scan.alias or (not node.table and single))
        )

    def literal(node: exp.Expression) -> object:
        return node.this if isinstance(node, exp.Literal) and node.is_string else ...

    if isinstance(predicate, exp.EQ):
        for column, value in ((predicate.this, predicate.expression),
                              (predicate.expression, predicate.this)):
            if is_customer_column(column):
                return [literal(value)]
    if isinstance(predicate, exp.In) and is_customer_column(predicate.this):
        if predicate.args.get("query") or predicate.args.get("unnest") or not predicate.expressions:
            return [...]
        return [literal(v) for v in predicate.expressions]
    return None


def check(scans: list[Scan], principal: Principal) -> tuple[str, ...]:
    """400 when a scan has no CustomerId filter; 403 when it names another customer.
    Returns the customers the scans' filters name (which data the query can read)."""
    allowed = set(allowed_customers(principal))
    named: set[str] = set()
    for scan in scans:
        select = scan.scope.expression
        predicates = _conjuncts(select.args.get("where") and select.args["where"].this)
        for join in select.args.get("joins") or []:
            predicates += _conjuncts(join.args.get("on"))
        single = len(scan.scope.selected_sources) == 1
        found = [v for p in predicates if (v := _customer_values(p, scan, single)) is not None]
        if not found:
            raise SqlError(
                f"The query must filter {scan.source.name} on your CustomerId"
                " (WHERE CustomerId = '…')"
            )
        for values in found:
            if any(v is ... for v in values):
                raise SqlError("The CustomerId filter must compare with string literals")
            others = sorted(set(values) - allowed)
            if others:
                raise forbidden(f"CustomerId {others[0]} is not one of your customers",
                                "CUSTOMER_FORBIDDEN")
        # a scan's rows match every filter of it: the customers of its narrowest one
        named |= set(min(found, key=len))
    return tuple(sorted(named))
