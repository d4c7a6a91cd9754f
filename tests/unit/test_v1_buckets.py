"""Granularities, ISO-8601 instants and UTC bucket alignment of the v1 metrics (CONTRACT §6)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edgestats_core.query import buckets
from edgestats_core.query.granularity import (
    NAMES,
    grafana_value,
    parse_grafana_value,
    parse_granularity,
)


def t(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(("text", "name"), [
    ("second", "second"), ("PT1S", "second"), ("PT1M", "minute"), ("PT15M", "fifteen_minute"),
    ("PT30M", "thirty_minute"), ("PT1H", "hour"), ("P1D", "day"), ("P1W", "week"),
    ("P1M", "month"), ("P3M", "quarter"), ("P1Y", "year"), ("year", "year"),
    ("PT5M", None), ("Second", None), ("", None), ("P1m", None),
])
def test_parse_granularity(text, name):
    assert parse_granularity(text) == name


def test_grafana_values_round_trip():
    assert [grafana_value(g) for g in NAMES] == [
        "T1S", "T1M", "T15M", "T30M", "T1H", "1D", "1W", "1M", "3M", "1Y"]
    assert all(parse_grafana_value(grafana_value(g)) == g for g in NAMES)


@pytest.mark.parametrize(("text", "expected"), [
    ("2012-01-01T10:12:30.000Z", t(2012, 1, 1, 10, 12, 30)),
    ("2012-01-01T10:12:30", t(2012, 1, 1, 10, 12, 30)),
    ("2012-01-01T10:12:30.999999Z", t(2012, 1, 1, 10, 12, 30)),
    ("2012-01-01T10:12:30+02:00", t(2012, 1, 1, 8, 12, 30)),
    ("2012-01-01", t(2012, 1, 1)),
])
def test_parse_instant(text, expected):
    assert buckets.parse_instant(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2012-13-01T00:00:00", "", "12:00"])
def test_parse_instant_rejects(text):
    with pytest.raises(ValueError):
        buckets.parse_instant(text)


@pytest.mark.parametrize(("granularity", "start"), [
    ("second", t(2026, 11, 25, 10, 7, 13)),
    ("minute", t(2026, 11, 25, 10, 7)),
    ("fifteen_minute", t(2026, 11, 25, 10, 0)),
    ("thirty_minute", t(2026, 11, 25, 10, 0)),
    ("hour", t(2026, 11, 25, 10)),
    ("day", t(2026, 11, 25)),
    ("week", t(2026, 11, 23)),          # a Monday
    ("month", t(2026, 11, 1)),
    ("quarter", t(2026, 10, 1)),
    ("year", t(2026, 1, 1)),
])
def test_align(granularity, start):
    assert buckets.align(t(2026, 11, 25, 10, 7, 13), granularity) == start


def test_week_on_a_monday_and_a_sunday():
    assert buckets.align(t(2026, 11, 23), "week") == t(2026, 11, 23)
    assert buckets.align(t(2026, 11, 22, 23, 59, 59), "week") == t(2026, 11, 16)


@pytest.mark.parametrize(("start", "granularity", "seconds"), [
    (t(2026, 2, 1), "month", 28 * 86400), (t(2024, 2, 1), "month", 29 * 86400),
    (t(2026, 1, 1), "quarter", 90 * 86400), (t(2024, 1, 1), "year", 366 * 86400),
    (t(2026, 1, 5), "week", 7 * 86400), (t(2026, 1, 5), "fifteen_minute", 900),
])
def test_bucket_seconds_is_the_full_length(start, granularity, seconds):
    assert buckets.bucket_seconds(start, granularity) == seconds


@pytest.mark.parametrize(("start", "end", "granularity", "count"), [
    (t(2026, 1, 1, 10, 0, 30), t(2026, 1, 1, 11, 0, 1), "minute", 61),
    (t(2026, 1, 1), t(2026, 1, 2), "hour", 24),
    (t(2026, 1, 31), t(2026, 3, 1), "month", 2),
    (t(2026, 1, 31), t(2026, 3, 1, 0, 0, 1), "month", 3),
    (t(2025, 12, 31), t(2026, 1, 1, 0, 0, 1), "year", 2),
    (t(2026, 11, 22), t(2026, 11, 24), "week", 2),
    (t(2026, 2, 15), t(2026, 8, 15), "quarter", 3),
])
def test_count_buckets_equals_the_listed_buckets(start, end, granularity, count):
    assert buckets.count_buckets(start, end, granularity) == count
    assert len(buckets.bucket_starts(start, end, granularity)) == count


def test_bucket_starts_near_the_end_of_time():
    starts = buckets.bucket_starts(t(9998, 6, 1), t(9999, 12, 31), "year")
    assert starts == [t(9998, 1, 1), t(9999, 1, 1)]


def test_add_months_clamps_the_day():
    assert buckets.add_months(t(2026, 3, 31), -1) == t(2026, 2, 28)
    assert buckets.add_months(t(2026, 11, 25, 10), -13) == t(2025, 10, 25, 10)


def test_format_timestamp():
    assert buckets.format_timestamp(t(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000Z"
