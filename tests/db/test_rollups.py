"""Rollups against real PostgreSQL: every bucket equals the raw aggregate; re-runs replace."""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from edgestats_core.db import Database
from metrics_service import beacon_store, rollups
from metrics_service.beacon_validation import validate
from tests.builders import beacon, session_profile

pytestmark = pytest.mark.db


def store(db_url: str, customer_id: str, beacons: list[dict], now: datetime) -> None:
    async def run() -> None:
        db = Database(db_url, 1, 1)
        await db.open()
        try:
            await beacon_store.store(db, [validate(b, customer_id, now) for b in beacons])
        finally:
            await db.close()
    asyncio.run(run())


def make_beacons(customer_id: str, start: datetime, hours: int, sessions: int, seed: int):
    rng = random.Random(seed)
    profiles = [session_profile(i, ["ch-1", "ch-2"], rng) for i in range(sessions)]
    out = []
    for profile in profiles:
        first = rng.randrange(0, hours * 720 - 60)
        for step in range(first, min(first + rng.randint(12, 400), hours * 720)):
            b = beacon(customer_id, profile, start + timedelta(seconds=5 * step), rng)
            b["VideoResolutionWidth"], b["VideoResolutionHeight"] = 1280, 720
            b["ViewportWidth"], b["ViewportHeight"] = rng.choice([(1280, 720), (640, 360)])
            b["DownlinkSpeed"] = float(rng.randint(1000, 50000))
            out.append(b)
    return out


@pytest.fixture(scope="module")
def rolled(db_url):
    """Three hours of beacons of a fresh customer, rolled up."""
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = make_beacons(customer_id, start, 3, sessions=40, seed=5)
    store(db_url, customer_id, beacons, now)
    rollups.roll_up_interval(db_url, start, start + timedelta(hours=3))
    return customer_id, beacons, start


def minute_rows(db_url: str, customer_id: str, table: str) -> dict:
    sql = f"""SELECT "time", sum(beacons)::int, sum(sum_cdn_downlink_throughput),
                     sum(count_buffer_health)::int, sum(sum_buffer_health),
                     min(min_buffer_health), max(max_dropped_frames),
                     hll_cardinality(hll_union_agg(sessions))
              FROM {table} WHERE customer_id = %s GROUP BY 1 ORDER BY 1"""
    with psycopg.connect(db_url) as conn:
        return {row[0]: row[1:] for row in conn.execute(sql, (customer_id,))}


def expected_rows(beacons: list[dict], seconds: int) -> dict:
    groups = defaultdict(list)
    for b in beacons:
        bucket = int(b["__time"].timestamp()) // seconds * seconds
        groups[datetime.fromtimestamp(bucket, UTC)].append(b)

    def values(group, column):
        return [b[column] for b in group if b.get(column) is not None]

    return {
        bucket: (
            len(group),
            sum(values(group, "CdnDownlinkThroughput")),
            len(values(group, "BufferHealth")),
            sum(values(group, "BufferHealth")),
            min(values(group, "BufferHealth"), default=None),
            max(values(group, "DroppedFrames"), default=None),
            len({b["SessionId"] for b in group}),
        )
        for bucket, group in groups.items()
    }


def assert_rows_equal(actual: dict, expected: dict) -> None:
    assert list(actual) == sorted(expected)
    for bucket, want in expected.items():
        got = actual[bucket]
        assert got[0] == want[0] and got[2] == want[2], bucket
        for g, w in zip(got[1:6], want[1:6], strict=True):
            assert (g is None and w is None) or math.isclose(g, w, rel_tol=1e-9), (bucket, g, w)
        # HLL: exact while the sketch is explicit (few sessions), always within 2 %
        assert abs(got[6] - want[6]) <= max(0.02 * want[6], 0.5), (bucket, got[6], want[6])


@pytest.mark.parametrize(("table", "seconds"), [
    ("beacons_minute", 60), ("beacons_hour", 3600),
    ("beacons_minute_totals", 60), ("beacons_hour_totals", 3600),
])
def test_every_bucket_equals_the_raw_aggregate(db_url, rolled, table, seconds):
    customer_id, beacons, _ = rolled
    assert_rows_equal(minute_rows(db_url, customer_id, table), expected_rows(beacons, seconds))


@pytest.mark.parametrize("table", ["beacons_minute_totals", "beacons_hour_totals"])
def test_totals_keep_one_row_per_bucket_and_source(db_url, rolled, table):
    customer_id, beacons, _ = rolled
    seconds = 60 if "minute" in table else 3600
    expected = {(datetime.fromtimestamp(int(b["__time"].timestamp()) // seconds * seconds, UTC),
                 b["Source"]) for b in beacons}
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(f'SELECT "time", source FROM {table} WHERE customer_id = %s',
                            (customer_id,)).fetchall()
    assert len(rows) == len(expected) and set(rows) == expected


def test_rerunning_and_overlapping_backfills_change_nothing(db_url, rolled):
    customer_id, beacons, start = rolled
    before = minute_rows(db_url, customer_id, "beacons_minute")
    rollups.roll_up_interval(db_url, start, start + timedelta(hours=1))
    rollups.roll_up_interval(db_url, start - timedelta(hours=1), start + timedelta(hours=3))
    assert minute_rows(db_url, customer_id, "beacons_minute") == before
    assert_rows_equal(minute_rows(db_url, customer_id, "beacons_hour"),
                      expected_rows(beacons, 3600))


def test_a_late_beacon_is_included_after_the_late_data_run(db_url, rolled):
    customer_id, beacons, start = rolled
    rollups.re_roll_late_hours(db_url, before=datetime.now(UTC))  # settle the watermark
    late_session = {"SessionId": "late-1", "ChannelId": "ch-1", "P2pCompatible": True}
    late = beacon(customer_id, late_session, start + timedelta(minutes=30, seconds=5),
                  random.Random(1))
    store(db_url, customer_id, [late], datetime.now(UTC))
    assert_rows_equal(minute_rows(db_url, customer_id, "beacons_hour"),
                      expected_rows(beacons, 3600))  # not yet
    redone = rollups.re_roll_late_hours(db_url, before=datetime.now(UTC))
    assert start in [r.hour for r in redone]
    assert_rows_equal(minute_rows(db_url, customer_id, "beacons_hour"),
                      expected_rows([*beacons, late], 3600))
    assert_rows_equal(minute_rows(db_url, customer_id, "beacons_minute"),
                      expected_rows([*beacons, late], 60))


def test_distinct_sessions_stay_within_two_percent_when_merged(db_url):
    """Many sessions (sketches no longer explicit): the hour's HLL is within 2 % of exact."""
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=10)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    rng = random.Random(9)
    beacons = [
        {"__time": start + timedelta(seconds=5 * rng.randrange(720)), "CustomerId": customer_id,
         "SessionId": f"s-{i}", "Source": "cdn"}
        for i in range(20_000)
    ]
    store(db_url, customer_id, beacons, now)
    rollups.roll_up_interval(db_url, start, start + timedelta(hours=1))
    with psycopg.connect(db_url) as conn:
        (estimate,) = conn.execute(
            "SELECT hll_cardinality(hll_union_agg(sessions)) FROM beacons_hour"
            " WHERE customer_id = %s", (customer_id,)).fetchone()
    assert abs(estimate - 20_000) <= 0.02 * 20_000


def test_join_time_digest_rank_error_within_two_percent(db_url):
    """20,000 sessions, one playing beacon each: the hour's merged t-digest quantiles are
    within 2 % rank of the exact ones (CONTRACT §5)."""
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=11)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = join_time_beacons(customer_id, start, seed=4)
    store(db_url, customer_id, beacons, now)
    rollups.roll_up_interval(db_url, start, start + timedelta(hours=1))
    with psycopg.connect(db_url) as conn:
        assert_hour_join_time_within_two_percent(conn, customer_id, beacons)


def join_time_beacons(customer_id: str, start: datetime, seed: int) -> list[dict]:
    """20,000 sessions with one playing beacon each in the hour from `start`."""
    rng = random.Random(seed)
    return [
        {"__time": start + timedelta(seconds=5 * rng.randrange(720)), "CustomerId": customer_id,
         "SessionId": f"s-{i}", "Source": "p2p", "PlayerState": "playing",
         "StartingTime": float(rng.lognormvariate(7, 0.6))}
        for i in range(20_000)
    ]


def assert_hour_join_time_within_two_percent(
    conn: psycopg.Connection, customer_id: str, beacons: list[dict],
) -> None:
    """The hour rows' merged join-time quantiles are within 2 % rank of the exact ones."""
    quantiles = [0.25, 0.5, 0.75, 0.95]
    (estimates,) = conn.execute(
        "SELECT tdigest_percentile(join_time, %s::float8[]) FROM beacons_hour"
        " WHERE customer_id = %s", (quantiles, customer_id)).fetchone()
    values = sorted(b["StartingTime"] for b in beacons)
    for q, estimate in zip(quantiles, estimates, strict=True):
        rank = sum(v <= estimate for v in values) / len(values)
        assert abs(rank - q) <= 0.02, (q, estimate, rank)


def test_a_late_beacon_marks_its_rolled_hour_stale_until_re_rolled(db_url):
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=40)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    store(db_url, customer_id, make_beacons(customer_id, hour, 1, sessions=3, seed=8), now)
    rollups.roll_up_interval(db_url, hour, hour + timedelta(hours=1))

    def stale() -> bool:
        with psycopg.connect(db_url) as conn:
            return bool(conn.execute("SELECT 1 FROM rollup_stale WHERE hour = %s",
                                     (hour,)).fetchone())

    assert not stale()
    late = make_beacons(customer_id, hour, 1, sessions=2, seed=9)
    for b in late:
        b["SessionId"] += "-late"
    store(db_url, customer_id, late, now)
    assert stale()
    store(db_url, customer_id, late, now)  # resent: nothing new, still stale, not doubled
    rollups.roll_up_interval(db_url, hour, hour + timedelta(hours=1))
    assert not stale()
