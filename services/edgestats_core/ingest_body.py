"""Ingestion request bodies (CONTRACT §10): a JSON array or NDJSON, at most 10,000 items
or 10 MB. Shared by beacon and usage-event ingestion, which validate the items themselves."""

from __future__ import annotations

import json

import orjson

from edgestats_core.errors import BadRequest, FieldError, PayloadTooLarge

MAX_ITEMS = 10_000
MAX_BYTES = 10 * 1024 * 1024


class Invalid(ValueError):
    """One item's rejection reason, naming the field: the item is rejected alone."""


def checked_text(name: str, value: object, max_length: int) -> str:
    """A string of at most `max_length` characters, without NUL, that is valid Unicode."""
    if type(value) is not str:
        raise Invalid(f"{name}: must be a string")
    if len(value) > max_length or "\x00" in value:
        raise Invalid(f"{name}: longer than {max_length} characters or contains NUL")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise Invalid(f"{name}: not valid Unicode (lone surrogate)") from exc
    return value


def loads(data: bytes) -> object:
    """orjson, falling back to the standard parser for valid JSON orjson refuses (numbers beyond
    double range, lone surrogates): such values are then rejected per item, not per batch."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return json.loads(data)
        except (UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(str(exc)) from exc


def parse_body(data: bytes) -> list:
    """Items of a JSON array or NDJSON body; 413 past the limits, 400 when it does not parse."""
    if len(data) > MAX_BYTES:
        raise PayloadTooLarge(f"at most {MAX_BYTES} bytes")
    if not data.strip():
        raise BadRequest([FieldError(("body",), "body is empty", "value_error.missing")])
    try:
        parsed = loads(data)
        items = parsed if isinstance(parsed, list) else [parsed]
    except ValueError:
        items = []
        for number, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(loads(line))
            except ValueError as exc:
                msg = f"line {number} is not JSON: send a JSON array or NDJSON"
                raise BadRequest([FieldError(("body",), msg, "value_error.jsondecode")]) from exc
    if len(items) > MAX_ITEMS:
        raise PayloadTooLarge(f"at most {MAX_ITEMS} items")
    return items
