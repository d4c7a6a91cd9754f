"""The v1 layers agree (issue #4, CONTRACT §4): rollups and raw beacons give the same answers,
and a range spanning rolled-up and not-yet-rolled hours has no gap and no double count."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from metrics_service import rollups
from tests import oracle_v1
from tests.builders import beacon, session_profile, wire
from tests.compare import assert_same

pytestmark = pytest.mark.e2e
PATHS = ["audience", "traffic", "throughput", "viewing_time", "buffer_health",
         "qoe/rebuffering/ratio", "qoe/dropped_frames", "audience/os", "traffic/asn/percentage"]


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture(scope="module")
def hours_world(api, tenants, frozen_now, db_url):
    """Six hours of beacons ending 20 hours ago; the first three hours rolled up."""
    customer_id, key = tenants.customer("advanced")
    # hours no other test rolls up (tests/db roll hours 3-13 h ago): the last three stay unrolled
    top = frozen_now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=20)
    start = top - timedelta(hours=6)
    rng = random.Random(44)
    profiles = [session_profile(i, ["ch-1", "ch-2"], rng) for i in range(12)]
    beacons = []
    for profile in profiles:
        for _ in range(150):
            at = start + timedelta(seconds=5 * rng.randrange(6 * 720))
            beacons.append(beacon(customer_id, profile, at, rng))
    beacons = list({(b["SessionId"], b["__time"]): b for b in beacons}.values())
    for b in beacons:
        b["AsName"] = rng.choice(["AS-ONE", "AS-TWO"])
    for i in range(0, len(beacons), 5000):
        assert api.ingest(key, [wire(b) for b in beacons[i:i + 5000]]).status_code == 200
    rollups.roll_up_interval(db_url, start, start + timedelta(hours=3))
    return customer_id, key, beacons, start, top


def ask(api, key, path, body):
    response = api.http.post(f"/analytics/v1/metrics/{path}", json=body,
                             headers=api.auth(key))
    assert response.status_code == 200, (path, body, response.text)
    return response.json()


@pytest.mark.parametrize("path", PATHS)
def test_rolled_and_unrolled_hours_match_raw(api, hours_world, path):
    customer_id, key, beacons, start, end = hours_world
    body = {"from_date": iso(start), "to_date": iso(end), "granularity": "hour"}
    expected = oracle_v1.metric(path, beacons, [customer_id], start, end, "hour")
    assert any(any(v for k, v in row.items() if k != "timestamp") for row in expected)
    for layer in ("historical-hour", "historical-minute"):
        assert_same(ask(api, key, path, {**body, "data_layer": layer}), expected)


@pytest.mark.parametrize("path", ["audience", "traffic", "buffer_health"])
def test_historical_minute_equals_realtime(api, hours_world, path):
    _, key, _, start, end = hours_world
    body = {"from_date": iso(start), "to_date": iso(end), "granularity": "thirty_minute"}
    realtime = ask(api, key, path, {**body, "data_layer": "realtime"})
    assert_same(ask(api, key, path, {**body, "data_layer": "historical-minute"}), realtime)


def test_rerolling_changes_no_answer(api, hours_world, db_url):
    customer_id, key, beacons, start, end = hours_world
    body = {"from_date": iso(start), "to_date": iso(end), "granularity": "hour",
            "data_layer": "historical-hour"}
    before = ask(api, key, "traffic", body)
    rollups.roll_up_interval(db_url, start, end)  # all six hours now, two of them again
    assert ask(api, key, "traffic", body) == before
    assert_same(before, oracle_v1.metric("traffic", beacons, [customer_id], start, end, "hour"))
