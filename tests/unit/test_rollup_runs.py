"""Which hours a beacon_rollups run rolls up (rollups.resolve_run_interval), without Airflow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from metrics_service.rollups import resolve_run_interval


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 25, hour, minute, tzinfo=UTC)


NOW = at(15, 37)


@pytest.mark.parametrize(("start", "end", "run_after", "expected"), [
    # scheduled or backfill run: its data interval
    (at(9), at(10), at(10), (at(9), at(10))),
    # manual run with a logical date: the interval Airflow inferred (or the one entered)
    (at(9), at(12), at(15, 2), (at(9), at(12))),
    # an interval that is not whole hours is widened to them
    (at(9, 30), at(10, 15), at(15), (at(9), at(11))),
    # manual run without a logical date: the last hour closed when it was triggered
    (None, None, at(15, 2), (at(14), at(15))),
    (None, None, at(15), (at(14), at(15))),
    # an offset is read as the instant it is, the hours are UTC hours
    (datetime(2026, 11, 25, 15, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
     datetime(2026, 11, 25, 16, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
     at(11), (at(9), at(11))),
])
def test_run_interval(start, end, run_after, expected):
    assert resolve_run_interval(start, end, run_after, NOW) == expected


@pytest.mark.parametrize(("start", "end"), [
    (at(15), at(16)),       # the current hour
    (at(14, 30), at(15, 30)),  # widened, it reaches into the current hour
    (at(17), at(18)),       # the future
])
def test_an_hour_not_yet_closed_is_refused(start, end):
    with pytest.raises(ValueError, match="closed"):
        resolve_run_interval(start, end, NOW, NOW)


def test_airflow_datetimes():
    """Airflow passes pendulum DateTimes; their arithmetic drops a stdlib tzinfo."""
    pendulum = pytest.importorskip("pendulum")
    start, end = (pendulum.datetime(2026, 11, 25, h, tz="UTC") for h in (9, 10))
    assert resolve_run_interval(start, end, end, NOW) == (at(9), at(10))
    assert resolve_run_interval(None, None, pendulum.instance(at(15, 2)), NOW) == (at(14), at(15))
