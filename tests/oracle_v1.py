"""Independent oracle for the Edge Analytics v1 metrics (CONTRACT §5, §6; seed 001).

Plain Python over the beacons a test inserted (Druid column names, ``__time`` an aware UTC
datetime, absent or None = null). It does not import service code: bucket alignment,
filters and every formula are written again here, literally from the contract.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

Beacon = dict[str, Any]
Row = dict[str, Any]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIXED = {"second": 1, "minute": 60, "fifteen_minute": 900, "thirty_minute": 1800,
         "hour": 3600, "day": 86400}
MONTHS = {"month": 1, "quarter": 3, "year": 12}
FILTER_COLUMNS = {"source": "Source", "channel_id": "ChannelId", "bitrate": "Bitrate",
                  "stream_id": "StreamId", "stream_uri": "MaskedStreamUri",
                  "stream_state": "StreamState", "representation_id": "RepresentationId"}
GROUPS = {"audience/os": ("os_name", "OsName"),
          "audience/browsers": ("browser_name", "BrowserName"),
          "audience/connection_types": ("connection_type", "ConnectionType"),
          "audience/asn": ("asn_name", "AsName"), "traffic/asn": ("asn_name", "AsName"),
          "traffic/asn/percentage": ("asn_name", "AsName")}


def bucket_start(t: datetime, granularity: str) -> datetime:
    if granularity in FIXED:
        step = FIXED[granularity]
        return EPOCH + timedelta(seconds=int((t - EPOCH).total_seconds()) // step * step)
    day = datetime(t.year, t.month, t.day, tzinfo=UTC)
    if granularity == "week":
        return day - timedelta(days=t.weekday())
    months = MONTHS[granularity]
    return datetime(t.year, (t.month - 1) // months * months + 1, 1, tzinfo=UTC)


def next_bucket(start: datetime, granularity: str) -> datetime:
    if granularity in FIXED:
        return start + timedelta(seconds=FIXED[granularity])
    if granularity == "week":
        return start + timedelta(days=7)
    month = start.month - 1 + MONTHS[granularity]
    return datetime(start.year + month // 12, month % 12 + 1, 1, tzinfo=UTC)


def bucket_list(start: datetime, end: datetime, granularity: str) -> list[datetime]:
    out, b = [], bucket_start(start, granularity)
    while b < end:
        out.append(b)
        b = next_bucket(b, granularity)
    return out


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".000Z"


def _sum(beacons: list[Beacon], column: str) -> float:
    return float(sum(b[column] for b in beacons if b.get(column) is not None))


def _avg(beacons: list[Beacon], column: str) -> float | None:
    values = [float(b[column]) for b in beacons if b.get(column) is not None]
    return sum(values) / len(values) if values else None


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    values = sorted(values)
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _optimal(b: Beacon) -> bool:
    vw, vh = b.get("VideoResolutionWidth"), b.get("VideoResolutionHeight")
    pw, ph = b.get("ViewportWidth"), b.get("ViewportHeight")
    return ((ph is not None and (ph - vh) / vh <= 0.01)
            or (pw is not None and (pw - vw) / vw <= 0.01)
            or (b.get("RepresentationId") or "").startswith("1 of"))


def _qualifies(b: Beacon) -> bool:
    return (b.get("PlayerState") in ("playing", "buffering")
            and (b.get("VideoResolutionWidth") or 0) > 0
            and (b.get("VideoResolutionHeight") or 0) > 0)


def values(path: str, bs: list[Beacon], seconds: float) -> Row:
    """The metric keys of an ungrouped row over the bucket's beacons `bs`."""
    if path == "audience":
        return {"audience": len({b["SessionId"] for b in bs})}
    if path == "traffic":
        return {f"{k}_traffic": _sum(bs, f"{c}DownlinkThroughput") * 125
                for k, c in (("cdn", "Cdn"), ("p2p", "P2p"), ("total", "Total"))}
    if path == "traffic/offload/percentage":
        total = _sum(bs, "TotalDownlinkThroughput")
        p2p = _sum(bs, "P2pDownlinkThroughput")
        return {"offload_percentage": 100 * p2p / total if total else 0}
    if path == "throughput":
        return {f"{k}_throughput": _sum(bs, f"{c}DownlinkThroughput") / seconds
                for k, c in (("cdn", "Cdn"), ("p2p", "P2p"), ("total", "Total"))}
    if path == "viewing_time":
        return {"cdn_viewing_time": _sum([b for b in bs if b["Source"] == "cdn"], "ViewingTime"),
                "p2p_viewing_time": _sum([b for b in bs if b["Source"] == "p2p"], "ViewingTime"),
                "total_viewing_time": _sum(bs, "ViewingTime")}
    if path == "buffer_health":
        return {"avg_buffer_health": _avg(bs, "BufferHealth")}
    if path == "qoe/join_time":
        per_session: dict[str, float] = {}
        for b in bs:
            if b.get("PlayerState") == "playing" and b.get("StartingTime") is not None:
                s = b["SessionId"]
                per_session[s] = max(per_session.get(s, b["StartingTime"]), b["StartingTime"])
        joins = list(per_session.values())
        return {k: (_quantile(joins, q) if joins else None)
                for k, q in (("p25", .25), ("median", .5), ("p75", .75), ("p95", .95))}
    if path == "qoe/optimal_viewport/percentage":
        qualifying = [b for b in bs if _qualifies(b)]
        sessions = {b["SessionId"] for b in qualifying}
        if not sessions:
            return {"optimal_percentage": None, "suboptimal_percentage": None}
        optimal = 100 * len({b["SessionId"] for b in qualifying if _optimal(b)}) / len(sessions)
        return {"optimal_percentage": optimal, "suboptimal_percentage": 100 - optimal}
    if path == "qoe/rebuffering/ratio":
        playing = _sum(bs, "PlayingTime")
        return {"rebuffering_ratio": _sum(bs, "BufferingTime") / playing if playing else 0}
    if path == "qoe/buffer_filling_rate":
        return {"avg_buffer_filling_rate": _avg(bs, "AggregateBufferFillingRate")}
    if path == "qoe/dropped_frames":
        return {"avg_dropped_frames": _avg(bs, "DroppedFrames")}
    raise KeyError(path)


def _grouped(path: str, bs: list[Beacon]) -> list[tuple[str, Row]]:
    key, column = GROUPS[path]
    by: dict[str, list[Beacon]] = defaultdict(list)
    for b in bs:
        if b.get(column):
            by[b[column]].append(b)
    total = _sum(bs, "TotalDownlinkThroughput")
    out = []
    for group in sorted(by, key=lambda g: g.encode()):
        members = by[group]
        if path.startswith("audience/"):
            row = {"audience": len({b["SessionId"] for b in members})}
        elif path == "traffic/asn":
            row = {"traffic": _sum(members, "TotalDownlinkThroughput") * 125}
        else:
            part = _sum(members, "TotalDownlinkThroughput")
            row = {"traffic_percentage": 100 * part / total if total else 0}
        out.append((group, {key: group, **row}))
    return out


def metric(path: str, beacons: list[Beacon], customers: list[str], start: datetime,
           end: datetime, granularity: str = "second", reseller: bool = False,
           **filters: str) -> list[Row]:
    """The v1 answer of `path` for these customers over [start, end)."""
    active = {FILTER_COLUMNS[k]: v for k, v in filters.items() if v != "-1"}
    rows: list[Row] = []
    for customer in sorted(customers) if reseller else customers:
        mine = [b for b in beacons if b["CustomerId"] == customer and start <= b["__time"] < end
                and all(b.get(c) == v for c, v in active.items())]
        by_bucket: dict[datetime, list[Beacon]] = defaultdict(list)
        for b in mine:
            by_bucket[bucket_start(b["__time"], granularity)].append(b)
        head = {"customer_id": customer} if reseller else {}
        for bucket in bucket_list(start, end, granularity):
            seconds = (next_bucket(bucket, granularity) - bucket).total_seconds()
            if path in GROUPS:
                for _, row in _grouped(path, by_bucket.get(bucket, [])):
                    rows.append({**head, "timestamp": stamp(bucket), **row})
            else:
                rows.append({**head, "timestamp": stamp(bucket),
                             **values(path, by_bucket.get(bucket, []), seconds)})
    return rows
