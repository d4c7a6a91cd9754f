"""Bucket alignment in UTC for v1 granularities (CONTRACT §5, §6) and ISO-8601 instants.

`second` … `day` are epoch-aligned fixed lengths, `week` starts on Monday, `month`,
`quarter` and `year` are calendar periods. Every function is pure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edgestats_core.query.granularity import CALENDAR_MONTHS, FIXED_SECONDS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# 1970-01-05 was a Monday: weeks are aligned on it
MONDAY = datetime(1970, 1, 5, tzinfo=UTC)


def parse_instant(text: str) -> datetime:
    """An ISO-8601 date-time as aware UTC, sub-second part truncated; naive means UTC.

    >>> parse_instant("2012-01-01T10:12:30.987Z").isoformat()
    '2012-01-01T10:12:30+00:00'
    """
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def format_timestamp(instant: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.000Z`, the v1 `timestamp`."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def add_months(instant: datetime, months: int) -> datetime:
    """Shift by calendar months, clamping the day (31 Mar − 1 month = 28/29 Feb)."""
    index = instant.year * 12 + instant.month - 1 + months
    year, month = divmod(index, 12)
    day = instant.day
    while True:
        try:
            return instant.replace(year=year, month=month + 1, day=day)
        except ValueError:
            day -= 1
            if day < 28:
                raise


def align(instant: datetime, granularity: str) -> datetime:
    """The start of the bucket containing `instant`.

    >>> align(datetime(2026, 11, 25, 10, 7, tzinfo=UTC), "week").isoformat()
    '2026-11-23T00:00:00+00:00'
    >>> align(datetime(2026, 11, 25, 10, 7, tzinfo=UTC), "quarter").isoformat()
    '2026-10-01T00:00:00+00:00'
    """
    instant = instant.astimezone(UTC)
    if granularity == "week":
        days = (instant - MONDAY).days // 7 * 7
        return MONDAY + timedelta(days=days)
    if granularity in FIXED_SECONDS:
        step = FIXED_SECONDS[granularity]
        return EPOCH + timedelta(seconds=int((instant - EPOCH).total_seconds()) // step * step)
    months = CALENDAR_MONTHS[granularity]
    return instant.replace(month=(instant.month - 1) // months * months + 1, day=1,
                           hour=0, minute=0, second=0, microsecond=0)


def next_start(start: datetime, granularity: str) -> datetime | None:
    """The start of the bucket after the one starting at `start` (None past year 9999)."""
    try:
        if granularity in FIXED_SECONDS:
            return start + timedelta(seconds=FIXED_SECONDS[granularity])
        return add_months(start, CALENDAR_MONTHS[granularity])
    except (OverflowError, ValueError):
        return None


def bucket_seconds(start: datetime, granularity: str) -> float:
    """S: the full length of the bucket starting at `start`, in seconds."""
    if granularity in FIXED_SECONDS:
        return float(FIXED_SECONDS[granularity])
    end = next_start(start, granularity)
    return (end - start).total_seconds() if end else 365 * 86400.0


def count_buckets(start: datetime, end: datetime, granularity: str) -> int:
    """How many buckets overlap [start, end), without listing them (end > start)."""
    first = align(start, granularity)
    if granularity in FIXED_SECONDS:
        step = FIXED_SECONDS[granularity]
        return -(-int((end - first).total_seconds()) // step)
    months = CALENDAR_MONTHS[granularity]
    last = align(end - timedelta(seconds=1), granularity)
    span = (last.year - first.year) * 12 + last.month - first.month
    return span // months + 1


def bucket_starts(start: datetime, end: datetime, granularity: str) -> list[datetime]:
    """Starts of every bucket overlapping [start, end), oldest first."""
    out: list[datetime] = []
    current: datetime | None = align(start, granularity)
    while current is not None and current < end:
        out.append(current)
        current = next_start(current, granularity)
    return out
