"""Legacy `time=` windows (CONTRACT §5): the window's bounds and its series resolution."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DAY = 86400
# time value -> (window length in seconds or None for calendar months, series resolution seconds)
WINDOWS: dict[str, tuple[int | None, int]] = {
    "live": (5, 5),
    "10m": (600, 5),
    "1h": (3600, 30),
    "24h": (DAY, 900),
    "1w": (7 * DAY, 3600),
    "1M": (30 * DAY, DAY),
    "2M": (60 * DAY, DAY),
    "CM": (None, DAY),
    "LM": (None, DAY),
}
TIME_VALUES: list[str] = list(WINDOWS)
REPORT_SECONDS = 5


@dataclass(frozen=True)
class Window:
    """A half-open interval [start, end) and the bucket length of its series."""

    start: datetime
    end: datetime
    resolution_seconds: int

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def floor_to(instant: datetime, seconds: int) -> datetime:
    """Floor an aware datetime to a multiple of `seconds` since the epoch (UTC-aligned).

    >>> floor_to(datetime(2026, 1, 1, 10, 0, 7, 900, tzinfo=UTC), 5).isoformat()
    '2026-01-01T10:00:05+00:00'
    """
    epoch = int(instant.timestamp()) // seconds * seconds
    return datetime.fromtimestamp(epoch, UTC)


def ceil_to(instant: datetime, seconds: int) -> datetime:
    """The smallest multiple of `seconds` since the epoch at or after `instant`."""
    floored = floor_to(instant, seconds)
    return floored if floored == instant else floored + timedelta(seconds=seconds)


def month_start(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def legacy_window(time: str, now: datetime) -> Window:
    """The window a legacy `time` value names, ending at `now` floored to 5 s."""
    length, resolution = WINDOWS[time]
    end = floor_to(now, REPORT_SECONDS)
    if time == "CM":
        return Window(month_start(end), end, resolution)
    if time == "LM":
        this_month = month_start(end)
        return Window(month_start(this_month - timedelta(days=1)), this_month, resolution)
    assert length is not None
    return Window(end - timedelta(seconds=length), end, resolution)
