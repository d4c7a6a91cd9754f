"""INFORMATION_SCHEMA.SCHEMATA, TABLES and COLUMNS in Druid's layout, for Druid tools.

They list only the caller's datasources and its tier's columns, and are
answered from constant rows (VALUES) built here: PostgreSQL's own catalogue is
never read.
"""

from __future__ import annotations

from sqlglot import exp

from edgestats_core.tenancy.principals import Principal
from sql_query_service.druid_sql.datasources import names_for, parse_name, visible_columns

SCHEMA = "INFORMATION_SCHEMA"
# Druid SQL type and JDBC type code of each beacon column type.
TYPES = {"time": ("TIMESTAMP", 93), "string": ("VARCHAR", 12), "double": ("DOUBLE", 8),
         "int": ("BIGINT", -5), "bool": ("BOOLEAN", 16)}
COLUMNS = {
    "SCHEMATA": ("CATALOG_NAME", "SCHEMA_NAME", "SCHEMA_OWNER", "DEFAULT_CHARACTER_SET_CATALOG",
                 "DEFAULT_CHARACTER_SET_SCHEMA", "DEFAULT_CHARACTER_SET_NAME", "SQL_PATH"),
    "TABLES": ("TABLE_CATALOG", "TABLE_SCHEMA", "TABLE_NAME", "TABLE_TYPE", "IS_JOINABLE",
               "IS_BROADCAST"),
    "COLUMNS": ("TABLE_CATALOG", "TABLE_SCHEMA", "TABLE_NAME", "COLUMN_NAME", "ORDINAL_POSITION",
                "COLUMN_DEFAULT", "IS_NULLABLE", "DATA_TYPE", "JDBC_TYPE"),
}
NAMES = frozenset(c for columns in COLUMNS.values() for c in columns)


def is_catalog(table: exp.Table) -> bool:
    return table.db.upper() == SCHEMA and table.name.upper() in COLUMNS and not table.catalog


def _rows(name: str, principal: Principal) -> list[tuple]:
    tables = names_for(principal)
    if name == "SCHEMATA":
        return [("druid", schema, None, None, None, None, None) for schema in ("druid", SCHEMA)]
    if name == "TABLES":
        return [("druid", "druid", t, "TABLE", "NO", "NO") for t in tables] + [
            ("druid", SCHEMA, t, "SYSTEM_TABLE", "NO", "NO") for t in COLUMNS]
    rows = []
    for table in tables:
        source = parse_name(table)
        for position, column in enumerate(visible_columns(principal.tier, source), start=1):
            data_type, jdbc = TYPES[column.type]
            nullable = "NO" if column.druid == "__time" else "YES"
            rows.append(("druid", "druid", table, column.druid, position, None, nullable,
                         data_type, jdbc))
    return rows


def _literal(value: object) -> exp.Expression:
    if value is None:
        return exp.cast(exp.Null(), exp.DataType.Type.TEXT)
    if isinstance(value, int):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))


def source_query(table: exp.Table, principal: Principal) -> exp.Expression:
    """SELECT … FROM (VALUES …) with Druid's column names, for one INFORMATION_SCHEMA table."""
    name = table.name.upper()
    columns = COLUMNS[name]
    rows = _rows(name, principal)
    select = exp.select(*[exp.column(c, quoted=True) for c in columns])
    values = exp.Values(
        expressions=[exp.Tuple(expressions=[_literal(v) for v in row]) for row in rows],
        alias=exp.TableAlias(this=exp.to_identifier("v"),
                             columns=[exp.to_identifier(c, quoted=True) for c in columns]),
    )
    return select.from_(values)
