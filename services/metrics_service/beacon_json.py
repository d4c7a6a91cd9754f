"""JSON ingest bodies decoded by msgspec straight into beacon rows (CONTRACT §3, §10).

msgspec reads each beacon of a JSON array or NDJSON body into a struct whose fields are the
columns in COLUMNS order, checking in C what `beacon_validation` checks per field (strings of
at most 1,024 characters, booleans, 32-bit integers, finite numbers); Python then checks the
required fields, the tenant, `Source` and `__time`, and the struct becomes the row as is.

Exactness by construction: an item the fast path does not accept is decoded by itself with
`ingest_body`'s parser and given to `validate`, so its reason is `validate`'s; a body msgspec
cannot read (not JSON, NaN, a lone surrogate, a NUL escape, over the limits) goes whole
through `parse_body` and `validate_all`. The fast path only accepts what `validate` accepts,
with the same row (tests/unit/test_beacon_json.py compares both on odd bodies).
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
    validate,
    validate_all,
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
)
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
        return _validate_items(_split(data), customer_id, now)
    except _Unreadable:
        return validate_all(parse_body(data), customer_id, now)


def _split(data: bytes) -> list[msgspec.Raw]:
    """Each item's JSON text: the elements of an array, or the non-blank lines of NDJSON."""
    if len(data) > MAX_BYTES or not _readable(data):
        raise _Unreadable
    try:
        items = _ITEMS.decode(data)
    except (msgspec.DecodeError, RecursionError):  # not an array: NDJSON (or one object)
        items = _lines(data)
    if len(items) > MAX_ITEMS:
        raise PayloadTooLarge(f"at most {MAX_ITEMS} items")
    return items


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
    batch = Batch()
    append = batch.rows.append
    for index, item in enumerate(items):
        try:
            beacon = _BEACON.decode(item)
            if (beacon.customer_id == customer_id and beacon.session_id
                    and beacon.source in SOURCES and beacon.time is not None):
                append((parse_time(beacon.time, now), *_astuple(beacon)[1:]))
                continue
        except (msgspec.DecodeError, Invalid, RecursionError):
            pass
        try:  # the exact reason, or (rarely) a valid item of a form the fast path refuses
            append(validate(_loaded(item), customer_id, now))
        except Invalid as exc:
            batch.rejected.append((index, str(exc)))
    return batch


def _loaded(item: msgspec.Raw) -> object:
    try:
        return loads(bytes(item))
    except ValueError as exc:  # not expected after msgspec read it: let parse_body decide
        raise _Unreadable from exc
