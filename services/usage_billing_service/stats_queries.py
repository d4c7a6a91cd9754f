"""The Statistics resource's reads: complete, computed days (hours) from the facts, every
other day (hour) — today, and any not yet computed — live from usage_events, so an answer
never has a gap (docs/usage-stats.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from edgestats_core.db import Database
from usage_billing_service.billing_periods import current_period_bounds
from usage_billing_service.stats_answers import Row, Span, TagTotal
from usage_billing_service.stats_params import StatsQuery, TagQuery

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
FIRST_DAY = date(1970, 1, 1)

# per application and day, then the answer's rows (PER_DAY or TOTALS) for the view
DAILY_SQL = """
WITH computed AS (
    SELECT bucket FROM usage_fact_runs
    WHERE grain = 'day' AND bucket >= %(lo)s AND bucket < %(hi)s AND bucket < %(today)s
), per_application AS (
    SELECT application_id, day, bytes FROM usage_daily_facts
    WHERE user_id = %(user_id)s AND type = %(type)s AND day >= %(lo_day)s AND day < %(hi_day)s
      AND day < %(today_day)s
    UNION ALL
    SELECT application_id, (date_trunc('day', occurred_at, 'UTC') AT TIME ZONE 'UTC')::date,
           CASE WHEN type = 'storage' THEN max(bytes) ELSE sum(bytes) END
    FROM usage_events
    WHERE user_id = %(user_id)s AND type = %(type)s
      AND occurred_at >= %(lo)s AND occurred_at < %(hi)s AND occurred_at <= %(now)s
      AND date_trunc('day', occurred_at, 'UTC') NOT IN (SELECT bucket FROM computed)
    GROUP BY 1, 2, type
)
{rows}
"""
# a fact per day (per application and day in the application view)
PER_DAY = """
SELECT {app} day AS first_day, day AS last_day, sum(bytes)::bigint AS bytes
FROM per_application GROUP BY {app} day ORDER BY day {order}
"""
# action=aggregate: one total per user (or application) with its first and last day
TOTALS = """
SELECT {app} min(day) AS first_day, max(day) AS last_day, sum(bytes)::bigint AS bytes
FROM per_application {group} {order}
"""

# per application, tag and hour; the same split between facts and live events
TAG_HOURS_SQL = """
WITH computed AS (
    SELECT bucket FROM usage_fact_runs
    WHERE grain = 'tag_hour' AND bucket >= %(lo)s AND bucket < %(hi)s AND bucket < %(this_hour)s
), per_hour AS (
    SELECT application_id, tag, hour, bytes FROM usage_tag_hour_facts
    WHERE user_id = %(user_id)s AND hour >= %(lo)s AND hour < %(hi)s AND hour < %(this_hour)s
      AND (%(tag)s::text IS NULL OR tag = %(tag)s)
      AND (%(application_id)s::text IS NULL OR application_id = %(application_id)s)
    UNION ALL
    SELECT application_id, tag, date_trunc('hour', occurred_at, 'UTC'), sum(bytes)
    FROM usage_events
    WHERE user_id = %(user_id)s AND type = 'bandwidth' AND tag IS NOT NULL
      AND occurred_at >= %(lo)s AND occurred_at < %(hi)s AND occurred_at <= %(now)s
      AND (%(tag)s::text IS NULL OR tag = %(tag)s)
      AND (%(application_id)s::text IS NULL OR application_id = %(application_id)s)
      AND date_trunc('hour', occurred_at, 'UTC') NOT IN (SELECT bucket FROM computed)
    GROUP BY 1, 2, 3
)
"""
TAG_SQL = TAG_HOURS_SQL + """
SELECT application_id, hour, sum(bytes)::bigint AS bytes FROM per_hour
GROUP BY 1, 2 ORDER BY 2, 1
"""
TOP_SQL = TAG_HOURS_SQL + """
SELECT application_id, tag, sum(bytes)::bigint AS bytes, min(hour) AS first_hour,
       max(hour) AS last_hour
FROM per_hour GROUP BY 1, 2
"""

SUBSCRIPTION_SQL = """
SELECT starts_at, ends_at, period_months FROM usage_subscriptions
WHERE user_id = %s AND starts_at <= %s AND (ends_at IS NULL OR ends_at > %s)
ORDER BY starts_at DESC LIMIT 1
"""


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


async def _current_period(db: Database, user_id: str, now: datetime
                          ) -> tuple[datetime, datetime] | None:
    rows = await db.fetch(SUBSCRIPTION_SQL, (user_id, now, now))
    if not rows:
        return None
    start, end = current_period_bounds(rows[0]["starts_at"], rows[0]["period_months"], now)
    return start, min(end, rows[0]["ends_at"]) if rows[0]["ends_at"] else end


async def daily_rows(db: Database, query: StatsQuery, now: datetime) -> list[Span]:
    """Per-day amounts (per application in the application view) of days overlapping the
    range, up to today, sorted by day then application; with `aggregate`, one span per
    user (application) from its first to its last day with usage."""
    start, end = query.from_date, query.to_date
    if query.current_subscription:
        period = await _current_period(db, query.user_id, now)
        if period is None:
            return []
        start = max(start, period[0]) if start else period[0]
        end = min(end, period[1]) if end else period[1]
        if start >= end:
            return []
    today = now.date()
    lo_day = start.date() if start else FIRST_DAY
    hi_day = today + DAY
    if end is not None and end < _day_start(hi_day):  # keeps date.max out of the arithmetic
        hi_day = end.date() + (DAY if end.time() != time() else timedelta())
    if lo_day >= hi_day:
        return []
    by_app = query.view == "application"
    if query.aggregate:
        rows_sql = TOTALS.format(app="application_id," if by_app else "",
                                 group="GROUP BY application_id" if by_app else "",
                                 order="ORDER BY application_id" if by_app else "")
    else:
        rows_sql = PER_DAY.format(app="application_id," if by_app else "",
                                  order=", application_id" if by_app else "")
    sql = DAILY_SQL.format(rows=rows_sql)
    rows = await db.fetch(sql, {
        "user_id": query.user_id, "type": query.type, "lo_day": lo_day, "hi_day": hi_day,
        "lo": _day_start(lo_day), "hi": _day_start(hi_day), "today": _day_start(today),
        "today_day": today, "now": now,
    })
    return [Span(r.get("application_id"), r["first_day"], r["last_day"], r["bytes"])
            for r in rows if r["bytes"] is not None]


def _hour_params(query: TagQuery, now: datetime) -> dict | None:
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    lo = query.from_date.replace(minute=0, second=0, microsecond=0) if query.from_date else (
        _day_start(FIRST_DAY))
    hi = this_hour + HOUR
    if query.to_date is not None and query.to_date < hi:  # (no arithmetic near datetime.max)
        end_hour = query.to_date.replace(minute=0, second=0, microsecond=0)
        hi = min(hi, end_hour if end_hour == query.to_date else end_hour + HOUR)
    if lo >= hi:
        return None
    return {"user_id": query.user_id, "tag": query.tag, "application_id": query.application_id,
            "lo": lo, "hi": hi, "this_hour": this_hour, "now": now}


async def tag_rows(db: Database, query: TagQuery, now: datetime) -> list[Row]:
    """Per (hour, application) bandwidth of the query's tag, sorted."""
    params = _hour_params(query, now)
    if params is None:
        return []
    rows = await db.fetch(TAG_SQL, params)
    return [Row(r["application_id"], r["hour"].astimezone(UTC), r["bytes"]) for r in rows]


async def tag_totals(db: Database, query: TagQuery, now: datetime) -> list[TagTotal]:
    """Every tag's bandwidth per application over the range."""
    params = _hour_params(query, now)
    if params is None:
        return []
    rows = await db.fetch(TOP_SQL, params)
    return [TagTotal(r["application_id"], r["tag"], r["bytes"], r["first_hour"].astimezone(UTC),
                     r["last_hour"].astimezone(UTC)) for r in rows]
