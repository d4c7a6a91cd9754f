"""Pass 2: only a read-only SELECT (or set operation of SELECTs), nothing that writes or locks."""

from __future__ import annotations

from sqlglot import exp

from sql_query_service.druid_sql.problems import SqlError

# Node kinds that read nothing a customer may see or change state; refused anywhere in the tree.
_REFUSED = (
    exp.Into, exp.Lock, exp.Command, exp.Insert, exp.Update, exp.Delete, exp.Merge,
    exp.Create, exp.Drop, exp.Alter, exp.Set, exp.Use, exp.Transaction, exp.Commit,
    exp.Rollback, exp.Copy, exp.Lateral, exp.Parameter, exp.SessionParameter, exp.Pragma,
    exp.Describe, exp.Show, exp.TruncateTable, exp.Grant, exp.Cache, exp.Uncache,
    exp.LoadData, exp.Analyze, exp.Kill,
)


def check(tree: exp.Expression) -> None:
    """Raise 400 unless `tree` is a plain query."""
    if not isinstance(tree, exp.Query):
        raise SqlError("Only SELECT statements are allowed")
    for node in tree.walk():
        if isinstance(node, _REFUSED):
            raise SqlError(f"{node.key.upper()} is not allowed in a query")
