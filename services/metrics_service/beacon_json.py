"""JSON ingest bodies decoded by msgspec straight into beacon rows (CONTRACT §3, §10).

msgspec reads each beacon of a JSON array or NDJSON body into a struct whose fields are the
columns in COLUMNS order, checking in C what `beacon_validation` checks per field (strings of
at most 1,024 characters, booleans, 32-bit integers, finite numbers); Python then checks the
required fields, the tenant, `Source` and `__time`, and the struct becomes the row as is.

Exactness by construction: an item the fast path does not accept is decoded by itself with
`ingest_body`'s parser and given to `validate`, so its reason is `validate`'s; a body msgspec
cannot read (not JSON, NaN, a lone surrogate, a NUL escape, invalid UTF-8, over the limits)
goes whole through `parse_body` and `validate_all`. The fast path only accepts what
`validate` accepts, with the same row (tests/unit/test_beacon_json.py compares both).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from edgestats_core.beacon_columns import COLUMNS, SOURCES
from edgestats_core.errors import PayloadTooLarge
from edgestats_core.ingest_body import MAX_BYTES, MAX_ITEMS, Invalid, loads, parse_body
from metrics_service.beacon_validation import (
    INT32,
    MAX_TEXT,
    Batch,
    parse_time,
    validate_all,
    validate_each,
)

_FIELD_TYPES = {
    "time": int | float | str | None,  # parse_time reads all three
    "string": Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] | None,
    "bool": bool | None,
    "int": Annotated[int, msgspec.Meta(ge=-INT32, le=INT32)] | None,  # a float is refused
    "double": float | None,  # also reads JSON integers; NaN and ±inf cannot come from JSON
}
WireBeacon = msgspec.defstruct(
    "WireBeacon",
    [(c.name, _FIELD_TYPES[c.type], None) for c in COLUMNS],
    rename={c.name: c.druid for c in COLUMNS},  # unknown keys are ignored
    gc=False,  # scalars only, no cycles: not tracked by the cyclic garbage collector
)
_BEACONS = msgspec.json.Decoder(list[WireBeacon])
_BEACON = msgspec.json.Decoder(WireBeacon)
_ITEMS = msgspec.json.Decoder(list[msgspec.Raw])
_ITEM = msgspec.json.Decoder(msgspec.Raw)
_astuple = msgspec.structs.astuple


class _Unreadable(Exception):
    """The body is left to parse_body, which decides between items, 400 and 413."""


def validate_body(data: bytes, customer_id: str, now: datetime) -> Batch:
    """The body's valid rows (COLUMNS order) and (index, reason) of each invalid item;
    400/413 exactly as `parse_body`."""
    try:
        if len(data) > MAX_BYTES or not _readable(data):
            raise _Unreadable
        try:  # the common case: an array of valid beacons, read in one call
            beacons = _BEACONS.decode(data)
        except (msgspec.DecodeError, RecursionError):
            beacons = None
        if beacons is not None and len(beacons) <= MAX_ITEMS:
            instants = _Instants(now)
            rows = [_row(b, customer_id, instants) for b in beacons]
            if None not in rows:
                return Batch(rows)
        return _validate_items(_split(data), customer_id, now)
    except _Unreadable:
        return validate_all(parse_body(data), customer_id, now)


def _readable(data: bytes) -> bool:
    """False for what msgspec reads and the validator refuses: `\\u0000` (NUL) in a string,
    and invalid UTF-8, which msgspec does not look for in the values it skips."""
    if b"\\u0000" in data:
        return False
    if not data.isascii():
        try:
            data.decode()
        except UnicodeDecodeError:
            return False
    return True


def _split(data: bytes) -> list[msgspec.Raw]:
    """Each item's JSON text: the elements of an array, or the non-blank lines of NDJSON."""
    try:
        items = _ITEMS.decode(data)
    except (msgspec.DecodeError, RecursionError):  # not an array: NDJSON (or one object)
        items = _lines(data)
    if len(items) > MAX_ITEMS:
        raise PayloadTooLarge(f"at most {MAX_ITEMS} items")
    return items


def _lines(data: bytes) -> list[msgspec.Raw]:
    """NDJSON split as parse_body splits it; every line must be JSON msgspec reads, and there
    must be one (an empty body is parse_body's 400)."""
    try:
        lines = [_ITEM.decode(line) for line in data.splitlines() if line.strip()]
    except (msgspec.DecodeError, RecursionError) as exc:
        raise _Unreadable from exc
    if not lines:
        raise _Unreadable
    return lines


def _validate_items(items: list[msgspec.Raw], customer_id: str, now: datetime) -> Batch:
    """Item by item: the fast path, else validate() on the item as parse_body reads it."""
    instants = _Instants(now)

    def fast(item: msgspec.Raw) -> tuple | None:
        try:
            return _row(_BEACON.decode(item), customer_id, instants)
        except (msgspec.DecodeError, RecursionError):
            return None

    return validate_each(items, fast, _loaded, customer_id, now)


def _row(beacon: msgspec.Struct, customer_id: str, instants: _Instants) -> tuple | None:
    """The row of a beacon msgspec read, or None when validate must decide."""
    if not (beacon.customer_id == customer_id and beacon.session_id
            and beacon.source in SOURCES and beacon.time is not None):
        return None
    try:
        instant = instants.of(beacon.time)
    except Invalid:
        return None
    return (instant, *_astuple(beacon)[1:])


class _Instants:
    """parse_time, once per second of epoch-millisecond times (a batch's beacons share a few
    seconds): for an integer t in parse_time's range, t / 1000 is within half a microsecond
    of t // 1000 + (t % 1000) / 1000, so parse_time(t) == parse_time(t // 1000 * 1000)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.seconds: dict[int, datetime] = {}

    def of(self, value: object) -> datetime:
        if type(value) is not int:
            return parse_time(value, self.now)
        second = value // 1000
        instant = self.seconds.get(second)
        if instant is None:
            instant = self.seconds[second] = parse_time(second * 1000, self.now)
        return instant


def _loaded(item: msgspec.Raw) -> object:
    """The item as parse_body reads it."""
    try:
        return loads(bytes(item))
    except ValueError as exc:  # not expected after msgspec read it: let parse_body decide
        raise _Unreadable from exc
