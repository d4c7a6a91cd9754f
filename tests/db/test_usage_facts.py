"""Usage facts against real PostgreSQL: each bucket equals the raw aggregate of its events,
re-runs change nothing, late events are folded in by the catch-up, and the DAGs run.

Days are picked at random months ago (other tests use the last days), and assertions read
only this module's users, so buckets shared with other tests' events do not matter.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from edgestats_stack.airflow import configure, run
from tests import usage_oracle as oracle
from tests.usage_oracle import DAY, HOUR
from usage_billing_service import facts

pytestmark = pytest.mark.db


def _random_day(seed: int) -> datetime:
    # after the DAGs' start_date (Airflow runs no task for an earlier date), months ago
    base = datetime(2026, 2, 1, tzinfo=UTC)
    return base + random.Random(seed).randrange(0, 200) * DAY


def _daily(conn, user_id: str) -> dict[tuple, int]:
    rows = conn.execute(
        "SELECT type, day, application_id, bytes FROM usage_daily_facts WHERE user_id = %s",
        (user_id,)).fetchall()
    return {(t, d, a): b for t, d, a, b in rows}


def _tag_hours(conn, user_id: str) -> dict[tuple, int]:
    rows = conn.execute(
        "SELECT hour, tag, application_id, bytes FROM usage_tag_hour_facts WHERE user_id = %s",
        (user_id,)).fetchall()
    return {(h.astimezone(UTC), t, a): b for h, t, a, b in rows}


def _totals(conn, user_id: str) -> dict[tuple, int]:
    rows = conn.execute(
        "SELECT period_start, type, bytes FROM usage_period_totals WHERE user_id = %s",
        (user_id,)).fetchall()
    return {(p.astimezone(UTC), t): b for p, t, b in rows}


@pytest.fixture()
def day_user(db_url):
    """A user with storage, conversion and tagged bandwidth on one random past day."""
    day = _random_day(random.randrange(10**6))
    user = oracle.create_user(db_url, 1, day - 3 * DAY)
    app0, app1 = user.apps
    e = oracle.event
    events = [
        e(user, "storage", day + 1 * HOUR, 700), e(user, "storage", day + 9 * HOUR, 900),
        e(user, "storage", day + 20 * HOUR, 800), e(user, "storage", day + 2 * HOUR, 50, app1),
        e(user, "conversion", day + 3 * HOUR, 11), e(user, "conversion", day + 4 * HOUR, 22),
        e(user, "bandwidth", day + 5 * HOUR, 100, None, "t1"),
        e(user, "bandwidth", day + 5 * HOUR + timedelta(minutes=59), 30, app1, "t1"),
        e(user, "bandwidth", day + 6 * HOUR, 7),
        e(user, "conversion", day + DAY, 1000),  # next day: not this day's
    ]
    oracle.insert(db_url, user, events)
    return user, day


def test_day_facts_equal_the_raw_aggregate_and_reruns_change_nothing(db_url, day_user):
    user, day = day_user
    app0, app1 = user.apps
    with psycopg.connect(db_url, autocommit=True) as conn:
        run1 = facts.compute_day(conn, day.date())
        first = _daily(conn, user.user_id)
        facts.compute_day(conn, day.date())
        assert _daily(conn, user.user_id) == first
    d = day.date()
    assert first == {  # storage: the day's largest sample per application
        ("storage", d, app0): 900, ("storage", d, app1): 50,
        ("conversion", d, app0): 33,
        ("bandwidth", d, app0): 107, ("bandwidth", d, app1): 30,
    }
    assert run1.events >= 9


def test_tag_hours_and_reruns(db_url, day_user):
    user, day = day_user
    app0, app1 = user.apps
    with psycopg.connect(db_url, autocommit=True) as conn:
        for hour in range(24):
            facts.compute_tag_hour(conn, day + hour * HOUR)
        first = _tag_hours(conn, user.user_id)
        facts.compute_tag_hours(db_url, day + 5 * HOUR, day + 6 * HOUR)
        assert _tag_hours(conn, user.user_id) == first
    assert first == {(day + 5 * HOUR, "t1", app0): 100, (day + 5 * HOUR, "t1", app1): 30}


def test_late_event_is_folded_in(db_url, day_user):
    user, day = day_user
    app0 = user.default_app
    with psycopg.connect(db_url, autocommit=True) as conn:
        facts.compute_day(conn, day.date())
        facts.compute_tag_hour(conn, day + 5 * HOUR)
        facts.catch_up_late(db_url)  # the watermark moves past the events above
        late = [oracle.event(user, "storage", day + 23 * HOUR, 5000),
                oracle.event(user, "bandwidth", day + 5 * HOUR, 9, None, "t1")]
        oracle.insert(db_url, user, late)
        assert _daily(conn, user.user_id)[("storage", day.date(), app0)] == 900  # not yet
        done = facts.catch_up_late(db_url)
        assert {(r.grain, r.bucket.astimezone(UTC)) for r in done} >= {
            ("day", day), ("tag_hour", day + 5 * HOUR)}
        assert _daily(conn, user.user_id)[("storage", day.date(), app0)] == 5000
        assert _daily(conn, user.user_id)[("bandwidth", day.date(), app0)] == 116
        assert _tag_hours(conn, user.user_id)[(day + 5 * HOUR, "t1", app0)] == 109
        # a repeat (which may redo buckets ingested within the margin) changes nothing
        folded = _daily(conn, user.user_id), _tag_hours(conn, user.user_id)
        facts.catch_up_late(db_url)
        assert (_daily(conn, user.user_id), _tag_hours(conn, user.user_id)) == folded


def test_uncomputed_buckets_are_not_late(db_url, day_user):
    user, day = day_user
    oracle.insert(db_url, user, [oracle.event(user, "conversion", day + 30 * DAY, 5)])
    done = facts.catch_up_late(db_url)
    assert ("day", day + 30 * DAY) not in {(r.grain, r.bucket.astimezone(UTC)) for r in done}


def test_billing_period_totals(db_url):
    start = _random_day(random.randrange(10**6)) + 7 * HOUR
    user = oracle.create_user(db_url, 1, start)
    app0, app1 = user.apps
    e = oracle.event
    events = [
        e(user, "conversion", start - HOUR, 1),  # before the subscription
        e(user, "conversion", start + HOUR, 10), e(user, "conversion", start + 3 * DAY, 20),
        e(user, "storage", start + DAY, 100), e(user, "storage", start + DAY, 300, app1),
        e(user, "storage", start + 2 * DAY, 350),  # the peak is the day before: 100 + 300
        e(user, "bandwidth", start + 40 * DAY, 5),  # the second period
    ]
    oracle.insert(db_url, user, events)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert facts.total_periods(conn, start, start + 45 * DAY) >= 2
        totals = _totals(conn, user.user_id)
        facts.total_periods(conn, start, start + 45 * DAY)
        assert _totals(conn, user.user_id) == totals
    second = oracle.next_month(start)
    assert totals == {(start, "conversion"): 30, (start, "storage"): 400,
                      (second, "bandwidth"): 5}


@pytest.fixture(scope="module")
def airflow(db_url, tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow")
    environment = configure(home, f"sqlite:///{home}/airflow.db", db_url)
    migrated = run(environment, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    return environment


def test_dags_compute_their_interval(airflow, db_url):
    """`dags test` with an end date runs the interval before it, like the scheduler."""
    day = _random_day(random.randrange(10**6))
    user = oracle.create_user(db_url, 0, day)
    oracle.insert(db_url, user, [
        oracle.event(user, "bandwidth", day + 13 * HOUR + timedelta(minutes=5), 40, None, "x"),
        oracle.event(user, "storage", day + 13 * HOUR, 77)])
    hourly = run(airflow, "dags", "test", "usage_facts_hourly", (day + 14 * HOUR).isoformat())
    assert hourly.returncode == 0, (hourly.stdout + hourly.stderr)[-3000:]
    daily = run(airflow, "dags", "test", "usage_facts_daily", (day + DAY).isoformat())
    assert daily.returncode == 0, (daily.stdout + daily.stderr)[-3000:]
    with psycopg.connect(db_url) as conn:
        assert _tag_hours(conn, user.user_id) == {(day + 13 * HOUR, "x", user.default_app): 40}
        assert _daily(conn, user.user_id) == {
            ("bandwidth", day.date(), user.default_app): 40,
            ("storage", day.date(), user.default_app): 77}
        assert _totals(conn, user.user_id) == {(day, "bandwidth"): 40, (day, "storage"): 77}
