"""Beacon validation: each item accepted or rejected alone, with a reason naming the field."""

import json
from datetime import UTC, datetime

import pytest

from edgestats_core.beacon_columns import COLUMNS
from edgestats_core.errors import BadRequest, PayloadTooLarge
from edgestats_core.ingest_body import MAX_ITEMS, parse_body
from metrics_service.beacon_validation import Invalid, parse_time, validate, validate_all

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
TIME_INDEX = [c.druid for c in COLUMNS].index("__time")


def item(**overrides) -> dict:
    base = {"__time": "2026-11-25T11:59:55Z", "CustomerId": "c1", "SessionId": "s1",
            "Source": "p2p"}
    return {**base, **overrides}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-25T11:59:55Z", datetime(2026, 11, 25, 11, 59, 55, tzinfo=UTC)),
        ("2026-11-25T11:59:55", datetime(2026, 11, 25, 11, 59, 55, tzinfo=UTC)),
        ("2026-11-25T11:59:55.987Z", datetime(2026, 11, 25, 11, 59, 55, tzinfo=UTC)),
        ("2026-11-25T12:59:55+01:00", datetime(2026, 11, 25, 11, 59, 55, tzinfo=UTC)),
        (int(NOW.timestamp()) * 1000 - 5000, datetime(2026, 11, 25, 11, 59, 55, tzinfo=UTC)),
        (NOW.timestamp() * 1000 - 4001.0, datetime(2026, 11, 25, 11, 59, 55, tzinfo=UTC)),
    ],
)
def test_time_forms(value, expected):
    assert parse_time(value, NOW) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "__time"),
        (True, "__time"),
        ("yesterday", "not a valid timestamp"),
        ("2026-10-01T00:00:00Z", "older than the 30-day"),
        ("2026-11-25T12:06:00Z", "in the future"),
        ([1], "__time"),
    ],
)
def test_bad_times(value, reason):
    with pytest.raises(Invalid, match=reason):
        parse_time(value, NOW)


def test_a_valid_item_becomes_a_row_in_column_order():
    row = validate(item(DroppedFrames=3.0, P2pCompatible=False, BufferHealth=7), "c1", NOW)
    names = [c.druid for c in COLUMNS]
    assert len(row) == len(COLUMNS)
    assert row[TIME_INDEX] == datetime(2026, 11, 25, 11, 59, 55, tzinfo=UTC)
    dropped = row[names.index("DroppedFrames")]
    assert dropped == 3 and isinstance(dropped, int)
    assert row[names.index("BufferHealth")] == 7.0
    assert row[names.index("P2pCompatible")] is False
    assert row[names.index("ChannelId")] is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"CustomerId": None}, "CustomerId: field required"),
        ({"SessionId": ""}, "SessionId: field required"),
        ({"Source": "edge"}, "Source: must be one of"),
        ({"CustomerId": "c2"}, "not the customer of this key"),
        ({"ChannelId": 5}, "ChannelId: must be a string"),
        ({"BufferHealth": "10"}, "BufferHealth: must be a number"),
        ({"BufferHealth": True}, "BufferHealth: must be a number"),
        ({"DroppedFrames": 1.5}, "DroppedFrames: must be a 32-bit integer"),
        ({"DroppedFrames": 2**40}, "DroppedFrames: must be a 32-bit integer"),
        ({"P2pCompatible": "yes"}, "P2pCompatible: must be a boolean"),
        ({"ChannelId": "a\x00b"}, "ChannelId: .*NUL"),
        ({"ChannelId": "x" * 2000}, "ChannelId: longer than"),
    ],
)
def test_invalid_items(overrides, reason):
    with pytest.raises(Invalid, match=reason):
        validate(item(**overrides), "c1", NOW)


def test_validate_all_keeps_indexes_of_rejections():
    batch = validate_all([item(), 5, item(Source="x"), item(SessionId="s2")], "c1", NOW)
    assert len(batch.rows) == 2
    assert [index for index, _ in batch.rejected] == [1, 2]
    assert batch.rejected[0][1] == "not a JSON object"


def test_unknown_fields_are_ignored():
    assert validate(item(Whatever=1), "c1", NOW) == validate(item(), "c1", NOW)


def test_body_forms():
    items = [item(), item(SessionId="s2")]
    assert parse_body(json.dumps(items).encode()) == items
    assert parse_body("\n".join(json.dumps(i) for i in items).encode() + b"\n") == items
    assert parse_body(json.dumps(items[0]).encode()) == [items[0]]


@pytest.mark.parametrize("body", [b"", b"  ", b"{nope", b'{"a": 1}\n{broken'])
def test_unparsable_bodies_are_400(body):
    with pytest.raises(BadRequest):
        parse_body(body)


def test_limits_are_413():
    with pytest.raises(PayloadTooLarge):
        parse_body(json.dumps([{}] * (MAX_ITEMS + 1)).encode())
    with pytest.raises(PayloadTooLarge):
        parse_body(b" " * (10 * 1024 * 1024 + 1))
