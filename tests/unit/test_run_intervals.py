"""Which whole hours or days a DAG run computes (run_intervals.resolve_run_interval), without
Airflow: usage_facts_hourly and beacon_rollups by the hour, usage_facts_daily by the day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from edgestats_core.run_intervals import DAY, HOUR, floor_period, resolve_run_interval


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


NOW = at(25, 15, 37)
IST = timezone(timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(("start", "end", "run_after", "period", "expected"), [
    # scheduled or backfill run: its data interval
    (at(25, 9), at(25, 10), at(25, 10), HOUR, (at(25, 9), at(25, 10))),
    (at(24), at(25), at(25), DAY, (at(24), at(25))),
    # manual run with a logical date: the interval Airflow inferred (or the one entered)
    (at(25, 9), at(25, 12), at(25, 15, 2), HOUR, (at(25, 9), at(25, 12))),
    (at(20), at(23), at(25, 15, 2), DAY, (at(20), at(23))),
    # an interval that is not whole periods is widened to them
    (at(25, 9, 30), at(25, 10, 15), at(25, 15), HOUR, (at(25, 9), at(25, 11))),
    (at(22, 23), at(24, 1), at(25, 15), DAY, (at(22), at(25))),
    # manual run without a logical date: the last period closed when it was triggered
    (None, None, at(25, 15, 2), HOUR, (at(25, 14), at(25, 15))),
    (None, None, at(25, 15), HOUR, (at(25, 14), at(25, 15))),
    (None, None, at(25, 15, 2), DAY, (at(24), at(25))),
    (None, None, at(25), DAY, (at(24), at(25))),
    # an offset is read as the instant it is, the periods are UTC periods
    (datetime(2026, 11, 25, 15, 0, tzinfo=IST), datetime(2026, 11, 25, 16, 0, tzinfo=IST),
     at(25, 11), HOUR, (at(25, 9), at(25, 11))),
    (datetime(2026, 11, 24, 3, 0, tzinfo=IST), datetime(2026, 11, 25, 3, 0, tzinfo=IST),
     at(25, 1), DAY, (at(23), at(25))),
    (None, None, datetime(2026, 11, 25, 2, 0, tzinfo=IST), DAY, (at(23), at(24))),
])
def test_run_interval(start, end, run_after, period, expected):
    assert resolve_run_interval(start, end, run_after, NOW, period) == expected


@pytest.mark.parametrize(("start", "end", "period"), [
    (at(25, 15), at(25, 16), HOUR),        # the current hour
    (at(25, 14, 30), at(25, 15, 30), HOUR),  # widened, it reaches into the current hour
    (at(25), at(26), DAY),                 # today
    (at(24), at(25, 0, 1), DAY),           # widened, it reaches into today
    (at(27), at(28), DAY),                 # the future
])
def test_a_period_not_yet_closed_is_refused(start, end, period):
    with pytest.raises(ValueError, match="only closed (hour|day)s"):
        resolve_run_interval(start, end, NOW, NOW, period)


def test_today_is_refused_until_midnight():
    with pytest.raises(ValueError, match="closed days"):
        resolve_run_interval(None, None, at(26), at(25, 23, 59), DAY)
    assert resolve_run_interval(None, None, at(26), at(26), DAY) == (at(25), at(26))


def test_airflow_datetimes():
    """Airflow passes pendulum DateTimes; their arithmetic drops a stdlib tzinfo."""
    pendulum = pytest.importorskip("pendulum")
    start, end = (pendulum.datetime(2026, 11, d, tz="UTC") for d in (23, 24))
    assert resolve_run_interval(start, end, end, NOW, DAY) == (at(23), at(24))
    assert resolve_run_interval(start, end, end, NOW, HOUR) == (at(23), at(24))
    assert resolve_run_interval(None, None, pendulum.instance(at(25, 15, 2)), NOW, DAY) == (
        at(24), at(25))
    local = pendulum.datetime(2026, 11, 25, 3, 0, tz="Asia/Kolkata")  # 24th 21:30 UTC
    assert resolve_run_interval(None, None, local, NOW, HOUR) == (at(24, 20), at(24, 21))
    assert type(floor_period(local, DAY)) is datetime
