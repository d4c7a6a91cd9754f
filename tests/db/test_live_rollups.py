"""The live roller against real PostgreSQL: its 5-, 30- and 300-second rows, the 5-minute
blocks' prefix and suffix rows and the whole-audience device rows equal sums and sessions
computed here from the beacons, a roll waits for the ingests in flight, a late beacon marks
its bucket and the next roll recomputes it, rows older than the retention go. On a database
of its own: the roller rolls every customer's last 90 minutes."""

from __future__ import annotations

import itertools
import os
import random
import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from edgestats_core.metrics.live_rows import (
    ALL_SESSIONS,
    BLOCK_WIDTH,
    DEVICE_LEVELS,
    DEVICE_WIDTHS,
    LEVELS,
    WIDTHS,
)
from edgestats_core.query.windows import floor_to
from edgestats_stack import postgres
from edgestats_stack.stack import REPO
from metrics_service import beacon_store, live_reads, live_rollups, minute_rollups, rollups
from metrics_service.beacon_validation import validate
from tests.builders import beacon, session_profile
from tests.db.test_minute_rollups import stage
from tests.db.test_rollups import store
from tests.fixtures.stack import migrated_database

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def url():
    if os.environ.get("DATABASE_URL"):
        pytest.skip("needs the local cluster to create a database")
    port = int(os.environ.get("EDGESTATS_PG_PORT", "55432"))
    with migrated_database(postgres.ensure_cluster(REPO / ".run", port), "edgestats_live") as made:
        yield made


def roll(url: str, now: datetime) -> live_rollups.LiveRoll | None:
    """Roll up to `goal_of(now)` (in steps of STEP); the rolls as one, or None."""
    with psycopg.connect(url, autocommit=True) as conn:
        done = live_rollups.catch_up(conn, now)
    if not done:
        return None
    assert all(a.end == b.start for a, b in zip(done, done[1:], strict=False))  # contiguous
    return live_rollups.LiveRoll(done[-1].held_from, done[0].start, done[-1].end)


def recent(customer_id: str, now: datetime, minutes: int, sessions: int, seed: int) -> list[dict]:
    """A beacon every 5 s of each of `sessions` sessions over the last `minutes` before `now`
    (up to a second before it), at random milliseconds."""
    rng = random.Random(seed)
    profiles = [session_profile(i, ["ch-1", "ch-2"], rng) for i in range(sessions)]
    start = floor_to(now - timedelta(minutes=minutes), 5)
    slots = int((now - start).total_seconds()) // 5
    made = [beacon(customer_id, profile, start + timedelta(
                milliseconds=5000 * slot + rng.randrange(5000)), rng)
            for profile in profiles for slot in range(slots)]
    return [b for b in made if b["__time"] < now - timedelta(seconds=1)]


def expected(beacons: list[dict], width: int, until: datetime) -> dict[datetime, tuple]:
    """Per bucket of `width` seconds before `until`: (beacons, Σ total throughput, sessions)."""
    buckets: dict[datetime, list[dict]] = defaultdict(list)
    for b in beacons:
        if b["__time"] < until:
            buckets[floor_to(b["__time"], width)].append(b)
    return {t: (len(rows), sum(r["TotalDownlinkThroughput"] for r in rows),
                len({r["SessionId"] for r in rows})) for t, rows in buckets.items()}


def stored(
    url: str, customer_id: str, width: int, until: datetime, level: int,
) -> dict[datetime, tuple]:
    """The rows of that width and level, summed over their scopes, source and
    p2p_compatible."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            'SELECT "time", sum(beacons), sum(sum_total_downlink_throughput),'
            " round(hll_cardinality(hll_union_agg(sessions)))::int FROM beacons_live"
            ' WHERE customer_id = %s AND level = %s AND width = %s AND "time" < %s'
            " GROUP BY 1", (customer_id, level, width, until)).fetchall()
    return {t: (int(n), float(kbit), sessions) for t, n, kbit, sessions in rows}


def assert_rows_as_beacons(url: str, customer_id: str, beacons: list[dict], until: datetime):
    for width, level in itertools.product(WIDTHS, LEVELS):
        complete = floor_to(until, width)
        want = expected(beacons, width, complete)
        got = stored(url, customer_id, width, complete, level)
        assert got.keys() == want.keys()
        for t, (n, kbit, sessions) in want.items():
            assert got[t][0] == n and got[t][2] == sessions
            assert got[t][1] == pytest.approx(kbit, rel=1e-9)
    assert_edges_as_beacons(url, customer_id, beacons, until)
    assert_whole_audience_as_beacons(url, customer_id, beacons, until)
    with psycopg.connect(url) as conn:  # device rows carry their sketch's estimate
        rows, wrong = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE sessions_estimate <> hll_cardinality("
            "sessions)) FROM beacons_live_devices WHERE customer_id = %s",
            (customer_id,)).fetchone()
    assert rows and not wrong


def assert_whole_audience_as_beacons(
    url: str, customer_id: str, beacons: list[dict], until: datetime,
):
    """The device rows of every session (ALL_SESSIONS) hold, per bucket of each width, the
    bucket's sessions: one row a bucket for the whole customer, and the same sessions over
    the groups of each deeper level."""
    for width in DEVICE_WIDTHS:
        complete = floor_to(until, width)
        want = {t: sessions for t, (_, _, sessions) in expected(beacons, width, complete).items()}
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                'SELECT level, "time", count(*), round(hll_cardinality(hll_union_agg('
                "sessions)))::int, round(min(sessions_estimate))::int FROM beacons_live_devices"
                " WHERE customer_id = %s AND dimension = %s AND value = '' AND width = %s"
                ' AND "time" < %s GROUP BY 1, 2', (customer_id, ALL_SESSIONS, width, complete),
            ).fetchall()
        for level in DEVICE_LEVELS:
            got = {t: sessions for lv, t, _, sessions, _ in rows if lv == level}
            assert got == want, (width, level)
        whole = [(t, n, sessions, estimate) for lv, t, n, sessions, estimate in rows if lv == 0]
        assert {n for _, n, _, _ in whole} == {1}
        assert all(estimate == want[t] for t, _, _, estimate in whole)


def edges(first: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """Every prefix [B, x) of the 5-minute blocks from `first` rolled by `until` (up to x =
    until), and every suffix [x, B + 300) of the blocks complete by then."""
    block, step = timedelta(seconds=BLOCK_WIDTH), timedelta(seconds=5)
    spans = []
    start = floor_to(first, BLOCK_WIDTH)
    while start < until:
        for n in range(1, BLOCK_WIDTH // 5):
            x = start + n * step
            if x <= until:
                spans.append((start, x))
            if start + block <= until:
                spans.append((x, start + block))
        start += block
    return spans


def assert_edges_as_beacons(url: str, customer_id: str, beacons: list[dict], until: datetime):
    """Each block prefix and suffix, named by (time, width), holds the beacons of its span,
    at every level (summed over its groups)."""
    first = min(b["__time"] for b in beacons)
    with psycopg.connect(url) as conn:
        for low, high in edges(first, until):
            rows = [b for b in beacons if low <= b["__time"] < high]
            want = (len(rows), sum(r["TotalDownlinkThroughput"] for r in rows),
                    len({r["SessionId"] for r in rows}))
            got = conn.execute(
                "SELECT level, sum(beacons)::int, sum(sum_total_downlink_throughput),"
                " round(hll_cardinality(hll_union_agg(sessions)))::int FROM beacons_live"
                ' WHERE customer_id = %s AND "time" = %s AND width = %s GROUP BY level',
                (customer_id, low, int((high - low).total_seconds()))).fetchall()
            if not rows:
                assert got == []
                continue
            assert len(got) == len(LEVELS), (low, high)
            for _, n, kbit, sessions in got:
                assert (n, sessions) == (want[0], want[2]), (low, high)
                assert kbit == pytest.approx(want[1], rel=1e-9)


def test_rows_equal_the_beacons_and_a_late_beacon_is_recomputed(url):
    now = datetime.now(UTC)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = recent(customer_id, now, 20, sessions=12, seed=31)
    store(url, customer_id, beacons, now)
    done = roll(url, now)
    assert done is not None and done.end == live_rollups.goal_of(now)
    assert_rows_as_beacons(url, customer_id, beacons, done.end)
    assert roll(url, now) is None  # nothing new: no work

    late = recent(customer_id, now - timedelta(minutes=4), 3, sessions=2, seed=32)
    for b in late:
        b["SessionId"] += "-late"
    store(url, customer_id, late, now)
    first = floor_to(min(b["__time"] for b in late), 5)
    with psycopg.connect(url) as conn:
        held = conn.execute(live_reads.COVERAGE_SQL).fetchone()
    assert held[1] == first  # readers stop at the earliest late bucket
    redone = roll(url, now)
    assert redone is not None and redone.start == first
    assert_rows_as_beacons(url, customer_id, beacons + late, redone.end)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM live_late_buckets").fetchone()[0] == 0


def test_a_roll_waits_for_the_ingest_in_flight(url):
    """An ingest transaction with beacons of the seconds about to be rolled, not committed
    yet: the roll's fence waits for it, so the rolled rows include its beacons."""
    now = datetime.now(UTC) + timedelta(minutes=2)  # buckets no roll has fenced yet
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = recent(customer_id, now, 2, sessions=5, seed=33)
    rows = [validate(b, customer_id, now) for b in beacons]
    done: list = []
    with psycopg.connect(url) as ingest, ingest.cursor() as cur:
        stage(cur, rows)
        cur.execute(beacon_store._HOLD_HOURS)
        cur.execute(beacon_store._MERGE)
        roller = threading.Thread(target=lambda: done.append(roll(url, now)))
        roller.start()
        roller.join(1.0)
        assert roller.is_alive()  # fenced out until the ingest commits
        ingest.commit()
    roller.join(30)
    assert not roller.is_alive() and done[0] is not None
    assert_rows_as_beacons(url, customer_id, beacons, done[0].end)


def test_a_roll_recomputes_at_most_a_step(url):
    now = datetime.now(UTC) + timedelta(minutes=10)
    with psycopg.connect(url, autocommit=True) as conn:
        first = live_rollups.roll_up_live(conn, now)
    assert first is not None and first.end - first.start == live_rollups.STEP
    rest = roll(url, now)
    assert rest is not None and rest.start == first.end and rest.end == live_rollups.goal_of(now)


def test_rows_past_the_retention_go(url):
    now = datetime.now(UTC)  # held_from lands on the first 5-minute boundary past it
    later = now + live_rollups.RETENTION + timedelta(minutes=5)
    done = roll(url, later)
    assert done is not None and done.held_from > now
    with psycopg.connect(url) as conn:
        for table in live_rollups.TABLES:
            oldest = conn.execute(f'SELECT min("time") FROM {table}').fetchone()[0]
            assert oldest is None or oldest >= done.held_from


def test_the_fence_takes_the_hours_ingest_holds():
    """The lock namespace and hour keys are the ones ingestion holds shared."""
    assert live_rollups.FENCE_NAMESPACE == minute_rollups.FENCE_NAMESPACE
    assert live_rollups.hour_key is rollups.hour_key
