"""Which hours a legacy window reads from rollups, and the rollup formulas' shape (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edgestats_core.metrics.definitions import (
    ROLLUP_SUMMARY_METRICS,
    STAT_METRICS,
    SUMMARY_METRICS,
)
from edgestats_core.query import planner
from edgestats_core.query.windows import legacy_window
from metrics_service.legacy_queries import usable_hours

NOW = datetime(2026, 11, 25, 21, 38, 5, tzinfo=UTC)
H = timedelta(hours=1)


def hours(start: datetime, end: datetime) -> frozenset[datetime]:
    out, hour = set(), start
    while hour < end:
        out.add(hour)
        hour += H
    return frozenset(out)


def test_only_whole_hours_inside_the_window_are_read_from_rollups():
    window = legacy_window("24h", NOW)  # 2026-11-24 21:38:05 .. 2026-11-25 21:38:05
    rolled = hours(datetime(2026, 11, 24, 20, tzinfo=UTC), datetime(2026, 11, 25, 22, tzinfo=UTC))
    usable = usable_hours(window, rolled)
    assert min(usable) == datetime(2026, 11, 24, 22, tzinfo=UTC)  # 21:00 is partial: raw
    assert max(usable) == datetime(2026, 11, 25, 20, tzinfo=UTC)  # 21:00 is partial: raw
    assert len(usable) == 23


def test_a_partial_first_hour_older_than_raw_retention_is_read_whole():
    window = legacy_window("2M", NOW)
    first = datetime(2026, 9, 26, 21, tzinfo=UTC)
    assert window.start == datetime(2026, 9, 26, 21, 38, 5, tzinfo=UTC)
    assert first in usable_hours(window, frozenset({first, first - H}))
    assert first - H not in usable_hours(window, frozenset({first - H}))
    one_month = legacy_window("1M", NOW)  # its first hour is still in raw: cut exactly
    assert usable_hours(one_month, frozenset({datetime(2026, 10, 26, 21, tzinfo=UTC)})) == set()


def test_calendar_months_are_whole_hours():
    window = legacy_window("LM", NOW)
    rolled = hours(datetime(2026, 9, 30, 23, tzinfo=UTC), datetime(2026, 11, 1, 1, tzinfo=UTC))
    usable = usable_hours(window, rolled)
    assert min(usable) == datetime(2026, 10, 1, tzinfo=UTC)
    assert max(usable) == datetime(2026, 10, 31, 23, tzinfo=UTC)


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime


def test_source_relation_exact_start_only_adds_the_raw_lower_bound():
    span = Span(NOW - timedelta(days=1), NOW)
    rolled = frozenset({datetime(2026, 11, 25, 10, tzinfo=UTC)})
    plain, plain_params = planner.source_relation("historical-hour", span, rolled)
    exact, exact_params = planner.source_relation("historical-hour", span, rolled,
                                                  exact_start=True)
    assert "raw_start" not in plain and "raw_start" not in plain_params
    assert exact.replace(' AND "time" >= %(raw_start)s', "") == plain
    assert exact_params == {**plain_params, "raw_start": span.start}


def test_every_legacy_metric_has_a_rollup_form():
    assert list(ROLLUP_SUMMARY_METRICS) == list(SUMMARY_METRICS)
    for name, metric in STAT_METRICS.items():
        assert metric.rollup_expression is not None, name
        for source in ("cdn", "p2p", None):
            sql = metric.rollup_expression(source)
            assert "session_id" not in sql  # rollup rows carry no session column
        # device breakdowns need the os/browser/connection dimensions the totals dropped
        assert metric.reads_totals == (metric.group_column is None), name
