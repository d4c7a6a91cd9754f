"""Every minute rolled, whether or not Airflow runs (issue #14): an hour the minute roller
completed is published from its minute rows without reading raw beacons; every hour that
receives beacons is marked pending by ingestion and published by the roller once closed
(history loaded late at once); a late beacon of a published hour re-rolls only its minutes
and readers keep its minute rows up to it; the DAG's verification recomputes minutes that
miss beacons. Expected rows are computed here from the beacons."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from edgestats_cli.main import main
from edgestats_core.config import Settings
from edgestats_core.metrics.rollup_rows import Coverage
from metrics_service import minute_rollups, rollups
from tests.db.test_minute_rollups import coverage_of, fresh_hour, roll
from tests.db.test_minute_rollups import own_database_url as own_database_url
from tests.db.test_rollups import assert_rows_equal, expected_rows, make_beacons, minute_rows, store

pytestmark = pytest.mark.db
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


def pending(url: str) -> set[datetime]:
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT hour FROM rollup_pending")}


def customer_hour(url: str, days: int, sessions: int, seed: int) -> tuple[str, list, datetime]:
    hour = fresh_hour(days)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = make_beacons(customer_id, hour, 1, sessions=sessions, seed=seed)
    store(url, customer_id, beacons, datetime.now(UTC))
    return customer_id, beacons, hour


def assert_hour_rolled(url: str, customer_id: str, beacons: list[dict]) -> None:
    for table, seconds in (("beacons_minute", 60), ("beacons_minute_totals", 60),
                           ("beacons_hour", 3600), ("beacons_hour_totals", 3600)):
        assert_rows_equal(minute_rows(url, customer_id, table), expected_rows(beacons, seconds))


def test_a_completed_hour_is_published_from_its_minute_rows(db_url):
    customer_id, beacons, hour = customer_hour(db_url, 21, sessions=12, seed=31)
    roll(db_url, hour + HOUR)
    with psycopg.connect(db_url, autocommit=True) as conn:
        # raw beacons gone: only the minute rows can give the hour rows now
        conn.execute("DELETE FROM beacons WHERE customer_id = %s", (customer_id,))
        published = rollups.roll_up_hour(conn, hour)  # what the roller does once it closed
    assert published.from_minutes is None and published.minute_rows == 0
    assert isinstance(published.raw_beacons, int) and published.raw_beacons >= len(beacons)
    assert coverage_of(db_url, hour).hours == {hour}
    assert_hour_rolled(db_url, customer_id, beacons)
    # a backfill verifies the minute rows against raw: with raw gone it keeps them
    rollups.roll_up_interval(db_url, hour, hour + HOUR)
    assert_hour_rolled(db_url, customer_id, beacons)


def test_a_late_beacon_of_a_published_hour_re_rolls_its_minutes_only(db_url):
    customer_id, beacons, hour = customer_hour(db_url, 22, sessions=10, seed=32)
    rollups.roll_up_interval(db_url, hour, hour + HOUR)
    assert hour not in pending(db_url)
    late = [dict(b, SessionId=b["SessionId"] + "-late")
            for b in make_beacons(customer_id, hour, 1, sessions=8, seed=33)
            if b["__time"] >= hour + 40 * MINUTE]
    assert late
    store(db_url, customer_id, late, datetime.now(UTC))
    earliest = min(b["__time"] for b in late).replace(second=0)
    assert hour in pending(db_url)
    # stale: readers take the minute rows up to the earliest late minute, raw after it
    assert coverage_of(db_url, hour) == Coverage(frozenset(), frozenset({(hour, earliest)}))
    with psycopg.connect(db_url, autocommit=True) as conn:
        redone = rollups.roll_up_hour(conn, hour)
    assert redone.from_minutes == earliest
    assert hour not in pending(db_url)
    assert coverage_of(db_url, hour).hours == {hour}
    assert_hour_rolled(db_url, customer_id, beacons + late)


def test_the_backfill_recomputes_minutes_that_miss_beacons(db_url):
    customer_id, beacons, hour = customer_hour(db_url, 23, sessions=8, seed=34)
    rollups.roll_up_interval(db_url, hour, hour + HOUR)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM beacons_minute_totals WHERE customer_id = %s AND \"time\" = ("
                     "SELECT min(\"time\") FROM beacons_minute_totals WHERE customer_id = %s)",
                     (customer_id, customer_id))
    [redone] = rollups.roll_up_interval(db_url, hour, hour + HOUR)
    assert redone.from_minutes == hour
    assert_hour_rolled(db_url, customer_id, beacons)
    # from_raw recomputes every minute even when they agree
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert rollups.roll_up_hour(conn, hour, from_raw=True).from_minutes == hour
        assert rollups.roll_up_hour(conn, hour).from_minutes is None
    assert_hour_rolled(db_url, customer_id, beacons)


def test_history_loaded_late_is_published_by_the_roller_loop(own_database_url):
    """No Airflow: the metrics service's loop (real clock) publishes hours loaded long after
    they ended, and the hours the minute roller completed, by itself."""
    url = own_database_url
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 3 * HOUR
    beacons = make_beacons(customer_id, top - 2 * HOUR, 2, sessions=10, seed=35)
    now = datetime.now(UTC)
    live_customer = f"c-{uuid.uuid4().hex[:10]}"  # another customer's current beacons
    current = [dict(b, __time=now - timedelta(seconds=5 * i), SessionId=f"now-{i % 3}",
                    CustomerId=live_customer) for i, b in enumerate(beacons[:12])]
    store(url, customer_id, beacons, now)
    store(url, live_customer, current, now)
    hours = {top - 2 * HOUR, top - HOUR}
    current_hours = {b["__time"].replace(minute=0, second=0, microsecond=0) for b in current}
    assert pending(url) == hours | current_hours

    async def roll_until_published() -> None:
        loop = asyncio.create_task(minute_rollups.roll_minutes_forever(
            Settings(url, minute_rollup_seconds=0.05)))
        try:
            while not all(coverage_of(url, hour).hours == {hour} for hour in hours):
                await asyncio.sleep(0.1)
        finally:
            loop.cancel()

    asyncio.run(asyncio.wait_for(roll_until_published(), 60))
    assert pending(url) == current_hours  # not closed yet: published after the grace
    assert_hour_rolled(url, customer_id, beacons)


def test_the_rollup_command_publishes_an_interval(db_url, monkeypatch, capsys):
    customer_id, beacons, hour = customer_hour(db_url, 24, sessions=6, seed=36)
    monkeypatch.setenv("DATABASE_URL", db_url)
    main(["rollup", "--from", hour.isoformat(), "--to", (hour + HOUR).isoformat(), "--from-raw"])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(hour.isoformat())
    assert f"read raw from {hour.isoformat()}" in out[0]
    assert coverage_of(db_url, hour).hours == {hour}
    assert_hour_rolled(db_url, customer_id, beacons)
    with pytest.raises(SystemExit):
        main(["rollup", "--from", hour.isoformat(), "--to", hour.isoformat()])


def test_a_failed_roll_marks_its_hour_pending_again(db_url, monkeypatch):
    customer_id, beacons, hour = customer_hour(db_url, 25, sessions=3, seed=37)
    assert hour in pending(db_url)

    def broken(*args, **kwargs):
        raise psycopg.errors.DiskFull("no space left")

    monkeypatch.setattr(rollups, "_publish", broken)
    with psycopg.connect(db_url, autocommit=True) as conn, pytest.raises(psycopg.errors.DiskFull):
        rollups.roll_up_hour(conn, hour)
    assert hour in pending(db_url)


def test_a_late_ingest_never_waits_for_a_re_roll(db_url):
    """A re-roll of a published hour clears its late-data marks first and holds them until it
    commits (minutes for a big hour): an ingest marking the same hour and minutes meanwhile
    goes through at once, and its marks outlive the re-roll's."""
    customer_id, beacons, hour = customer_hour(db_url, 26, sessions=4, seed=38)
    rollups.roll_up_interval(db_url, hour, hour + HOUR)
    late = [dict(b, SessionId=f"late-{i}") for i, b in enumerate(beacons[:20])]
    store(db_url, customer_id, late[:10], datetime.now(UTC))
    done = threading.Event()
    with psycopg.connect(db_url) as roll:  # what a re-roll's transaction does first
        roll.execute("DELETE FROM rollup_stale WHERE hour = %s", (hour,))
        roll.execute("DELETE FROM rollup_late_minutes WHERE minute >= %s AND minute < %s",
                     (hour, hour + HOUR))
        ingest = threading.Thread(target=lambda: (
            store(db_url, customer_id, late[10:], datetime.now(UTC)), done.set()))
        ingest.start()
        ingest.join(10)
        assert done.is_set(), "the ingest waited for the re-roll"
        roll.commit()
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT 1 FROM rollup_stale WHERE hour = %s", (hour,)).fetchone()
        minutes = {row[0] for row in conn.execute(
            "SELECT minute FROM rollup_late_minutes WHERE minute >= %s AND minute < %s",
            (hour, hour + HOUR))}
    assert minutes == {b["__time"].replace(second=0) for b in late[10:]}
