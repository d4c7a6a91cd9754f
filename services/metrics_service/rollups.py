"""Rollups of raw beacons into the historical layers (CONTRACT §4), one hour at a time.

An hour's minute rows are aggregated from raw beacons and its hour rows from those
minutes, replacing whatever the hour had, in one transaction under a per-hour lock:
re-runs and overlapping backfills never double count. Hours whose raw data changed
after they were rolled (late beacons) are found through `beacons.ingested_at`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from edgestats_core.metrics.rollup_rows import DIMS, merged_select, minute_select

HOUR = timedelta(hours=1)
# An ingest transaction may commit up to this long after its rows' ingested_at (its start):
# hours are re-checked for beacons ingested this long before they were rolled.
INGEST_MARGIN = timedelta(minutes=2)
LOCK_NAMESPACE = 7302

_IN_HOUR = 'WHERE "time" >= %(start)s AND "time" < %(end)s'
MINUTE_SQL = "INSERT INTO beacons_minute " + minute_select(_IN_HOUR.removeprefix("WHERE "))
# hour rows of the hour from its minute rows (sketches union)
HOUR_SQL = "INSERT INTO beacons_hour " + merged_select(
    f"beacons_minute {_IN_HOUR}", "date_trunc('hour', \"time\")", DIMS
)
# the dimensionless totals of both layers (rollup_rows.TOTALS_COLUMNS)
TOTALS_SQL = {
    table: f"INSERT INTO {table}_totals " + merged_select(f"{table} {_IN_HOUR}", '"time"', "source")
    for table in ("beacons_minute", "beacons_hour")
}
ROLLUP_TABLES = ("beacons_minute", "beacons_hour", "beacons_minute_totals", "beacons_hour_totals")


def hour_key(hour: datetime) -> int:
    """The second key of an hour's advisory locks."""
    return int(hour.timestamp()) // 3600


@dataclass(frozen=True)
class HourRollup:
    hour: datetime
    raw_beacons: int
    minute_rows: int
    hour_rows: int


def roll_up_hour(conn: psycopg.Connection, hour: datetime) -> HourRollup:
    """Replace the minute and hour rows (and their totals) of the hour starting at `hour`,
    atomically."""
    bounds = {"start": hour, "end": hour + HOUR}
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)",
            (LOCK_NAMESPACE, hour_key(hour)),
        )
        # cleared first: beacons committed after the snapshot read below mark the hour again
        # (an ingest that hits this row waits for this transaction) or, on an hour's first
        # roll-up, are found by re_roll_late_hours through ingested_at
        conn.execute("DELETE FROM rollup_stale WHERE hour = %(start)s", bounds)
        # the minute roller's partial state of the hour (minute_rollups) is superseded
        conn.execute("DELETE FROM rollup_progress WHERE hour = %(start)s", bounds)
        conn.execute("DELETE FROM rollup_late_minutes WHERE minute >= %(start)s"
                     " AND minute < %(end)s", bounds)
        for table in ROLLUP_TABLES:
            conn.execute(f"DELETE FROM {table} {_IN_HOUR}", bounds)
        minutes = conn.execute(MINUTE_SQL, bounds).rowcount
        hours = conn.execute(HOUR_SQL, bounds).rowcount
        for sql in TOTALS_SQL.values():
            conn.execute(sql, bounds)
        raw = conn.execute(
            'SELECT count(*) FROM beacons WHERE "time" >= %(start)s AND "time" < %(end)s', bounds
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO rollup_runs (hour, rolled_at, raw_beacons) VALUES (%s, now(), %s)"
            " ON CONFLICT (hour) DO UPDATE"
            " SET rolled_at = now(), raw_beacons = EXCLUDED.raw_beacons",
            (hour, raw),
        )
    return HourRollup(hour, raw, minutes, hours)


def floor_hour(instant: datetime) -> datetime:
    return instant.replace(minute=0, second=0, microsecond=0)


def hours_of(start: datetime, end: datetime) -> Iterator[datetime]:
    """The hour starts of [start, end) (start is floored to the hour)."""
    hour = floor_hour(start)
    while hour < end:
        yield hour
        hour += HOUR


def _utc(instant: datetime) -> datetime:
    """The instant as a plain UTC datetime: whole UTC hours even from an offset such as +05:30,
    and Airflow's pendulum DateTimes drop a stdlib tzinfo in arithmetic."""
    utc = instant.astimezone(UTC)
    return datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second,
                    utc.microsecond, tzinfo=UTC)


def resolve_run_interval(
    start: datetime | None, end: datetime | None, run_after: datetime, now: datetime
) -> tuple[datetime, datetime]:
    """The whole hours [start, end) a DAG run rolls up: its data interval widened to whole
    hours (scheduled and backfill runs, a manual run with a logical date or an interval) or,
    for a manual run without a logical date (no interval), the last hour closed at
    `run_after`. Raises ValueError when an hour of it has not ended at `now`: a published
    hour must be complete."""
    if start is None or end is None:
        end = floor_hour(_utc(run_after))
        start = end - HOUR
    start, end = floor_hour(_utc(start)), floor_hour(_utc(end) + HOUR - timedelta(microseconds=1))
    if end > now:
        raise ValueError(f"the hours {start.isoformat()} to {end.isoformat()} have not all"
                         f" ended at {now.isoformat()}: an hour is published once it is closed")
    return start, end


def roll_up_interval(url: str, start: datetime, end: datetime) -> list[HourRollup]:
    """Roll up every hour of a data interval (what one DAG run or backfill run does)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return [roll_up_hour(conn, hour) for hour in hours_of(start, end)]


LATE_HOURS_SQL = """
WITH changed AS (
    SELECT date_trunc('hour', "time") AS hour, max(ingested_at) AS last_ingest
    FROM beacons
    WHERE ingested_at > %(since)s AND "time" < %(before)s
    GROUP BY 1
)
SELECT changed.hour FROM changed JOIN rollup_runs runs USING (hour)
WHERE changed.last_ingest > runs.rolled_at - %(margin)s
ORDER BY 1
"""


def re_roll_late_hours(url: str, before: datetime) -> list[HourRollup]:
    """Re-roll the rolled hours before `before` that got beacons after (or just before) their
    roll-up; the scan starts where the previous one ended, so late data is never missed."""
    with psycopg.connect(url, autocommit=True) as conn:
        scanned_to = conn.execute("SELECT scanned_to FROM rollup_watermark").fetchone()[0]
        now = conn.execute("SELECT now()").fetchone()[0]
        late = [row[0] for row in conn.execute(LATE_HOURS_SQL, {
            "since": scanned_to - INGEST_MARGIN, "before": before, "margin": INGEST_MARGIN,
        })]
        done = [roll_up_hour(conn, hour) for hour in late]
        conn.execute("UPDATE rollup_watermark SET scanned_to = %s", (now,))
    return done
