"""Edge Analytics v1 metrics through Envoy, compared with tests/oracle_v1.py over the test's
own beacons (CONTRACT §5, §6): every endpoint, granularities, filters, both path spellings,
resellers and tiers, and gRPC parity."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import struct_pb2

from edgestats.metrics.v1 import metrics_json_service_pb2_grpc as rpc
from edgestats.metrics.v1 import metrics_pb2 as pb
from metrics_service import rollups
from tests import oracle_v1
from tests.builders import v1_scenario, wire
from tests.compare import assert_same

pytestmark = pytest.mark.e2e

PREFIXES = ["/analytics/v1/metrics/", "/v1/metrics/"]
LITE_PATHS = ["audience", "traffic", "traffic/offload/percentage", "throughput", "viewing_time",
              "buffer_health", "qoe/join_time", "qoe/optimal_viewport/percentage"]
ADVANCED_PATHS = ["audience/os", "audience/browsers", "audience/connection_types",
                  "audience/asn", "traffic/asn", "traffic/asn/percentage",
                  "qoe/rebuffering/ratio", "qoe/buffer_filling_rate", "qoe/dropped_frames"]
PATHS = LITE_PATHS + ADVANCED_PATHS


def iso(t: datetime, z: bool = True) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (".000Z" if z else "")


@dataclass
class World:
    customer_id: str
    key: str
    beacons: list[dict]
    other_id: str
    other_key: str
    lite_key: str
    lite_id: str
    reseller_key: str
    lite_reseller_key: str
    now: datetime


@pytest.fixture(scope="module")
def world(api, tenants, frozen_now: datetime, data_urls: list[str]) -> World:
    """Two advanced customers and a lite one with v1 data, and resellers of them."""
    made = []
    for seed, tier in ((21, "advanced"), (22, "advanced"), (23, "lite")):
        customer_id, key = tenants.customer(tier)
        beacons = v1_scenario(customer_id, frozen_now, seed=seed)
        response = api.ingest(key, [wire(b) for b in beacons])
        assert response.json() == {"accepted": len(beacons), "duplicates": 0, "rejected": []}
        made.append((customer_id, key, beacons))
    # other tests roll hours up; beacons sent afterwards into those hours are late data, which
    # the hourly DAG's late-data step folds in (CONTRACT §4): do what it would do
    for url in data_urls:
        rollups.re_roll_late_hours(url, before=datetime.now(UTC))
    (a, a_key, a_b), (b, b_key, b_b), (c, c_key, c_b) = made
    _, reseller_key = tenants.reseller([a, b, c])
    _, lite_reseller_key = tenants.reseller([c], tier="lite")
    return World(a, a_key, a_b + b_b + c_b, b, b_key, c_key, c, reseller_key,
                 lite_reseller_key, frozen_now)


def post(api, path: str, key: str | None, body: object, prefix: str = PREFIXES[0]):
    headers = api.auth(key) if key else {}
    return api.http.post(prefix + path, content=json.dumps(body), headers=headers)


def ok(api, path: str, key: str, body: dict, prefix: str = PREFIXES[0]) -> list:
    response = post(api, path, key, body, prefix)
    assert response.status_code == 200, (path, body, response.text)
    assert response.headers["content-type"] == "application/json"
    return response.json()


def ranges(now: datetime) -> list[tuple[str, dict, datetime, datetime, str]]:
    """(label, body, start, end, granularity) with data in the scenario."""
    hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(days=1)
    month_ago = now - timedelta(days=29)
    unaligned = now - timedelta(minutes=17, seconds=13)
    return [
        ("10m-second", {"from_date": iso(now - timedelta(minutes=10)), "to_date": iso(now)},
         now - timedelta(minutes=10), now, "second"),
        ("1h-minute", {"from_date": iso(hour_ago), "to_date": iso(now), "granularity": "minute"},
         hour_ago, now, "minute"),
        ("unaligned-PT15M", {"from_date": iso(unaligned, z=False) + ".123",
                             "to_date": iso(now + timedelta(seconds=7), z=False),
                             "granularity": "PT15M"},
         unaligned, now + timedelta(seconds=7), "fifteen_minute"),
        ("24h-hour", {"from_date": iso(day_ago), "to_date": iso(now), "granularity": "hour",
                      "data_layer": "historical-hour"}, day_ago, now, "hour"),
        ("29d-day", {"from_date": iso(month_ago), "to_date": iso(now), "granularity": "P1D"},
         month_ago, now, "day"),
        ("29d-week", {"from_date": iso(month_ago), "to_date": iso(now), "granularity": "week"},
         month_ago, now, "week"),
        ("29d-month", {"from_date": iso(month_ago), "to_date": iso(now), "granularity": "month"},
         month_ago, now, "month"),
        ("29d-quarter-year", {"from_date": iso(month_ago), "to_date": iso(now),
                              "granularity": "P3M"}, month_ago, now, "quarter"),
        ("29d-year", {"from_date": iso(month_ago), "to_date": iso(now), "granularity": "year",
                      "approximate_count_distinct": False}, month_ago, now, "year"),
    ]


RANGE_LABELS = [r[0] for r in ranges(datetime(2026, 1, 1, tzinfo=UTC))]


# ranges the planner answers from the historical layers (rollups, or minute rows aggregated on
# the fly from raw beacons where no hour is rolled up yet)
HISTORICAL_LABELS = {"24h-hour", "29d-day", "29d-week", "29d-month", "29d-quarter-year"}


@pytest.mark.parametrize("label", RANGE_LABELS)
@pytest.mark.parametrize("path", PATHS)
def test_every_endpoint_matches_the_oracle(api, world, path, label):
    (_, body, start, end, granularity), = [r for r in ranges(world.now) if r[0] == label]
    expected = oracle_v1.metric(path, world.beacons, [world.customer_id], start, end, granularity)
    for prefix in PREFIXES:
        got = ok(api, path, world.key, body, prefix)
        if path == "qoe/join_time" and label in HISTORICAL_LABELS:
            assert_join_time_sketch(got, expected)
        else:
            assert_same(got, expected)


def assert_join_time_sketch(got: list[dict], exact: list[dict]) -> None:
    """Historical join times merge per-minute t-digests, so a session counts once per minute it
    played (CONTRACT §5's documented approximation): not the per-bucket session maxima the
    oracle computes. Same buckets, null exactly where no session played, ordered quantiles
    within the builders' StartingTime range (300-4000 ms); the sketch's own accuracy is tested
    in tests/db/test_rollups.py."""
    assert [r["timestamp"] for r in got] == [r["timestamp"] for r in exact]
    for row, want in zip(got, exact, strict=True):
        keys = ("p25", "median", "p75", "p95")
        if want["p25"] is None:
            assert all(row[k] is None for k in keys), row
            continue
        values = [row[k] for k in keys]
        assert values == sorted(values), row
        assert all(300 <= v <= 4000 for v in values), row


FILTERS = [
    {"channel_id": "ch three"},
    {"source": "p2p", "bitrate": "-1"},
    {"representation_id": "2 of 2", "stream_state": "live"},
    {"channel_id": "ch-1", "stream_id": "ch-1-stream-1", "bitrate": "4000", "source": "-1"},
    {"stream_uri": "https://cdn.example/ch-2/1.m3u8?t=***", "stream_state": "-1"},
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f))
@pytest.mark.parametrize("path", PATHS)
def test_filters_match_the_oracle(api, world, path, filters):
    start, end = world.now - timedelta(hours=1), world.now
    body = {"from_date": iso(start), "to_date": iso(end), "granularity": "fifteen_minute",
            **filters}
    expected = oracle_v1.metric(path, world.beacons, [world.customer_id], start, end,
                                "fifteen_minute", **filters)
    assert_same(ok(api, path, world.key, body), expected)


def test_the_comparisons_hold_data(world):
    """The scenario gives the oracle non-trivial answers (not only zeros and nulls)."""
    start, end = world.now - timedelta(hours=1), world.now
    for path in PATHS:
        rows = oracle_v1.metric(path, world.beacons, [world.customer_id], start, end, "hour")
        assert rows, path
        assert any(v not in (0, None) for r in rows for k, v in r.items() if k != "timestamp"), (
            path, rows)


def test_layers_agree(api, world):
    start, end = world.now - timedelta(hours=2), world.now
    base = {"from_date": iso(start), "to_date": iso(end), "granularity": "thirty_minute"}
    answers = [ok(api, "traffic", world.key, {**base, "data_layer": layer})
               for layer in ("realtime", "historical-minute")]
    answers.append(ok(api, "traffic", world.key, base))
    assert all(a == answers[0] for a in answers)
    assert_same(answers[0], oracle_v1.metric("traffic", world.beacons, [world.customer_id],
                                             start, end, "thirty_minute"))
    hourly = {**base, "granularity": "hour"}
    assert ok(api, "traffic", world.key, {**hourly, "data_layer": "historical-hour"}) == ok(
        api, "traffic", world.key, {**hourly, "data_layer": "historical-minute"})


@pytest.mark.parametrize("path", ["audience", "traffic/asn", "qoe/join_time"])
def test_reseller_paths(api, world, path):
    start, end = world.now - timedelta(hours=1), world.now
    body = {"from_date": iso(start), "to_date": iso(end), "granularity": "thirty_minute"}
    everyone = [world.customer_id, world.other_id, world.lite_id]
    expected = oracle_v1.metric(path, world.beacons, everyone, start, end, "thirty_minute",
                                reseller=True)
    assert_same(ok(api, "reseller/" + path, world.reseller_key, body), expected)
    two = [world.other_id, world.customer_id]
    expected = oracle_v1.metric(path, world.beacons, two, start, end, "thirty_minute",
                                reseller=True)
    for prefix in PREFIXES:
        assert_same(ok(api, "reseller/" + path, world.reseller_key,
                       {**body, "customer_ids": two, "region": "emea"}, prefix), expected)


def test_reseller_target_customer_answers_for_it(api, world):
    start, end = world.now - timedelta(hours=1), world.now
    body = {"from_date": iso(start), "to_date": iso(end), "granularity": "minute"}
    expected = oracle_v1.metric("throughput", world.beacons, [world.other_id], start, end,
                                "minute")
    got = ok(api, "throughput", world.reseller_key, {**body, "target_customer_id": world.other_id})
    assert_same(got, expected)
    # a customer's target_customer_id is ignored (seed 001)
    mine = ok(api, "throughput", world.key, {**body, "target_customer_id": world.other_id})
    assert_same(mine, oracle_v1.metric("throughput", world.beacons, [world.customer_id], start,
                                       end, "minute"))


def test_lite_keeps_approximate_and_may_use_lite_endpoints(api, world):
    start, end = world.now - timedelta(days=40), world.now
    body = {"from_date": iso(start), "to_date": iso(end), "granularity": "week",
            "approximate_count_distinct": False}
    expected = oracle_v1.metric("audience", world.beacons, [world.lite_id], start, end, "week")
    assert_same(ok(api, "audience", world.lite_key, body), expected)


# --- gRPC parity --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub(stack):
    with grpc.insecure_channel(stack.grpc_target) as channel:
        yield rpc.MetricsJsonServiceStub(channel)


def _value(v: object) -> struct_pb2.Value:
    out = struct_pb2.Value()
    if isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, str):
        out.string_value = v
    elif isinstance(v, list):
        out.list_value.extend(v)
    return out


@pytest.mark.parametrize(("method", "path"), [("GetAudience", "audience"),
                                              ("GetJoinTime", "qoe/join_time"),
                                              ("GetTrafficByAsn", "traffic/asn"),
                                              ("GetResellerThroughput", "reseller/throughput")])
def test_grpc_gives_the_same_bytes(api, stub, world, method, path):
    body = {"from_date": iso(world.now - timedelta(hours=1)), "to_date": iso(world.now),
            "granularity": "fifteen_minute", "channel_id": "ch three"}
    kind = pb.ResellerMetricsRequest if "Reseller" in method else pb.MetricsRequest
    key = world.reseller_key if "Reseller" in method else world.key
    request = kind(**{k: _value(v) for k, v in body.items()})
    reply = getattr(stub, method)(request, metadata=[("authorization", f"Bearer {key}")],
                                  timeout=30)
    response = post(api, path, key, body)
    assert response.status_code == 200, response.text
    assert reply.content_type == "application/json"
    assert reply.data == response.content
    assert json.loads(reply.data)


def test_grpc_errors_carry_the_documented_body(stub, world):
    with pytest.raises(grpc.RpcError) as error:
        stub.GetAudience(pb.MetricsRequest(), metadata=[("authorization", f"Bearer {world.key}")],
                         timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert json.loads(error.value.details()) == {"detail": [
        {"loc": ["body", "from_date"], "msg": "field required", "type": "value_error.missing"},
        {"loc": ["body", "to_date"], "msg": "field required", "type": "value_error.missing"},
    ]}
