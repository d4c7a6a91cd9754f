"""Native gRPC through the Envoy port gives the same answers as JSON (CONTRACT §1, §9):
LegacyStatsJsonService bodies, errors, health and reflection."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from datetime import datetime

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from edgestats.metrics.v1 import legacy_stats_json_service_pb2
from edgestats.metrics.v1 import legacy_stats_json_service_pb2_grpc as rpc
from edgestats.metrics.v1 import legacy_stats_pb2 as pb
from edgestats_stack.services import SERVICES
from tests import oracle
from tests.builders import scenario, wire
from tests.compare import assert_same

pytestmark = pytest.mark.e2e

PREFIXES = ["", "/analytics/legacy"]
LEGACY = "edgestats.metrics.v1.LegacyStatsJsonService"
INGEST = "edgestats.metrics.v1.BeaconIngestService"
TIME_VALUES = ["live", "10m", "1h", "24h", "1w", "1M", "2M", "CM", "LM"]

# RPC stem -> (URL stem, source values to ask for)
STATS = {
    "ThroughputAgg": ("throughput/agg", ["cdn", "p2p"]),
    "BufferHealthAvg": ("buffer_health/avg", ["cdn", "p2p"]),
    "RebufferingRatio": ("rebuffering/ratio", [None, "p2p"]),
    "ContentRequestResponseTimesAvg": ("content_request_response_times/avg", ["cdn", "p2p"]),
    "BufferFillingRateAvg": ("buffer_filling_rate/avg", ["cdn", "p2p"]),
    "DroppedFramesAvg": ("dropped_frames/avg", ["p2p"]),
    "OperatingSystems": ("os", [None]),
    "Platforms": ("platforms", [None]),
    "ConnectionTypes": ("connection_types", [None]),
}
# where the seed spells a path two ways, the last_point RPC is bound to the other spelling first
LAST_POINT_STEM = {"ContentRequestResponseTimesAvg": "content_request_response_time/avg"}


@dataclass(frozen=True)
class Query:
    """One legacy call: the RPC and its request fields, or the same as an HTTP GET."""

    method: str
    fields: dict

    @property
    def id(self) -> str:
        return self.method + "(" + ",".join(f"{k}={v}" for k, v in self.fields.items()) + ")"

    def request(self):
        kind = pb.StatsRequest if self.method.startswith("Get") and not self.method.startswith(
            "GetSummary") else pb.SummaryRequest
        return kind(**self.fields)

    def url(self, prefix: str) -> str:
        fields = dict(self.fields)
        path = ""
        if "channel_id" in fields:
            path += "/channels/" + urllib.parse.quote(fields.pop("channel_id"), safe="")
        if "stream_id" in fields:
            path += "/streams/" + urllib.parse.quote(fields.pop("stream_id"), safe="")
        path += _PATHS[self.method]
        return f"{prefix}{path}?{urllib.parse.urlencode(fields)}"


_PATHS = {
    "ListChannelSummaries": "/summary",
    "ListStreamSummaries": "/summary",
    "ListRepresentationSummaries": "/summary",
    "GetSummaryAggregate": "/summary/agg",
    **{f"Get{stem}": f"/stats/{url}" for stem, (url, _) in STATS.items()},
    **{f"Get{stem}LastPoint": f"/stats/{LAST_POINT_STEM.get(stem, url)}/last_point"
       for stem, (url, _) in STATS.items()},
}

CHANNEL = {"channel_id": "ch three"}
STREAM = {"channel_id": "ch-1", "stream_id": "ch-1-stream-1"}


def _queries() -> list[Query]:
    out = []
    for time in ["live", "1h", "24h", "1M"]:
        out += [
            Query("ListChannelSummaries", {"time": time}),
            Query("ListStreamSummaries", {**CHANNEL, "time": time}),
            Query("ListRepresentationSummaries", {**STREAM, "time": time}),
            Query("GetSummaryAggregate", {"time": time}),
            Query("GetSummaryAggregate", {**CHANNEL, "time": time}),
            Query("GetSummaryAggregate", {**STREAM, "time": time}),
        ]
    out += [
        Query("ListChannelSummaries", {"time": "24h", "per_page": "2", "page": "1"}),
        Query("ListChannelSummaries", {"time": "24h", "page": "0"}),
        Query("ListStreamSummaries", {**CHANNEL, "time": "1w", "per_page": "1", "page": "0"}),
        Query("ListRepresentationSummaries",
              {**STREAM, "time": "1h", "representation_id": "2 of 2"}),
        Query("ListRepresentationSummaries", {**STREAM, "time": "1h", "bitrate": "4000"}),
        Query("GetSummaryAggregate", {**STREAM, "time": "1h", "representation_id": "1 of 2"}),
    ]
    for stem, (_, sources) in STATS.items():
        for source in sources:
            extra = {"source": source} if source else {}
            for scope in ({}, CHANNEL, STREAM):
                for last in ("", "LastPoint"):
                    time = "10m" if last else "1h"
                    out.append(Query(f"Get{stem}{last}", {**scope, "time": time, **extra}))
        out.append(Query(f"Get{stem}", {**STREAM, "time": "24h", "representation_id": "2 of 2",
                                        **({"source": sources[-1]} if sources[-1] else {})}))
    return out


QUERIES = _queries()


@dataclass
class World:
    customer_id: str
    key: str
    beacons: list[dict]
    lite_key: str
    reseller_key: str


@pytest.fixture(scope="module")
def world(api, tenants, frozen_now: datetime) -> World:
    customer_id, key = tenants.customer("advanced")
    beacons = scenario(customer_id, frozen_now, seed=41)
    response = api.ingest(key, [wire(b) for b in beacons])
    assert response.json() == {"accepted": len(beacons), "duplicates": 0, "rejected": []}
    _, lite_key = tenants.customer("lite")
    _, reseller_key = tenants.reseller([customer_id])
    return World(customer_id, key, beacons, lite_key, reseller_key)


@pytest.fixture(scope="module")
def channel(stack):
    with grpc.insecure_channel(stack.grpc_target) as ch:
        yield ch


@pytest.fixture(scope="module")
def legacy(channel) -> rpc.LegacyStatsJsonServiceStub:
    return rpc.LegacyStatsJsonServiceStub(channel)


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def call(legacy, query: Query, metadata):
    return getattr(legacy, query.method)(query.request(), metadata=metadata, timeout=30)


def test_every_query_method_exists():
    service = legacy_stats_json_service_pb2.DESCRIPTOR.services_by_name["LegacyStatsJsonService"]
    methods = {m.name for m in service.methods}
    assert {q.method for q in QUERIES} | {"Ping", "PingDb"} == methods


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.id)
def test_the_same_json_over_grpc_and_http(api, legacy, world, query, prefix):
    reply = call(legacy, query, bearer(world.key))
    response = api.http.get(query.url(prefix), headers=api.auth(world.key))
    assert response.status_code == 200, (query.url(prefix), response.text)
    assert reply.content_type == response.headers["content-type"] == "application/json"
    assert json.loads(reply.data) == response.json()
    assert reply.data == response.content


def test_the_parity_checks_compare_real_data(legacy, world, frozen_now):
    """Not only empty answers: gRPC itself matches the oracle where data is."""
    reply = call(legacy, Query("GetSummaryAggregate", {"time": "1h"}), bearer(world.key))
    expected = oracle.summary_agg(world.beacons, world.customer_id, frozen_now, "1h")
    assert expected[0]["total_throughput"] > 0
    assert_same(json.loads(reply.data), expected)
    query = Query("GetRebufferingRatio", {**STREAM, "time": "1h", "source": "p2p"})
    got = json.loads(call(legacy, query, bearer(world.key)).data)
    assert got
    assert_same(got, oracle.stats(world.beacons, world.customer_id, frozen_now, "1h",
                                  "rebuffering", source="p2p", **STREAM))
    query = Query("ListRepresentationSummaries",
                  {**STREAM, "time": "1h", "representation_id": "2 of 2"})
    got = json.loads(call(legacy, query, bearer(world.key)).data)
    assert got
    assert_same(got, oracle.summary(world.beacons, world.customer_id, frozen_now, "1h",
                                    "representation", representation_id="2 of 2", **STREAM))


def test_the_bare_authorization_form_over_grpc(legacy, world):
    query = Query("GetSummaryAggregate", {"time": "24h"})
    assert call(legacy, query, [("authorization", world.key)]).data == call(
        legacy, query, bearer(world.key)).data


# --- errors ----------------------------------------------------------------------------

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
}
# (label, query, which key)
ERRORS = [
    ("missing time", Query("ListChannelSummaries", {}), "key"),
    ("bad time", Query("GetSummaryAggregate", {"time": "5y"}), "key"),
    ("bad source", Query("GetThroughputAgg", {"time": "1h", "source": "xx"}), "key"),
    ("missing source", Query("GetBufferHealthAvgLastPoint", {"time": "1h"}), "key"),
    ("several", Query("ListChannelSummaries", {"time": "", "per_page": "0", "page": "x"}), "key"),
    ("bad page", Query("ListStreamSummaries", {**CHANNEL, "time": "1h", "page": "-1"}), "key"),
    ("no key", Query("GetSummaryAggregate", {"time": "1h"}), None),
    ("invalid key", Query("GetSummaryAggregate", {"time": "1h"}), "invalid"),
    ("lite on advanced", Query("GetOperatingSystems", {"time": "1h"}), "lite"),
    ("lite on rebuffering", Query("GetRebufferingRatioLastPoint", {"time": "1h"}), "lite"),
    ("reseller", Query("ListChannelSummaries", {"time": "1h"}), "reseller"),
]


def _metadata(world: World, which: str | None) -> tuple[list, dict]:
    key = {"key": world.key, "lite": world.lite_key, "reseller": world.reseller_key,
           "invalid": "es_not-a-real-key", None: None}[which]
    return (bearer(key) if key else []), ({"Authorization": f"Bearer {key}"} if key else {})


@pytest.mark.parametrize(("label", "query", "which"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_are_the_same_over_grpc_and_http(api, legacy, world, label, query, which):
    metadata, headers = _metadata(world, which)
    with pytest.raises(grpc.RpcError) as error:
        call(legacy, query, metadata)
    response = api.http.get(query.url(""), headers=headers)
    assert HTTP_STATUS.get(error.value.code()) == response.status_code, (
        error.value.code(), response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    assert json.loads(error.value.details()) == response.json()


def test_a_bad_time_over_grpc_is_invalid_argument_with_the_documented_body(legacy, world):
    with pytest.raises(grpc.RpcError) as error:
        call(legacy, Query("GetThroughputAgg", {"time": "1y", "source": "cdn"}), bearer(world.key))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    permitted = ", ".join(f"'{v}'" for v in TIME_VALUES)
    assert json.loads(error.value.details()) == {"detail": [{
        "loc": ["query", "time"],
        "msg": f"value is not a valid enumeration member; permitted: {permitted}",
        "type": "type_error.enum",
        "ctx": {"enum_values": TIME_VALUES},
    }]}
    with pytest.raises(grpc.RpcError) as error:
        call(legacy, Query("GetSummaryAggregate", {}), bearer(world.key))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert json.loads(error.value.details()) == {"detail": [
        {"loc": ["query", "time"], "msg": "field required", "type": "value_error.missing"}]}


def test_a_call_without_a_key_is_unauthenticated(legacy):
    with pytest.raises(grpc.RpcError) as error:
        call(legacy, Query("ListChannelSummaries", {"time": "1h"}), [])
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert json.loads(error.value.details()) == {"type": "not-authenticated",
                                                 "title": "Not authenticated"}


# --- public RPCs, health, reflection ---------------------------------------------------


@pytest.mark.parametrize("method", ["Ping", "PingDb"])
def test_pings_over_grpc_need_no_key(legacy, method):
    reply = getattr(legacy, method)(pb.PingRequest(), timeout=10)
    assert (reply.content_type, reply.data) == ("text/plain", b"pong")


@pytest.mark.parametrize("service", ["", *(n for spec in SERVICES for n in spec.grpc_services)])
def test_health_check_through_envoy_without_a_key(channel, service):
    """Every service name, though the gateway sends health checks to one process."""
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_check_of_an_unknown_service_is_not_found(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as error:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def _reflect(channel, request: reflection_pb2.ServerReflectionRequest):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    return reply


def test_reflection_lists_the_services_through_envoy_without_a_key(channel):
    """Every service of every process, though the gateway sends reflection to one of them."""
    reply = _reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in reply.list_services_response.service}
    every = {name for spec in SERVICES for name in spec.grpc_services}
    assert {"edgestats.metrics.v1.MetricsService", "edgestats.metrics.v1.MetricsJsonService",
            "edgestats.sql_query.v1.SqlQueryJsonService"} <= every
    assert every | {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} == names


@pytest.mark.parametrize(("service", "method"), [
    ("edgestats.sql_query.v1.SqlQueryJsonService", "Query"),
    ("edgestats.usage_billing.v1.UsageStatsJsonService", "GetStats"),
    ("edgestats.usage_billing.v1.OAuthService", "IssueToken"),
    ("edgestats.metrics.v1.MetricsJsonService", "GetAudience"),
])
def test_reflection_describes_every_process_s_services(channel, service, method):
    assert method in _described_methods(channel, service)[service]


def _described_methods(channel, symbol: str) -> dict[str, list[str]]:
    reply = _reflect(channel, reflection_pb2.ServerReflectionRequest(
        file_containing_symbol=symbol))
    assert reply.WhichOneof("message_response") == "file_descriptor_response", (
        symbol, reply.error_response)
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
             for raw in reply.file_descriptor_response.file_descriptor_proto]
    return {f"{f.package}.{s.name}": [m.name for m in s.method]
            for f in files for s in f.service}


def test_reflection_describes_the_ingest_service(channel):
    assert "IngestBeacons" in _described_methods(channel, INGEST)[INGEST]


# (a method symbol such as LegacyStatsJsonService.GetSummaryAggregate is not resolvable by
# grpcio-reflection on the upb protobuf backend; clients describe the service instead)
@pytest.mark.parametrize("symbol", [LEGACY])
def test_reflection_describes_the_legacy_service(channel, symbol):
    services = _described_methods(channel, symbol)
    assert "GetSummaryAggregate" in services[LEGACY]
    assert "Ping" in services[LEGACY]
