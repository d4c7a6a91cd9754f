"""Usage facts from usage_events (CONTRACT §8): daily facts, hourly tag facts, billing-period
totals, and the catch-up that folds late events into buckets already computed.

Each computation replaces its bucket's rows in one transaction under a per-bucket advisory
lock, so re-runs and overlapping backfills never double count. Storage per day per
application is the largest sample of the day; conversion and bandwidth are sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import psycopg

from usage_billing_service.billing_periods import current_period_bounds

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
# An ingest transaction may commit this long after its rows' ingested_at (its start).
INGEST_MARGIN = timedelta(minutes=2)
LOCK_NAMESPACE = 7310  # + 0 day, + 1 tag hour, + 2 periods: (namespace, bucket) locks

DAY_SQL = """
INSERT INTO usage_daily_facts (user_id, type, day, application_id, bytes)
SELECT user_id, type, %(day)s::date, application_id,
       CASE WHEN type = 'storage' THEN max(bytes) ELSE sum(bytes) END
FROM usage_events
WHERE occurred_at >= %(start)s AND occurred_at < %(end)s
GROUP BY user_id, type, application_id
"""

TAG_HOUR_SQL = """
INSERT INTO usage_tag_hour_facts (user_id, hour, tag, application_id, bytes)
SELECT user_id, %(start)s, tag, application_id, sum(bytes)
FROM usage_events
WHERE occurred_at >= %(start)s AND occurred_at < %(end)s
  AND type = 'bandwidth' AND tag IS NOT NULL
GROUP BY user_id, tag, application_id
"""

COUNT_SQL = (
    "SELECT count(*) FROM usage_events WHERE occurred_at >= %(start)s AND occurred_at < %(end)s"
)


@dataclass(frozen=True)
class BucketRun:
    grain: str
    bucket: datetime
    events: int
    fact_rows: int


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _replace(conn: psycopg.Connection, grain: str, start: datetime, end: datetime) -> BucketRun:
    bounds = {"start": start, "end": end, "day": start.date()}
    lock_key = int(start.timestamp()) // 3600
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                     (LOCK_NAMESPACE + (0 if grain == "day" else 1), lock_key))
        if grain == "day":
            conn.execute("DELETE FROM usage_daily_facts WHERE day = %(day)s", bounds)
            rows = conn.execute(DAY_SQL, bounds).rowcount
        else:
            conn.execute("DELETE FROM usage_tag_hour_facts WHERE hour = %(start)s", bounds)
            rows = conn.execute(TAG_HOUR_SQL, bounds).rowcount
        events = conn.execute(COUNT_SQL, bounds).fetchone()[0]
        conn.execute(
            "INSERT INTO usage_fact_runs (grain, bucket, computed_at, events)"
            " VALUES (%s, %s, now(), %s) ON CONFLICT (grain, bucket) DO UPDATE"
            " SET computed_at = now(), events = EXCLUDED.events",
            (grain, start, events),
        )
    return BucketRun(grain, start, events, rows)


def compute_day(conn: psycopg.Connection, day: date) -> BucketRun:
    """Replace every user's daily facts of the UTC day `day`, atomically."""
    start = day_start(day)
    return _replace(conn, "day", start, start + DAY)


def compute_tag_hour(conn: psycopg.Connection, hour: datetime) -> BucketRun:
    """Replace every user's tag facts of the hour starting at `hour` (UTC, aligned)."""
    return _replace(conn, "tag_hour", hour, hour + HOUR)


PERIODS_SQL = """
SELECT user_id, subscription_id, starts_at, ends_at, period_months
FROM usage_subscriptions
WHERE starts_at < %(end)s AND (ends_at IS NULL OR ends_at > %(start)s)
"""

PERIOD_TOTALS_SQL = """
INSERT INTO usage_period_totals
    (user_id, subscription_id, period_start, period_end, type, bytes, computed_at)
SELECT %(user_id)s, %(subscription_id)s, %(start)s, %(end)s, type,
       CASE WHEN type = 'storage' THEN max(day_bytes) ELSE sum(day_bytes) END, now()
FROM (
    SELECT type, day, sum(application_bytes) AS day_bytes
    FROM (
        SELECT type, application_id, date_trunc('day', occurred_at, 'UTC') AS day,
               CASE WHEN type = 'storage' THEN max(bytes) ELSE sum(bytes) END
                   AS application_bytes
        FROM usage_events
        WHERE user_id = %(user_id)s AND occurred_at >= %(start)s AND occurred_at < %(end)s
        GROUP BY 1, 2, 3
    ) per_application
    GROUP BY 1, 2
) per_day
GROUP BY type
"""


def total_periods(conn: psycopg.Connection, start: datetime, end: datetime) -> int:
    """Recompute the totals of every billing period overlapping [start, end); returns how
    many periods. Storage's total is the peak daily storage of the user in the period."""
    done = 0
    for user_id, sub_id, starts_at, ends_at, months in conn.execute(
        PERIODS_SQL, {"start": start, "end": end}
    ).fetchall():
        at = max(start, starts_at)
        while at < end and (ends_at is None or at < ends_at):
            period_start, period_end = current_period_bounds(starts_at, months, at)
            if ends_at is not None:
                period_end = min(period_end, ends_at)
            params = {"user_id": user_id, "subscription_id": sub_id,
                      "start": period_start, "end": period_end}
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                             (LOCK_NAMESPACE + 2, f"{user_id}/{sub_id}"))
                conn.execute(
                    "DELETE FROM usage_period_totals WHERE user_id = %(user_id)s"
                    " AND subscription_id = %(subscription_id)s AND period_start = %(start)s",
                    params,
                )
                conn.execute(PERIOD_TOTALS_SQL, params)
            done += 1
            at = period_end
    return done


def compute_days(url: str, start: datetime, end: datetime) -> list[BucketRun]:
    """Daily facts of every UTC day starting in [start, end), then the totals of the billing
    periods overlapping them (what one daily DAG run or backfill run does)."""
    with psycopg.connect(url, autocommit=True) as conn:
        day, runs = start.astimezone(UTC).date(), []
        while day_start(day) < end:
            if day_start(day) >= start:
                runs.append(compute_day(conn, day))
            day += DAY
        total_periods(conn, start, end)
        return runs


def compute_tag_hours(url: str, start: datetime, end: datetime) -> list[BucketRun]:
    """Tag facts of every hour starting in [start, end) (one hourly DAG run)."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    if hour < start:
        hour += HOUR
    runs = []
    with psycopg.connect(url, autocommit=True) as conn:
        while hour < end:
            runs.append(compute_tag_hour(conn, hour))
            hour += HOUR
    return runs


LATE_SQL = """
WITH changed AS (
    SELECT date_trunc(%(unit)s, occurred_at, 'UTC') AS bucket, max(ingested_at) AS last_ingest
    FROM usage_events
    WHERE ingested_at > %(since)s
    GROUP BY 1
)
SELECT changed.bucket FROM changed
JOIN usage_fact_runs runs ON runs.grain = %(grain)s AND runs.bucket = changed.bucket
WHERE changed.last_ingest > runs.computed_at - %(margin)s
ORDER BY 1
"""


def catch_up_late(url: str) -> list[BucketRun]:
    """Recompute every computed day and tag hour that got events ingested after (or just
    before) its computation, and the periods of those days; the scan of ingested_at (BRIN)
    starts where the previous one ended, so late data is never missed."""
    with psycopg.connect(url, autocommit=True) as conn:
        scanned_to = conn.execute("SELECT scanned_to FROM usage_fact_watermark").fetchone()[0]
        now = conn.execute("SELECT now()").fetchone()[0]
        done: list[BucketRun] = []
        for grain, unit in (("day", "day"), ("tag_hour", "hour")):
            late = [row[0] for row in conn.execute(LATE_SQL, {
                "unit": unit, "grain": grain, "since": scanned_to - INGEST_MARGIN,
                "margin": INGEST_MARGIN,
            })]
            for bucket in late:
                if grain == "day":
                    done.append(compute_day(conn, bucket.astimezone(UTC).date()))
                    total_periods(conn, bucket, bucket + DAY)
                else:
                    done.append(compute_tag_hour(conn, bucket))
        conn.execute("UPDATE usage_fact_watermark SET scanned_to = %s", (now,))
    return done
