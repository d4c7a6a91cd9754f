"""The typed LegacyStatsService through Envoy's port, with the generated stubs: every RPC
answers the same summaries and points as its JSON path for the same question (several
windows, scopes, sources and pages) — same numbers, absent where JSON has null — and errors
arrive in the rich error model, named by the typed fields."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import datetime

import grpc
import pytest

from edgestats.metrics.v1 import legacy_stats_service_pb2 as pb
from edgestats.metrics.v1 import legacy_stats_service_pb2_grpc as rpc
from edgestats.metrics.v1 import types_pb2 as types
from tests.builders import scenario, wire
from tests.e2e.typed_calls import assert_close, bearer, refused, rich, violations

pytestmark = pytest.mark.e2e

WINDOWS = {
    "live": pb.LEGACY_WINDOW_LIVE, "10m": pb.LEGACY_WINDOW_TEN_MINUTES,
    "1h": pb.LEGACY_WINDOW_ONE_HOUR, "24h": pb.LEGACY_WINDOW_ONE_DAY,
    "1w": pb.LEGACY_WINDOW_ONE_WEEK, "1M": pb.LEGACY_WINDOW_ONE_MONTH,
    "2M": pb.LEGACY_WINDOW_TWO_MONTHS, "CM": pb.LEGACY_WINDOW_CURRENT_MONTH,
    "LM": pb.LEGACY_WINDOW_LAST_MONTH,
}
SOURCES = {"cdn": types.SOURCE_CDN, "p2p": types.SOURCE_P2P}
CHANNEL = {"channel_id": "ch three"}
STREAM = {"channel_id": "ch-1", "stream_id": "ch-1-stream-1"}

# typed RPC stem -> (JSON URL stem, sources to ask for, the typed request)
STATS = {
    "ThroughputAgg": ("throughput/agg", ["cdn", "p2p"], pb.LegacySourceStatRequest),
    "BufferHealthAvg": ("buffer_health/avg", ["cdn", "p2p"], pb.LegacySourceStatRequest),
    "RebufferingRatio": ("rebuffering/ratio", [None, "p2p"], pb.LegacySourceStatRequest),
    "ContentRequestResponseTimesAvg": ("content_request_response_times/avg", ["cdn", "p2p"],
                                       pb.LegacySourceStatRequest),
    "BufferFillingRateAvg": ("buffer_filling_rate/avg", ["cdn", "p2p"],
                             pb.LegacySourceStatRequest),
    "DroppedFramesAvg": ("dropped_frames/avg", ["cdn", "p2p"], pb.LegacySourceStatRequest),
    "OperatingSystems": ("os", [None], pb.LegacyDeviceStatRequest),
    "Platforms": ("platforms", [None], pb.LegacyDeviceStatRequest),
    "ConnectionTypes": ("connection_types", [None], pb.LegacyDeviceStatRequest),
}
SUMMARIES = {
    "ListChannelSummaries": pb.ListChannelSummariesRequest,
    "ListStreamSummaries": pb.ListStreamSummariesRequest,
    "ListRepresentationSummaries": pb.ListRepresentationSummariesRequest,
}


@dataclass
class World:
    customer_id: str
    key: str
    lite_key: str
    reseller_key: str


@pytest.fixture(scope="module")
def world(api, tenants, frozen_now: datetime) -> World:
    customer_id, key = tenants.customer("advanced")
    beacons = scenario(customer_id, frozen_now, seed=43)
    response = api.ingest(key, [wire(b) for b in beacons])
    assert response.json() == {"accepted": len(beacons), "duplicates": 0, "rejected": []}
    _, lite_key = tenants.customer("lite")
    _, reseller_key = tenants.reseller([customer_id])
    return World(customer_id, key, lite_key, reseller_key)


@pytest.fixture(scope="module")
def legacy(stack):
    with grpc.insecure_channel(stack.grpc_target) as channel:
        yield rpc.LegacyStatsServiceStub(channel)


def url(scope: dict, rest: str, **params) -> str:
    """The JSON path of a question: the scope as path segments, the rest as the query."""
    path = ""
    if "channel_id" in scope:
        path += "/channels/" + urllib.parse.quote(scope["channel_id"], safe="")
    if "stream_id" in scope:
        path += "/streams/" + urllib.parse.quote(scope["stream_id"], safe="")
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    return f"{path}{rest}?{query}"


def json_get(api, world: World, path: str):
    response = api.http.get(path, headers=api.auth(world.key))
    assert response.status_code == 200, (path, response.text)
    return response.json()


def summary_dicts(summaries) -> list[dict]:
    """Typed summaries spelled as the JSON rows (without the pretty viewing time)."""
    return [{**{f.name: getattr(s, f.name) for f in s.DESCRIPTOR.fields if f.name != "metrics"},
             **metrics_dict(s.metrics)} for s in summaries]


def metrics_dict(metrics: pb.LegacySummaryMetrics) -> dict:
    return {f.name: getattr(metrics, f.name) for f in metrics.DESCRIPTOR.fields}


def without_pretty(rows: list[dict]) -> list[dict]:
    for row in rows:
        assert row.pop("total_pretty_viewing_time")
    return rows


# (typed method, request fields, JSON path)
def summary_questions() -> list[tuple[str, dict, str]]:
    out = []
    for time in ("live", "1h", "24h", "1w", "1M", "CM"):
        window = {"window": WINDOWS[time]}
        out += [
            ("ListChannelSummaries", window, url({}, "/summary", time=time)),
            ("ListStreamSummaries", {**window, **CHANNEL}, url(CHANNEL, "/summary", time=time)),
            ("ListRepresentationSummaries", {**window, **STREAM},
             url(STREAM, "/summary", time=time)),
        ]
    out += [
        ("ListRepresentationSummaries",
         {"window": WINDOWS["1h"], **STREAM, "representation_id": "2 of 2"},
         url(STREAM, "/summary", time="1h", representation_id="2 of 2")),
        ("ListRepresentationSummaries", {"window": WINDOWS["24h"], **STREAM, "bitrate": "4000"},
         url(STREAM, "/summary", time="24h", bitrate="4000")),
    ]
    return out


@pytest.mark.parametrize("method,fields,path", summary_questions(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_summaries_are_the_json_rows(api, legacy, world, method, fields, path):
    typed = getattr(legacy, method)(SUMMARIES[method](**fields), metadata=bearer(world.key),
                                    timeout=30)
    rows = without_pretty(json_get(api, world, path))
    assert_close(summary_dicts(typed.summaries), rows)
    # unpaged: every row in one page
    assert (typed.total_pages, typed.page) == ((1 if rows else 0), 0)


# (typed method, request fields, JSON path) of paged questions
PAGES = [
    ("ListChannelSummaries", {"window": WINDOWS["24h"], "page_size": 2, "page": 1},
     url({}, "/summary", time="24h", per_page=2, page=1)),
    ("ListChannelSummaries", {"window": WINDOWS["24h"], "page": 0},
     url({}, "/summary", time="24h", page=0)),
    ("ListChannelSummaries", {"window": WINDOWS["1w"], "page_size": 2, "page": 7},
     url({}, "/summary", time="1w", per_page=2, page=7)),
    ("ListStreamSummaries", {"window": WINDOWS["1w"], **CHANNEL, "page_size": 1},
     url(CHANNEL, "/summary", time="1w", per_page=1)),
    ("ListRepresentationSummaries", {"window": WINDOWS["1h"], **STREAM, "page_size": 1,
                                     "page": 1},
     url(STREAM, "/summary", time="1h", per_page=1, page=1)),
]


@pytest.mark.parametrize("method,fields,path", PAGES,
                         ids=lambda v: v if isinstance(v, str) else None)
def test_pages_are_the_json_pages(api, legacy, world, method, fields, path):
    typed = getattr(legacy, method)(SUMMARIES[method](**fields), metadata=bearer(world.key),
                                    timeout=30)
    (page,) = json_get(api, world, path)
    assert (typed.total_pages, typed.page) == (page["total_pages"], page["page"])
    assert_close(summary_dicts(typed.summaries), without_pretty(page["results"]))


def test_pages_split_the_summaries(legacy, world):
    def ask(**fields):
        return legacy.ListChannelSummaries(
            pb.ListChannelSummariesRequest(window=WINDOWS["1w"], **fields),
            metadata=bearer(world.key), timeout=30)

    every = ask()
    assert len(every.summaries) == 3  # the scenario's channels
    pages = [ask(page_size=2, page=n) for n in range(2)]
    assert [p.total_pages for p in pages] == [2, 2]
    assert [s for p in pages for s in p.summaries] == list(every.summaries)
    assert not ask(page_size=2, page=2).summaries


@pytest.mark.parametrize("scope", [{}, CHANNEL, STREAM, {**STREAM, "representation_id": "1 of 2"}],
                         ids=["customer", "channel", "stream", "rendition"])
@pytest.mark.parametrize("time", ["live", "1h", "24h", "1M", "LM"])
def test_the_aggregate_is_the_json_row(api, legacy, world, scope, time):
    typed = legacy.GetSummaryAggregate(
        pb.GetSummaryAggregateRequest(window=WINDOWS[time], **scope),
        metadata=bearer(world.key), timeout=30)
    path_scope = {k: v for k, v in scope.items() if k in ("channel_id", "stream_id")}
    (row,) = json_get(api, world, url(path_scope, "/summary/agg", time=time,
                                      representation_id=scope.get("representation_id")))
    assert row.pop("aggregate") == "aggregate"
    assert_close(metrics_dict(typed.metrics), without_pretty([row])[0])
    if time in ("1h", "24h"):
        assert typed.metrics.total_throughput > 0 and typed.metrics.cdn_devices > 0


def point_pairs(typed) -> list[tuple[int, object]]:
    """Typed points as (epoch ms, value): absent as None, maps as dicts."""
    out = []
    for point in typed.points:
        (field,) = (f for f in point.DESCRIPTOR.fields if f.name != "datetime")
        if field.message_type is not None:
            value = dict(getattr(point, field.name))
        elif field.has_presence and not point.HasField(field.name):
            value = None
        else:
            value = getattr(point, field.name)
        out.append((point.datetime.ToMilliseconds(), value))
    return out


def json_pairs(points: list[dict], key: str) -> list[tuple[int, object]]:
    assert all(set(p) == {"datetime", key} for p in points), points[:2]
    return [(p["datetime"], p[key]) for p in points]


def stat_questions() -> list[tuple[str, str | None, dict, str]]:
    """(stem, source, scope, time) of every stat question asked."""
    out = []
    for stem, (_, sources, _) in STATS.items():
        for source in sources:
            for scope in ({}, CHANNEL, STREAM):
                for time in ("10m", "1h", "24h", "1w"):
                    out.append((stem, source, scope, time))
        out.append((stem, sources[-1], {**STREAM, "representation_id": "2 of 2"}, "24h"))
    return out


RESPONSE_KEYS = {
    "ThroughputAgg": "agg_throughput_{source}", "BufferHealthAvg": "avg_buffer_health_{source}",
    "RebufferingRatio": "rebuffering_ratio",
    "ContentRequestResponseTimesAvg": "avg_content_request_response_times_{source}",
    "BufferFillingRateAvg": "avg_buffer_filling_rate_{source}",
    "DroppedFramesAvg": "avg_dropped_frames_{source}", "OperatingSystems": "operating_systems",
    "Platforms": "platforms", "ConnectionTypes": "connection_types",
}


@pytest.mark.parametrize("stem", list(STATS))
def test_every_stat_and_its_last_point_are_the_json_points(api, legacy, world, stem):
    rest, _, request_type = STATS[stem]
    with_data = nulls = 0
    for question in (q for q in stat_questions() if q[0] == stem):
        _, source, scope, time = question
        fields = {"window": WINDOWS[time], **scope}
        if source is not None:
            fields["source"] = SOURCES[source]
        path_scope = {k: v for k, v in scope.items() if k in ("channel_id", "stream_id")}
        key = RESPONSE_KEYS[stem].format(source=source)
        for last in ("", "LastPoint"):
            typed = getattr(legacy, f"Get{stem}{last}")(
                request_type(**fields), metadata=bearer(world.key), timeout=30)
            points = json_get(api, world, url(
                path_scope, f"/stats/{rest}" + ("/last_point" if last else ""), time=time,
                source=source, representation_id=scope.get("representation_id")))
            # within 1e-9: a second query may sum the same floats in another order
            assert_close(point_pairs(typed), json_pairs(points, key), f"{question}{last}")
            with_data += bool(points)
            nulls += sum(p[key] is None for p in points)
            if last:
                assert len(typed.points) == (1 if points else 0)
    assert with_data, "the questions must find data"
    if stem == "BufferHealthAvg":
        assert nulls, "some point must have no value of its source (absent on the typed face)"


def test_every_rpc_is_compared():
    service = pb.DESCRIPTOR.services_by_name["LegacyStatsService"]
    compared = {*SUMMARIES, "GetSummaryAggregate", *(f"Get{s}" for s in STATS),
                *(f"Get{s}LastPoint" for s in STATS)}
    assert {m.name for m in service.methods} == compared


def test_a_missing_window_names_the_typed_field(api, legacy, world):
    error = refused(legacy.ListChannelSummaries, pb.ListChannelSummariesRequest(), world.key)
    assert violations(error) == [("window", "value_error.missing")]
    assert "window: field required" in error.details()
    # the JSON path refuses the same question for its `time`
    response = api.get("/summary", world.key)
    assert response.status_code == 400
    assert [d["loc"] for d in response.json()["detail"]] == [["query", "time"]]
    error = refused(legacy.GetThroughputAgg, pb.LegacySourceStatRequest(), world.key)
    assert violations(error) == [("window", "value_error.missing"),
                                 ("source", "value_error.missing")]
    error = refused(legacy.GetSummaryAggregate, pb.GetSummaryAggregateRequest(window=99),
                    world.key)
    assert violations(error) == [("window", "type_error.enum")]


def test_every_parameter_error_comes_together(legacy, world):
    request = pb.ListRepresentationSummariesRequest(page_size=0, page=2_000_000_000)
    error = refused(legacy.ListRepresentationSummaries, request, world.key)
    assert violations(error) == [("channel_id", "value_error.missing"),
                                 ("stream_id", "value_error.missing"),
                                 ("window", "value_error.missing"),
                                 ("page_size", "value_error.number.not_ge"),
                                 ("page", "value_error.number.not_le")]
    error = refused(legacy.ListStreamSummaries,
                    pb.ListStreamSummariesRequest(window=WINDOWS["1h"]), world.key)
    assert violations(error) == [("channel_id", "value_error.missing")]


def test_scopes_the_json_paths_cannot_spell_are_refused(legacy, world):
    window = WINDOWS["1h"]
    error = refused(legacy.GetSummaryAggregate,
                    pb.GetSummaryAggregateRequest(window=window, stream_id="ch-1-stream-1"),
                    world.key)
    assert violations(error) == [("channel_id", "value_error.missing")]
    error = refused(legacy.GetPlatforms,
                    pb.LegacyDeviceStatRequest(window=window, channel_id="ch-1", bitrate="4000",
                                               representation_id="1 of 2"), world.key)
    assert violations(error) == [("bitrate", "value_error"), ("representation_id", "value_error")]
    assert "bitrate: applies to one stream only: set stream_id" in error.details()


def test_tier_and_key_kind_are_error_info_reasons(legacy, world):
    request = pb.LegacyDeviceStatRequest(window=WINDOWS["1h"])
    error = refused(legacy.GetOperatingSystems, request, world.lite_key)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert rich(error)[0].reason == "TIER_FORBIDDEN"
    assert error.details() == "This endpoint needs the Advanced tier"
    # the tier comes before the parameters, as on the JSON paths
    error = refused(legacy.GetRebufferingRatioLastPoint, pb.LegacySourceStatRequest(),
                    world.lite_key)
    assert rich(error)[0].reason == "TIER_FORBIDDEN"
    # a lite key may ask the lite stats
    typed = legacy.GetThroughputAgg(
        pb.LegacySourceStatRequest(window=WINDOWS["1h"], source=types.SOURCE_CDN),
        metadata=bearer(world.lite_key), timeout=30)
    assert list(typed.points) == []
    for call, request in ((legacy.GetSummaryAggregate, pb.GetSummaryAggregateRequest()),
                          (legacy.GetThroughputAgg, pb.LegacySourceStatRequest())):
        error = refused(call, request, world.reseller_key)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert rich(error)[0].reason == "KEY_KIND_FORBIDDEN"
        assert error.details() == "The Legacy Stats API needs a customer key"
    for key in (None, "not-a-key"):
        error = refused(legacy.ListChannelSummaries,
                        pb.ListChannelSummariesRequest(window=WINDOWS["1h"]), key)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert rich(error)[0].reason == "NOT_AUTHENTICATED"


def test_datetimes_are_bucket_starts(legacy, world):
    typed = legacy.GetThroughputAgg(
        pb.LegacySourceStatRequest(window=WINDOWS["24h"], source=types.SOURCE_P2P),
        metadata=bearer(world.key), timeout=30)
    starts = [p.datetime.ToSeconds() for p in typed.points]
    assert starts and starts == sorted(starts)
    assert all(s % 900 == 0 for s in starts)
    assert all(p.datetime.nanos == 0 for p in typed.points)
