"""The typed UsageStatsService through Envoy's port, with the generated stubs: each RPC answers
the same facts as its JSON path for the same question (same numbers, same instants), over the
data of test_usage_stats (part of it computed into facts, the rest live); errors arrive in
the rich error model."""

from __future__ import annotations

from datetime import datetime

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from edgestats.usage_billing.v1 import usage_stats_service_pb2 as pb
from edgestats.usage_billing.v1 import usage_stats_service_pb2_grpc as rpc
from edgestats_core.tenancy.api_keys import create_role_key
from tests import usage_oracle as oracle
from tests.e2e import test_usage_stats as json_face
from tests.e2e.typed_calls import bearer, refused, rich, stamp, violations
from tests.usage_oracle import DAY, HOUR, ms

pytestmark = pytest.mark.e2e

world = json_face.world  # the same users, events and facts as the JSON face's tests

TYPES = {"conversion": pb.USAGE_TYPE_CONVERSION, "storage": pb.USAGE_TYPE_STORAGE,
         "bandwidth": pb.USAGE_TYPE_BANDWIDTH}
VIEWS = {"user": pb.USAGE_VIEW_USER, "application": pb.USAGE_VIEW_APPLICATION}


@pytest.fixture(scope="module")
def usage(stack):
    with grpc.insecure_channel(stack.grpc_target) as channel:
        yield rpc.UsageStatsServiceStub(channel)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def as_json(message: Message) -> dict:
    """A typed record spelled as the JSON fact: Timestamps as epoch ms, the set member of a
    oneof only, an empty href as absent (the daily facts' applications have none)."""
    out: dict = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.containing_oneof is not None and not message.HasField(field.name):
            continue
        if field.message_type is not None and field.message_type.name == "Timestamp":
            out[field.name] = value.ToMilliseconds()
        elif field.is_repeated:
            out[field.name] = [as_json(v) for v in value]
        elif field.message_type is not None:
            out[field.name] = as_json(value)
        elif not (field.name == "href" and value == ""):
            out[field.name] = value
    return out


def stats_of(response: Message) -> list[dict]:
    return [as_json(record) for record in response.stats]


def json_stats(api, path: str, key: str, **params) -> list[dict]:
    return json_face.ok_json(json_face.get(api, path, key, **params))["stats"]


def ask_stats(usage, key: str, type_: str, view: str | None = None, aggregate: bool = False,
              current: bool = False, start: datetime | None = None,
              end: datetime | None = None) -> list[dict]:
    request = pb.UsageStatsRequest(
        type=TYPES[type_], view=VIEWS[view] if view else pb.USAGE_VIEW_UNSPECIFIED,
        action=pb.USAGE_ACTION_AGGREGATE if aggregate else pb.USAGE_ACTION_UNSPECIFIED,
        current_subscription=current)
    if start is not None:
        request.from_date.CopyFrom(stamp(start))
    if end is not None:
        request.to_date.CopyFrom(stamp(end))
    return stats_of(usage.GetStats(request, metadata=bearer(key), timeout=30))


@pytest.mark.parametrize("type_", list(TYPES))
@pytest.mark.parametrize("view", [None, "user", "application"])
@pytest.mark.parametrize("aggregate", [False, True])
def test_get_stats_answers_the_json_facts(api, usage, world, type_, view, aggregate):
    typed = ask_stats(usage, world.a.key, type_, view, aggregate)
    params = {k: v for k, v in (("view", view), ("action", "aggregate" if aggregate else None))
              if v}
    assert typed == json_stats(api, f"/v1/stats/{type_}", world.a.key, **params)
    assert typed == oracle.daily(world.a, type_, world.now, world.base, view=view or "user",
                                 aggregate=aggregate)
    assert typed


@pytest.mark.parametrize("type_", list(TYPES))
@pytest.mark.parametrize("view", ["user", "application"])
def test_current_subscription(api, usage, world, type_, view):
    typed = ask_stats(usage, world.a.key, type_, view, current=True)
    assert typed == json_stats(api, f"/v1/stats/{type_}", world.a.key, view=view,
                               current_subscription="true")
    start, end = world.period
    assert typed == oracle.daily(world.a, type_, world.now, world.base, view=view, start=start,
                                 end=end)
    aggregated = ask_stats(usage, world.a.key, type_, view, aggregate=True, current=True)
    assert aggregated == json_stats(api, f"/v1/stats/{type_}", world.a.key, view=view,
                                    current_subscription="true", action="aggregate")


@pytest.mark.parametrize("days", [(-4, -2), (-9, -6), (-1, 0), (-3, 1)])
def test_ranges_select_the_same_days(api, usage, world, days):
    start = world.today + days[0] * DAY + 5 * HOUR
    end = world.today + days[1] * DAY + HOUR
    for type_ in TYPES:
        for view in VIEWS:
            typed = ask_stats(usage, world.a.key, type_, view, start=start, end=end)
            assert typed == json_stats(api, f"/v1/stats/{type_}", world.a.key, view=view,
                                       from_date=iso(start), to_date=iso(end)), (type_, view)
    # a bound alone, and a range with the subscription
    assert ask_stats(usage, world.a.key, "bandwidth", start=start) == json_stats(
        api, "/v1/stats/bandwidth", world.a.key, from_date=iso(start))
    assert ask_stats(usage, world.a.key, "storage", end=end, current=True) == json_stats(
        api, "/v1/stats/storage", world.a.key, to_date=iso(end), current_subscription="true")


def test_records_are_typed(usage, world):
    (record,) = usage.GetStats(pb.UsageStatsRequest(type=pb.USAGE_TYPE_CONVERSION,
                                                    action=pb.USAGE_ACTION_AGGREGATE),
                               metadata=bearer(world.a.key), timeout=30).stats
    assert record.WhichOneof("owner") == "user" and record.WhichOneof("amount") == (
        "conversion_data")
    assert record.user.id == world.a.user_id
    assert record.user.href == f"{world.base}/v1/users/{world.a.user_id}"
    assert record.conversion_data == 5000 + 700 + 300 + 900
    assert record.from_date.ToMilliseconds() == ms(world.today - 9 * DAY) + 1
    assert record.to_date.ToMilliseconds() == ms(world.now)
    per_app = usage.GetStats(pb.UsageStatsRequest(type=pb.USAGE_TYPE_STORAGE,
                                                  view=pb.USAGE_VIEW_APPLICATION),
                             metadata=bearer(world.a.key), timeout=30).stats
    assert {r.application.id for r in per_app} == set(world.a.apps)
    assert all(r.WhichOneof("owner") == "application" and r.application.href == ""
               for r in per_app)


@pytest.mark.parametrize("tag", ["User1", "User4", "User10", "nobody"])  # tagged in both apps
def test_tag_stats_answer_the_json_facts(api, usage, world, tag):
    start = world.today - DAY + 10 * HOUR
    app1 = world.a.apps[1]
    for fields, params in [
        ({}, {}),
        ({"from_date": stamp(start)}, {"from_date": str(ms(start))}),
        ({"from_date": stamp(start), "to_date": stamp(start + HOUR)},
         {"from_date": str(ms(start)), "to_date": str(ms(start + HOUR))}),
        ({"action": pb.USAGE_ACTION_AGGREGATE}, {"action": "aggregate"}),
        ({"application_id": app1}, {"application_id": app1}),
        ({"application_id": app1, "action": pb.USAGE_ACTION_AGGREGATE,
          "from_date": stamp(start)},
         {"application_id": app1, "action": "aggregate", "from_date": str(ms(start))}),
    ]:
        typed = stats_of(usage.GetTagStats(pb.TagStatsRequest(tag=tag, **fields),
                                           metadata=bearer(world.a.key), timeout=30))
        assert typed == json_stats(api, f"/v1/stats/bandwidth/tags/{tag}", world.a.key,
                                   **params), params
        assert bool(typed) == (tag != "nobody"), params
    assert stats_of(usage.GetTagStats(pb.TagStatsRequest(tag=tag, from_date=stamp(start)),
                                      metadata=bearer(world.a.key), timeout=30)) == (
        oracle.tag_stats(world.a, tag, world.now, world.base, start=start))


def test_top_tags_answer_the_json_facts(api, usage, world):
    start, end = world.today - DAY + 11 * HOUR, world.today - DAY + 12 * HOUR
    for user in (world.a, world.b):
        for fields, params in [
            ({}, {}),
            ({"from_date": stamp(start)}, {"from_date": str(ms(start))}),
            ({"from_date": stamp(start), "to_date": stamp(end)},
             {"from_date": str(ms(start)), "to_date": str(ms(end))}),
            ({"application_id": user.default_app}, {"application_id": user.default_app}),
            ({"application_id": world.a.apps[1]}, {"application_id": world.a.apps[1]}),
        ]:
            response = usage.GetTopTags(pb.TopTagsRequest(**fields), metadata=bearer(user.key),
                                        timeout=30)
            typed = stats_of(response)
            assert typed == json_stats(api, "/v1/stats/bandwidth/tags/", user.key, **params)
        assert stats_of(usage.GetTopTags(pb.TopTagsRequest(), metadata=bearer(user.key),
                                         timeout=30)) == oracle.top_tags(user, world.now,
                                                                         world.base)
    response = usage.GetTopTags(pb.TopTagsRequest(application_id=world.a.default_app),
                                metadata=bearer(world.a.key), timeout=30)
    assert [t.tag for t in response.stats[0].top_tags] == json_face.TAGS[:10]
    assert response.stats[0].top_tags[0].bandwidth_data > 0


def test_users_see_only_their_own_usage(usage, world):
    for user in (world.a, world.b):
        for type_ in TYPES:
            assert ask_stats(usage, user.key, type_, "application") == oracle.daily(
                user, type_, world.now, world.base, view="application")
    other = usage.GetTagStats(pb.TagStatsRequest(tag="User1", application_id=world.a.apps[1]),
                              metadata=bearer(world.b.key), timeout=30)
    assert list(other.stats) == []


def test_a_bad_range_names_the_typed_field(api, usage, world):
    later, earlier = stamp(world.today - DAY), stamp(world.today - 2 * DAY)
    for call, request in [
        (usage.GetStats, pb.UsageStatsRequest(type=pb.USAGE_TYPE_STORAGE, from_date=later,
                                              to_date=earlier)),
        (usage.GetStats, pb.UsageStatsRequest(type=pb.USAGE_TYPE_STORAGE, from_date=later,
                                              to_date=later)),
        (usage.GetTagStats, pb.TagStatsRequest(tag="User1", from_date=later, to_date=earlier)),
        (usage.GetTopTags, pb.TopTagsRequest(from_date=later, to_date=earlier)),
    ]:
        error = refused(call, request, world.a.key)
        assert violations(error) == [("to_date", "value_error")]
        assert error.details() == "to_date: to_date must be after from_date"
    # the JSON face refuses the same question on the same field
    detail = json_face.get(api, "/v1/stats/storage", world.a.key,
                           from_date=iso(world.today - DAY),
                           to_date=iso(world.today - 2 * DAY)).json()["detail"]
    assert [(d["loc"], d["type"]) for d in detail] == [(["query", "to_date"], "value_error")]


def test_other_bad_fields_are_violations(usage, world):
    key = world.a.key
    assert violations(refused(usage.GetStats, pb.UsageStatsRequest(), key)) == [
        ("type", "value_error.missing")]
    assert violations(refused(usage.GetStats, pb.UsageStatsRequest(type=9), key)) == [
        ("type", "type_error.enum")]
    assert violations(refused(usage.GetStats, pb.UsageStatsRequest(
        type=pb.USAGE_TYPE_STORAGE, view=7), key)) == [("view", "type_error.enum")]
    assert violations(refused(usage.GetStats, pb.UsageStatsRequest(
        type=pb.USAGE_TYPE_STORAGE, action=5), key)) == [("action", "type_error.enum")]
    assert violations(refused(usage.GetTagStats, pb.TagStatsRequest(), key)) == [
        ("tag", "value_error.missing")]
    assert violations(refused(usage.GetTagStats, pb.TagStatsRequest(tag="a\x00b"), key)) == [
        ("tag", "value_error")]
    assert violations(refused(usage.GetTopTags, pb.TopTagsRequest(application_id="a\x00"),
                              key)) == [("application_id", "value_error")]
    far = timestamp_pb2.Timestamp(seconds=10**13)
    assert violations(refused(usage.GetTopTags, pb.TopTagsRequest(to_date=far), key)) == [
        ("to_date", "value_error")]


def test_only_usage_users_may_call(usage, world, tenants, db_url):
    _, customer_key = tenants.customer()
    with psycopg.connect(db_url) as conn:
        ingest_key = create_role_key(conn, "typed-usage-tests", "usage-ingest")
    calls = [(usage.GetStats, pb.UsageStatsRequest(type=pb.USAGE_TYPE_STORAGE)),
             (usage.GetTagStats, pb.TagStatsRequest(tag="User1")),
             (usage.GetTopTags, pb.TopTagsRequest())]
    for call, request in calls:
        for key in (customer_key, ingest_key):
            error = refused(call, request, key)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED
            assert rich(error)[0].reason == "KEY_KIND_FORBIDDEN"
        for key in (None, "not-a-key"):
            error = refused(call, request, key)
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            assert rich(error)[0].reason == "NOT_AUTHENTICATED"


def test_an_oauth_access_token_reads_the_users_stats(api, usage, world, db_url):
    access = json_face.access_token(api, db_url, world.b.user_id)
    typed = ask_stats(usage, access, "conversion", aggregate=True)
    assert typed == json_stats(api, "/v1/stats/conversion/", access, action="aggregate")
    assert typed == oracle.daily(world.b, "conversion", world.now, world.base, aggregate=True)
    assert typed
