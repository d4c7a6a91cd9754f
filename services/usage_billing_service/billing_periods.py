"""Billing periods of a subscription: [starts_at + k·months, starts_at + (k+1)·months).

Months are calendar months counted from `starts_at` (a day past the end of a shorter month
is clamped to its last day, always from `starts_at`, so Jan 31 → Feb 28 → Mar 31).
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime


def add_months(start: datetime, months: int) -> datetime:
    """`start` moved by whole calendar months, the day clamped to the month's length.

    >>> add_months(datetime(2026, 1, 31), 1)
    datetime.datetime(2026, 2, 28, 0, 0)
    """
    index = start.year * 12 + start.month - 1 + months
    year, month = divmod(index, 12)
    day = min(start.day, calendar.monthrange(year, month + 1)[1])
    return start.replace(year=year, month=month + 1, day=day)


def current_period_bounds(starts_at: datetime, period_months: int, at: datetime
                          ) -> tuple[datetime, datetime]:
    """The billing period [start, end) containing `at` (`at` ≥ `starts_at`), in UTC."""
    if starts_at.tzinfo is not None:
        starts_at, at = starts_at.astimezone(UTC), at.astimezone(UTC)
    months = (at.year - starts_at.year) * 12 + at.month - starts_at.month
    k = max(0, months // period_months)
    start = add_months(starts_at, k * period_months)
    while start > at and k > 0:  # `at` earlier in its month than starts_at's day/time
        k -= 1
        start = add_months(starts_at, k * period_months)
    end = add_months(starts_at, (k + 1) * period_months)
    while end <= at:
        k += 1
        start, end = end, add_months(starts_at, (k + 1) * period_months)
    return start, end
