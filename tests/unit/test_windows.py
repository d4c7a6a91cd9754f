"""Legacy time windows and bucket flooring (CONTRACT §5)."""

from datetime import UTC, datetime

import pytest

from edgestats_core.query.windows import floor_to, legacy_window


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("time", "start", "end", "resolution"),
    [
        ("live", utc(2026, 3, 10, 12, 0, 0), utc(2026, 3, 10, 12, 0, 5), 5),
        ("10m", utc(2026, 3, 10, 11, 50, 5), utc(2026, 3, 10, 12, 0, 5), 5),
        ("1h", utc(2026, 3, 10, 11, 0, 5), utc(2026, 3, 10, 12, 0, 5), 30),
        ("24h", utc(2026, 3, 9, 12, 0, 5), utc(2026, 3, 10, 12, 0, 5), 900),
        ("1w", utc(2026, 3, 3, 12, 0, 5), utc(2026, 3, 10, 12, 0, 5), 3600),
        ("1M", utc(2026, 2, 8, 12, 0, 5), utc(2026, 3, 10, 12, 0, 5), 86400),
        ("2M", utc(2026, 1, 9, 12, 0, 5), utc(2026, 3, 10, 12, 0, 5), 86400),
        ("CM", utc(2026, 3, 1), utc(2026, 3, 10, 12, 0, 5), 86400),
        ("LM", utc(2026, 2, 1), utc(2026, 3, 1), 86400),
    ],
)
def test_windows_end_at_now_floored_to_5_seconds(time, start, end, resolution):
    window = legacy_window(time, utc(2026, 3, 10, 12, 0, 9))
    assert (window.start, window.end, window.resolution_seconds) == (start, end, resolution)


def test_last_month_across_the_year():
    window = legacy_window("LM", utc(2026, 1, 1, 0, 0, 2))
    assert (window.start, window.end) == (utc(2025, 12, 1), utc(2026, 1, 1))


def test_current_month_at_its_first_instant_is_empty():
    window = legacy_window("CM", utc(2026, 4, 1, 0, 0, 3))
    assert window.seconds == 0


@pytest.mark.parametrize(
    ("instant", "seconds", "expected"),
    [
        (utc(2026, 1, 1, 10, 7, 59), 900, utc(2026, 1, 1, 10, 0)),
        (utc(2026, 1, 1, 23, 59, 59), 86400, utc(2026, 1, 1)),
        (utc(2026, 1, 1, 10, 0, 30), 30, utc(2026, 1, 1, 10, 0, 30)),
    ],
)
def test_floor_to_is_utc_aligned(instant, seconds, expected):
    assert floor_to(instant, seconds) == expected
