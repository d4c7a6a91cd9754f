"""The Legacy Stats API through Envoy, compared with the oracle over the test's own beacons."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime

import pytest

from metrics_service import rollups
from tests import oracle
from tests.builders import scenario, wire
from tests.compare import assert_same

pytestmark = pytest.mark.e2e

TIMES = ["live", "10m", "1h", "24h", "1w", "1M", "2M", "CM", "LM"]
PREFIXES = ["", "/analytics/legacy"]
# URL stem -> oracle metric; the /stats endpoints of seed 000
STATS = {
    "throughput/agg": "throughput",
    "buffer_health/avg": "buffer_health",
    "rebuffering/ratio": "rebuffering",
    "content_request_response_times/avg": "content_request_response_times",
    "content_request_response_time/avg": "content_request_response_times",
    "buffer_filling_rate/avg": "buffer_filling_rate",
    "dropped_frames/avg": "dropped_frames",
    "os": "os",
    "platforms": "platforms",
    "connection_types": "connection_types",
}
SOURCE_RULE = {"throughput": "required", "rebuffering": "optional", "os": "none",
               "platforms": "none", "connection_types": "none"}


class Tenant:
    def __init__(self, customer_id: str, key: str, beacons: list[dict]) -> None:
        self.customer_id, self.key, self.beacons = customer_id, key, beacons


@pytest.fixture(scope="module")
def world(api, tenants, frozen_now: datetime, data_urls: list[str]) -> tuple[Tenant, Tenant]:
    """Two advanced customers with overlapping channel names, both ingested through the API.

    Windows of 24 h and longer read the hours other tests rolled up: like the hourly DAG,
    the fixture re-rolls those that received these (for them late) beacons."""
    made = []
    for seed in (11, 12):
        customer_id, key = tenants.customer("advanced")
        beacons = scenario(customer_id, frozen_now, seed=seed)
        response = api.ingest(key, [wire(b) for b in beacons])
        assert response.status_code == 200, response.text
        assert response.json() == {"accepted": len(beacons), "duplicates": 0, "rejected": []}
        made.append(Tenant(customer_id, key, beacons))
    for url in data_urls:
        rollups.re_roll_late_hours(url, before=datetime.now(UTC))
    return made[0], made[1]


def q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def scopes(tenant: Tenant) -> list[tuple[str, dict]]:
    """(path prefix, oracle scope) for the customer, a channel and a stream with data."""
    live = [b for b in tenant.beacons if b["ChannelId"] == "ch three"][0]
    return [
        ("", {}),
        (f"/channels/{q('ch three')}", {"channel_id": "ch three"}),
        (f"/channels/{q(live['ChannelId'])}/streams/{q(live['StreamId'])}",
         {"channel_id": live["ChannelId"], "stream_id": live["StreamId"]}),
    ]


@pytest.mark.parametrize("time", TIMES)
def test_summaries_match_the_oracle(api, world, frozen_now, time):
    tenant, other = world
    everyone = tenant.beacons + other.beacons  # the oracle must pick the tenant's own
    for prefix in PREFIXES:
        for (path, scope), level in zip(scopes(tenant), ["channel", "stream", "representation"],
                                        strict=True):
            expected = oracle.summary(everyone, tenant.customer_id, frozen_now, time, level,
                                      **scope)
            got = api.get_json(f"{prefix}{path}/summary", tenant.key, time=time)
            assert_same(got, expected)
            agg = oracle.summary_agg(everyone, tenant.customer_id, frozen_now, time, **scope)
            assert_same(api.get_json(f"{prefix}{path}/summary/agg", tenant.key, time=time), agg)


def test_windows_hold_data(world, frozen_now):
    """The scenario puts beacons in every rolling window, so the comparisons above are not empty."""
    tenant, _ = world
    for time in ["live", "10m", "1h", "24h", "1w", "1M"]:
        rows = oracle.summary(tenant.beacons, tenant.customer_id, frozen_now, time, "channel")
        assert rows and rows[0]["total_throughput"] > 0, time


@pytest.mark.parametrize(("per_page", "page"), [(1, 0), (2, 1), (2, 5), (10, 0)])
def test_summary_pagination(api, world, frozen_now, per_page, page):
    tenant, _ = world
    rows = oracle.summary(tenant.beacons, tenant.customer_id, frozen_now, "24h", "channel")
    got = api.get_json("/summary", tenant.key, time="24h", per_page=per_page, page=page)
    assert_same(got, oracle.paginate(rows, per_page, page))


def test_stream_summary_filters(api, world, frozen_now):
    tenant, _ = world
    path, scope = scopes(tenant)[2]
    for bitrate, representation in [("4000", None), (None, "2 of 2"), ("800", "2 of 2")]:
        params = {k: v for k, v in (("bitrate", bitrate), ("representation_id", representation))
                  if v is not None}
        expected = oracle.summary(tenant.beacons, tenant.customer_id, frozen_now, "1h",
                                  "representation", **scope, **params)
        assert expected
        assert_same(api.get_json(f"{path}/summary", tenant.key, time="1h", **params), expected)


def _stat_params(metric: str) -> list[str | None]:
    rule = SOURCE_RULE.get(metric, "required")
    return {"required": ["cdn", "p2p"], "optional": [None, "cdn", "p2p"], "none": [None]}[rule]


@pytest.mark.parametrize("time", ["live", "10m", "1h", "24h", "1w", "CM"])
@pytest.mark.parametrize("stem", list(STATS))
def test_stats_match_the_oracle(api, world, frozen_now, stem, time):
    tenant, other = world
    metric = STATS[stem]
    everyone = tenant.beacons + other.beacons
    for source in _stat_params(metric):
        params = {"time": time} | ({"source": source} if source else {})
        for path, scope in scopes(tenant):
            expected = oracle.stats(everyone, tenant.customer_id, frozen_now, time, metric,
                                    source=source, **scope)
            for prefix in PREFIXES:
                got = api.get_json(f"{prefix}{path}/stats/{stem}", tenant.key, **params)
                assert_same(got, expected)
                last = api.get_json(f"{prefix}{path}/stats/{stem}/last_point", tenant.key,
                                    **params)
                assert_same(last, oracle.last_point(expected))


def test_stats_bitrate_filter_applies_to_stream_scope_only(api, world, frozen_now):
    tenant, _ = world
    path, scope = scopes(tenant)[2]
    expected = oracle.stats(tenant.beacons, tenant.customer_id, frozen_now, "1h", "throughput",
                            source="p2p", bitrate="800", **scope)
    got = api.get_json(f"{path}/stats/throughput/agg", tenant.key, time="1h", source="p2p",
                       bitrate="800")
    assert_same(got, expected)
    unfiltered = oracle.stats(tenant.beacons, tenant.customer_id, frozen_now, "1h", "throughput",
                              source="p2p")
    got = api.get_json("/stats/throughput/agg", tenant.key, time="1h", source="p2p", bitrate="800")
    assert_same(got, unfiltered)


def test_both_authorization_forms(api, world):
    tenant, _ = world
    bearer = api.get("/summary", tenant.key, time="1h")
    bare = api.get("/summary", tenant.key, bearer=False, time="1h")
    assert bearer.status_code == bare.status_code == 200
    assert bearer.json() == bare.json()


def test_tenants_see_only_their_own_data(api, world, frozen_now):
    tenant, other = world
    mine = api.get_json("/summary/agg", tenant.key, time="1M")
    theirs = api.get_json("/summary/agg", other.key, time="1M")
    assert_same(mine, oracle.summary_agg(tenant.beacons, tenant.customer_id, frozen_now, "1M"))
    assert_same(theirs, oracle.summary_agg(other.beacons, other.customer_id, frozen_now, "1M"))
    assert mine != theirs


def test_an_empty_customer_gets_empty_and_zero_answers(api, tenants):
    _, key = tenants.customer("advanced")
    assert api.get_json("/summary", key, time="24h") == []
    assert api.get_json("/summary", key, time="24h", page=0) == [
        {"total_pages": 0, "page": 0, "results": []}
    ]
    assert api.get_json("/stats/os/last_point", key, time="1h") == []
    agg = api.get_json("/summary/agg", key, time="live")[0]
    assert agg["total_pretty_viewing_time"] == "0:00:00" and agg["cdn_devices"] == 0
