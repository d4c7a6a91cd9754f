"""v1 granularities (CONTRACT §6): enum names, ISO-8601 periods, Grafana values and lengths."""

from __future__ import annotations

# finest first; the seed's enum
NAMES: tuple[str, ...] = (
    "second", "minute", "fifteen_minute", "thirty_minute", "hour",
    "day", "week", "month", "quarter", "year",
)  # fmt: skip
ISO_PERIODS: dict[str, str] = {
    "PT1S": "second", "PT1M": "minute", "PT15M": "fifteen_minute", "PT30M": "thirty_minute",
    "PT1H": "hour", "P1D": "day", "P1W": "week", "P1M": "month", "P3M": "quarter", "P1Y": "year",
}  # fmt: skip
ISO_OF: dict[str, str] = {name: iso for iso, name in ISO_PERIODS.items()}
LABELS: dict[str, str] = {
    "second": "1 second", "minute": "1 minute", "fifteen_minute": "15 minutes",
    "thirty_minute": "30 minutes", "hour": "1 hour", "day": "1 day", "week": "1 week",
    "month": "1 month", "quarter": "3 months", "year": "1 year",
}  # fmt: skip
# fixed-length granularities in seconds; month, quarter and year are calendar periods
FIXED_SECONDS: dict[str, int] = {
    "second": 1, "minute": 60, "fifteen_minute": 900, "thirty_minute": 1800,
    "hour": 3600, "day": 86400, "week": 7 * 86400,
}  # fmt: skip
CALENDAR_MONTHS: dict[str, int] = {"month": 1, "quarter": 3, "year": 12}


def parse_granularity(text: str) -> str | None:
    """The enum name for an enum name or ISO period, None when it is neither.

    >>> parse_granularity("PT15M"), parse_granularity("week"), parse_granularity("PT2M")
    ('fifteen_minute', 'week', None)
    """
    if text in NAMES:
        return text
    return ISO_PERIODS.get(text)


def grafana_value(name: str) -> str:
    """The Grafana variable value: the ISO period without its leading P (`T1M`, `1D`)."""
    return ISO_OF[name][1:]


def parse_grafana_value(text: str) -> str | None:
    """A Grafana value (`T1M`), an ISO period (`PT1M`) or an enum name, to the enum name."""
    return parse_granularity(text) or ISO_PERIODS.get("P" + text)


def rank(name: str) -> int:
    """Position from the finest (second = 0) to the coarsest (year = 9)."""
    return NAMES.index(name)
