"""Rows → the answer body in Druid's result formats (object, array, objectLines, arrayLines, csv).

Timestamps print as `YYYY-MM-DDTHH:MM:SS.000Z`, numbers as JSON numbers
(integral NUMERIC results as integers), null as null (CONTRACT §7).
"""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, date, datetime
from decimal import Decimal

import orjson
from google.api import httpbody_pb2

from sql_query_service.druid_sql.problems import SqlError

_LONG = 2**63  # Druid's LONG (and orjson's integers) are 64-bit


def value(item: object) -> object:
    """One PostgreSQL value as Druid prints it in JSON."""
    if item is None or isinstance(item, bool | int | str):
        return item
    if isinstance(item, float):
        return item if math.isfinite(item) else None
    if isinstance(item, Decimal):
        if not item.is_finite():
            return None
        if item == item.to_integral_value() and -_LONG <= item < _LONG:
            return int(item)
        number = float(item)  # as Druid: past a long, a double
        if math.isinf(number):  # PostgreSQL's NUMERIC reaches 10^131072, JSON readers do not
            raise SqlError("Invalid value: numeric value out of range (SQLSTATE 22003):"
                           " a result exceeds a double")
        return number
    if isinstance(item, datetime):
        item = item.astimezone(UTC) if item.tzinfo else item
        return item.strftime("%Y-%m-%dT%H:%M:%S.") + f"{item.microsecond // 1000:03d}Z"
    if isinstance(item, date):
        return item.strftime("%Y-%m-%dT00:00:00.000Z")
    if isinstance(item, list | tuple):
        return [value(v) for v in item]
    return str(item)


def _csv_line(values: list) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(["" if v is None else v for v in values])
    return out.getvalue()


def render(
    names: list[str], rows: list[tuple], result_format: str, header: bool
) -> httpbody_pb2.HttpBody:
    """The HTTP body of a result; line formats end with a blank line, as Druid's do."""
    data = [[value(v) for v in row] for row in rows]
    if result_format in ("object", "objectLines"):
        items: list = [dict(zip(names, row, strict=True)) for row in data]
        if header:
            items.insert(0, dict.fromkeys(names))
    elif result_format in ("array", "arrayLines"):
        items = [*([list(names)] if header else []), *data]
    else:
        text = "".join(_csv_line(row) for row in ([names] if header else []) + data) + "\n"
        return httpbody_pb2.HttpBody(content_type="text/csv", data=text.encode())
    if result_format.endswith("Lines"):
        text = b"".join(orjson.dumps(item) + b"\n" for item in items) + b"\n"
        return httpbody_pb2.HttpBody(content_type="text/plain", data=text)
    return httpbody_pb2.HttpBody(content_type="application/json", data=orjson.dumps(items))
