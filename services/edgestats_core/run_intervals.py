"""Which whole UTC periods (hours, days) a DAG run computes, from what Airflow 3 hands a task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAMES = {HOUR: "hour", DAY: "day"}


def utc(instant: datetime) -> datetime:
    """The instant as a plain UTC datetime: whole UTC periods even from an offset such as
    +05:30, and Airflow's pendulum DateTimes drop a stdlib tzinfo in arithmetic."""
    at = instant.astimezone(UTC)
    return datetime(at.year, at.month, at.day, at.hour, at.minute, at.second, at.microsecond,
                    tzinfo=UTC)


def floor_period(instant: datetime, period: timedelta) -> datetime:
    """The start of the UTC period (a divisor of a day: hour, day) holding `instant`.

    >>> floor_period(datetime(2026, 11, 25, 10, 37, tzinfo=UTC), DAY).isoformat()
    '2026-11-25T00:00:00+00:00'
    """
    at = utc(instant)
    return _EPOCH + (at - _EPOCH) // period * period


def resolve_run_interval(
    start: datetime | None, end: datetime | None, run_after: datetime, now: datetime,
    period: timedelta,
) -> tuple[datetime, datetime]:
    """The whole UTC periods [start, end) a DAG run computes: its data interval widened to
    whole periods (scheduled and backfill runs, a manual run with a logical date or an
    interval) or, for a manual run without a logical date (no interval), the last period
    closed at `run_after`. Raises ValueError when a period of it has not ended at `now`:
    a period is computed once it is closed."""
    if start is None or end is None:
        end = floor_period(run_after, period)
        start = end - period
    start, ceiled = floor_period(start, period), floor_period(end, period)
    end = ceiled if ceiled >= utc(end) else ceiled + period
    if end > now:
        name = _NAMES.get(period, f"{period} period")
        raise ValueError(f"{start.isoformat()} to {end.isoformat()} has not ended at"
                         f" {now.isoformat()}: only closed {name}s are computed")
    return start, end
