"""The Statistics resource (seed 004) through Envoy, against answers computed by the test from
its own events (tests/usage_oracle.py): the seed's examples, XML, views, ranges, isolation,
trailing slashes and bad inputs. Some days and hours are computed into facts first, the rest
answer live: both must give the oracle's numbers."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta

import grpc
import psycopg
import pytest

from edgestats.usage_billing.v1 import usage_stats_json_service_pb2 as pb
from edgestats.usage_billing.v1 import usage_stats_json_service_pb2_grpc as rpc
from edgestats_core.tenancy import oauth
from edgestats_core.tenancy.api_keys import create_role_key, create_user_key
from tests import usage_oracle as oracle
from tests.usage_oracle import DAY, HOUR, UsageUser, ms
from usage_billing_service import facts

pytestmark = pytest.mark.e2e

TAGS = [f"User{i}" for i in range(1, 13)]


@dataclass
class World:
    a: UsageUser
    b: UsageUser
    now: datetime
    today: datetime
    period: tuple[datetime, datetime]
    base: str


def _events(user: UsageUser, today: datetime, now: datetime, scale: int) -> None:
    app0, app1 = user.apps
    half_today = today + (now - today) / 2
    e = oracle.event
    for day, app, n in [(-8, None, 300), (-5, None, 40), (-4, None, 100), (-4, app1, 250),
                        (-2, app1, 50)]:
        e(user, "bandwidth", today + day * DAY + timedelta(hours=3), n * scale, app)
    e(user, "bandwidth", half_today, 70 * scale)
    for hour in (10, 11):  # tags on day -1: User1 most, User12 least, some in app1
        for i, tag in enumerate(TAGS):
            at = today - DAY + hour * HOUR + timedelta(minutes=i)
            e(user, "bandwidth", at, (1000 - 50 * i) * scale + hour, None, tag)
            if i % 3 == 0:
                e(user, "bandwidth", at, (20 + i) * scale, app1, tag)
    e(user, "bandwidth", half_today, 5 * scale, None, "User1")
    for day, app, n in [(-6, None, 1000), (-6, None, 1200), (-6, app1, 500), (-3, None, 1300),
                        (-3, app1, 400), (-3, app1, 800), (-1, app1, 800)]:
        e(user, "storage", today + day * DAY + timedelta(hours=2 + n % 7), n * scale, app)
    e(user, "storage", half_today, 1400 * scale)
    for day, app, n in [(-9, None, 5000), (-3, app1, 700), (-3, None, 300)]:
        e(user, "conversion", today + day * DAY + timedelta(hours=5), n * scale, app)
    e(user, "conversion", half_today, 900 * scale, app1)


@pytest.fixture(scope="module")
def world(api, stack, db_url, frozen_now) -> World:
    today = oracle.midnight(frozen_now)
    start = today - 5 * DAY + 7 * HOUR  # a subscription that began mid-day, 5 days ago
    users = []
    with psycopg.connect(db_url) as conn:
        ingest_key = create_role_key(conn, "usage-stats-tests", "usage-ingest")
    for scale in (1, 3):
        user = oracle.create_user(db_url, 1, start)
        _events(user, today, frozen_now, scale)
        response = api.http.post("/v1/usage/events", content=json.dumps(user.events),
                                 headers=api.auth(ingest_key))
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == len(user.events), response.text
        with psycopg.connect(db_url) as conn:
            user.key = create_user_key(conn, user.user_id)
        users.append(user)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for day in range(-9, -2):  # days -9..-3 from facts, -2, -1 and today live
            facts.compute_day(conn, (today + day * DAY).date())
        facts.compute_tag_hour(conn, today - DAY + 10 * HOUR)  # hour 11 stays live
    return World(users[0], users[1], frozen_now, today, (start, oracle.next_month(start)),
                 stack.http_url)


def get(api, path: str, key: str | None, headers: dict | None = None, **params):
    """GET as a client behind a proxy that names the public host (X-Forwarded-Host)."""
    host = {"X-Forwarded-Host": api.base_url.split("://", 1)[1]}
    return api.http.get(path, params=params or None,
                        headers={**api.auth(key), **host, **(headers or {})})


def ok_json(response) -> dict:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def test_example_1_bandwidth_of_the_current_subscription(api, world):
    response = get(api, "/v1/stats/bandwidth/", world.a.key, format="json",
                   current_subscription="true", human="true")
    start, end = world.period
    expected = oracle.daily(world.a, "bandwidth", world.now, world.base, start=start, end=end)
    assert ok_json(response) == {"stats": expected}
    assert [f["from_date"] for f in expected][:1] == [ms(world.today - 5 * DAY) + 1]
    assert "\n" in response.text and '  "stats"' in response.text  # human: indented


def test_example_2_storage_without_restriction(api, world):
    got = ok_json(get(api, "/v1/stats/storage/", world.a.key, format="json"))
    expected = oracle.daily(world.a, "storage", world.now, world.base)
    assert got == {"stats": expected}
    assert expected[-1]["to_date"] == ms(world.now)  # today: [day start, now]
    assert expected[-1]["from_date"] == ms(world.today)
    # day -6: the default app's largest sample + app1's
    assert expected[0]["storage_data"] == 1200 + 500
    assert "\n" not in get(api, "/v1/stats/storage", world.a.key).text


def test_example_3_conversion_aggregate(api, world):
    got = ok_json(get(api, "/v1/stats/conversion/", world.a.key, action="aggregate"))
    expected = oracle.daily(world.a, "conversion", world.now, world.base, aggregate=True)
    assert got == {"stats": expected}
    assert expected[0]["from_date"] == ms(world.today - 9 * DAY) + 1
    assert expected[0]["to_date"] == ms(world.now)
    assert expected[0]["conversion_data"] == 5000 + 700 + 300 + 900


def test_example_4_conversion_per_application(api, world):
    got = ok_json(get(api, "/v1/stats/conversion/", world.a.key, view="application"))
    expected = oracle.daily(world.a, "conversion", world.now, world.base, view="application")
    assert got == {"stats": expected}
    assert {f["application"]["id"] for f in got["stats"]} == set(world.a.apps)
    assert all(set(f) == {"application", "from_date", "to_date", "conversion_data"}
               for f in got["stats"])


@pytest.mark.parametrize("type_", ["conversion", "storage", "bandwidth"])
@pytest.mark.parametrize("view", ["user", "application"])
def test_aggregates_per_view(api, world, type_, view):
    got = ok_json(get(api, f"/v1/stats/{type_}", world.a.key, view=view, action="aggregate"))
    assert got == {"stats": oracle.daily(world.a, type_, world.now, world.base, view=view,
                                         aggregate=True)}


def test_iso_range_selects_overlapping_days(api, world):
    start, end = world.today - 4 * DAY + 5 * HOUR, world.today - 2 * DAY + HOUR
    got = ok_json(get(api, "/v1/stats/bandwidth", world.a.key, view="application",
                      from_date=start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                      to_date=end.strftime("%Y-%m-%dT%H:%M:%S.000Z")))
    expected = oracle.daily(world.a, "bandwidth", world.now, world.base, view="application",
                            start=start, end=end)
    assert got == {"stats": expected}
    assert {f["from_date"] for f in expected} == {ms(world.today - 4 * DAY) + 1,
                                                  ms(world.today - 2 * DAY) + 1}


def test_extreme_bounds_answer_everything(api, world):
    got = ok_json(get(api, "/v1/stats/storage", world.a.key, from_date="0001-01-01T00:00:00Z",
                      to_date="9999-12-31T23:59:59.999Z"))
    assert got == {"stats": oracle.daily(world.a, "storage", world.now, world.base)}
    got = ok_json(get(api, "/v1/stats/bandwidth/tags/User3", world.a.key,
                      from_date="-62135596800000", to_date="253402300799999"))
    assert got == {"stats": oracle.tag_stats(world.a, "User3", world.now, world.base)}
    future = ms(world.now + DAY)
    assert ok_json(get(api, "/v1/stats/bandwidth/tags/", world.a.key,
                       from_date=str(future))) == {"stats": []}


def test_tag_example(api, world):
    start = world.today - DAY + 10 * HOUR
    got = ok_json(get(api, "/v1/stats/bandwidth/tags/User1", world.a.key,
                      from_date=str(ms(start)), format="json", human="true"))
    expected = oracle.tag_stats(world.a, "User1", world.now, world.base, start=start)
    assert got == {"stats": expected}
    assert expected[0]["to_date"] - expected[0]["from_date"] == 3_600_000
    assert len(expected) == 5  # hours 10 and 11 in both apps, and today's hour


def test_tag_aggregate_and_application_filter(api, world):
    app1 = world.a.apps[1]
    got = ok_json(get(api, "/v1/stats/bandwidth/tags/User4/", world.a.key, action="aggregate"))
    assert got == {"stats": oracle.tag_stats(world.a, "User4", world.now, world.base,
                                             aggregate=True)}
    got = ok_json(get(api, "/v1/stats/bandwidth/tags/User4", world.a.key, application_id=app1))
    assert got == {"stats": oracle.tag_stats(world.a, "User4", world.now, world.base, app=app1)}
    assert got["stats"] and all(f["application"]["id"] == app1 for f in got["stats"])


def test_top_tags_example(api, world):
    start = world.today - DAY + 10 * HOUR
    got = ok_json(get(api, "/v1/stats/bandwidth/tags/", world.a.key, from_date=str(ms(start)),
                      format="json", human="true"))
    expected = oracle.top_tags(world.a, world.now, world.base, start=start)
    assert got == {"stats": expected}
    default = [f for f in got["stats"] if f["application"]["id"] == world.a.default_app][0]
    assert [t["tag"] for t in default["top_tags"]] == TAGS[:10]


def test_top_tags_range_and_application(api, world):
    start, end = world.today - DAY + 11 * HOUR, world.today - DAY + 12 * HOUR
    got = ok_json(get(api, "/v1/stats/bandwidth/tags", world.a.key, from_date=str(ms(start)),
                      to_date=str(ms(end)), application_id=world.a.default_app))
    assert got == {"stats": oracle.top_tags(world.a, world.now, world.base, start=start,
                                            end=end, app=world.a.default_app)}
    assert got["stats"][0]["from_date"] == ms(start)


def test_unknown_tag_is_empty(api, world):
    assert ok_json(get(api, "/v1/stats/bandwidth/tags/nobody", world.a.key)) == {"stats": []}


def _xml_tree(element: ET.Element) -> object:
    children = list(element)
    if not children:
        text = element.text or ""
        return int(text) if text.isdigit() else text
    if element.tag == "top_tags":
        return [_xml_tree(c) for c in children]
    return {c.tag: _xml_tree(c) for c in children}


@pytest.mark.parametrize("path,params", [
    ("/v1/stats/storage", {"format": "xml"}),
    ("/v1/stats/conversion", {"format": "xml", "view": "application", "human": "true"}),
    ("/v1/stats/bandwidth/tags/User2", {"format": "xml"}),
    ("/v1/stats/bandwidth/tags/", {"format": "xml"}),
])
def test_xml_mirrors_json(api, world, path, params):
    response = get(api, path, world.a.key, **params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "stats" and all(f.tag == "fact" for f in root)
    as_json = ok_json(get(api, path, world.a.key, **{**params, "format": "json"}))
    assert as_json["stats"] and [_xml_tree(f) for f in root] == as_json["stats"]
    assert ("\n  <fact>" in response.text) == (params.get("human") == "true")


def test_accept_header_and_format_override(api, world):
    xml = {"Accept": "application/xml"}
    response = get(api, "/v1/stats/storage", world.a.key, headers=xml)
    assert response.headers["content-type"].startswith("application/xml")
    assert ET.fromstring(response.content).tag == "stats"
    response = get(api, "/v1/stats/storage", world.a.key, headers=xml, format="json")
    assert ok_json(response)["stats"]


def test_users_see_only_their_own_usage(api, world):
    for user in (world.a, world.b):
        for type_ in ("conversion", "storage", "bandwidth"):
            got = ok_json(get(api, f"/v1/stats/{type_}", user.key, view="application"))
            assert got == {"stats": oracle.daily(user, type_, world.now, world.base,
                                                 view="application")}
        assert ok_json(get(api, "/v1/stats/bandwidth/tags/", user.key)) == {
            "stats": oracle.top_tags(user, world.now, world.base)}
    # A's application named by B: nothing (not A's numbers)
    other = get(api, "/v1/stats/bandwidth/tags/User1", world.b.key,
                application_id=world.a.apps[1])
    assert ok_json(other) == {"stats": []}
    assert ok_json(get(api, "/v1/stats/bandwidth/tags/", world.b.key,
                       application_id=world.a.default_app)) == {"stats": []}


@pytest.mark.parametrize("path", ["/v1/stats/bandwidth", "/v1/stats/bandwidth/",
                                  "/v1/stats/bandwidth//"])
def test_trailing_slash_keeps_the_query(api, world, path):
    got = ok_json(get(api, path, world.a.key, action="aggregate", view="application"))
    assert got == {"stats": oracle.daily(world.a, "bandwidth", world.now, world.base,
                                         view="application", aggregate=True)}


def _detail(response, status: int) -> object:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


@pytest.mark.parametrize("path,params,loc,kind", [
    ("/v1/stats/storage", {"view": "apps"}, "view", "type_error.enum"),
    ("/v1/stats/storage", {"action": "average"}, "action", "type_error.enum"),
    ("/v1/stats/storage/", {"format": "yaml"}, "format", "type_error.enum"),
    ("/v1/stats/storage", {"from_date": "yesterday"}, "from_date", "value_error.datetime"),
    ("/v1/stats/storage", {"to_date": "2015-13-01T00:00:00Z"}, "to_date",
     "value_error.datetime"),
    ("/v1/stats/storage", {"human": "maybe"}, "human", "type_error.bool"),
    ("/v1/stats/storage", {"current_subscription": "2"}, "current_subscription",
     "type_error.bool"),
    ("/v1/stats/storage", {"from_date": "2015-04-20T00:00:00Z", "to_date": "2015-04-19T00:00:00Z"},
     "to_date", "value_error"),
    ("/v1/stats/bandwidth/tags/User1", {"from_date": "2015-04-19"}, "from_date",
     "type_error.integer"),
    ("/v1/stats/bandwidth/tags/User1", {"action": "sum"}, "action", "type_error.enum"),
    ("/v1/stats/bandwidth/tags/", {"to_date": "1.5"}, "to_date", "type_error.integer"),
    ("/v1/stats/bandwidth/tags", {"format": "csv"}, "format", "type_error.enum"),
])
def test_bad_parameters_are_400(api, world, path, params, loc, kind):
    body = _detail(get(api, path, world.a.key, **params), 400)
    assert [(d["loc"], d["type"]) for d in body["detail"]] == [(["query", loc], kind)]
    if kind == "type_error.enum":
        assert body["detail"][0]["ctx"]["enum_values"]


@pytest.mark.parametrize("path", ["/v1/stats/traffic", "/v1/stats/Storage/",
                                  "/v1/stats/bandwidth/tags/a/b"])
def test_unknown_type_is_404(api, world, path):
    assert _detail(get(api, path, world.a.key), 404) == {"detail": "Not Found"}


def test_nul_in_a_tag_is_400(api, world):
    body = _detail(get(api, "/v1/stats/bandwidth/tags/a%00b", world.a.key), 400)
    assert body["detail"][0]["loc"] == ["path", "tag"]


def test_only_usage_users_may_call(api, world, tenants, db_url):
    assert _detail(get(api, "/v1/stats/storage", None), 401) == {
        "type": "not-authenticated", "title": "Not authenticated"}
    _, customer_key = tenants.customer()
    with psycopg.connect(db_url) as conn:
        ingest_key = create_role_key(conn, "usage-stats-tests", "usage-ingest")
    for key in (customer_key, ingest_key):
        for path in ("/v1/stats/storage", "/v1/stats/bandwidth/tags/User1",
                     "/v1/stats/bandwidth/tags/"):
            assert _detail(get(api, path, key), 403)["type"] == "forbidden"


def test_href_names_a_forwarded_host(api, world):
    proxy = {"X-Forwarded-Host": "api.example.com", "X-Forwarded-Proto": "https"}
    got = ok_json(get(api, "/v1/stats/storage", world.a.key, action="aggregate", headers=proxy))
    assert got["stats"][0]["user"]["href"] == f"https://api.example.com/v1/users/{world.a.user_id}"
    got = ok_json(get(api, "/v1/stats/bandwidth/tags/", world.a.key,
                      headers={"X-Forwarded-Host": "api.example.com"}))
    assert got["stats"][0]["application"]["href"].startswith("http://api.example.com/v1/applications/")


def test_href_names_the_requests_host(api, world):
    response = api.http.get("/v1/stats/storage", params={"action": "aggregate"},
                            headers=api.auth(world.a.key))
    assert ok_json(response)["stats"][0]["user"]["href"] == (
        f"{world.base}/v1/users/{world.a.user_id}")


def test_grpc_callers_get_the_same_answers(stack, world):
    host = stack.http_url.split("://", 1)[1]
    metadata = (("authorization", f"Bearer {world.a.key}"), ("x-forwarded-host", host))
    start = world.today - DAY + 10 * HOUR
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = rpc.UsageStatsJsonServiceStub(channel)
        body = stub.GetStats(pb.GetStatsRequest(type="storage", view="application"),
                             metadata=metadata)
        assert body.content_type == "application/json"
        assert json.loads(body.data) == {"stats": oracle.daily(
            world.a, "storage", world.now, world.base, view="application")}
        body = stub.GetTagStats(pb.GetTagStatsRequest(tag="User1", from_date=str(ms(start))),
                                metadata=metadata)
        assert json.loads(body.data) == {"stats": oracle.tag_stats(
            world.a, "User1", world.now, world.base, start=start)}
        body = stub.GetTopTags(pb.GetTopTagsRequest(format="xml"), metadata=metadata)
        assert ET.fromstring(body.data).tag == "stats"
        with pytest.raises(grpc.RpcError) as error:
            stub.GetStats(pb.GetStatsRequest(type="traffic"), metadata=metadata)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        assert json.loads(error.value.details()) == {"detail": "Not Found"}


def access_token(api, db_url: str, user_id: str) -> str:
    """An OAuth 2.0 access token of a new client of `user_id` (client credentials grant)."""
    with psycopg.connect(db_url) as conn:
        client_id, secret = oauth.create_client(conn, user_id)
    token = api.http.post("/oauth/token", data={"grant_type": "client_credentials",
                                                "client_id": client_id,
                                                "client_secret": secret})
    assert token.status_code == 200, token.text
    return token.json()["access_token"]


def test_an_oauth_access_token_reads_the_users_stats(api, world, db_url):
    """Seed 004's examples call with `Authorization: Bearer <OAuth 2.0 access token>`."""
    access = access_token(api, db_url, world.b.user_id)
    got = ok_json(get(api, "/v1/stats/conversion/", access, action="aggregate"))
    assert got == {"stats": oracle.daily(world.b, "conversion", world.now, world.base,
                                         aggregate=True)}
