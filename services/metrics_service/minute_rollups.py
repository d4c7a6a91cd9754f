"""Rolling the current hour into the minute layer as it goes (issue #8).

Until the hourly roll-up publishes an hour, every reader used to aggregate all of it from
raw beacons: under heavy ingest, long queries slowed down minute by minute. The metrics
service therefore rolls each closed minute (older than `LAG`) of the current and the
just-closed hour into beacons_minute and beacons_minute_totals every few seconds and
records how far in rollup_progress; readers take [hour, rolled_to) from those rows and only
the rest from raw (`rollup_rows.COVERAGE_SQL`).

Every minute rolled, whether or not Airflow runs (issue #14): ingestion marks every hour
that receives beacons pending (rollup_pending, in the beacons' transaction); the roller
publishes each pending hour once it is closed (`rollups.roll_up_hour`: from the minute rows
where it completed them, only late minutes from raw; from raw beacons for history loaded
late), and again when late data marks a published hour. The hourly DAG publishes and
verifies the same way; both are idempotent.

Never behind raw: a roll first *fences* the hour — it takes the hour's advisory lock
exclusively, which waits for the ingest transactions in flight (they hold it shared,
`beacon_store`), and sets `fenced_to`; an ingest that commits later with a beacon before
`fenced_to` marks its minute in rollup_late_minutes in the same transaction, and readers
stop at the earliest late minute. The next roll recomputes from there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from edgestats_core.config import Settings
from edgestats_core.query.windows import floor_to
from metrics_service import hour_rows, rollups
from metrics_service.rollups import LOCK_NAMESPACE, hour_key

log = logging.getLogger(__name__)

# advisory locks per hour: ingest holds its beacons' hours shared, a minute roll exclusively
FENCE_NAMESPACE = 7303
# only this one process rolls at a time (session lock; the other workers skip the cycle)
ROLLER_LOCK = (7304, 0)
# minutes are rolled once this old: a beacon arriving later is late (and re-rolled)
LAG = timedelta(seconds=10)
HOUR = timedelta(hours=1)
# a pending hour is rolled up once ingestion marked it this long ago (a load in progress
# into it is rolled after, not after every batch); a published hour with late data waits
# longer: readers take it from its minute rows up to the earliest late minute meanwhile,
# and each re-roll merges all of its hour rows again
QUIET = timedelta(seconds=15)
QUIET_PUBLISHED = timedelta(seconds=60)
# a closed hour is published this long after its end: beacons a little late land in the
# minute layer (re-rolled from their minute) instead of re-merging a published hour
PUBLISH_GRACE = timedelta(minutes=1)
# at most this long publishing per cycle, so that the current minutes stay fresh
BUDGET = timedelta(seconds=30)


@dataclass(frozen=True)
class MinuteRoll:
    hour: datetime
    start: datetime  # recomputed minutes [start, end)
    end: datetime


def _progress(conn: psycopg.Connection, hour: datetime) -> tuple[datetime, datetime | None]:
    """(rolled_to, earliest late minute or None) of the hour; rolled_to = hour when none."""
    row = conn.execute(
        "SELECT (SELECT rolled_to FROM rollup_progress WHERE hour = %(h)s),"
        " (SELECT min(minute) FROM rollup_late_minutes"
        "  WHERE minute >= %(h)s AND minute < %(h)s + interval '1 hour')", {"h": hour},
    ).fetchone()
    return row[0] or hour, row[1]


def _fence(conn: psycopg.Connection, hour: datetime, goal: datetime) -> datetime | None:
    """Fence the hour up to `goal` and return where its recomputation starts (the rolled
    minutes before the earliest late one stay), or None when nothing is to do."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (FENCE_NAMESPACE, hour_key(hour)))
        if conn.execute("SELECT 1 FROM rollup_runs WHERE hour = %s", (hour,)).fetchone():
            return None  # the hourly roll-up has published it
        rolled_to, late = _progress(conn, hour)
        start = min(rolled_to, late or rolled_to)
        if start >= goal:
            return None
        conn.execute("DELETE FROM rollup_late_minutes WHERE minute >= %(h)s"
                     " AND minute < %(h)s + interval '1 hour'", {"h": hour})
        # readers keep [hour, start): its rows are complete
        conn.execute(
            "INSERT INTO rollup_progress (hour, rolled_to, fenced_to) VALUES (%(h)s, %(s)s, %(g)s)"
            " ON CONFLICT (hour) DO UPDATE SET rolled_to = %(s)s, fenced_to = %(g)s",
            {"h": hour, "s": start, "g": goal},
        )
    return start


def _roll(conn: psycopg.Connection, hour: datetime, start: datetime, goal: datetime) -> bool:
    """Replace the minute rows (and minute totals) of [start, goal), merge them into the
    hour's unpublished hour rows (`hour_rows`) and advance rolled_to; False when the hourly
    roll-up published the hour meanwhile."""
    with conn.transaction():
        # the hourly roll-up's lock: never both on one hour
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, hour_key(hour)))
        if conn.execute("SELECT 1 FROM rollup_runs WHERE hour = %s", (hour,)).fetchone():
            conn.execute("DELETE FROM rollup_progress WHERE hour = %s", (hour,))
            return False
        hour_rows.recompute(conn, hour, start, goal)
        conn.execute("UPDATE rollup_progress SET rolled_to = %s, rolled_at = now()"
                     " WHERE hour = %s", (goal, hour))
    return True


def roll_up_minutes(conn: psycopg.Connection, upto: datetime) -> list[MinuteRoll]:
    """Roll the closed minutes before `upto` (floored to the minute) of its hour and of the
    hour before, from where each was rolled to or from its earliest late minute."""
    upto = floor_to(upto, 60)
    done = []
    current = floor_to(upto, 3600)
    for hour in (current - HOUR, current):
        goal = min(upto, hour + HOUR)
        rolled_to, late = _progress(conn, hour)  # without locks: most cycles stop here
        if goal <= hour or (rolled_to >= goal and late is None):
            continue
        start = _fence(conn, hour, goal)
        if start is not None and _roll(conn, hour, start, goal):
            done.append(MinuteRoll(hour, start, goal))
    return done


def roll_up_pending_hours(
    conn: psycopg.Connection, budget: timedelta = BUDGET,
) -> list[rollups.HourRollup]:
    """Publish the hours ingestion marked pending (every hour that received beacons), oldest
    first, once closed for `PUBLISH_GRACE` and marked at least `QUIET` ago (`QUIET_PUBLISHED`
    for a published hour with late data), until none is left or `budget` is spent."""
    done: list[rollups.HourRollup] = []
    deadline = time.monotonic() + budget.total_seconds()
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT hour FROM rollup_pending p WHERE hour + interval '1 hour' <= now() - %s"
            " AND marked_at < now() - CASE WHEN EXISTS"
            " (SELECT FROM rollup_runs r WHERE r.hour = p.hour) THEN %s ELSE %s END"
            " ORDER BY hour LIMIT 1", (PUBLISH_GRACE, QUIET_PUBLISHED, QUIET)).fetchone()
        if row is None:
            break
        done.append(rollups.roll_up_hour(conn, row[0]))
    return done


@dataclass(frozen=True)
class Cycle:
    """What one roller cycle did."""

    minutes: list[MinuteRoll]
    published: list[rollups.HourRollup]


def roll_up_recent_minutes(url: str, now: datetime) -> Cycle:
    """One cycle of the roller, unless another process is rolling (then nothing): the
    minutes closed `LAG` before `now`, then the pending hours."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        if not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", ROLLER_LOCK).fetchone()[0]:
            return Cycle([], [])
        return Cycle(roll_up_minutes(conn, now - LAG), roll_up_pending_hours(conn))


async def roll_minutes_forever(settings: Settings, url: str | None = None) -> None:
    """Every `settings.minute_rollup_seconds`, roll the closed minutes of the database at
    `url` (default: the home database; off when 0, or when the clock is frozen: there is no
    current hour to follow). A failed cycle (database down) is logged and the next one
    tries again."""
    url = url or settings.database_url
    if settings.minute_rollup_seconds <= 0 or settings.frozen_now is not None:
        return
    while True:
        await asyncio.sleep(settings.minute_rollup_seconds)
        try:
            rolls = await asyncio.to_thread(
                roll_up_recent_minutes, url, settings.now())
        except psycopg.Error as error:
            log.warning("minute roll-up failed, retrying next cycle: %s", error)
            continue
        except Exception:  # a bug must not stop the roller for good; it is logged
            log.exception("minute roll-up failed, retrying next cycle")
            continue
        for roll in rolls.minutes:
            log.info("rolled minutes %s to %s", roll.start.isoformat(), roll.end.isoformat())
        for hour in rolls.published:
            log.info("published hour %s (%d beacons; raw read from %s)", hour.hour.isoformat(),
                     hour.raw_beacons, hour.from_minutes and hour.from_minutes.isoformat())
