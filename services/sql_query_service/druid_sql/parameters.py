"""Pass 3: Druid's typed `?` parameters bound into the tree as literals, in order.

Values may arrive as strings (Grafana's Druid plugin sends them so); each is
converted by its declared type, and sqlglot quotes the literal when the query
is rendered, so a value can never become SQL.
"""

from __future__ import annotations

import math

from sqlglot import exp

from sql_query_service.druid_sql.parsing import PLACEHOLDER_PREFIX
from sql_query_service.druid_sql.problems import SqlError

_INTEGER = {"INTEGER", "INT", "BIGINT", "SMALLINT", "TINYINT", "LONG"}
_REAL = {"FLOAT", "DOUBLE", "REAL", "DECIMAL", "NUMERIC"}
_TEXT = {"VARCHAR", "CHAR", "STRING"}
_TIME = {"TIMESTAMP", "DATE"}


def _number(value: object, integer: bool, index: int) -> exp.Expression:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or (integer and number != int(number)):
        raise SqlError(f"Parameter {index + 1} is not a valid number: {value!r}")
    if integer:
        return exp.Literal.number(int(number))
    return exp.Literal.number(repr(number))


def literal(parameter: object, index: int) -> exp.Expression:
    """The literal for one `{"type", "value"}` parameter."""
    if not isinstance(parameter, dict) or "value" not in parameter:
        raise SqlError(f"Parameter {index + 1} must be an object with type and value")
    kind = str(parameter.get("type") or "VARCHAR").upper()
    value = parameter["value"]
    if value is None:
        return exp.Null()
    if kind in _INTEGER:
        return _number(value, True, index)
    if kind in _REAL:
        return _number(value, False, index)
    if kind == "BOOLEAN":
        text = str(value).lower()
        if text not in ("true", "false", "1", "0"):
            raise SqlError(f"Parameter {index + 1} is not a boolean: {value!r}")
        return exp.Boolean(this=text in ("true", "1"))
    if kind in _TEXT:
        return exp.Literal.string(str(value))
    if kind in _TIME:
        return exp.cast(exp.Literal.string(str(value)), exp.DataType.Type.TIMESTAMP)
    raise SqlError(f"Parameter {index + 1} has an unsupported type {kind}")


def bind(tree: exp.Expression, parameters: list) -> exp.Expression:
    """Replace the placeholders, left to right; their count must match."""
    placeholders = list(tree.find_all(exp.Placeholder))
    count = len({p.name for p in placeholders})
    if count != len(parameters):
        raise SqlError(f"The query has {count} parameters but {len(parameters)} were given")
    names = {f"{PLACEHOLDER_PREFIX}{i}": i for i in range(len(parameters))}
    for placeholder in placeholders:
        if placeholder.name not in names:
            raise SqlError(f"Unknown parameter :{placeholder.name}")
        index = names[placeholder.name]
        placeholder.replace(literal(parameters[index], index))
    return tree
