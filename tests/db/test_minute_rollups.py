"""The minute roller against real PostgreSQL: the rolled minutes equal the raw aggregate, a
roll waits for the ingests in flight, late beacons are re-rolled, the hourly roll-up
supersedes it all."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from edgestats_core.config import Settings
from edgestats_core.metrics.rollup_rows import COVERAGE_SQL, Coverage
from edgestats_stack import postgres
from edgestats_stack.stack import REPO
from metrics_service import beacon_store, minute_rollups, rollups
from metrics_service.beacon_validation import validate
from tests.db.test_rollups import assert_rows_equal, expected_rows, make_beacons, minute_rows, store
from tests.fixtures.stack import migrated_database

pytestmark = pytest.mark.db
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def fresh_hour(days: int) -> datetime:
    """An hour `days` back (each test its own: the roller works on every customer's rows)."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=days)


def roll(db_url: str, upto: datetime) -> list[minute_rollups.MinuteRoll]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return minute_rollups.roll_up_minutes(conn, upto)


def coverage_of(db_url: str, hour: datetime) -> Coverage:
    with psycopg.connect(db_url) as conn:
        return Coverage.of(conn.execute(COVERAGE_SQL, {"start": hour, "end": hour + HOUR}))


def stage(cur: psycopg.Cursor, rows: list[tuple]) -> None:
    """Copy validated rows into the ingest's staging table (beacon_store's first step)."""
    cur.execute(beacon_store._STAGE)
    with cur.copy(beacon_store._COPY) as copy:
        for row in rows:
            copy.write_row(row)


def before(beacons: list[dict], instant: datetime) -> list[dict]:
    return [b for b in beacons if b["__time"] < instant]


def test_rolled_minutes_equal_the_raw_aggregate_as_the_hour_goes(db_url):
    hour = fresh_hour(14)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = make_beacons(customer_id, hour, 1, sessions=20, seed=21)
    store(db_url, customer_id, beacons, datetime.now(UTC))
    for minutes in (25, 40, 60):
        upto = hour + timedelta(minutes=minutes, seconds=30)  # floored to the minute
        roll(db_url, upto)
        assert coverage_of(db_url, hour).minutes == {(hour, hour + timedelta(minutes=minutes))}
        for table in ("beacons_minute", "beacons_minute_totals"):
            assert_rows_equal(minute_rows(db_url, customer_id, table),
                              expected_rows(before(beacons, hour + minutes * MINUTE), 60))
    assert roll(db_url, hour + HOUR) == []  # nothing new: no work
    rollups.roll_up_interval(db_url, hour, hour + HOUR)  # the hourly roll-up supersedes it
    assert coverage_of(db_url, hour) == Coverage(frozenset({hour}))
    assert_rows_equal(minute_rows(db_url, customer_id, "beacons_hour"),
                      expected_rows(beacons, 3600))
    later = roll(db_url, hour + HOUR + 5 * MINUTE)  # a published hour is left alone
    assert [r.hour for r in later] == [hour + HOUR]
    assert coverage_of(db_url, hour) == Coverage(frozenset({hour}))


def test_a_late_beacon_stops_readers_at_its_minute_until_re_rolled(db_url):
    hour = fresh_hour(15)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = make_beacons(customer_id, hour, 1, sessions=8, seed=22)
    store(db_url, customer_id, beacons, datetime.now(UTC))
    roll(db_url, hour + 30 * MINUTE)
    late = make_beacons(customer_id, hour, 1, sessions=2, seed=23)
    for b in late:
        b["SessionId"] += "-late"
    store(db_url, customer_id, late, datetime.now(UTC))
    earliest = min(b["__time"] for b in late).replace(second=0, microsecond=0)
    if earliest < hour + 30 * MINUTE:  # late for the rolled minutes: readers stop there
        assert coverage_of(db_url, hour).minutes == {(hour, earliest)}
    [redone] = roll(db_url, hour + 30 * MINUTE)
    assert redone.start == min(earliest, hour + 30 * MINUTE)
    assert coverage_of(db_url, hour).minutes == {(hour, hour + 30 * MINUTE)}
    assert_rows_equal(minute_rows(db_url, customer_id, "beacons_minute"),
                      expected_rows(before([*beacons, *late], hour + 30 * MINUTE), 60))


def test_a_roll_waits_for_the_ingest_in_flight(db_url):
    """An ingest transaction holding beacons of a minute about to be rolled (not committed
    yet): the roll's fence waits for it, so the rolled rows include its beacons."""
    hour = fresh_hour(16)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = make_beacons(customer_id, hour, 1, sessions=6, seed=24)
    rows = [validate(b, customer_id, datetime.now(UTC)) for b in beacons]
    done: list = []
    with psycopg.connect(db_url) as ingest, ingest.cursor() as cur:
        stage(cur, rows)
        # what _HOLD_HOURS takes for a recent hour (the roller only rolls those; this hour
        # is old so that no other test's hours are rolled)
        cur.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)",
                    (minute_rollups.FENCE_NAMESPACE, rollups.hour_key(hour)))
        cur.execute(beacon_store._MERGE)
        roller = threading.Thread(target=lambda: done.extend(roll(db_url, hour + HOUR)))
        roller.start()
        roller.join(1.0)
        assert roller.is_alive()  # fenced out until the ingest commits
        ingest.commit()
    roller.join(30)
    assert not roller.is_alive() and [r.hour for r in done] == [hour]
    assert_rows_equal(minute_rows(db_url, customer_id, "beacons_minute"),
                      expected_rows(beacons, 60))


@pytest.fixture
def own_database_url():
    """A migrated database of this test's own: the roller rolls every customer's current
    hour, which must not change what other tests read. Skipped on an external DATABASE_URL."""
    if os.environ.get("DATABASE_URL"):
        pytest.skip("needs the local cluster to create a database")
    port = int(os.environ.get("EDGESTATS_PG_PORT", "55432"))
    with migrated_database(postgres.ensure_cluster(REPO / ".run", port), "edgestats_roller") as url:
        yield url


def test_the_roller_loop_follows_the_real_clock(own_database_url):
    """The loop the metrics service runs (real clock, a short period): the current minutes
    of a customer's beacons reach the minute totals by themselves."""
    url = own_database_url
    now = datetime.now(UTC)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = [b for b in make_beacons(customer_id, now - 10 * MINUTE, 1, sessions=6, seed=25)
               if b["__time"] < now - 2 * MINUTE]
    store(url, customer_id, beacons, now)
    target = (now - minute_rollups.LAG).replace(second=0, microsecond=0)

    async def roll_until_done() -> None:
        loop = asyncio.create_task(minute_rollups.roll_minutes_forever(
            Settings(url, minute_rollup_seconds=0.05)))
        try:
            while not any(to >= target for _, to in coverage_of(url, target - HOUR).minutes
                          | coverage_of(url, target).minutes):
                await asyncio.sleep(0.05)
        finally:
            loop.cancel()

    asyncio.run(asyncio.wait_for(roll_until_done(), 30))
    assert_rows_equal(minute_rows(url, customer_id, "beacons_minute_totals"),
                      expected_rows(before(beacons, target), 60))


def test_the_roller_runs_only_on_the_real_clock(db_url):
    frozen = Settings(db_url, frozen_now=datetime.now(UTC), minute_rollup_seconds=0.01)
    off = Settings(db_url, minute_rollup_seconds=0)
    for settings in (frozen, off):  # returns at once instead of looping
        asyncio.run(asyncio.wait_for(minute_rollups.roll_minutes_forever(settings), 1))


def test_ingest_holds_only_the_recent_hours_of_its_batch(db_url):
    """The current and the two hours before (the roller's): one shared lock each; older
    beacons none (a batch of history takes no lock per hour)."""
    now = datetime.now(UTC)
    times = [now, now - HOUR, now - timedelta(days=3), now - timedelta(days=3, hours=1)]
    rows = [validate(b, "c-locks", now) for b in make_beacons("c-locks", now - HOUR, 1, 1, 3)]
    rows = [(at, *row[1:]) for at, row in zip(times, rows, strict=False)]
    with psycopg.connect(db_url) as conn, conn.cursor() as cur:
        stage(cur, rows)
        cur.execute(beacon_store._HOLD_HOURS)
        held = {row[0] for row in cur.execute(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            " AND classid = %s AND mode = 'ShareLock'", (minute_rollups.FENCE_NAMESPACE,))}
        conn.rollback()
    hour = now.replace(minute=0, second=0, microsecond=0)
    assert held == {rollups.hour_key(hour), rollups.hour_key(hour - HOUR)}


def test_the_direct_path_holds_the_hours_the_staged_path_holds(db_url):
    """store() without a staging table takes its locks from the batch's times (a parameter):
    exactly the locks _HOLD_HOURS takes over the same rows staged."""
    now = datetime.now(UTC)
    times = [now, now - HOUR, now - 2 * HOUR - MINUTE, now - timedelta(days=3), now]
    rows = [validate(b, "c-locks", now) for b in make_beacons("c-locks", now - HOUR, 1, 1, 5)]
    rows = [(at, *row[1:]) for at, row in zip(times, rows, strict=False)]
    held = ("SELECT objid, mode FROM pg_locks WHERE locktype = 'advisory'"
            " AND pid = pg_backend_pid() AND classid = %s")
    with psycopg.connect(db_url) as conn, conn.cursor() as cur:
        stage(cur, rows)
        cur.execute(beacon_store._HOLD_HOURS)
        staged = set(cur.execute(held, (minute_rollups.FENCE_NAMESPACE,)).fetchall())
        conn.rollback()
        cur.execute(beacon_store._HOLD_HOURS_OF, (sorted({row[0] for row in rows}),))
        direct = set(cur.execute(held, (minute_rollups.FENCE_NAMESPACE,)).fetchall())
        conn.rollback()
    assert direct == staged and len(staged) >= 2
