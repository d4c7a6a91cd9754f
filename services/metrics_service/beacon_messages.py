"""Typed Beacon messages (gRPC `IngestBeacons`) into rows, checked as `beacon_validation` checks.

The message already guarantees each field's type, so a beacon becomes a row from one
attribute fetch of all its fields, a few whole-beacon checks (strings: length and NUL;
doubles: finite; int32: not -2**31) and a presence test only for fields holding their
default value (unset = null). A beacon failing any of them goes through `beacon_to_item` and
`validate`, so its rejection reason, or its row, is exactly theirs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from operator import attrgetter, itemgetter

from google.protobuf.message import Message

from edgestats_core.beacon_columns import COLUMNS, SOURCES
from edgestats_core.ingest_body import Invalid
from metrics_service.beacon_validation import INT32, MAX_TEXT, Batch, parse_time, validate_each

_DRUID = {c.name: c.druid for c in COLUMNS}
_FIELDS = [c for c in COLUMNS if c.type != "time"]  # the row after __time
assert COLUMNS[0].type == "time"
_VALUES = attrgetter(*(c.name for c in _FIELDS))
_STRINGS = itemgetter(*(i for i, c in enumerate(_FIELDS) if c.type == "string"))
_DOUBLES = itemgetter(*(i for i, c in enumerate(_FIELDS) if c.type == "double"))
_INTS = itemgetter(*(i for i, c in enumerate(_FIELDS) if c.type == "int"))
# fields with presence (`optional` in beacon.proto): all but the required strings
_OPTIONAL = tuple((i, c.name) for i, c in enumerate(_FIELDS)
                  if c.name not in ("customer_id", "session_id", "source"))


def beacon_to_item(beacon: Message) -> dict:
    """A typed Beacon as the Druid-keyed dict the JSON path receives (unset = absent)."""
    item: dict = {}
    for field, value in beacon.ListFields():  # only set fields: empty required ones stay absent
        if field.name == "time":
            item["__time"] = value.seconds * 1000 + value.nanos // 1_000_000
        else:
            item[_DRUID[field.name]] = value
    return item


def validate_messages(beacons: Iterable[Message], customer_id: str, now: datetime) -> Batch:
    """Rows (COLUMNS order) of the valid beacons and (index, reason) of the others."""
    return validate_each(beacons, lambda beacon: _row(beacon, customer_id, now),
                         beacon_to_item, customer_id, now)


def _row(beacon: Message, customer_id: str, now: datetime) -> tuple | None:
    """The row of a beacon that passes every check, else None (validate then decides)."""
    if not (beacon.customer_id == customer_id and beacon.session_id
            and beacon.source in SOURCES and beacon.HasField("time")):
        return None
    values = list(_VALUES(beacon))
    strings = _STRINGS(values)
    if max(map(len, strings)) > MAX_TEXT or "\x00" in "".join(strings):
        return None
    # a sum that overflows only sends a valid beacon the slow way
    if not math.isfinite(sum(_DOUBLES(values))) or min(_INTS(values)) < -INT32:
        return None
    stamp = beacon.time
    try:
        instant = parse_time(stamp.seconds * 1000 + stamp.nanos // 1_000_000, now)
    except Invalid:
        return None
    has = beacon.HasField
    for index, name in _OPTIONAL:
        if not values[index] and not has(name):  # "", 0, 0.0, False: set or unset?
            values[index] = None
    return (instant, *values)
