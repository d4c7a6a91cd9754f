"""The typed MetricsService through Envoy's port, with the generated stubs: every RPC (and
its reseller variant) answers the same rows as its JSON path for the same question — same
numbers, absent where JSON has null — and errors arrive in the rich error model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from edgestats.metrics.v1 import metrics_service_pb2 as pb
from edgestats.metrics.v1 import metrics_service_pb2_grpc as rpc
from edgestats.metrics.v1 import types_pb2 as types
from metrics_service.v1_metrics import METRIC_RPCS
from tests.builders import v1_scenario, wire
from tests.e2e.typed_calls import assert_close, bearer, refused, rich, stamp, violations

pytestmark = pytest.mark.e2e


@dataclass
class World:
    customer_id: str
    key: str
    other_id: str
    lite_key: str
    reseller_key: str
    now: datetime


@pytest.fixture(scope="module")
def world(api, tenants, frozen_now: datetime) -> World:
    made = []
    for seed in (31, 32):
        customer_id, key = tenants.customer("advanced")
        beacons = v1_scenario(customer_id, frozen_now, seed=seed)
        response = api.ingest(key, [wire(b) for b in beacons])
        assert response.json() == {"accepted": len(beacons), "duplicates": 0, "rejected": []}
        made.append((customer_id, key))
    _, lite_key = tenants.customer("lite")
    _, reseller_key = tenants.reseller([made[0][0], made[1][0]])
    return World(made[0][0], made[0][1], made[1][0], lite_key, reseller_key, frozen_now)


@pytest.fixture(scope="module")
def metrics(stack):
    with grpc.insecure_channel(stack.grpc_target) as channel:
        yield rpc.MetricsServiceStub(channel)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def json_rows(response, reseller: bool) -> list[dict]:
    """Typed rows spelled as the JSON rows: the timestamp as printed, absent as None."""
    out = []
    for row in response.rows:
        item: dict = {}
        for field in row.DESCRIPTOR.fields:
            if field.name == "customer_id" and not reseller:
                continue
            if field.name == "timestamp":
                item["timestamp"] = iso(row.timestamp.ToDatetime())
            elif field.has_presence and not row.HasField(field.name):
                item[field.name] = None
            else:
                item[field.name] = getattr(row, field.name)
        out.append(item)
    return out


def nullable_fields(stem: str) -> list[str]:
    """The fields of the stem's rows that are absent where JSON has null."""
    output = pb.DESCRIPTOR.services_by_name["MetricsService"].methods_by_name[f"Get{stem}"]
    row = output.output_type.fields_by_name["rows"].message_type
    return [f.name for f in row.fields if f.has_presence and f.message_type is None]


# (question id, typed request fields, the same question as a JSON body)
def questions(now: datetime) -> list[tuple[str, dict, dict]]:
    hour_ago, day_ago = now - timedelta(hours=1), now - timedelta(days=1)
    return [
        ("1h-minute",
         {"from_date": stamp(hour_ago), "to_date": stamp(now),
          "granularity": types.GRANULARITY_MINUTE},
         {"from_date": iso(hour_ago), "to_date": iso(now), "granularity": "minute"}),
        ("24h-hour-p2p-live",
         {"from_date": stamp(day_ago), "to_date": stamp(now), "granularity": types.GRANULARITY_HOUR,
          "filter": pb.BeaconFilter(source=types.SOURCE_P2P,
                                    stream_state=types.STREAM_STATE_LIVE)},
         {"from_date": iso(day_ago), "to_date": iso(now), "granularity": "hour",
          "source": "p2p", "stream_state": "live"}),
        ("10m-second-realtime-exact",
         {"from_date": stamp(now - timedelta(minutes=10)), "to_date": stamp(now),
          "data_layer": types.DATA_LAYER_REALTIME, "approximate_count_distinct": False},
         {"from_date": iso(now - timedelta(minutes=10)), "to_date": iso(now),
          "data_layer": "realtime", "approximate_count_distinct": False}),
        ("6h-thirty-minute-channel-bitrate",
         {"from_date": stamp(now - timedelta(hours=6)), "to_date": stamp(now),
          "granularity": types.GRANULARITY_THIRTY_MINUTE,
          "filter": pb.BeaconFilter(channel_id="ch-1", bitrate=4000)},
         {"from_date": iso(now - timedelta(hours=6)), "to_date": iso(now),
          "granularity": "thirty_minute", "channel_id": "ch-1", "bitrate": "4000"}),
    ]


def post(api, path: str, key: str, body: dict):
    return api.http.post("/analytics/v1/metrics/" + path, content=json.dumps(body),
                         headers=api.auth(key))


@pytest.mark.parametrize("stem", list(METRIC_RPCS))
def test_every_rpc_answers_the_json_rows(api, metrics, world, stem):
    path = METRIC_RPCS[stem]
    nonempty = 0
    nulls: set[str] = set()  # the JSON fields seen null, compared with an absent typed field
    for qid, fields, body in questions(world.now):
        typed = getattr(metrics, f"Get{stem}")(pb.GetMetricRequest(**fields),
                                               metadata=bearer(world.key), timeout=30)
        expected = post(api, path, world.key, body)
        assert expected.status_code == 200, (qid, expected.text)
        assert_close(json_rows(typed, reseller=False), expected.json(), qid)
        nonempty += any(v not in (0, None) for r in expected.json() for k, v in r.items()
                        if k != "timestamp")
        nulls |= {k for r in expected.json() for k, v in r.items() if v is None}
    assert nonempty, "the questions must find data"
    # every nullable field met a null (an empty bucket), so absence was compared with null
    assert nulls == set(nullable_fields(stem)), "the questions must find null values"


@pytest.mark.parametrize("stem", list(METRIC_RPCS))
def test_every_reseller_rpc_answers_the_json_rows(api, metrics, world, stem):
    path = METRIC_RPCS[stem]
    for qid, fields, body in questions(world.now)[:2]:
        for customers in ([], [world.other_id], [world.other_id, world.customer_id]):
            typed = getattr(metrics, f"GetReseller{stem}")(
                pb.GetResellerMetricRequest(**fields, customer_ids=customers),
                metadata=bearer(world.reseller_key), timeout=30)
            # an empty list is "all of them" on the typed face; JSON spells that by omission
            json_body = {**body, **({"customer_ids": customers} if customers else {})}
            expected = post(api, "reseller/" + path, world.reseller_key, json_body)
            assert expected.status_code == 200, (qid, expected.text)
            rows = expected.json()
            assert_close(json_rows(typed, reseller=True), rows, f"{qid} {customers}")
            assert {r["customer_id"] for r in rows} == set(customers or
                                                           [world.customer_id, world.other_id])


def test_a_reseller_names_its_customer_with_target_customer_id(api, metrics, world):
    _, fields, body = questions(world.now)[0]
    typed = metrics.GetViewingTime(pb.GetMetricRequest(**fields,
                                                       target_customer_id=world.other_id),
                                   metadata=bearer(world.reseller_key), timeout=30)
    expected = post(api, "viewing_time", world.reseller_key,
                    {**body, "target_customer_id": world.other_id})
    assert_close(json_rows(typed, reseller=False), expected.json())


def test_field_violations_name_the_typed_fields(api, metrics, world):
    request = pb.GetMetricRequest(granularity=types.GRANULARITY_MINUTE,
                                  filter=pb.BeaconFilter(stream_state=99),
                                  data_layer=types.DATA_LAYER_HISTORICAL_HOUR)
    error = refused(metrics.GetAudience, request, world.key)
    assert violations(error) == [("from_date", "value_error.missing"),
                                 ("to_date", "value_error.missing"),
                                 ("filter.stream_state", "type_error.enum")]
    # the JSON path refuses the same question with the same three fields
    body = {"granularity": "minute", "stream_state": "99", "data_layer": "historical-hour"}
    detail = post(api, "audience", world.key, body).json()["detail"]
    assert [d["loc"][-1] for d in detail] == ["from_date", "to_date", "stream_state"]
    assert "filter.stream_state: value is not a valid enumeration member" in error.details()


def test_a_range_rule_is_one_violation(metrics, world):
    now = world.now
    request = pb.GetMetricRequest(from_date=stamp(now - timedelta(days=20)), to_date=stamp(now),
                                  granularity=types.GRANULARITY_SECOND)
    error = refused(metrics.GetTraffic, request, world.key)
    assert violations(error) == [("granularity", "value_error")]
    assert "use a coarser granularity such as fifteen_minute" in error.details()
    request = pb.GetMetricRequest(from_date=stamp(now), to_date=stamp(now - timedelta(hours=1)))
    assert violations(refused(metrics.GetTraffic, request, world.key)) == [
        ("to_date", "value_error")]


def test_tier_and_key_kind_are_error_info_reasons(metrics, world):
    now = world.now
    request = pb.GetMetricRequest(from_date=stamp(now - timedelta(hours=1)), to_date=stamp(now))
    error = refused(metrics.GetAudienceByOs, request, world.lite_key)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert rich(error)[0].reason == "TIER_FORBIDDEN"
    assert error.details() == "This endpoint needs the Advanced tier"
    error = refused(metrics.GetResellerAudience, pb.GetResellerMetricRequest(), world.key)
    assert rich(error)[0].reason == "KEY_KIND_FORBIDDEN"
    error = refused(metrics.GetResellerAudience,
                    pb.GetResellerMetricRequest(from_date=stamp(now - timedelta(hours=1)),
                                                to_date=stamp(now), customer_ids=["nobody"]),
                    world.reseller_key)
    assert rich(error)[0].reason == "CUSTOMER_FORBIDDEN"
    for key in (None, "not-a-key"):
        error = refused(metrics.GetAudience, request, key)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert rich(error)[0].reason == "NOT_AUTHENTICATED"


def test_grafana_helpers_match_their_json_paths(api, metrics, world):
    now = world.now
    start, end = now - timedelta(days=3), now
    typed = metrics.ListGrafanaGranularities(
        pb.ListGrafanaGranularitiesRequest(from_date=stamp(start), to_date=stamp(end)),
        metadata=bearer(world.key), timeout=30)
    options = api.get("/analytics/v1/grafana/granularity", world.key,
                      from_date=int(start.timestamp()), to_date=int(end.timestamp())).json()
    names = {"T1S": "SECOND", "T1M": "MINUTE", "T15M": "FIFTEEN_MINUTE",
             "T30M": "THIRTY_MINUTE", "T1H": "HOUR", "1D": "DAY", "1W": "WEEK", "1M": "MONTH",
             "3M": "QUARTER", "1Y": "YEAR"}
    assert [types.Granularity.Name(g) for g in typed.granularities] == [
        "GRANULARITY_" + names[o["value"]] for o in options]
    assert len(options) >= 3
    for days, granularity, value in ((1, types.GRANULARITY_MINUTE, "T1M"),
                                     (5, types.GRANULARITY_MINUTE, "T1M"),
                                     (5, types.GRANULARITY_DAY, "1D")):
        start = now - timedelta(days=days)
        typed = metrics.GetGrafanaDataLayer(
            pb.GetGrafanaDataLayerRequest(from_date=stamp(start), granularity=granularity),
            metadata=bearer(world.key), timeout=30)
        layer = api.get("/analytics/v1/grafana/data_layer", world.key,
                        from_date=int(start.timestamp()), granularity=value).json()["layer"]
        assert types.DataLayer.Name(typed.layer) == "DATA_LAYER_" + layer.upper().replace("-", "_")
    error = refused(metrics.GetGrafanaDataLayer, pb.GetGrafanaDataLayerRequest(), world.key)
    assert violations(error) == [("from_date", "value_error.missing"),
                                 ("granularity", "value_error.missing")]


def test_timestamps_are_utc_bucket_starts(metrics, world):
    now = world.now.replace(tzinfo=UTC) if world.now.tzinfo is None else world.now
    start = (now - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    typed = metrics.GetAudience(
        pb.GetMetricRequest(from_date=stamp(start), to_date=stamp(start + timedelta(hours=3)),
                            granularity=types.GRANULARITY_HOUR),
        metadata=bearer(world.key), timeout=30)
    assert [r.timestamp.ToDatetime(tzinfo=UTC) for r in typed.rows] == [
        start + timedelta(hours=h) for h in range(3)]
