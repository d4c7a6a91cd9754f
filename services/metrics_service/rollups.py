"""Rollups of raw beacons into the historical layers (CONTRACT §4), one hour at a time.

An hour's minute rows are aggregated from raw beacons and its hour rows from those
minutes (`hour_rows`: the minute roller keeps them in step as it goes, so an hour it
completed is published without a merge), in one transaction under a per-hour lock:
re-runs and overlapping backfills never double count. Hours whose raw data changed
after they were rolled (late beacons) are found through `beacons.ingested_at`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from edgestats_core import run_intervals
from edgestats_core.metrics.rollup_rows import merged_select
from metrics_service import hour_rows

HOUR = timedelta(hours=1)
# An ingest transaction may commit up to this long after its rows' ingested_at (its start):
# hours are re-checked for beacons ingested this long before they were rolled.
INGEST_MARGIN = timedelta(minutes=2)
LOCK_NAMESPACE = 7302
# a backfill (the DAG, `edgestats rollup`) reads an hour's raw beacons on this many
# connections at once (EDGESTATS_ROLLUP_CONNECTIONS; PostgreSQL runs no INSERT ... SELECT
# in parallel): 2 measured 1.6x faster on 2 cores (performance.md); the minute roller inside
# the service stays on one, beside the requests it shares the cores with
ROLLUP_CONNECTIONS = int(os.environ.get("EDGESTATS_ROLLUP_CONNECTIONS", "2"))

_IN_HOUR = 'WHERE "time" >= %(start)s AND "time" < %(end)s'
# the hour's dimensionless totals (rollup_rows.TOTALS_COLUMNS) from its minute totals: the
# same merge as from its hour rows (unions and sums are associative), over ~60 rows a source
HOUR_TOTALS_SQL = "INSERT INTO beacons_hour_totals " + merged_select(
    f"beacons_minute_totals {_IN_HOUR}", "date_trunc('hour', \"time\")", "source")
ROLLUP_TABLES = ("beacons_minute", "beacons_hour", "beacons_minute_totals", "beacons_hour_totals")


def hour_key(hour: datetime) -> int:
    """The second key of an hour's advisory locks."""
    return int(hour.timestamp()) // 3600


@dataclass(frozen=True)
class HourRollup:
    hour: datetime
    raw_beacons: int
    minute_rows: int  # minute rows recomputed from raw beacons
    hour_rows: int  # hour rows (re)written: 0 when the roller had merged every minute
    from_minutes: datetime | None = None  # raw beacons were read from here (None: none)


# where an hour's minute rows are complete to (rollup_progress)
_ROLLED_TO_SQL = "SELECT rolled_to FROM rollup_progress WHERE hour = %(start)s"
_RAW_COUNT_SQL = 'SELECT count(*) FROM beacons WHERE "time" >= %(start)s AND "time" < %(end)s'
_ROLLED_COUNT_SQL = ('SELECT coalesce(sum(beacons), 0)::bigint FROM beacons_minute_totals'
                     ' WHERE "time" >= %(start)s AND "time" < %(end)s')


def roll_up_hour(
    conn: psycopg.Connection, hour: datetime, from_raw: bool = False, verify: bool = False,
    helpers: hour_rows.Helpers | None = None,
) -> HourRollup:
    """Publish the hour starting at `hour`: replace its hour rows (and totals), atomically.

    The minute rows come from the minute roller where it completed the hour (rollup_progress
    up to the hour's end): only the minutes from the earliest late one are recomputed from
    raw beacons, and the hour rows are merged from the minute rows. Otherwise (and with
    `from_raw`) every minute row of the hour is recomputed from raw beacons. `verify`:
    compare the beacons the minute rows count with the raw beacons of the hour, and recompute
    from raw when they differ. The hour's minute rows are complete afterwards: its progress
    row stays at the hour's end, so later beacons mark their minutes late. `helpers`:
    connections that aggregate minutes read from raw at once (`hour_rows.Helpers`)."""
    bounds = {"start": hour, "end": hour + HOUR}
    # the pending mark is cleared first, in its own transaction (every ingest into the hour
    # touches it: none may wait for this roll): a beacon committed later marks it again
    with conn.transaction():
        conn.execute("DELETE FROM rollup_pending WHERE hour = %(start)s", bounds)
    try:
        return _publish(conn, hour, bounds, from_raw, verify, helpers)
    except Exception:  # marked again, so that the roller retries it
        with conn.transaction():
            conn.execute("INSERT INTO rollup_pending (hour) VALUES (%(start)s)"
                         " ON CONFLICT DO NOTHING", bounds)
        raise


def _publish(
    conn: psycopg.Connection, hour: datetime, bounds: dict, from_raw: bool, verify: bool,
    helpers: hour_rows.Helpers | None,
) -> HourRollup:
    """roll_up_hour's transaction."""
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)",
            (LOCK_NAMESPACE, hour_key(hour)),
        )
        # marks cleared first (those this statement sees; the statements below see their
        # beacons): a beacon committed later adds a new mark (marks have no key, so its
        # ingest never waits for this transaction) or, on an hour's first roll-up, is found
        # by re_roll_late_hours through ingested_at. The minutes to recompute are those of
        # the marks deleted here, never of marks read earlier (one committed in between would
        # be deleted without its minute being recomputed).
        conn.execute("DELETE FROM rollup_stale WHERE hour = %(start)s", bounds)
        late = min((row[0] for row in conn.execute(
            "DELETE FROM rollup_late_minutes WHERE minute >= %(start)s AND minute < %(end)s"
            " RETURNING minute", bounds)), default=None)
        rolled_to = conn.execute(_ROLLED_TO_SQL, bounds).fetchone()
        complete = (rolled_to is not None and rolled_to[0] >= bounds["end"] and not from_raw)
        first = min(late or bounds["end"], bounds["end"]) if complete else hour
        if complete and verify and _minutes_miss_beacons(conn, bounds, first):
            first = hour
        minutes, hours = hour_rows.recompute(conn, hour, first, bounds["end"], helpers)
        conn.execute(f"DELETE FROM beacons_hour_totals {_IN_HOUR}", bounds)
        conn.execute(HOUR_TOTALS_SQL, bounds)
        raw = conn.execute(_ROLLED_COUNT_SQL, bounds).fetchone()[0]
        conn.execute(
            "INSERT INTO rollup_progress (hour, rolled_to, fenced_to, hour_rows_to)"
            " VALUES (%(start)s, %(end)s, %(end)s, %(end)s) ON CONFLICT (hour) DO UPDATE"
            " SET rolled_to = %(end)s, fenced_to = %(end)s, hour_rows_to = %(end)s,"
            " rolled_at = now()", bounds)
        conn.execute(
            "INSERT INTO rollup_runs (hour, rolled_at, raw_beacons) VALUES (%s, now(), %s)"
            " ON CONFLICT (hour) DO UPDATE"
            " SET rolled_at = now(), raw_beacons = EXCLUDED.raw_beacons",
            (hour, raw),
        )
    return HourRollup(hour, raw, minutes, hours, first if first < bounds["end"] else None)


def _minutes_miss_beacons(conn: psycopg.Connection, bounds: dict, first: datetime) -> bool:
    """Whether the minute rows before `first` count other beacons than raw holds there. Raw
    beacons gone (past their retention) never count as a difference: the rollups outlive
    them and are kept."""
    held = {"start": bounds["start"], "end": first}
    raw = conn.execute(_RAW_COUNT_SQL, held).fetchone()[0]
    return raw > 0 and raw != conn.execute(_ROLLED_COUNT_SQL, held).fetchone()[0]


def floor_hour(instant: datetime) -> datetime:
    return instant.replace(minute=0, second=0, microsecond=0)


def hours_of(start: datetime, end: datetime) -> Iterator[datetime]:
    """The hour starts of [start, end) (start is floored to the hour)."""
    hour = floor_hour(start)
    while hour < end:
        yield hour
        hour += HOUR


def resolve_run_interval(
    start: datetime | None, end: datetime | None, run_after: datetime, now: datetime
) -> tuple[datetime, datetime]:
    """The whole hours [start, end) a DAG run rolls up: its data interval widened to whole
    hours (scheduled and backfill runs, a manual run with a logical date or an interval) or,
    for a manual run without a logical date (no interval), the last hour closed at
    `run_after`. Raises ValueError when an hour of it has not ended at `now`: a published
    hour must be complete (`run_intervals.resolve_run_interval` with hours)."""
    return run_intervals.resolve_run_interval(start, end, run_after, now, run_intervals.HOUR)


def roll_up_interval(
    url: str, start: datetime, end: datetime, from_raw: bool = False,
    connections: int = ROLLUP_CONNECTIONS,
) -> list[HourRollup]:
    """Publish every hour of a data interval (what one DAG run or backfill run does), from
    the minute roller's minutes when it completed them and they count every raw beacon
    (`roll_up_hour` with `verify`), else from raw beacons, read on `connections` connections
    at once."""
    helpers = hour_rows.Helpers(url, connections)
    with psycopg.connect(url, autocommit=True) as conn:
        return [roll_up_hour(conn, hour, from_raw, verify=True, helpers=helpers)
                for hour in hours_of(start, end)]


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
