"""Join time on every layer (issue #13 §1, CONTRACT §5): a session adds one value per minute
to the minute sketches however often it changes rendition, source or bitrate inside the
minute, so `historical-minute` answers minute buckets like raw beacons; with no layer named
the answer is the realtime metric at every granularity; historical layers at coarser buckets
count a session once per minute it played (the documented approximation), and the SQL
historical datasources likewise. Expected values are computed here from the beacons."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import datetime, timedelta

import psycopg
import pytest

from edgestats_core.metrics.rollup_rows import COVERAGE_SQL, Coverage
from metrics_service import minute_rollups, rollups
from tests import oracle_v1
from tests.builders import wire
from tests.compare import assert_same
from tests.e2e.test_sql_rollups import rows_of
from tests.e2e.test_v1_layers import ask, iso

pytestmark = pytest.mark.e2e
HOUR, MINUTE = timedelta(hours=1), timedelta(minutes=1)
QUANTILES = (("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("p95", 0.95))
RENDITIONS = [("4000", "1 of 3"), ("2000", "2 of 3"), ("800", "3 of 3")]


class World:
    def __init__(self, customer_id: str, key: str, beacons: list[dict], start: datetime,
                 end: datetime) -> None:
        self.customer_id, self.key, self.beacons = customer_id, key, beacons
        self.start, self.end = start, end


def _beacons(customer_id: str, start: datetime, hours: int, rng: random.Random) -> list[dict]:
    """40 sessions, each playing a random stretch of the hours, one beacon per 5 s, every
    beacon on a random rendition and source (sessions switch inside every minute); the
    StartingTime a session reports drifts, so its maximum depends on the beacons taken."""
    made = []
    for i in range(40):
        join = float(rng.randint(300, 4000))
        first = rng.randrange(hours * 720 - 60)
        for step in range(first, min(hours * 720, first + rng.randint(24, 900))):
            bitrate, representation = rng.choice(RENDITIONS)
            state = rng.choice(("playing", "playing", "playing", "buffering", "paused"))
            made.append({
                "__time": start + timedelta(seconds=5 * step), "CustomerId": customer_id,
                "SessionId": f"s-{i}", "Source": rng.choice(("cdn", "p2p")),
                "Bitrate": bitrate, "RepresentationId": representation, "PlayerState": state,
                "StartingTime": None if rng.random() < 0.1 else join + rng.randint(0, 40),
                "TotalDownlinkThroughput": float(rng.randint(100, 5000)),
            })
    return made


@pytest.fixture(scope="module")
def world(api, tenants, frozen_now, db_url) -> World:
    """Three hours of beacons 9 days ago (hours no other test rolls up): two published by
    the hourly roll-up, the third rolled into the minute layer up to its 35th minute."""
    customer_id, key = tenants.customer("advanced", "emea")
    end = frozen_now.replace(minute=0, second=0, microsecond=0) - timedelta(days=9)
    start = end - 3 * HOUR
    beacons = _beacons(customer_id, start, 3, random.Random(1313))
    for i in range(0, len(beacons), 5000):
        assert api.ingest(key, [wire(b) for b in beacons[i:i + 5000]]).status_code == 200
    rollups.roll_up_interval(db_url, start, start + 2 * HOUR)
    rolled_to = start + 2 * HOUR + 35 * MINUTE
    with psycopg.connect(db_url, autocommit=True) as conn:
        minute_rollups.roll_up_minutes(conn, rolled_to)
        coverage = Coverage.of(conn.execute(COVERAGE_SQL, {"start": start, "end": end}))
    assert (start + 2 * HOUR, rolled_to) in coverage.minutes
    return World(customer_id, key, beacons, start, end)


def _joins(beacons: list[dict]) -> dict[str, float]:
    """Each session's max StartingTime over its playing beacons (those reporting one)."""
    out: dict[str, float] = {}
    for b in beacons:
        if b["PlayerState"] == "playing" and b["StartingTime"] is not None:
            out[b["SessionId"]] = max(out.get(b["SessionId"], b["StartingTime"]),
                                      b["StartingTime"])
    return out


def once_per_minute(beacons: list[dict], keep=lambda b: True) -> list[float]:
    """The values the minute sketches hold: per (minute, session) the session's max over all
    its playing beacons of the minute, counted where its last such beacon satisfies `keep`."""
    by_minute: dict = defaultdict(list)
    for b in beacons:
        by_minute[(b["__time"].replace(second=0), b["SessionId"])].append(b)
    values = []
    for group in by_minute.values():
        joins = _joins(group)
        if joins:
            last = max((b for b in group if b["PlayerState"] == "playing"
                        and b["StartingTime"] is not None), key=lambda b: b["__time"])
            if keep(last):
                values.extend(joins.values())
    return values


def assert_quantile(got: float | None, values: list[float], q: float) -> None:
    """`got` is a q-quantile of `values` as CONTRACT §5 bounds it: exact (between the
    neighbouring values an exact quantile interpolates between) or within 2 % rank. A t-digest
    of few values keeps each as its own centroid and interpolates at rank q·n − ½ where
    percentile_cont uses q·(n − 1): either convention is exact. Larger digests merge
    centroids and interpolate between them, across gaps between the values too."""
    assert values, "no join time in the bucket"
    assert got is not None
    ordered = sorted(values)
    n = len(ordered)
    ranks = (q * (n - 1), q * n - 0.5)
    low = ordered[max(0, min(n - 1, math.floor(min(ranks))))]
    high = ordered[max(0, min(n - 1, math.ceil(max(ranks))))]
    if low - 1e-6 <= got <= high + 1e-6:
        return
    # else: the values either side of `got` (a t-digest interpolates across a gap between
    # them) must hold the q-th rank, give or take 2 %
    left = max((v for v in ordered if v <= got), default=ordered[0])
    right = min((v for v in ordered if v >= got), default=ordered[-1])
    below = sum(v < left for v in ordered) / n
    at_most = sum(v <= right for v in ordered) / n
    assert below - 0.02 <= q <= at_most + 0.02, (q, got, left, right, below, at_most, n)


def per_bucket(world: World, seconds: int) -> dict[datetime, list[dict]]:
    out: dict = defaultdict(list)
    for b in world.beacons:
        at = b["__time"]
        out[at - timedelta(seconds=int(at.timestamp()) % seconds)].append(b)
    return out


def test_sessions_switch_renditions_inside_minutes(world: World):
    """The data exercises the defect: sessions with beacons on several renditions and both
    sources inside one minute."""
    shapes: dict = defaultdict(set)
    for b in world.beacons:
        shapes[(b["__time"].replace(second=0), b["SessionId"])].add(
            (b["RepresentationId"], b["Source"]))
    assert sum(len(s) > 1 for s in shapes.values()) > 500


@pytest.mark.parametrize("layer", [None, "realtime", "historical-minute"])
def test_minute_buckets_equal_raw_on_every_layer(api, world: World, layer):
    """Minute buckets across published, minute-rolled and raw minutes: every layer answers
    the realtime metric (one value per session and minute)."""
    body = {"from_date": iso(world.start), "to_date": iso(world.end), "granularity": "minute"}
    if layer:
        body["data_layer"] = layer
    rows = ask(api, world.key, "qoe/join_time", body)
    expected = oracle_v1.metric("qoe/join_time", world.beacons, [world.customer_id],
                                world.start, world.end, "minute")
    assert len(rows) == len(expected) == 180
    buckets = per_bucket(world, 60)
    for row, want in zip(rows, expected, strict=True):
        assert row["timestamp"] == want["timestamp"]
        values = list(_joins(buckets[datetime.fromisoformat(row["timestamp"])]).values())
        for key, q in QUANTILES:
            if want[key] is None:
                assert row[key] is None
            elif layer == "realtime":
                assert row[key] == pytest.approx(want[key], rel=1e-9)
            else:
                assert_quantile(row[key], values, q)


@pytest.mark.parametrize("granularity", ["hour", "fifteen_minute"])
def test_no_layer_named_answers_the_realtime_metric(api, world: World, granularity):
    """Buckets coarser than a minute with no layer named: one value per session and bucket,
    exactly as realtime, although the hours are rolled up."""
    body = {"from_date": iso(world.start), "to_date": iso(world.end), "granularity": granularity}
    expected = oracle_v1.metric("qoe/join_time", world.beacons, [world.customer_id],
                                world.start, world.end, granularity)
    assert_same(ask(api, world.key, "qoe/join_time", body), expected)


@pytest.mark.parametrize("layer", ["historical-hour", "historical-minute"])
def test_historical_hours_count_a_session_once_per_minute(api, world: World, layer):
    body = {"from_date": iso(world.start), "to_date": iso(world.end), "granularity": "hour",
            "data_layer": layer}
    rows = ask(api, world.key, "qoe/join_time", body)
    buckets = per_bucket(world, 3600)
    assert len(rows) == 3
    for row in rows:
        values = once_per_minute(buckets[datetime.fromisoformat(row["timestamp"])])
        for key, q in QUANTILES:
            assert_quantile(row[key], values, q)


def test_a_filter_counts_a_session_under_its_last_beacon_of_the_minute(api, world: World):
    """historical-minute with a rendition filter: a session's minute value counts when its
    last playing beacon of the minute (with a join time) was on that rendition."""
    body = {"from_date": iso(world.start), "to_date": iso(world.end), "granularity": "hour",
            "data_layer": "historical-minute", "representation_id": "2 of 3"}
    rows = ask(api, world.key, "qoe/join_time", body)
    buckets = per_bucket(world, 3600)
    for row in rows:
        values = once_per_minute(buckets[datetime.fromisoformat(row["timestamp"])],
                                 lambda b: b["RepresentationId"] == "2 of 3")
        for key, q in QUANTILES:
            assert_quantile(row[key], values, q)


@pytest.mark.parametrize(("layer", "floor", "seconds"), [
    ("historical-minute", "PT1M", 60), ("historical-hour", "PT1H", 3600)])
def test_sql_historical_join_time_once_per_session_and_minute(api, world: World, layer, floor,
                                                              seconds):
    query = (f"SELECT TIME_FLOOR(__time, '{floor}') AS t, APPROX_QUANTILE_DS(StartingTime, 0.5)"
             f' AS median FROM "sdk-emea-{layer}" WHERE CustomerId = \'{world.customer_id}\''
             f" AND __time >= '{world.start.isoformat()}' AND __time < '{world.end.isoformat()}'"
             " GROUP BY 1 ORDER BY 1")
    rows = rows_of(api, world.key, query)
    buckets = per_bucket(world, seconds)
    assert len(rows) == 3 * 3600 // seconds
    for row in rows:
        at = datetime.fromisoformat(row["t"].replace("Z", "+00:00"))
        values = once_per_minute(buckets[at])
        if values:
            assert_quantile(row["median"], values, 0.5)
