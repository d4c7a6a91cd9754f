"""Which data layer can answer a range at a granularity (CONTRACT §4, §6): the Grafana helpers."""

from __future__ import annotations

from datetime import datetime, timedelta

from edgestats_core.query import buckets
from edgestats_core.query.granularity import LABELS, NAMES, grafana_value, rank
from edgestats_core.query.v1_spec import (
    HISTORICAL_RETENTION_MONTHS,
    MAX_BUCKETS,
    REALTIME_MAX_RANGE,
    REALTIME_RETENTION,
)


def realtime_can_answer(start: datetime, end: datetime, granularity: str, now: datetime) -> bool:
    return (rank(granularity) <= rank("thirty_minute") and end - start <= REALTIME_MAX_RANGE
            and start >= now - REALTIME_RETENTION)


def historical_can_answer(start: datetime, granularity: str, now: datetime) -> bool:
    oldest = buckets.add_months(now, -HISTORICAL_RETENTION_MONTHS)
    return granularity != "second" and start >= oldest


def granularity_options(start: datetime, end: datetime, now: datetime) -> list[dict]:
    """Every granularity some layer answers for [start, end) in at most 10,000 buckets."""
    return [
        {"label": LABELS[g], "value": grafana_value(g)}
        for g in NAMES
        if (realtime_can_answer(start, end, g, now) or historical_can_answer(start, g, now))
        and buckets.count_buckets(start, end, g) <= MAX_BUCKETS
    ]


def dashboard_layer(start: datetime, granularity: str, now: datetime) -> str:
    """realtime for `second`, or up to thirty_minute over a range starting in the last 48 h;
    else historical-hour from `hour`, historical-minute below."""
    if granularity == "second" or (
        rank(granularity) <= rank("thirty_minute") and start >= now - timedelta(hours=48)
    ):
        return "realtime"
    return "historical-hour" if rank(granularity) >= rank("hour") else "historical-minute"
