"""Validation of incoming beacons (CONTRACT §3, §10): each item accepted or rejected alone."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from edgestats_core.beacon_columns import COLUMNS, REQUIRED, SOURCES
from edgestats_core.errors import BadRequest, FieldError, PayloadTooLarge

MAX_ITEMS = 10_000
MAX_BYTES = 10 * 1024 * 1024
MAX_TEXT = 1024
RETENTION = timedelta(days=30)
MAX_CLOCK_SKEW = timedelta(minutes=5)
INT32 = 2**31 - 1


class Invalid(ValueError):
    """One item's rejection reason."""


@dataclass
class Batch:
    """Valid rows (in COLUMNS order) and per-item rejections."""

    rows: list[tuple] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def parse_body(data: bytes) -> list:
    """Items of a JSON array or NDJSON body; 413 past the limits, 400 when it does not parse."""
    if len(data) > MAX_BYTES:
        raise PayloadTooLarge(f"at most {MAX_BYTES} bytes")
    text = data.decode("utf-8", errors="strict") if data.strip() else ""
    if not text:
        raise BadRequest([FieldError(("body",), "body is empty", "value_error.missing")])
    try:
        parsed = json.loads(text)
        items = parsed if isinstance(parsed, list) else [parsed]
    except json.JSONDecodeError:
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                msg = f"line {number} is not JSON ({exc.msg}): send a JSON array or NDJSON"
                raise BadRequest([FieldError(("body",), msg, "value_error.jsondecode")]) from exc
    if len(items) > MAX_ITEMS:
        raise PayloadTooLarge(f"at most {MAX_ITEMS} items")
    return items


def parse_time(value: object, now: datetime) -> datetime:
    """`__time` as ISO-8601 (no zone = UTC) or epoch milliseconds, truncated to the second."""
    if isinstance(value, bool) or value is None:
        raise Invalid("__time: must be an ISO-8601 string or epoch milliseconds")
    try:
        if isinstance(value, datetime):  # internal producers (demo loader)
            instant = value if value.tzinfo else value.replace(tzinfo=UTC)
        elif isinstance(value, int | float):
            instant = datetime.fromtimestamp(value / 1000, UTC)
        elif isinstance(value, str):
            instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
            instant = instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant
        else:
            raise Invalid("__time: must be an ISO-8601 string or epoch milliseconds")
    except (ValueError, OverflowError, OSError) as exc:
        raise Invalid(f"__time: not a valid timestamp: {str(value)[:40]!r}") from exc
    instant = instant.astimezone(UTC).replace(microsecond=0)
    if instant < now - RETENTION:
        raise Invalid("__time: older than the 30-day realtime retention")
    if instant > now + MAX_CLOCK_SKEW:
        raise Invalid("__time: more than 5 minutes in the future")
    return instant


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{name}: must be a string")
    if len(value) > MAX_TEXT or "\x00" in value:
        raise Invalid(f"{name}: longer than {MAX_TEXT} characters or contains NUL")
    return value


def _convert(name: str, kind: str, value: object) -> object:
    if kind == "string":
        return _text(name, value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise Invalid(f"{name}: must be a boolean")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"{name}: must be a number")
    if not math.isfinite(value):
        raise Invalid(f"{name}: must be finite")
    if kind == "int":
        if value != int(value) or abs(value) > INT32:
            raise Invalid(f"{name}: must be a 32-bit integer")
        return int(value)
    return float(value)


def validate(item: object, customer_id: str, now: datetime) -> tuple:
    """One beacon dict (Druid names) -> a row in COLUMNS order, or Invalid."""
    if not isinstance(item, dict):
        raise Invalid("not a JSON object")
    for name in REQUIRED:
        if item.get(name) in (None, ""):
            raise Invalid(f"{name}: field required")
    if item["CustomerId"] != customer_id:
        raise Invalid("CustomerId: not the customer of this key")
    if item["Source"] not in SOURCES:
        raise Invalid("Source: must be one of cdn, p2p")
    row = []
    for column in COLUMNS:
        value = item.get(column.druid)
        if column.type == "time":
            row.append(parse_time(value, now))
        else:
            row.append(None if value is None else _convert(column.druid, column.type, value))
    return tuple(row)


def validate_all(items: list, customer_id: str, now: datetime) -> Batch:
    batch = Batch()
    for index, item in enumerate(items):
        try:
            batch.rows.append(validate(item, customer_id, now))
        except Invalid as exc:
            batch.rejected.append((index, str(exc)))
    return batch
