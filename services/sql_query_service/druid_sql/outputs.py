"""Pass 9: the names of the result columns, as Druid gives them, made explicit in the query.

An alias names its column exactly as written (spaces and case kept), a bare
column its own name, anything else `EXPR$n` (n = its position), as in Druid.
"""

from __future__ import annotations

from sqlglot import exp


def _leftmost_select(tree: exp.Expression) -> exp.Select | None:
    while isinstance(tree, exp.SetOperation):
        tree = tree.this
    if isinstance(tree, exp.Subquery):
        return _leftmost_select(tree.this)
    return tree if isinstance(tree, exp.Select) else None


def alias_derived_tables(tree: exp.Expression) -> None:
    """Druid allows `FROM (SELECT …)` without an alias; PostgreSQL 15 does not."""
    for index, subquery in enumerate(tree.find_all(exp.Subquery)):
        if isinstance(subquery.parent, exp.From | exp.Join) and not subquery.alias:
            subquery.set("alias", exp.TableAlias(this=exp.to_identifier(f"EXPR$t{index}", True)))


def name(tree: exp.Expression) -> None:
    """Alias every top-level projection with its Druid name (stars over subqueries excepted)."""
    select = _leftmost_select(tree)
    if select is None:
        return
    named: list[exp.Expression] = []
    for index, projection in enumerate(select.expressions):
        if isinstance(projection, exp.Alias | exp.Star) or (
            isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
        ):
            named.append(projection)
        elif isinstance(projection, exp.Column):
            named.append(exp.alias_(projection, projection.name, quoted=True))
        else:
            named.append(exp.alias_(projection, f"EXPR${index}", quoted=True))
    select.set("expressions", named)
