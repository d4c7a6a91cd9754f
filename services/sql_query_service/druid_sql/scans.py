"""Pass 4: every table reference is a CTE of the query or one of the caller's datasources.

Resolution follows sqlglot's scopes, so a CTE is only visible where SQL makes
it visible; anything else (a PostgreSQL table, `pg_catalog.…`, a table
function) is an unknown datasource.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

from edgestats_core.tenancy.principals import Principal
from sql_query_service.druid_sql import information_schema
from sql_query_service.druid_sql.datasources import Datasource, parse_name
from sql_query_service.druid_sql.problems import SqlError, forbidden


@dataclass(frozen=True)
class Scan:
    """One datasource read by one SELECT."""

    table: exp.Table
    source: Datasource
    scope: Scope

    @property
    def alias(self) -> str:
        return self.table.alias_or_name


def _position(node: exp.Expression) -> tuple[int | None, int | None]:
    meta = node.this.meta if isinstance(node.this, exp.Expression) else {}
    return meta.get("line"), meta.get("col")


def _datasource(table: exp.Table, principal: Principal) -> Datasource:
    if not isinstance(table.this, exp.Identifier):
        raise SqlError("Table functions are not allowed", *_position(table))
    qualified = table.catalog or (table.db and table.db.lower() != "druid")
    source = None if qualified else parse_name(table.name)
    if source is None:
        raise SqlError(f"Unknown datasource '{table.sql(dialect='druid')}'", *_position(table))
    if principal.region and source.region != principal.region:
        raise forbidden(
            f"Datasource {source.name} is not in your region: use sdk-{principal.region}-*",
            "REGION_FORBIDDEN")
    return source


def _check_cte_names(tree: exp.Expression) -> None:
    for cte in tree.find_all(exp.CTE):
        if parse_name(cte.alias_or_name) is not None:
            raise SqlError(f"A WITH query cannot be named like a datasource: {cte.alias_or_name}")


def resolve(tree: exp.Expression, principal: Principal) -> list[Scan]:
    """The datasource scans of `tree`; 400 for an unknown table, 403 for another region."""
    _check_cte_names(tree)
    try:
        scopes = traverse_scope(tree)
    except Exception as error:  # noqa: BLE001 - sqlglot raises OptimizeError on bad scopes
        raise SqlError(f"Invalid query: {error}") from None
    scans: list[Scan] = []
    seen: set[int] = set()
    for scope in scopes:
        for table in scope.tables:
            seen.add(id(table))
            if not table.db and table.name in scope.cte_sources:
                continue
            if information_schema.is_catalog(table):
                continue
            scans.append(Scan(table, _datasource(table, principal), scope))
    for table in tree.find_all(exp.Table):
        if id(table) not in seen:  # a table sqlglot's scopes did not place: refuse it
            raise SqlError(f"Unknown datasource '{table.sql(dialect='druid')}'", *_position(table))
    return scans
