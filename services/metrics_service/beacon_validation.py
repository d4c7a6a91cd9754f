"""Validation of incoming beacons (CONTRACT §3, §10): each item accepted or rejected alone."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from edgestats_core.beacon_columns import COLUMNS, REQUIRED, SOURCES
from edgestats_core.ingest_body import Invalid, checked_text

MAX_TEXT = 1024
RETENTION = timedelta(days=30)
MAX_CLOCK_SKEW = timedelta(minutes=5)
INT32 = 2**31 - 1
T = TypeVar("T")


@dataclass
class Batch:
    """Valid rows (in COLUMNS order) and per-item rejections."""

    rows: list[tuple] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def validate_each(
    items: Iterable[T], fast: Callable[[T], tuple | None], item_of: Callable[[T], dict],
    customer_id: str, now: datetime,
) -> Batch:
    """Each item's row from `fast` or, where it gives None, from `validate` on the item as a
    Druid-keyed dict (`item_of`), whose Invalid is the item's rejection: the fast paths of
    the JSON and typed gRPC bodies, exact by construction."""
    batch = Batch()
    for index, item in enumerate(items):
        row = fast(item)
        if row is None:
            try:
                row = validate(item_of(item), customer_id, now)
            except Invalid as exc:
                batch.rejected.append((index, str(exc)))
                continue
        batch.rows.append(row)
    return batch


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


Converter = Callable[[object], object]


def _text(name: str) -> Converter:
    return lambda value: checked_text(name, value, MAX_TEXT)


def _boolean(name: str) -> Converter:
    def convert(value: object) -> bool:
        if type(value) is not bool:
            raise Invalid(f"{name}: must be a boolean")
        return value
    return convert


def _double(name: str) -> Converter:
    def convert(value: object) -> float:
        kind = type(value)
        if kind is not float and kind is not int:  # bool is not int by type()
            raise Invalid(f"{name}: must be a number")
        try:
            number = float(value)
        except OverflowError as exc:  # an integer beyond double range
            raise Invalid(f"{name}: must be finite") from exc
        if not math.isfinite(number):
            raise Invalid(f"{name}: must be finite")
        return number
    return convert


def _int32(name: str) -> Converter:
    number = _double(name)

    def convert(value: object) -> int:
        as_float = number(value)
        if as_float != int(as_float) or abs(as_float) > INT32:
            raise Invalid(f"{name}: must be a 32-bit integer")
        return int(as_float)
    return convert


_CONVERTERS = {"string": _text, "bool": _boolean, "double": _double, "int": _int32}
# (Druid name, converter) of every column but __time, in COLUMNS order after it
_FIELDS: tuple[tuple[str, Converter], ...] = tuple(
    (c.druid, _CONVERTERS[c.type](c.druid)) for c in COLUMNS if c.type != "time"
)
assert COLUMNS[0].type == "time", "rows put __time first"


def validate(item: object, customer_id: str, now: datetime) -> tuple:
    """One beacon dict (Druid names) -> a row in COLUMNS order, or Invalid."""
    if type(item) is not dict:
        raise Invalid("not a JSON object")
    get = item.get
    for name in REQUIRED:
        if get(name) in (None, ""):
            raise Invalid(f"{name}: field required")
    if item["CustomerId"] != customer_id:
        raise Invalid("CustomerId: not the customer of this key")
    if item["Source"] not in SOURCES:
        raise Invalid("Source: must be one of cdn, p2p")
    row = [parse_time(item["__time"], now)]
    for druid, convert in _FIELDS:
        value = get(druid)
        row.append(None if value is None else convert(value))
    return tuple(row)


def validate_all(items: list, customer_id: str, now: datetime) -> Batch:
    batch = Batch()
    for index, item in enumerate(items):
        try:
            batch.rows.append(validate(item, customer_id, now))
        except Invalid as exc:
            batch.rejected.append((index, str(exc)))
    return batch
