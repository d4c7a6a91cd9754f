"""Legacy windows of 24 h and longer read the rollups plus the not-yet-rolled tail (CONTRACT §4,
§5): the answers equal the oracle over the test's own beacons (sums exact, distinct sessions
within the HyperLogLog tolerance), and 2M/LM count rolled-up data older than the raw retention.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from metrics_service import rollups
from tests import oracle
from tests.builders import beacon, session_profile, wire
from tests.compare import assert_same

pytestmark = pytest.mark.e2e
HOUR = timedelta(hours=1)
# distinct-session counts are HLL estimates (log2m 14): CONTRACT §5 allows 2 %
DEVICE_KEYS = frozenset({"cdn_devices", "p2p_devices", "not_compatible_devices"})
GROUP_KEYS = frozenset({"operating_systems", "platforms", "connection_types"})
HLL_TOLERANCE = 0.02
# the old data: staged in a free recent hour, rolled up, then moved this far back
OLD_SHIFT = timedelta(days=45)


def floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def assert_close(actual: object, expected: object) -> None:
    """assert_same, with distinct-session counts compared within the HLL tolerance."""
    def settle(a: object, e: object, counts: bool = False) -> object:
        if isinstance(e, dict) and isinstance(a, dict):
            return {k: settle(a[k], e[k], counts or k in DEVICE_KEYS | GROUP_KEYS) if k in e
                    else a[k] for k in a}
        if isinstance(e, list) and isinstance(a, list) and len(a) == len(e):
            return [settle(x, y, counts) for x, y in zip(a, e, strict=True)]
        if counts and isinstance(a, int) and isinstance(e, int):
            assert math.isclose(a, e, rel_tol=HLL_TOLERANCE, abs_tol=1), (a, e)
            return e
        return a
    assert_same(settle(actual, expected), expected)


def _ingest(api, key: str, beacons: list[dict]) -> None:
    for i in range(0, len(beacons), 5000):
        response = api.ingest(key, [wire(b) for b in beacons[i:i + 5000]])
        assert response.status_code == 200, response.text


def _make(customer_id: str, times: list[datetime], sessions: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    profiles = [session_profile(i, ["ch-1", "ch two"], rng) for i in range(sessions)]
    made = [beacon(customer_id, rng.choice(profiles), t, rng) for t in times]
    return list({(b["SessionId"], b["__time"]): b for b in made}.values())


@pytest.fixture(scope="module")
def world(api, tenants, frozen_now: datetime, db_url: str):
    """Beacons in hours 14-20 h ago and 30-36 h ago, on both sides of the 24h and 1w window
    starts (their hours rolled up: the window must cut them exactly), and in the last hour.
    Every closed hour of the last 8 days is rolled up except the one starting 15 h ago: with
    the current hour and the partial first hour that is as much as the rollups leave to raw
    beacons (planner.MAX_UNROLLED_HOURS), so long windows read the rollups and the raw rest."""
    customer_id, key = tenants.customer("advanced")
    rng = random.Random(77)
    now_hour = floor_hour(frozen_now)
    times: list[datetime] = []
    for top in (now_hour - timedelta(hours=14), now_hour - timedelta(hours=30)):
        times += [top - timedelta(seconds=5 * rng.randrange(6 * 720)) for _ in range(1500)]
    edges = [frozen_now - timedelta(days=1), frozen_now - timedelta(days=7)]
    for edge in edges:  # 25 minutes either side of the window start
        times += [edge + timedelta(seconds=5 * rng.randint(-300, 300)) for _ in range(300)]
    times += [frozen_now - timedelta(seconds=5 * rng.randint(1, 700)) for _ in range(300)]
    beacons = _make(customer_id, times, sessions=40, seed=78)
    _ingest(api, key, beacons)
    rollups.re_roll_late_hours(db_url, before=datetime.now(UTC))
    unrolled = now_hour - timedelta(hours=15)
    rollups.roll_up_interval(db_url, now_hour - timedelta(days=8), unrolled)
    rollups.roll_up_interval(db_url, unrolled + HOUR, now_hour)
    return customer_id, key, beacons


def test_the_world_mixes_rolled_and_unrolled_hours(world, frozen_now, db_url):
    customer_id, _, beacons = world
    hours = {floor_hour(b["__time"]) for b in beacons}
    with psycopg.connect(db_url) as conn:
        rolled = {r[0] for r in conn.execute(
            "SELECT hour FROM rollup_runs WHERE hour = ANY(%s)", (sorted(hours),))}
    assert rolled and hours - rolled
    start = frozen_now - timedelta(days=1)
    assert any(floor_hour(start) == h for h in rolled)  # the partial first hour is rolled


@pytest.mark.parametrize("time", ["24h", "1w"])
def test_summaries_from_rollups_match_the_oracle(api, world, frozen_now, time):
    customer_id, key, beacons = world
    expected = oracle.summary(beacons, customer_id, frozen_now, time, "channel")
    assert expected and expected[0]["total_throughput"] > 0
    assert_close(api.get_json("/summary", key, time=time), expected)
    assert_close(api.get_json("/summary/agg", key, time=time),
                 oracle.summary_agg(beacons, customer_id, frozen_now, time))
    channel = {"channel_id": "ch two"}
    assert_close(api.get_json("/channels/ch%20two/summary", key, time=time),
                 oracle.summary(beacons, customer_id, frozen_now, time, "stream", **channel))
    assert_close(api.get_json("/channels/ch%20two/summary/agg", key, time=time),
                 oracle.summary_agg(beacons, customer_id, frozen_now, time, **channel))


@pytest.mark.parametrize("time", ["24h", "1w"])
@pytest.mark.parametrize(("stem", "metric", "sources"), [
    ("throughput/agg", "throughput", ["cdn", "p2p"]),
    ("os", "os", [None]),
    ("buffer_health/avg", "buffer_health", ["p2p"]),
    ("rebuffering/ratio", "rebuffering", [None, "cdn"]),
])
def test_stats_from_rollups_match_the_oracle(api, world, frozen_now, time, stem, metric,
                                             sources):
    customer_id, key, beacons = world
    for source in sources:
        params = {"time": time} | ({"source": source} if source else {})
        for path, scope in [("", {}), ("/channels/ch-1", {"channel_id": "ch-1"})]:
            expected = oracle.stats(beacons, customer_id, frozen_now, time, metric,
                                    source=source, **scope)
            assert len(expected) > 3
            assert_close(api.get_json(f"{path}/stats/{stem}", key, **params), expected)
            assert_close(api.get_json(f"{path}/stats/{stem}/last_point", key, **params),
                         oracle.last_point(expected))


def test_rolled_hours_are_read_from_the_rollups(api, world, frozen_now, db_url):
    """Deleting the raw beacons of a rolled-up hour changes no long-window answer (the
    rollups answer it). Runs after the comparisons above: it removes the module's raw data."""
    customer_id, key, _ = world
    before = {time: api.get_json("/summary/agg", key, time=time) for time in ("24h", "1w")}
    os_before = api.get_json("/stats/os", key, time="24h")
    hour = floor_hour(frozen_now) - timedelta(hours=18)
    with psycopg.connect(db_url, autocommit=True) as conn:
        deleted = conn.execute('DELETE FROM beacons WHERE customer_id = %s AND "time" >= %s'
                               ' AND "time" < %s', (customer_id, hour, hour + HOUR)).rowcount
    assert deleted > 0
    for time, answer in before.items():
        assert api.get_json("/summary/agg", key, time=time) == answer
    assert api.get_json("/stats/os", key, time="24h") == os_before


@pytest.fixture(scope="module")
def old_world(api, tenants, frozen_now: datetime, db_url: str):
    """Rollup rows 45 days old (beyond the raw retention) with no raw beacon left, plus recent
    raw beacons. Ingestion refuses beacons that old, so they are staged in a recent hour,
    rolled up, their rollup rows moved back 45 days and the raw beacons deleted."""
    customer_id, key = tenants.customer("advanced")
    rng = random.Random(91)
    staging = floor_hour(frozen_now) - timedelta(hours=70)
    staged = _make(customer_id, [staging + timedelta(seconds=5 * rng.randrange(720))
                                 for _ in range(800)], sessions=25, seed=92)
    recent = _make(customer_id, [frozen_now - timedelta(seconds=5 * rng.randint(1, 2000))
                                 for _ in range(200)], sessions=25, seed=92)
    _ingest(api, key, staged + recent)
    rollups.re_roll_late_hours(db_url, before=datetime.now(UTC))
    rollups.roll_up_interval(db_url, staging, staging + HOUR)
    old_hour = staging - OLD_SHIFT
    with psycopg.connect(db_url, autocommit=True) as conn, conn.transaction():
        for table in rollups.ROLLUP_TABLES:
            moved = conn.execute(
                f'UPDATE {table} SET "time" = "time" - %s WHERE customer_id = %s'
                ' AND "time" >= %s AND "time" < %s',
                (OLD_SHIFT, customer_id, staging, staging + HOUR)).rowcount
            assert moved > 0, table
        conn.execute("INSERT INTO rollup_runs (hour, rolled_at, raw_beacons) VALUES"
                     " (%s, now(), 0) ON CONFLICT (hour) DO NOTHING", (old_hour,))
        conn.execute('DELETE FROM beacons WHERE customer_id = %s AND "time" >= %s'
                     ' AND "time" < %s', (customer_id, staging, staging + HOUR))
    old = [{**b, "__time": b["__time"] - OLD_SHIFT} for b in staged]
    return customer_id, key, old + recent, old


@pytest.mark.parametrize("time", ["2M", "LM", "1M"])
def test_long_windows_count_rollups_older_than_raw_retention(api, old_world, frozen_now, time):
    customer_id, key, beacons, old = old_world
    start, end = oracle.window(frozen_now, time)
    in_window = [b for b in old if start <= b["__time"] < end]
    if time == "2M":
        assert in_window  # 45 days ago is always inside the last 60 days
    if time == "1M":
        assert not in_window  # and never inside the last 30
    agg = oracle.summary_agg(beacons, customer_id, frozen_now, time)
    assert_close(api.get_json("/summary/agg", key, time=time), agg)
    assert_close(api.get_json("/summary", key, time=time),
                 oracle.summary(beacons, customer_id, frozen_now, time, "channel"))
    for stem, metric, source in [("throughput/agg", "throughput", "p2p"), ("os", "os", None)]:
        params = {"time": time} | ({"source": source} if source else {})
        assert_close(api.get_json(f"/stats/{stem}", key, **params),
                     oracle.stats(beacons, customer_id, frozen_now, time, metric, source=source))
