"""Usage event validation (CONTRACT §8, §10): each event accepted or rejected alone, with a
reason naming the field; users and applications resolved against the batch's accounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edgestats.usage_billing.v1 import usage_ingest_service_pb2 as pb
from usage_billing_service.accounts import check_id, default_application_id
from usage_billing_service.event_validation import (
    Account,
    Event,
    Invalid,
    parse_bytes,
    parse_timestamp,
    resolve,
    resolve_all,
    validate,
    validate_all,
)
from usage_billing_service.usage_ingest import event_to_item

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
ACCOUNTS = {"u1": Account("app-default", frozenset({"app-default", "app-2"})),
            "u2": Account("u2-default", frozenset({"u2-default"}))}


def good(**changes: object) -> dict:
    event = {"id": "e-1", "type": "bandwidth", "user_id": "u1", "application_id": "app-2",
             "bytes": 1024, "timestamp": "2026-11-25T11:00:00.250Z", "tag": "User1"}
    event.update(changes)
    return {k: v for k, v in event.items() if v is not _ABSENT}


_ABSENT = object()


def test_a_full_event():
    assert validate(good(), NOW) == Event(
        "e-1", "bandwidth", "u1", "app-2", 1024,
        datetime(2026, 11, 25, 11, 0, 0, 250_000, tzinfo=UTC), "User1")


def test_optional_fields_may_be_absent_null_or_empty():
    for absent in (_ABSENT, None, ""):
        event = validate(good(application_id=absent, tag=absent), NOW)
        assert (event.application_id, event.tag) == (None, None)


def test_unknown_fields_are_ignored():
    assert validate(good(extra={"a": [1]}, Type="x"), NOW) == validate(good(), NOW)


@pytest.mark.parametrize("kind", ["conversion", "storage", "bandwidth"])
def test_every_type(kind):
    tag = "t" if kind == "bandwidth" else _ABSENT
    assert validate(good(type=kind, tag=tag), NOW).type == kind


# changes -> the field its reason must name
INVALID = {
    "missing id": ({"id": _ABSENT}, "id: field required"),
    "empty id": ({"id": ""}, "id: field required"),
    "number id": ({"id": 5}, "id: must be a string"),
    "long id": ({"id": "x" * 257}, "id:"),
    "NUL in id": ({"id": "a\x00"}, "id:"),
    "lone surrogate id": ({"id": "\ud800"}, "id:"),
    "missing type": ({"type": _ABSENT}, "type: field required"),
    "bad type": ({"type": "transcoding"}, "type: must be one of"),
    "type not a string": ({"type": 1}, "type: must be one of"),
    "missing user_id": ({"user_id": _ABSENT}, "user_id: field required"),
    "user_id number": ({"user_id": 12}, "user_id: must be a string"),
    "application_id number": ({"application_id": 3}, "application_id: must be a string"),
    "missing bytes": ({"bytes": _ABSENT}, "bytes: field required"),
    "null bytes": ({"bytes": None}, "bytes: field required"),
    "negative bytes": ({"bytes": -1}, "bytes: must not be negative"),
    "fractional bytes": ({"bytes": 1.5}, "bytes: must be an integer"),
    "string bytes": ({"bytes": "1024"}, "bytes: must be an integer"),
    "bool bytes": ({"bytes": True}, "bytes: must be an integer"),
    "infinite bytes": ({"bytes": float("inf")}, "bytes: must be an integer"),
    "nan bytes": ({"bytes": float("nan")}, "bytes: must be an integer"),
    "bigint overflow": ({"bytes": 2**63}, "bytes: larger than"),
    "inexact float bytes": ({"bytes": 1e300}, "bytes:"),
    "missing timestamp": ({"timestamp": _ABSENT}, "timestamp: field required"),
    "unparsable timestamp": ({"timestamp": "yesterday"}, "timestamp: not a valid"),
    "impossible date": ({"timestamp": "2024-13-45T00:00:00Z"}, "timestamp: not a valid"),
    "bool timestamp": ({"timestamp": True}, "timestamp: must be"),
    "object timestamp": ({"timestamp": {"seconds": 1}}, "timestamp: must be"),
    "huge epoch": ({"timestamp": 10**20}, "timestamp:"),
    "negative epoch": ({"timestamp": -1000}, "timestamp: before 1970"),
    "6 minutes ahead": ({"timestamp": "2026-11-25T12:06:00Z"}, "timestamp: more than 5 min"),
    "tag on conversion": ({"type": "conversion"}, "tag: only bandwidth"),
    "tag on storage": ({"type": "storage"}, "tag: only bandwidth"),
    "tag number": ({"tag": 7}, "tag: must be a string"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_events_name_the_field(case):
    changes, reason = INVALID[case]
    with pytest.raises(Invalid) as error:
        validate(good(**changes), NOW)
    assert str(error.value).startswith(reason.split(":")[0] + ":"), error.value
    assert reason in str(error.value)


@pytest.mark.parametrize("item", [5, "event", None, [good()], True])
def test_a_non_object_is_rejected(item):
    with pytest.raises(Invalid, match="not a JSON object"):
        validate(item, NOW)


@pytest.mark.parametrize("value, expected", [
    (0, 0), (1024, 1024), (2**63 - 1, 2**63 - 1), (10.0, 10), (1e6, 1_000_000),
])
def test_bytes(value, expected):
    assert parse_bytes(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("2026-11-25T11:00:00Z", datetime(2026, 11, 25, 11, tzinfo=UTC)),
    ("2026-11-25T11:00:00", datetime(2026, 11, 25, 11, tzinfo=UTC)),  # no zone = UTC
    ("2026-11-25T13:00:00+02:00", datetime(2026, 11, 25, 11, tzinfo=UTC)),
    ("2026-11-25T11:00:00.123456Z", datetime(2026, 11, 25, 11, 0, 0, 123_000, tzinfo=UTC)),
    (1_795_604_400_000, datetime(2026, 11, 25, 11, tzinfo=UTC)),
    (1_795_604_400_999.9, datetime(2026, 11, 25, 11, 0, 0, 999_000, tzinfo=UTC)),
    ("2015-04-19T00:00:00.000Z", datetime(2015, 4, 19, tzinfo=UTC)),  # old events are fine
    (0, datetime(1970, 1, 1, tzinfo=UTC)),
    (datetime(2026, 11, 25, 11, 0, 0, 1, tzinfo=UTC), datetime(2026, 11, 25, 11, tzinfo=UTC)),
])
def test_timestamps_are_truncated_to_the_millisecond(value, expected):
    assert parse_timestamp(value, NOW) == expected


def test_clock_skew_limit():
    assert parse_timestamp(NOW + timedelta(minutes=5), NOW) == NOW + timedelta(minutes=5)
    with pytest.raises(Invalid):
        parse_timestamp(NOW + timedelta(minutes=5, milliseconds=1), NOW)


# --- resolution against the accounts ---------------------------------------------------


def test_an_event_without_application_goes_to_the_default_application():
    row = resolve(validate(good(application_id=None), NOW), ACCOUNTS)
    assert row[3] == "app-default"


@pytest.mark.parametrize("changes, reason", [
    ({"user_id": "nobody"}, "user_id: unknown user"),
    ({"application_id": "u2-default"}, "application_id: not an application of this user"),
    ({"application_id": "app-unknown"}, "application_id: not an application of this user"),
])
def test_unknown_user_or_someone_elses_application(changes, reason):
    with pytest.raises(Invalid, match=reason):
        resolve(validate(good(**changes), NOW), ACCOUNTS)


def test_a_mixed_batch_keeps_request_order_of_rejections():
    items = [good(id="a"), good(bytes=-1), good(id="b", user_id="nobody"), "x",
             good(id="c", user_id="u2", application_id=None, tag=None, type="storage")]
    events, rejected = validate_all(items, NOW)
    batch = resolve_all(events, rejected, ACCOUNTS)
    assert [r[0] for r in batch.rows] == ["a", "c"]
    assert [i for i, _ in batch.rejected] == [1, 2, 3]
    assert batch.rows[1][2:4] == ("u2", "u2-default")


# --- typed gRPC events, ids --------------------------------------------------------------


def test_a_typed_event_becomes_the_json_item():
    message = pb.UsageEvent(id="e", type="storage", user_id="u1", bytes=0)
    message.timestamp.FromDatetime(datetime(2026, 11, 25, 11, tzinfo=UTC))
    item = event_to_item(message)
    assert item == {"id": "e", "type": "storage", "user_id": "u1", "bytes": 0,
                    "timestamp": datetime(2026, 11, 25, 11, tzinfo=UTC)}
    assert validate(item, NOW).application_id is None


def test_a_typed_event_without_timestamp_is_rejected():
    with pytest.raises(Invalid, match="timestamp: field required"):
        validate(event_to_item(pb.UsageEvent(id="e", type="storage", user_id="u1")), NOW)


def test_default_application_ids_are_24_hex_and_stable():
    first = default_application_id("user-1")
    assert len(first) == 24 and int(first, 16) >= 0
    assert first == default_application_id("user-1") != default_application_id("user-2")


@pytest.mark.parametrize("value", ["", "-x", "a b", "a/b", "x" * 65, "é"])
def test_bad_ids_are_refused(value):
    with pytest.raises(ValueError):
        check_id(value, "user id")
