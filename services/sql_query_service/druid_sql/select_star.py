"""Pass 7: `SELECT *` over a datasource needs a LIMIT within the tier's maximum (seed 001),
and is expanded here to the columns the caller may see (the historical layers have no
per-session columns), so PostgreSQL never expands a star over a datasource itself."""

from __future__ import annotations

from sqlglot import exp

from edgestats_core.tenancy.principals import Principal
from sql_query_service.druid_sql.datasources import visible_columns
from sql_query_service.druid_sql.problems import SqlError
from sql_query_service.druid_sql.scans import Scan

MAX_ROWS = {"lite": 1_000, "advanced": 10_000}


def _limit_of(select: exp.Expression) -> int | None:
    for node in (select, select.parent if isinstance(select.parent, exp.SetOperation) else None):
        limit = node.args.get("limit") if node is not None else None
        if limit is not None:
            value = limit.expression
            if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
                return int(value.this)
            raise SqlError("LIMIT must be a whole number")
    return None


def _columns(scan: Scan, tier: str, qualify: bool) -> list[exp.Expression]:
    table = scan.alias if qualify else None
    columns = visible_columns(tier, scan.source)
    return [exp.column(c.druid, table=table, quoted=True) for c in columns]


def expand(scans: list[Scan], principal: Principal) -> None:
    """Check the LIMIT of each star over a datasource, then replace the star by its columns."""
    maximum = MAX_ROWS.get(principal.tier, MAX_ROWS["lite"])
    by_select: dict[int, list[Scan]] = {}
    for scan in scans:
        by_select.setdefault(id(scan.scope.expression), []).append(scan)
    for group in by_select.values():
        select = group[0].scope.expression
        by_alias = {scan.alias: scan for scan in group}
        single = len(group[0].scope.selected_sources) == 1
        projections: list[exp.Expression] = []
        starred = False
        for projection in select.expressions:
            if isinstance(projection, exp.Star) and single:
                projections += _columns(group[0], principal.tier, False)
                starred = True
            elif isinstance(projection, exp.Star):
                raise SqlError("SELECT * over several tables is not supported: name the columns")
            elif (
                isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
                and projection.table in by_alias
            ):
                projections += _columns(by_alias[projection.table], principal.tier, True)
                starred = True
            else:
                projections.append(projection)
        if not starred:
            continue
        limit = _limit_of(select)
        if limit is None or limit > maximum:
            raise SqlError(
                f"SELECT * needs a LIMIT of at most {maximum:,} rows in the {principal.tier} tier"
            )
        select.set("expressions", projections)
