"""Statistics resource parameters: enums, booleans, dates, format negotiation, who may call."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edgestats.usage_billing.v1 import usage_stats_json_service_pb2 as pb
from edgestats_core.errors import BadRequest, Forbidden, NotFound
from edgestats_core.tenancy.principals import Principal
from usage_billing_service import stats_params

USER = Principal(key_id="k", kind="usage-user", user_id="u1")


class Context:
    def __init__(self, path: str | None = None, **headers: str) -> None:
        self.metadata = [(k.replace("_", "-"), v) for k, v in headers.items()]
        if path is not None:
            self.metadata.append(("x-envoy-original-path", path))

    def invocation_metadata(self):
        return self.metadata


def stats(path: str, principal: Principal = USER, **headers: str) -> stats_params.StatsQuery:
    type_ = path.split("?")[0].split("/")[3]
    return stats_params.parse_stats(pb.GetStatsRequest(type=type_), Context(path, **headers),
                                    principal)


def test_defaults():
    q = stats("/v1/stats/storage", x_forwarded_proto="https", x_forwarded_host="api.test")
    assert (q.user_id, q.type, q.view, q.aggregate, q.current_subscription) == (
        "u1", "storage", "user", False, False)
    assert (q.from_date, q.to_date) == (None, None)
    assert q.rendering == stats_params.Rendering("json", False)
    assert q.base_url == "https://api.test"


def test_every_parameter():
    q = stats("/v1/stats/bandwidth?view=application&action=aggregate&current_subscription=true"
              "&from_date=2015-04-19T00:00:00.000Z&to_date=2015-04-20T12:00:00&format=xml"
              "&human=TRUE")
    assert (q.view, q.aggregate, q.current_subscription) == ("application", True, True)
    assert q.from_date == datetime(2015, 4, 19, tzinfo=UTC)
    assert q.to_date == datetime(2015, 4, 20, 12, tzinfo=UTC)  # no zone = UTC
    assert q.rendering == stats_params.Rendering("xml", True)


@pytest.mark.parametrize("accept,query,expected", [
    ("application/xml", "", "xml"),
    ("text/xml;q=0.9", "", "xml"),
    ("application/xml", "?format=json", "json"),
    ("application/json", "?format=xml", "xml"),
    ("*/*", "", "json"),
    ("application/json, application/xml", "", "json"),
])
def test_format_overrides_accept(accept, query, expected):
    assert stats(f"/v1/stats/storage{query}", accept=accept).rendering.format == expected


@pytest.mark.parametrize("query,loc,kind", [
    ("view=apps", "view", "type_error.enum"),
    ("action=sum", "action", "type_error.enum"),
    ("format=yaml", "format", "type_error.enum"),
    ("human=maybe", "human", "type_error.bool"),
    ("current_subscription=2", "current_subscription", "type_error.bool"),
    ("from_date=yesterday", "from_date", "value_error.datetime"),
    ("to_date=2015-02-30T00:00:00Z", "to_date", "value_error.datetime"),
    ("from_date=2015-01-02T00:00:00Z&to_date=2015-01-01T00:00:00Z", "to_date", "value_error"),
])
def test_bad_values(query, loc, kind):
    with pytest.raises(BadRequest) as error:
        stats(f"/v1/stats/storage?{query}")
    (detail,) = error.value.body()["detail"]
    assert (detail["loc"], detail["type"]) == (["query", loc], kind)


def test_enum_error_lists_values():
    with pytest.raises(BadRequest) as error:
        stats("/v1/stats/storage?view=x")
    assert error.value.body()["detail"][0]["ctx"] == {"enum_values": ["user", "application"]}


@pytest.mark.parametrize("type_", ["traffic", "Storage", ""])
def test_unknown_type_is_not_found(type_):
    with pytest.raises(NotFound):
        stats_params.parse_stats(pb.GetStatsRequest(type=type_),
                                 Context(f"/v1/stats/{type_}"), USER)


def test_type_comes_from_the_path_not_the_query():
    request = pb.GetStatsRequest(type="conversion")  # as if ?type=conversion overrode it
    q = stats_params.parse_stats(request, Context("/v1/stats/storage?type=conversion"), USER)
    assert q.type == "storage"


@pytest.mark.parametrize("principal", [
    Principal(key_id="k", kind="customer", customer_id="c1"),
    Principal(key_id="k", kind="usage-ingest"),
    Principal(key_id="k", kind="reseller", reseller_id="r1"),
])
def test_only_usage_users(principal):
    with pytest.raises(Forbidden):
        stats("/v1/stats/storage", principal)


def test_tag_queries():
    request = pb.GetTagStatsRequest(tag="ignored")
    q = stats_params.parse_tags(
        request, Context("/v1/stats/bandwidth/tags/User%201?from_date=1599742800000"
                         "&to_date=1599746400000&application_id=a1&action=aggregate"),
        USER, tag=True)
    assert (q.tag, q.application_id, q.aggregate) == ("User 1", "a1", True)
    assert q.from_date == datetime(2020, 9, 10, 13, tzinfo=UTC)
    assert q.to_date == datetime(2020, 9, 10, 14, tzinfo=UTC)
    top = stats_params.parse_tags(pb.GetTopTagsRequest(), Context("/v1/stats/bandwidth/tags"),
                                  USER, tag=False)
    assert (top.tag, top.aggregate, top.from_date) == (None, False, None)


@pytest.mark.parametrize("value", ["2020-09-10", "1.5", "abc", "1e3"])
def test_tag_dates_are_epoch_ms(value):
    with pytest.raises(BadRequest) as error:
        stats_params.parse_tags(pb.GetTopTagsRequest(),
                                Context(f"/v1/stats/bandwidth/tags?from_date={value}"),
                                USER, tag=False)
    assert error.value.body()["detail"][0]["type"] == "type_error.integer"


def test_native_grpc_callers_use_the_fields():
    request = pb.GetStatsRequest(type="bandwidth", view="application", format="xml")
    q = stats_params.parse_stats(request, Context(), USER)
    assert (q.type, q.view, q.rendering.format) == ("bandwidth", "application", "xml")
