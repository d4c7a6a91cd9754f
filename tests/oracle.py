"""Independent oracle for the Legacy Stats API (CONTRACT.md §3 and §5, seed 000).

The test suite's own implementation of the legacy answers, in plain Python (no database,
no SQL), computed from the beacons a test inserted. Its results are compared with what
the real service answers over HTTP, so it follows the contract literally and favours
obvious correctness over speed.

Beacons are dicts keyed by Druid column names: ``__time`` is a tz-aware UTC datetime, an
absent key or ``None`` is null.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

Beacon = dict[str, Any]
Row = dict[str, Any]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = 86400

# Fixed window lengths in seconds; "CM" and "LM" are calendar months (see `window`).
WINDOW_SECONDS: dict[str, int] = {
    "live": 5,
    "10m": 600,
    "1h": 3600,
    "24h": DAY,
    "1w": 7 * DAY,
    "1M": 30 * DAY,
    "2M": 60 * DAY,
}

# Series bucket length in seconds for each `time=` value.
RESOLUTION_SECONDS: dict[str, int] = {
    "live": 5,
    "10m": 5,
    "1h": 30,
    "24h": 900,
    "1w": 3600,
    "1M": DAY,
    "2M": DAY,
    "CM": DAY,
    "LM": DAY,
}

SOURCES = ("cdn", "p2p")

# Summary levels: the row key fields and the beacon columns they are grouped by.
LEVEL_KEYS: dict[str, tuple[str, ...]] = {
    "channel": ("channel_id",),
    "stream": ("stream_id",),
    "representation": ("bitrate", "representation_id"),
}
LEVEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "channel": ("ChannelId",),
    "stream": ("StreamId",),
    "representation": ("Bitrate", "RepresentationId"),
}

# Stats series: per-source averages over beacons with that Source.
AVERAGE_COLUMNS: dict[str, str] = {
    "buffer_health": "BufferHealth",
    "buffer_filling_rate": "AggregateBufferFillingRate",
    "dropped_frames": "DroppedFrames",
}
THROUGHPUT_COLUMNS: dict[str, str] = {
    "cdn": "CdnDownlinkThroughput",
    "p2p": "P2pDownlinkThroughput",
}
RESPONSE_TIME_COLUMNS: dict[str, str] = {
    "cdn": "CdnResponseTime",
    "p2p": "P2pResponseTime",
}
# Device breakdowns: response key and the column counted per distinct value.
DEVICE_COLUMNS: dict[str, tuple[str, str]] = {
    "os": ("operating_systems", "OsName"),
    "platforms": ("platforms", "BrowserName"),
    "connection_types": ("connection_types", "ConnectionType"),
}
SOURCE_METRICS = ("throughput", "content_request_response_times", *AVERAGE_COLUMNS)


# --- time -----------------------------------------------------------------------------


def epoch_seconds(moment: datetime) -> int:
    """Whole seconds from the epoch to ``moment`` (floored)."""
    return (moment - EPOCH) // timedelta(seconds=1)


def from_epoch_seconds(seconds: int) -> datetime:
    """The UTC datetime ``seconds`` after the epoch."""
    return EPOCH + timedelta(seconds=seconds)


def _month_start(moment: datetime) -> datetime:
    """00:00 UTC on the first day of ``moment``'s month."""
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def window(now: datetime, time: str) -> tuple[datetime, datetime]:
    """The ``[start, end)`` window of a legacy ``time=`` value at instant ``now``."""
    now_seconds = epoch_seconds(now)
    end = from_epoch_seconds(now_seconds - now_seconds % 5)
    if time == "CM":
        return _month_start(end), end
    if time == "LM":
        this_month = _month_start(end)
        return _month_start(this_month - timedelta(days=1)), this_month
    if time not in WINDOW_SECONDS:
        raise ValueError(f"unknown time {time!r}")
    return end - timedelta(seconds=WINDOW_SECONDS[time]), end


def bucket_start(moment: datetime, resolution: int) -> int:
    """Epoch seconds of the start of the ``resolution``-second bucket holding ``moment``."""
    return epoch_seconds(moment) // resolution * resolution


def pretty_viewing_time(seconds: float) -> str:
    """``str(timedelta(seconds=floor(seconds)))``, e.g. ``"1 day, 2:03:04"``."""
    return str(timedelta(seconds=math.floor(seconds)))


# --- beacon selection -----------------------------------------------------------------


def in_scope(
    beacons: Iterable[Beacon],
    customer_id: str,
    channel_id: str | None = None,
    stream_id: str | None = None,
    bitrate: str | None = None,
    representation_id: str | None = None,
) -> list[Beacon]:
    """Beacons of the customer, channel and stream; bitrate filters apply at stream scope."""
    if stream_id is not None and channel_id is None:
        raise ValueError("stream scope needs a channel_id")
    selected = []
    for beacon in beacons:
        if beacon.get("CustomerId") != customer_id:
            continue
        if channel_id is not None and beacon.get("ChannelId") != channel_id:
            continue
        if stream_id is not None:
            if beacon.get("StreamId") != stream_id:
                continue
            if bitrate is not None and beacon.get("Bitrate") != bitrate:
                continue
            if representation_id is not None and beacon.get("RepresentationId") != (
                representation_id
            ):
                continue
        selected.append(beacon)
    return selected


def in_window(beacons: Iterable[Beacon], start: datetime, end: datetime) -> list[Beacon]:
    """Beacons with ``start <= __time < end``."""
    return [beacon for beacon in beacons if start <= beacon["__time"] < end]


def _select(
    beacons: Iterable[Beacon],
    customer_id: str,
    now: datetime,
    time: str,
    channel_id: str | None,
    stream_id: str | None,
    bitrate: str | None,
    representation_id: str | None,
) -> tuple[list[Beacon], datetime, datetime]:
    """Beacons in scope and in the window, with the window bounds."""
    start, end = window(now, time)
    scoped = in_scope(beacons, customer_id, channel_id, stream_id, bitrate, representation_id)
    return in_window(scoped, start, end), start, end


# --- metric helpers -------------------------------------------------------------------


def _total(beacons: Iterable[Beacon], column: str) -> float:
    """Σ column, nulls counting as 0."""
    return sum(beacon[column] for beacon in beacons if beacon.get(column) is not None)


def _mean(beacons: Iterable[Beacon], column: str) -> float | None:
    """Mean of the non-null values of column; None when there is none."""
    values = [beacon[column] for beacon in beacons if beacon.get(column) is not None]
    if not values:
        return None
    return sum(values) / len(values)


def _sessions(beacons: Iterable[Beacon]) -> set[str]:
    """Distinct non-null SessionId values."""
    return {beacon["SessionId"] for beacon in beacons if beacon.get("SessionId") is not None}


def _with_source(beacons: Iterable[Beacon], source: str) -> list[Beacon]:
    """Beacons whose Source equals ``source``."""
    return [beacon for beacon in beacons if beacon.get("Source") == source]


def summary_metrics(beacons: list[Beacon], seconds: int) -> Row:
    """The summary metrics of a set of beacons over ``seconds``, in the seed's key order."""
    cdn = _with_source(beacons, "cdn")
    p2p = _with_source(beacons, "p2p")
    compatible_cdn = [beacon for beacon in cdn if beacon.get("P2pCompatible") is True]
    not_compatible = [beacon for beacon in beacons if beacon.get("P2pCompatible") is False]

    def throughput(column: str) -> float:
        # Only an empty window (CM right at the 1st, 00:00) has no seconds: nothing to divide.
        return _total(beacons, column) / seconds if seconds else 0

    total_viewing_time = _total(beacons, "ViewingTime")
    return {
        "cdn_throughput": throughput("CdnDownlinkThroughput"),
        "p2p_throughput": throughput("P2pDownlinkThroughput"),
        "total_throughput": throughput("TotalDownlinkThroughput"),
        "cdn_devices": len(_sessions(compatible_cdn)),
        "p2p_devices": len(_sessions(p2p)),
        "not_compatible_devices": len(_sessions(not_compatible)),
        "cdn_viewing_time": _total(cdn, "ViewingTime"),
        "p2p_viewing_time": _total(p2p, "ViewingTime"),
        "total_viewing_time": total_viewing_time,
        "total_pretty_viewing_time": pretty_viewing_time(total_viewing_time),
    }


# --- summaries ------------------------------------------------------------------------


def _render_key(value: Any) -> Any:
    """A group key as shown in a row: null becomes ``""``."""
    return "" if value is None else value


def summary(
    beacons: Iterable[Beacon],
    customer_id: str,
    now: datetime,
    time: str,
    level: str,
    channel_id: str | None = None,
    stream_id: str | None = None,
    bitrate: str | None = None,
    representation_id: str | None = None,
) -> list[Row]:
    """Rows of ``/summary`` (level channel), ``…/summary`` per stream or per representation."""
    if level not in LEVEL_KEYS:
        raise ValueError(f"unknown level {level!r}")
    if level in ("stream", "representation") and channel_id is None:
        raise ValueError(f"level {level!r} needs a channel_id")
    if level == "representation" and stream_id is None:
        raise ValueError("level 'representation' needs a stream_id")
    selected, start, end = _select(
        beacons, customer_id, now, time, channel_id, stream_id, bitrate, representation_id
    )
    seconds = epoch_seconds(end) - epoch_seconds(start)

    groups: dict[tuple[Any, ...], list[Beacon]] = {}
    for beacon in selected:
        key = tuple(_render_key(beacon.get(column)) for column in LEVEL_COLUMNS[level])
        groups.setdefault(key, []).append(beacon)

    rows = []
    for key in sorted(groups):
        group = groups[key]
        row: Row = dict(zip(LEVEL_KEYS[level], key, strict=True))
        if level == "stream":
            uris = [b["MaskedStreamUri"] for b in group if b.get("MaskedStreamUri") is not None]
            row["stream_uri"] = max(uris) if uris else ""
        row.update(summary_metrics(group, seconds))
        rows.append(row)
    return rows


def summary_agg(
    beacons: Iterable[Beacon],
    customer_id: str,
    now: datetime,
    time: str,
    channel_id: str | None = None,
    stream_id: str | None = None,
    bitrate: str | None = None,
    representation_id: str | None = None,
) -> list[Row]:
    """The single row of ``…/summary/agg`` over every beacon in scope and window."""
    selected, start, end = _select(
        beacons, customer_id, now, time, channel_id, stream_id, bitrate, representation_id
    )
    seconds = epoch_seconds(end) - epoch_seconds(start)
    return [{"aggregate": "aggregate", **summary_metrics(selected, seconds)}]


def paginate(rows: list[Row], per_page: int, page: int) -> list[Row]:
    """The paginated shape of summary rows (``page`` is 0-based)."""
    if per_page <= 0 or page < 0:
        raise ValueError("per_page must be positive and page non-negative")
    return [
        {
            "total_pages": math.ceil(len(rows) / per_page),
            "page": page,
            "results": rows[page * per_page : (page + 1) * per_page],
        }
    ]


# --- stats series ---------------------------------------------------------------------


def _point_values(metric: str, source: str | None, bucket: list[Beacon], resolution: int) -> Row:
    """The value(s) of one series point (without ``datetime``)."""
    if metric == "throughput":
        total = _total(bucket, THROUGHPUT_COLUMNS[source])
        return {f"agg_throughput_{source}": total / resolution}
    if metric in AVERAGE_COLUMNS:
        mean = _mean(_with_source(bucket, source), AVERAGE_COLUMNS[metric])
        return {f"avg_{metric}_{source}": mean}
    if metric == "content_request_response_times":
        mean = _mean(bucket, RESPONSE_TIME_COLUMNS[source])
        return {f"avg_content_request_response_times_{source}": mean}
    if metric == "rebuffering":
        if source is not None:
            bucket = _with_source(bucket, source)
        playing = _total(bucket, "PlayingTime")
        ratio = _total(bucket, "BufferingTime") / playing if playing else 0
        return {"rebuffering_ratio": ratio}
    if metric in DEVICE_COLUMNS:
        key, column = DEVICE_COLUMNS[metric]
        by_value: dict[str, list[Beacon]] = {}
        for beacon in bucket:
            value = beacon.get(column)
            if value is not None and value != "":
                by_value.setdefault(value, []).append(beacon)
        return {key: {value: len(_sessions(by_value[value])) for value in sorted(by_value)}}
    raise ValueError(f"unknown metric {metric!r}")


def stats(
    beacons: Iterable[Beacon],
    customer_id: str,
    now: datetime,
    time: str,
    metric: str,
    source: str | None = None,
    channel_id: str | None = None,
    stream_id: str | None = None,
    bitrate: str | None = None,
    representation_id: str | None = None,
) -> list[Row]:
    """Points of a ``/stats/*`` series: one per bucket with a beacon in scope, oldest first.

    ``metric`` is one of throughput, buffer_health, buffer_filling_rate, dropped_frames,
    content_request_response_times, rebuffering, os, platforms, connection_types.
    """
    if metric in SOURCE_METRICS and source not in SOURCES:
        raise ValueError(f"metric {metric!r} needs source cdn or p2p, not {source!r}")
    if metric == "rebuffering" and source not in (None, *SOURCES):
        raise ValueError(f"bad source {source!r}")
    resolution = RESOLUTION_SECONDS[time]
    selected, _, _ = _select(
        beacons, customer_id, now, time, channel_id, stream_id, bitrate, representation_id
    )

    buckets: dict[int, list[Beacon]] = {}
    for beacon in selected:
        buckets.setdefault(bucket_start(beacon["__time"], resolution), []).append(beacon)

    return [
        {"datetime": start * 1000, **_point_values(metric, source, buckets[start], resolution)}
        for start in sorted(buckets)
    ]


def last_point(points: list[Row]) -> list[Row]:
    """The ``…/last_point`` answer: only the latest point (or none)."""
    return points[-1:]
