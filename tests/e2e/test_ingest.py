"""Beacon ingestion (CONTRACT §3, §10): JSON array, NDJSON and typed gRPC batches through Envoy.

What was stored is checked through the Legacy Stats API against the oracle, and directly in
PostgreSQL for what must not be there."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from edgestats.metrics.v1 import beacon_ingest_service_pb2 as ingest_pb
from edgestats.metrics.v1 import beacon_ingest_service_pb2_grpc as ingest_rpc
from edgestats.metrics.v1 import beacon_pb2
from edgestats_client import error_details
from tests import oracle
from tests.builders import scenario, wire
from tests.compare import assert_same
from tests.e2e.ingest_bodies import JSON, answer, as_array, as_ndjson, post

pytestmark = pytest.mark.e2e

PATHS = ["/analytics/v1/ingest/beacons", "/v1/ingest/beacons"]
NOT_AUTHENTICATED = {"type": "not-authenticated", "title": "Not authenticated"}


# --- helpers ---------------------------------------------------------------------------


def count(beacons_url: str, customer_id: str) -> int:
    with psycopg.connect(beacons_url) as conn:
        return conn.execute(
            "SELECT count(*) FROM beacons WHERE customer_id = %s", (customer_id,)
        ).fetchone()[0]


def sessions(beacons_url: str, customer_id: str) -> set[str]:
    with psycopg.connect(beacons_url) as conn:
        rows = conn.execute(
            "SELECT session_id FROM beacons WHERE customer_id = %s", (customer_id,)
        ).fetchall()
    return {r[0] for r in rows}


def stored_times(beacons_url: str, customer_id: str) -> dict[str, datetime]:
    with psycopg.connect(beacons_url) as conn:
        rows = conn.execute(
            'SELECT session_id, "time" FROM beacons WHERE customer_id = %s', (customer_id,)
        ).fetchall()
    return {r[0]: r[1].astimezone(UTC) for r in rows}


def assert_stored(api, key: str, customer_id: str, beacons: list[dict], now: datetime) -> None:
    """The API answers exactly what the oracle computes over `beacons` (distinct ones)."""
    for time in ("live", "1h", "1M"):
        got = api.get_json("/summary/agg", key, time=time)
        assert_same(got, oracle.summary_agg(beacons, customer_id, now, time))
    got = api.get_json("/summary", key, time="1h")
    assert_same(got, oracle.summary(beacons, customer_id, now, "1h", "channel"))


def minimal(customer_id: str, session: str, when: datetime, **extra: object) -> dict:
    """A small valid beacon in oracle form (`__time` a datetime)."""
    return {"__time": when, "CustomerId": customer_id, "SessionId": session, "Source": "cdn",
            "ChannelId": "ch", "CdnDownlinkThroughput": 100.0, "TotalDownlinkThroughput": 100.0,
            "ViewingTime": 5.0, "P2pCompatible": True, **extra}


@pytest.fixture
def fresh(tenants):
    """A new advanced customer per test: (customer_id, key)."""
    return tenants.customer("advanced")


# --- happy path ------------------------------------------------------------------------


@pytest.mark.parametrize("encode", [as_array, as_ndjson], ids=["array", "ndjson"])
@pytest.mark.parametrize("path", PATHS)
def test_a_batch_is_stored(api, fresh, frozen_now, beacons_url, path, encode):
    customer_id, key = fresh
    beacons = scenario(customer_id, frozen_now, seed=31)
    body = answer(post(api, path, encode([wire(b) for b in beacons]), key))
    assert body == {"accepted": len(beacons), "duplicates": 0, "rejected": []}
    assert count(beacons_url, customer_id) == len(beacons)
    assert_stored(api, key, customer_id, beacons, frozen_now)


@pytest.mark.parametrize("content_type", [JSON, "application/x-ndjson", "text/plain",
                                          "application/octet-stream"])
def test_any_content_type_is_read_as_json_or_ndjson(api, fresh, frozen_now, beacons_url,
                                                    content_type):
    customer_id, key = fresh
    items = [minimal(customer_id, f"s{i}", frozen_now - timedelta(seconds=10 * i))
             for i in range(3)]
    encode = as_ndjson if "ndjson" in content_type else as_array
    body = answer(post(api, PATHS[0], encode([wire(b) for b in items]), key, content_type))
    assert body == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert count(beacons_url, customer_id) == 3


def test_ndjson_tolerates_blank_lines_and_crlf(api, fresh, frozen_now, beacons_url):
    customer_id, key = fresh
    items = [wire(minimal(customer_id, f"s{i}", frozen_now - timedelta(seconds=5 * i)))
             for i in range(3)]
    text = "\r\n".join(json.dumps(i) for i in items[:2]) + "\n\n  \n" + json.dumps(items[2])
    assert answer(post(api, PATHS[1], text, key)) == {"accepted": 3, "duplicates": 0,
                                                      "rejected": []}
    assert count(beacons_url, customer_id) == 3


@pytest.mark.parametrize("path", PATHS)
def test_a_resent_batch_is_accepted_again_and_stored_once(api, fresh, frozen_now, beacons_url,
                                                          path):
    customer_id, key = fresh
    beacons = scenario(customer_id, frozen_now, seed=32)
    items = [wire(b) for b in beacons]
    n = len(items)
    assert answer(post(api, path, as_array(items), key)) == {
        "accepted": n, "duplicates": 0, "rejected": []}
    assert answer(post(api, path, as_array(items), key)) == {
        "accepted": n, "duplicates": n, "rejected": []}
    # the same beacons again, as NDJSON with ISO-8601 times: still the same beacons
    iso = [{**i, "__time": b["__time"].strftime("%Y-%m-%dT%H:%M:%SZ")}
           for i, b in zip(items, beacons, strict=True)]
    assert answer(post(api, path, as_ndjson(iso), key)) == {
        "accepted": n, "duplicates": n, "rejected": []}
    assert count(beacons_url, customer_id) == n
    assert_stored(api, key, customer_id, beacons, frozen_now)


def test_a_partly_resent_batch_counts_only_the_old_items_as_duplicates(api, fresh, frozen_now,
                                                                       beacons_url):
    customer_id, key = fresh
    beacons = scenario(customer_id, frozen_now, seed=33)
    first, second = beacons[: len(beacons) // 2], beacons[len(beacons) // 3:]
    answer(post(api, PATHS[0], as_array([wire(b) for b in first]), key))
    overlap = len(first) - len(beacons) // 3
    assert answer(post(api, PATHS[0], as_array([wire(b) for b in second]), key)) == {
        "accepted": len(second), "duplicates": overlap, "rejected": []}
    assert count(beacons_url, customer_id) == len(beacons)
    assert_stored(api, key, customer_id, beacons, frozen_now)


def test_duplicates_inside_one_batch(api, fresh, frozen_now, beacons_url):
    customer_id, key = fresh
    beacons = scenario(customer_id, frozen_now, seed=34)
    items = [wire(b) for b in beacons]
    batch = items + items[:3] + [items[-1]]
    assert answer(post(api, PATHS[0], as_array(batch), key)) == {
        "accepted": len(batch), "duplicates": 4, "rejected": []}
    assert count(beacons_url, customer_id) == len(beacons)
    assert_stored(api, key, customer_id, beacons, frozen_now)


def test_times_equal_after_truncation_are_the_same_beacon(api, fresh, frozen_now, beacons_url):
    customer_id, key = fresh
    second = (frozen_now - timedelta(seconds=40)).strftime("%Y-%m-%dT%H:%M:%S")
    batch = [wire(minimal(customer_id, "s", frozen_now)) | {"__time": t}
             for t in (f"{second}.200Z", f"{second}.999Z", f"{second}Z", f"{second}+00:00")]
    assert answer(post(api, PATHS[0], as_array(batch), key)) == {
        "accepted": 4, "duplicates": 3, "rejected": []}
    assert count(beacons_url, customer_id) == 1


def test_unknown_fields_are_ignored(api, fresh, frozen_now, beacons_url):
    customer_id, key = fresh
    beacons = [minimal(customer_id, f"s{i}", frozen_now - timedelta(seconds=5 * i))
               for i in range(4)]
    items = [wire(b) | {"Unknown": {"nested": [1, None]}, "customerid": "other", "x": None}
             for b in beacons]
    assert answer(post(api, PATHS[0], as_array(items), key)) == {
        "accepted": 4, "duplicates": 0, "rejected": []}
    assert_stored(api, key, customer_id, beacons, frozen_now)


def test_an_empty_array_is_accepted(api, fresh, beacons_url):
    customer_id, key = fresh
    assert answer(post(api, PATHS[0], "[]", key)) == {
        "accepted": 0, "duplicates": 0, "rejected": []}
    assert count(beacons_url, customer_id) == 0


# --- __time formats --------------------------------------------------------------------


def test_time_formats(api, fresh, frozen_now, beacons_url):
    customer_id, key = fresh
    base = frozen_now - timedelta(minutes=3)
    naive = base.replace(tzinfo=None)
    plus_two = base.astimezone(UTC).replace(tzinfo=None) + timedelta(hours=2)
    cases = {
        "iso-z": (base.strftime("%Y-%m-%dT%H:%M:%SZ"), base),
        "iso-no-zone": (naive.isoformat(), base),
        "iso-millis": ((base + timedelta(seconds=1, milliseconds=999)).strftime(
            "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", base + timedelta(seconds=1)),
        "iso-micros-no-zone": ((naive + timedelta(seconds=2, microseconds=500001)).isoformat(),
                               base + timedelta(seconds=2)),
        "iso-offset": (plus_two.strftime("%Y-%m-%dT%H:%M:%S+02:00"), base),
        "epoch-ms": (int(base.timestamp() * 1000) + 3000, base + timedelta(seconds=3)),
        "epoch-ms-millis": (int(base.timestamp() * 1000) + 4999, base + timedelta(seconds=4)),
        "epoch-ms-float": (base.timestamp() * 1000 + 5250.0, base + timedelta(seconds=5)),
    }
    items = [wire(minimal(customer_id, name, base)) | {"__time": value}
             for name, (value, _) in cases.items()]
    assert answer(post(api, PATHS[0], as_array(items), key)) == {
        "accepted": len(cases), "duplicates": 0, "rejected": []}
    assert stored_times(beacons_url, customer_id) == {
        name: expected for name, (_, expected) in cases.items()}


# --- per-item rejections ---------------------------------------------------------------


def _without(item: dict, name: str) -> dict:
    return {k: v for k, v in item.items() if k != name}


# name -> (make the invalid item from a valid wire item, text its reason must contain)
INVALID = {
    "missing __time": (lambda i, ctx: _without(i, "__time"), "__time"),
    "missing CustomerId": (lambda i, ctx: _without(i, "CustomerId"), "CustomerId"),
    "missing SessionId": (lambda i, ctx: _without(i, "SessionId"), "SessionId"),
    "missing Source": (lambda i, ctx: _without(i, "Source"), "Source"),
    "null __time": (lambda i, ctx: i | {"__time": None}, "__time"),
    "null SessionId": (lambda i, ctx: i | {"SessionId": None}, "SessionId"),
    "null Source": (lambda i, ctx: i | {"Source": None}, "Source"),
    "bad Source": (lambda i, ctx: i | {"Source": "satellite"}, "Source"),
    "Source not a string": (lambda i, ctx: i | {"Source": 1}, "Source"),
    "another customer": (lambda i, ctx: i | {"CustomerId": ctx["other"]}, "CustomerId"),
    "unknown customer": (lambda i, ctx: i | {"CustomerId": "c-does-not-exist"}, "CustomerId"),
    "string for a double": (lambda i, ctx: i | {"BufferHealth": "1200"}, "BufferHealth"),
    "string for an int": (lambda i, ctx: i | {"ViewportWidth": "1920"}, "ViewportWidth"),
    "number for a string": (lambda i, ctx: i | {"ChannelId": 5}, "ChannelId"),
    "number for SessionId": (lambda i, ctx: i | {"SessionId": 12}, "SessionId"),
    "bool for a double": (lambda i, ctx: i | {"ViewingTime": True}, "ViewingTime"),
    "bool for an int": (lambda i, ctx: i | {"DroppedFrames": False}, "DroppedFrames"),
    "float for an int": (lambda i, ctx: i | {"DroppedFrames": 1.5}, "DroppedFrames"),
    "int32 overflow": (lambda i, ctx: i | {"VideoResolutionWidth": 2**31}, "VideoResolutionWidth"),
    "string for a bool": (lambda i, ctx: i | {"P2pCompatible": "true"}, "P2pCompatible"),
    "number for a bool": (lambda i, ctx: i | {"P2pCompatible": 1}, "P2pCompatible"),
    "object for a string": (lambda i, ctx: i | {"StreamId": {"a": 1}}, "StreamId"),
    "array for a double": (lambda i, ctx: i | {"Latitude": [1.0]}, "Latitude"),
    "__time older than 30 days": (
        lambda i, ctx: i | {"__time": ctx["ms"](ctx["now"] - timedelta(days=31))}, "__time"),
    "__time 6 minutes ahead": (
        lambda i, ctx: i | {"__time": ctx["ms"](ctx["now"] + timedelta(minutes=6))}, "__time"),
    "__time ISO far ahead": (lambda i, ctx: i | {"__time": "2999-01-01T00:00:00Z"}, "__time"),
    "__time ISO long ago": (lambda i, ctx: i | {"__time": "2001-01-01T00:00:00Z"}, "__time"),
    "__time unparsable": (lambda i, ctx: i | {"__time": "yesterday"}, "__time"),
    "__time impossible date": (lambda i, ctx: i | {"__time": "2024-13-45T00:00:00Z"}, "__time"),
    "__time bool": (lambda i, ctx: i | {"__time": True}, "__time"),
    "__time object": (lambda i, ctx: i | {"__time": {"seconds": 1}}, "__time"),
    "__time huge epoch": (lambda i, ctx: i | {"__time": 10**20}, "__time"),
    "NUL in a string": (lambda i, ctx: i | {"ChannelId": "ch\u0000one"}, "ChannelId"),
    "NUL in SessionId": (lambda i, ctx: i | {"SessionId": "s\u0000"}, "SessionId"),
    "number": (lambda i, ctx: 5, ""),
    "string": (lambda i, ctx: "beacon", ""),
    "null": (lambda i, ctx: None, ""),
    "array": (lambda i, ctx: [i], ""),
}


@pytest.fixture(scope="module")
def other_customer(tenants) -> str:
    return tenants.customer("advanced")[0]


def _context(frozen_now: datetime, other: str) -> dict:
    return {"now": frozen_now, "other": other,
            "ms": lambda t: int(t.timestamp() * 1000)}


@pytest.mark.parametrize("case", list(INVALID))
def test_an_invalid_item_is_rejected_alone(api, fresh, frozen_now, beacons_url, other_customer,
                                           case):
    customer_id, key = fresh
    make, field_name = INVALID[case]
    good = [minimal(customer_id, f"good-{i}", frozen_now - timedelta(seconds=5 * i))
            for i in range(2)]
    bad = make(wire(minimal(customer_id, "bad", frozen_now - timedelta(seconds=60))),
               _context(frozen_now, other_customer))
    batch = [wire(good[0]), bad, wire(good[1])]
    body = answer(post(api, PATHS[0], as_array(batch), key))
    assert body["accepted"] == 2 and body["duplicates"] == 0, body
    assert [r["index"] for r in body["rejected"]] == [1], body
    reason = body["rejected"][0]["reason"]
    assert isinstance(reason, str) and reason and field_name in reason, reason
    assert sessions(beacons_url, customer_id) == {"good-0", "good-1"}
    assert count(beacons_url, other_customer) == 0
    assert_stored(api, key, customer_id, good, frozen_now)


@pytest.mark.parametrize("encode", [as_array, as_ndjson], ids=["array", "ndjson"])
def test_a_mixed_batch_reports_every_rejected_index(api, fresh, frozen_now, beacons_url,
                                                    other_customer, encode):
    customer_id, key = fresh
    beacons = scenario(customer_id, frozen_now, seed=35)
    ctx = _context(frozen_now, other_customer)
    batch: list = []
    expected: list[int] = []
    cases = list(INVALID.values())
    for i, beacon in enumerate(beacons):
        batch.append(wire(beacon))
        if i < len(cases):
            make, _ = cases[i]
            expected.append(len(batch))
            batch.append(make(wire(minimal(customer_id, f"bad-{i}", frozen_now)), ctx))
    body = answer(post(api, PATHS[1], encode(batch), key))
    assert body["accepted"] == len(beacons) and body["duplicates"] == 0
    assert [r["index"] for r in body["rejected"]] == expected
    assert count(beacons_url, customer_id) == len(beacons)
    assert not any(s.startswith("bad-") for s in sessions(beacons_url, customer_id))
    assert count(beacons_url, other_customer) == 0
    assert_stored(api, key, customer_id, beacons, frozen_now)


def test_time_limits_are_relative_to_now(api, fresh, frozen_now, beacons_url):
    """Just inside the 30-day retention and the 5-minute clock skew is accepted."""
    customer_id, key = fresh
    items = [
        wire(minimal(customer_id, "old", frozen_now - timedelta(days=29, hours=23))),
        wire(minimal(customer_id, "ahead", frozen_now + timedelta(minutes=4, seconds=50))),
    ]
    assert answer(post(api, PATHS[0], as_array(items), key)) == {
        "accepted": 2, "duplicates": 0, "rejected": []}
    assert sessions(beacons_url, customer_id) == {"old", "ahead"}


# Valid JSON by RFC 8259 (any number, any \\uXXXX escape) that a beacon column cannot hold.
UNREPRESENTABLE = {
    "huge integer": '"ViewingTime": 1' + "0" * 400,
    "huge float": '"ViewingTime": 1e400',
    "huge negative float": '"ViewingTime": -1e400',
    "lone surrogate": '"ChannelId": "\\ud800"',
    "lone low surrogate": '"ChannelId": "a\\udc00b"',
}


def _with_unrepresentable(customer_id: str, now: datetime, case: str) -> str:
    """A JSON array: a valid beacon, then one with the raw JSON fragment of `case`."""
    good = json.dumps(wire(minimal(customer_id, "good", now)))
    name = UNREPRESENTABLE[case].split(":")[0].strip('"')
    bad = {k: v for k, v in wire(minimal(customer_id, "bad", now)).items() if k != name}
    return f"[{good}, {json.dumps(bad)[:-1]}, {UNREPRESENTABLE[case]}}}]"


@pytest.mark.parametrize("case", list(UNREPRESENTABLE))
def test_an_unrepresentable_value_is_never_a_5xx_nor_half_written(api, fresh, frozen_now,
                                                                  beacons_url, case):
    customer_id, key = fresh
    response = post(api, PATHS[0], _with_unrepresentable(customer_id, frozen_now, case), key)
    if response.status_code == 400:
        assert_detail_400(response)
        assert count(beacons_url, customer_id) == 0
    else:
        body = answer(response)
        assert body["accepted"] == 1 and [r["index"] for r in body["rejected"]] == [1]
        assert sessions(beacons_url, customer_id) == {"good"}


@pytest.mark.parametrize("case", list(UNREPRESENTABLE))
def test_an_unrepresentable_value_is_rejected_alone(api, fresh, frozen_now, beacons_url, case):
    customer_id, key = fresh
    body = answer(post(api, PATHS[0], _with_unrepresentable(customer_id, frozen_now, case), key))
    assert body["accepted"] == 1 and [r["index"] for r in body["rejected"]] == [1]
    assert sessions(beacons_url, customer_id) == {"good"}


# --- bodies that do not parse, limits --------------------------------------------------


def assert_detail_400(response: httpx.Response) -> None:
    """The §9 detail list, located at the body."""
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.headers["content-type"] == JSON
    body = response.json()
    assert list(body) == ["detail"]
    (error,) = body["detail"]
    assert error["loc"] == ["body"], error
    assert isinstance(error["msg"], str) and error["msg"]
    assert error["type"].startswith("value_error"), error


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("garbage", [
    "not json", "[1, 2,", '{"__time": ', "[{]", "{'single': 'quotes'}", "<xml/>",
    "ndjson-broken-second-line", "ndjson-broken-last-line",
])
def test_a_body_that_is_not_json_is_400_and_nothing_is_stored(api, fresh, frozen_now, beacons_url,
                                                              path, garbage):
    customer_id, key = fresh
    lines = [json.dumps(wire(minimal(customer_id, f"s{i}", frozen_now))) for i in range(3)]
    if garbage == "ndjson-broken-second-line":
        garbage = "\n".join([lines[0], lines[1][:-1], lines[2]])
    elif garbage == "ndjson-broken-last-line":
        garbage = "\n".join([*lines, "{"])
    assert_detail_400(post(api, path, garbage, key))
    assert count(beacons_url, customer_id) == 0


@pytest.mark.parametrize("body", ["", " ", "\n\n", "\r\n\t "])
@pytest.mark.parametrize("path", PATHS)
def test_an_empty_body_is_400(api, fresh, path, body):
    assert_detail_400(post(api, path, body, fresh[1]))


@pytest.mark.parametrize("raw", [b"\xff\xfe[]", b'[{"SessionId": "\xe9"}]'])
def test_a_body_that_is_not_utf8_is_400(api, fresh, beacons_url, raw):
    assert_detail_400(post(api, PATHS[0], raw, fresh[1]))
    assert count(beacons_url, fresh[0]) == 0


def test_deeply_nested_json_is_400_and_nothing_is_stored(api, fresh, beacons_url):
    assert_detail_400(post(api, PATHS[0], "[" * 100_000 + "]" * 100_000, fresh[1]))
    assert count(beacons_url, fresh[0]) == 0


def _payload_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, (response.status_code, response.text[:200])
    assert response.headers["content-type"] == JSON
    body = response.json()
    assert list(body) == ["detail"] and body["detail"].startswith("Payload Too Large"), body


def _many(customer_id: str, n: int, now: datetime) -> list[dict]:
    """n distinct small beacons (all valid)."""
    return [{"__time": int((now - timedelta(seconds=5 * (i % 600))).timestamp() * 1000),
             "CustomerId": customer_id, "SessionId": f"s{i // 600}", "Source": "cdn"}
            for i in range(n)]


@pytest.mark.parametrize("encode", [as_array, as_ndjson], ids=["array", "ndjson"])
def test_more_than_10000_items_is_413_and_nothing_is_stored(api, fresh, frozen_now, beacons_url,
                                                            encode):
    customer_id, key = fresh
    _payload_too_large(post(api, PATHS[0], encode(_many(customer_id, 10_001, frozen_now)), key))
    assert count(beacons_url, customer_id) == 0


def test_10000_items_are_accepted(api, fresh, frozen_now, beacons_url):
    customer_id, key = fresh
    assert answer(post(api, PATHS[1], as_array(_many(customer_id, 10_000, frozen_now)), key)) == {
        "accepted": 10_000, "duplicates": 0, "rejected": []}
    assert count(beacons_url, customer_id) == 10_000


@pytest.mark.parametrize("megabytes", [10.5, 17])
def test_a_body_over_10_mb_is_413_and_nothing_is_stored(api, fresh, frozen_now, beacons_url,
                                                        megabytes):
    """Few valid items, padded with an unknown field: the byte limit alone applies."""
    customer_id, key = fresh
    items = _many(customer_id, 100, frozen_now)
    pad = "x" * int(megabytes * 1024 * 1024 / len(items))
    body = as_array([i | {"Padding": pad} for i in items])
    assert len(body) > 10 * 1024 * 1024
    _payload_too_large(post(api, PATHS[0], body, key))
    assert count(beacons_url, customer_id) == 0


def test_a_body_just_under_10_mb_is_accepted(api, fresh, frozen_now, beacons_url):
    customer_id, key = fresh
    items = _many(customer_id, 100, frozen_now)
    pad = "x" * (9 * 1024 * 1024 // len(items))
    assert answer(post(api, PATHS[0], as_array([i | {"Padding": pad} for i in items]), key)) == {
        "accepted": 100, "duplicates": 0, "rejected": []}
    assert count(beacons_url, customer_id) == 100


# --- who may ingest --------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer es_not-a-real-key", "Bearer",
                                           "es_not-a-real-key"])
@pytest.mark.parametrize("path", PATHS)
def test_without_a_valid_key_ingestion_is_401(api, fresh, frozen_now, beacons_url, path,
                                              authorization):
    customer_id, _ = fresh
    headers = {"Authorization": authorization} if authorization else {}
    for body in (as_array([wire(minimal(customer_id, "s", frozen_now))]), "not json", ""):
        response = api.http.post(path, content=body.encode(), headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == JSON
        assert response.json() == NOT_AUTHENTICATED
    assert count(beacons_url, customer_id) == 0


@pytest.mark.parametrize("path", PATHS)
def test_a_reseller_key_is_forbidden(api, tenants, fresh, frozen_now, beacons_url, path):
    customer_id, _ = fresh
    _, reseller_key = tenants.reseller([customer_id])
    response = post(api, path, as_array([wire(minimal(customer_id, "s", frozen_now))]),
                    reseller_key)
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == JSON
    body = response.json()
    assert list(body) == ["type", "title"] and body["type"] == "forbidden", body
    assert count(beacons_url, customer_id) == 0


@pytest.mark.parametrize("path", PATHS)
def test_a_lite_key_ingests_its_own_beacons(api, tenants, frozen_now, beacons_url, path):
    customer_id, key = tenants.customer("lite")
    beacons = scenario(customer_id, frozen_now, seed=36)
    assert answer(post(api, path, as_ndjson([wire(b) for b in beacons]), key)) == {
        "accepted": len(beacons), "duplicates": 0, "rejected": []}
    assert count(beacons_url, customer_id) == len(beacons)
    assert_stored(api, key, customer_id, beacons, frozen_now)


def test_the_bare_authorization_form_is_accepted(api, fresh, frozen_now, beacons_url):
    customer_id, key = fresh
    response = api.http.post(PATHS[0], content=as_array(
        [wire(minimal(customer_id, "s", frozen_now))]), headers={"Authorization": key})
    assert answer(response)["accepted"] == 1


# --- typed batches over gRPC -----------------------------------------------------------


def _snake(druid: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", druid).lower()


def to_proto(beacon: dict) -> beacon_pb2.Beacon:
    """An oracle beacon as the typed message (absent = unset)."""
    fields: dict = {}
    for name, value in beacon.items():
        if value is None:
            continue
        if name == "__time":
            stamp = Timestamp()
            stamp.FromDatetime(value.astimezone(UTC))
            fields["time"] = stamp
        else:
            fields[_snake(name)] = value
    return beacon_pb2.Beacon(**fields)


@pytest.fixture(scope="module")
def ingest_stub(stack):
    with grpc.insecure_channel(stack.grpc_target) as channel:
        yield ingest_rpc.BeaconIngestServiceStub(channel)


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def test_to_proto_keeps_every_column():
    beacon = scenario("c", datetime(2026, 1, 1, tzinfo=UTC), seed=1)[0]
    message = to_proto(beacon)
    assert len(message.ListFields()) == len([v for v in beacon.values() if v is not None])


def test_a_grpc_batch_is_stored_with_the_same_semantics(api, ingest_stub, fresh, frozen_now,
                                                        beacons_url, other_customer):
    customer_id, key = fresh
    beacons = scenario(customer_id, frozen_now, seed=37)
    now = frozen_now
    invalid = [
        to_proto(minimal(other_customer, "bad-0", now)),
        to_proto(minimal(customer_id, "bad-1", now, Source="satellite")),
        beacon_pb2.Beacon(customer_id=customer_id, session_id="bad-2", source="cdn"),  # no time
        to_proto(minimal(customer_id, "", now)),
        to_proto(minimal(customer_id, "bad-4", now - timedelta(days=31))),
        to_proto(minimal(customer_id, "bad-5", now + timedelta(minutes=6))),
        to_proto(minimal(customer_id, "bad-6", now, ChannelId="a\x00b")),
        to_proto(minimal(customer_id, "bad-7", now, Source="")),
        to_proto(minimal("", "bad-8", now)),
    ]
    messages = [to_proto(b) for b in beacons]
    positions = [3 * i + 1 for i in range(len(invalid))]
    batch = list(messages)
    for position, message in zip(positions, invalid, strict=True):
        batch.insert(position, message)
    request = ingest_pb.IngestBeaconsRequest(beacons=batch)
    reply = ingest_stub.IngestBeacons(request, metadata=bearer(key), timeout=60)
    assert reply.accepted == len(beacons) and reply.duplicates == 0
    assert [r.index for r in reply.rejected] == positions
    assert all(r.reason for r in reply.rejected)
    assert count(beacons_url, customer_id) == len(beacons)
    assert count(beacons_url, other_customer) == 0
    assert_stored(api, key, customer_id, beacons, frozen_now)
    again = ingest_stub.IngestBeacons(request, metadata=bearer(key), timeout=60)
    assert (again.accepted, again.duplicates) == (len(beacons), len(beacons))
    assert [r.index for r in again.rejected] == positions
    # and the same beacons over JSON are duplicates too
    assert answer(post(api, PATHS[0], as_array([wire(b) for b in beacons]), key)) == {
        "accepted": len(beacons), "duplicates": len(beacons), "rejected": []}
    assert count(beacons_url, customer_id) == len(beacons)
    assert_stored(api, key, customer_id, beacons, frozen_now)


def test_grpc_duplicates_inside_one_batch(ingest_stub, fresh, frozen_now, beacons_url):
    customer_id, key = fresh
    one = to_proto(minimal(customer_id, "s", frozen_now))
    two = to_proto(minimal(customer_id, "t", frozen_now))
    reply = ingest_stub.IngestBeacons(ingest_pb.IngestBeaconsRequest(beacons=[one, two, one]),
                                      metadata=bearer(key), timeout=30)
    assert (reply.accepted, reply.duplicates, list(reply.rejected)) == (3, 1, [])
    assert count(beacons_url, customer_id) == 2


def test_an_empty_grpc_batch(ingest_stub, fresh):
    reply = ingest_stub.IngestBeacons(ingest_pb.IngestBeaconsRequest(), metadata=bearer(fresh[1]),
                                      timeout=30)
    assert (reply.accepted, reply.duplicates, list(reply.rejected)) == (0, 0, [])


@pytest.mark.parametrize("metadata", [
    [], [("authorization", "Bearer es_not-a-real-key")], [("authorization", "Bearer")],
])
def test_a_grpc_batch_without_a_valid_key_is_unauthenticated(ingest_stub, fresh, frozen_now,
                                                             beacons_url, metadata):
    customer_id, _ = fresh
    request = ingest_pb.IngestBeaconsRequest(
        beacons=[to_proto(minimal(customer_id, "s", frozen_now))])
    with pytest.raises(grpc.RpcError) as error:
        ingest_stub.IngestBeacons(request, metadata=metadata, timeout=30)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert json.loads(error.value.details()) == NOT_AUTHENTICATED
    assert error_details(error.value).reason == "NOT_AUTHENTICATED"
    assert count(beacons_url, customer_id) == 0


def test_a_grpc_batch_with_a_reseller_key_is_permission_denied(ingest_stub, tenants, fresh,
                                                               frozen_now, beacons_url):
    customer_id, _ = fresh
    _, reseller_key = tenants.reseller([customer_id])
    request = ingest_pb.IngestBeaconsRequest(
        beacons=[to_proto(minimal(customer_id, "s", frozen_now))])
    with pytest.raises(grpc.RpcError) as error:
        ingest_stub.IngestBeacons(request, metadata=bearer(reseller_key), timeout=30)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    details = json.loads(error.value.details())
    assert list(details) == ["type", "title"] and details["type"] == "forbidden"
    # beside the JSON message, the rich error model's details for typed clients
    assert error_details(error.value).reason == "KEY_KIND_FORBIDDEN"
    assert count(beacons_url, customer_id) == 0


def test_a_grpc_batch_over_10000_items_is_refused_and_nothing_is_stored(ingest_stub, fresh,
                                                                        frozen_now, beacons_url):
    customer_id, key = fresh
    beacons = [to_proto(minimal(customer_id, f"s{i // 600}",
                                frozen_now - timedelta(seconds=5 * (i % 600))))
               for i in range(10_001)]
    with pytest.raises(grpc.RpcError) as error:
        ingest_stub.IngestBeacons(ingest_pb.IngestBeaconsRequest(beacons=beacons),
                                  metadata=bearer(key), timeout=60)
    assert error.value.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                  grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert json.loads(error.value.details())["detail"].startswith("Payload Too Large")
    if error.value.code() == grpc.StatusCode.INVALID_ARGUMENT:  # ours, not gRPC's size limit
        assert error_details(error.value).reason == "PAYLOAD_TOO_LARGE"
    assert count(beacons_url, customer_id) == 0


def test_the_typed_batch_over_http(api, fresh, frozen_now, beacons_url):
    """IngestBeacons is also bound to POST /analytics/v1/ingest/beacons:batch (proto JSON)."""
    customer_id, key = fresh
    when = (frozen_now - timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"beacons": [
        {"time": when, "customer_id": customer_id, "session_id": "s", "source": "p2p",
         "dropped_frames": 3, "p2p_compatible": True},
        {"customer_id": customer_id, "session_id": "t", "source": "cdn"},
    ]}
    response = api.http.post("/analytics/v1/ingest/beacons:batch", json=body,
                             headers=api.auth(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (1, 0), body
    assert [r["index"] for r in body["rejected"]] == [1] and "__time" in body["rejected"][0][
        "reason"], body
    assert sessions(beacons_url, customer_id) == {"s"}
