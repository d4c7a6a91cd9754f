"""Unit tests of the Legacy Stats API oracle (tests/oracle.py) on hand-computed cases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests import oracle

# "now" 2026-03-15T12:34:57.9Z: every window ends at 12:34:55.
NOW = datetime(2026, 3, 15, 12, 34, 57, 900000, tzinfo=UTC)
END = datetime(2026, 3, 15, 12, 34, 55, tzinfo=UTC)
NOON_MS = 1_773_576_000_000  # 2026-03-15T12:00:00Z in epoch ms


def utc(*parts: int) -> datetime:
    """A UTC datetime."""
    return datetime(*parts, tzinfo=UTC)


def ms(moment: datetime) -> int:
    """Epoch milliseconds of a whole-second UTC datetime."""
    return int(moment.timestamp()) * 1000


def beacon(moment: datetime, session: str = "s1", source: str = "cdn", **columns: Any) -> dict:
    """A beacon of customer c1, channel ch1, stream st1 with extra columns."""
    return {
        "__time": moment,
        "CustomerId": "c1",
        "ChannelId": "ch1",
        "StreamId": "st1",
        "SessionId": session,
        "Source": source,
        **columns,
    }


# --- windows --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time", "start"),
    [
        ("live", utc(2026, 3, 15, 12, 34, 50)),
        ("10m", utc(2026, 3, 15, 12, 24, 55)),
        ("1h", utc(2026, 3, 15, 11, 34, 55)),
        ("24h", utc(2026, 3, 14, 12, 34, 55)),
        ("1w", utc(2026, 3, 8, 12, 34, 55)),
        ("1M", utc(2026, 2, 13, 12, 34, 55)),
        ("2M", utc(2026, 1, 14, 12, 34, 55)),
        ("CM", utc(2026, 3, 1)),
    ],
)
def test_window_ends_at_now_floored_to_5s(time: str, start: datetime) -> None:
    assert oracle.window(NOW, time) == (start, END)


def test_window_end_already_aligned() -> None:
    assert oracle.window(utc(2026, 3, 15, 12, 0, 5), "live") == (
        utc(2026, 3, 15, 12, 0, 0),
        utc(2026, 3, 15, 12, 0, 5),
    )


def test_last_month_at_month_boundary() -> None:
    now = utc(2026, 3, 1, 0, 0, 2)
    assert oracle.window(now, "LM") == (utc(2026, 2, 1), utc(2026, 3, 1))
    assert oracle.window(now, "CM") == (utc(2026, 3, 1), utc(2026, 3, 1))


def test_last_month_across_year() -> None:
    assert oracle.window(utc(2026, 1, 10, 8), "LM") == (utc(2025, 12, 1), utc(2026, 1, 1))


def test_unknown_time_rejected() -> None:
    with pytest.raises(ValueError):
        oracle.window(NOW, "3h")


def test_window_is_half_open() -> None:
    beacons = [
        beacon(utc(2026, 3, 15, 12, 24, 54), "before", ViewingTime=1),
        beacon(utc(2026, 3, 15, 12, 24, 55), "first", ViewingTime=2),
        beacon(utc(2026, 3, 15, 12, 34, 54), "last", ViewingTime=4),
        beacon(END, "at-end", ViewingTime=8),
    ]
    [row] = oracle.summary_agg(beacons, "c1", NOW, "10m")
    assert row["total_viewing_time"] == 6


# --- buckets --------------------------------------------------------------------------


def test_bucket_alignment_30s() -> None:
    beacons = [
        beacon(utc(2026, 3, 15, 12, 0, 0), CdnDownlinkThroughput=30),
        beacon(utc(2026, 3, 15, 12, 0, 29), CdnDownlinkThroughput=60),
        beacon(utc(2026, 3, 15, 12, 0, 30), CdnDownlinkThroughput=300),
    ]
    assert oracle.stats(beacons, "c1", NOW, "1h", "throughput", source="cdn") == [
        {"datetime": NOON_MS, "agg_throughput_cdn": 3.0},
        {"datetime": NOON_MS + 30_000, "agg_throughput_cdn": 10.0},
    ]


def test_bucket_alignment_15min_and_days() -> None:
    assert oracle.bucket_start(utc(2026, 3, 15, 12, 14, 59), 900) * 1000 == NOON_MS
    assert oracle.bucket_start(utc(2026, 3, 15, 12, 15), 900) * 1000 == NOON_MS + 900_000
    assert oracle.bucket_start(utc(2026, 3, 15, 12, 59, 59), 3600) * 1000 == NOON_MS
    assert oracle.bucket_start(utc(2026, 3, 15, 23, 59, 59), 86400) * 1000 == NOON_MS - 43_200_000


def test_first_bucket_may_start_before_window() -> None:
    # 24h window starts 2026-03-14T12:34:55; its first 15-min bucket starts at 12:30.
    points = oracle.stats([beacon(utc(2026, 3, 14, 12, 40))], "c1", NOW, "24h", "rebuffering")
    assert points == [{"datetime": ms(utc(2026, 3, 14, 12, 30)), "rebuffering_ratio": 0}]


def test_month_series_buckets_are_utc_days_oldest_first() -> None:
    beacons = [
        beacon(utc(2026, 3, 2, 23, 59, 59), session="b", OsName="IOS"),
        beacon(utc(2026, 3, 1, 0, 0, 0), session="a", OsName="IOS"),
        beacon(utc(2026, 2, 28, 23, 59, 59), session="old", OsName="IOS"),
    ]
    assert oracle.stats(beacons, "c1", NOW, "CM", "os") == [
        {"datetime": ms(utc(2026, 3, 1)), "operating_systems": {"IOS": 1}},
        {"datetime": ms(utc(2026, 3, 2)), "operating_systems": {"IOS": 1}},
    ]


def test_resolutions() -> None:
    assert oracle.RESOLUTION_SECONDS == {
        "live": 5, "10m": 5, "1h": 30, "24h": 900, "1w": 3600,
        "1M": 86400, "2M": 86400, "CM": 86400, "LM": 86400,
    }  # fmt: skip


# --- summaries ------------------------------------------------------------------------


def test_pretty_viewing_time() -> None:
    assert oracle.pretty_viewing_time(93784.9) == "1 day, 2:03:04"
    assert oracle.pretty_viewing_time(7384) == "2:03:04"
    assert oracle.pretty_viewing_time(0) == "0:00:00"


def test_device_counting_and_viewing_time_split() -> None:
    t = utc(2026, 3, 15, 12, 30)
    beacons = [
        beacon(t, "compatible", "cdn", P2pCompatible=True, ViewingTime=5),
        beacon(t, "compatible", "cdn", P2pCompatible=True, ViewingTime=5),
        beacon(t, "unknown", "cdn", P2pCompatible=None, ViewingTime=5),
        beacon(t, "incompatible", "cdn", P2pCompatible=False, ViewingTime=4),
        beacon(t, "peer", "p2p", P2pCompatible=True, ViewingTime=3),
        beacon(t, "peer-incompatible", "p2p", P2pCompatible=False, ViewingTime=2),
        beacon(t, "switcher", "cdn", P2pCompatible=True, ViewingTime=1),
        beacon(t, "switcher", "p2p", P2pCompatible=True, ViewingTime=93764.5),
        beacon(t, "no-compat-key", "cdn", ViewingTime=None),
    ]
    [row] = oracle.summary_agg(beacons, "c1", NOW, "10m")
    assert row["cdn_devices"] == 2  # compatible, switcher
    assert row["p2p_devices"] == 3  # peer, peer-incompatible, switcher
    assert row["not_compatible_devices"] == 2  # incompatible, peer-incompatible
    assert row["cdn_viewing_time"] == 20
    assert row["p2p_viewing_time"] == 93769.5
    assert row["total_viewing_time"] == 93789.5
    assert row["total_pretty_viewing_time"] == "1 day, 2:03:09"


def test_summary_agg_throughput_divides_by_window_seconds() -> None:
    t = utc(2026, 3, 15, 12, 30)
    beacons = [
        beacon(t, "a", CdnDownlinkThroughput=600, TotalDownlinkThroughput=600),
        beacon(
            t,
            "b",
            CdnDownlinkThroughput=1200,
            P2pDownlinkThroughput=300,
            TotalDownlinkThroughput=1500,
        ),
    ]
    [row] = oracle.summary_agg(beacons, "c1", NOW, "10m")
    assert (row["cdn_throughput"], row["p2p_throughput"], row["total_throughput"]) == (
        3.0,
        0.5,
        3.5,
    )


def test_summary_agg_last_month_divides_by_real_span() -> None:
    # February 2026 has 28 days = 2,419,200 s.
    beacons = [beacon(utc(2026, 2, 10), CdnDownlinkThroughput=4_838_400)]
    [row] = oracle.summary_agg(beacons, "c1", utc(2026, 3, 1, 0, 0, 2), "LM")
    assert row["cdn_throughput"] == 2.0


def test_summary_agg_empty() -> None:
    other_customer = dict(beacon(utc(2026, 3, 15, 12, 30), ViewingTime=10), CustomerId="c2")
    assert oracle.summary_agg([other_customer], "c1", NOW, "10m") == [
        {
            "aggregate": "aggregate",
            "cdn_throughput": 0.0,
            "p2p_throughput": 0.0,
            "total_throughput": 0.0,
            "cdn_devices": 0,
            "p2p_devices": 0,
            "not_compatible_devices": 0,
            "cdn_viewing_time": 0,
            "p2p_viewing_time": 0,
            "total_viewing_time": 0,
            "total_pretty_viewing_time": "0:00:00",
        }
    ]


def test_summary_channel_rows_sorted_with_null_key_and_key_order() -> None:
    t = utc(2026, 3, 15, 12, 34, 54)
    beacons = [
        dict(beacon(t, "a"), ChannelId="zeta"),
        dict(beacon(t, "b", ViewingTime=7), ChannelId=None),
        dict(beacon(t, "c"), ChannelId="alpha"),
        dict(beacon(utc(2026, 3, 15, 12, 34, 49), "d"), ChannelId="old"),  # not in live
    ]
    rows = oracle.summary(beacons, "c1", NOW, "live", "channel")
    assert [row["channel_id"] for row in rows] == ["", "alpha", "zeta"]
    assert list(rows[0]) == [
        "channel_id",
        "cdn_throughput",
        "p2p_throughput",
        "total_throughput",
        "cdn_devices",
        "p2p_devices",
        "not_compatible_devices",
        "cdn_viewing_time",
        "p2p_viewing_time",
        "total_viewing_time",
        "total_pretty_viewing_time",
    ]
    assert rows[0]["total_viewing_time"] == 7


def test_summary_stream_rows_have_max_uri() -> None:
    t = utc(2026, 3, 15, 12, 30)
    beacons = [
        beacon(t, StreamId="0xb", MaskedStreamUri="http://a/x.m3u8"),
        beacon(t, StreamId="0xb", MaskedStreamUri="http://b/x.m3u8"),
        beacon(t, StreamId="0xb", MaskedStreamUri=None),
        beacon(t, StreamId="0xa"),
        dict(beacon(t, StreamId="0xc"), ChannelId="ch2"),
    ]
    rows = oracle.summary(beacons, "c1", NOW, "10m", "stream", channel_id="ch1")
    assert [(r["stream_id"], r["stream_uri"]) for r in rows] == [
        ("0xa", ""),
        ("0xb", "http://b/x.m3u8"),
    ]
    assert list(rows[0])[:3] == ["stream_id", "stream_uri", "cdn_throughput"]


def test_summary_representation_rows_and_filters() -> None:
    t = utc(2026, 3, 15, 12, 30)
    beacons = [
        beacon(t, "a", Bitrate="4000", RepresentationId="1 of 2", ViewingTime=1),
        beacon(t, "b", Bitrate="4000", RepresentationId="1 of 2", ViewingTime=2),
        beacon(t, "c", Bitrate="1000", RepresentationId="2 of 2", ViewingTime=4),
        beacon(t, "d", Bitrate="1000", RepresentationId=None, ViewingTime=8),
        dict(beacon(t, "e", Bitrate="1000", RepresentationId="2 of 2"), StreamId="other"),
    ]
    args = (beacons, "c1", NOW, "10m", "representation")
    rows = oracle.summary(*args, channel_id="ch1", stream_id="st1")
    assert [(r["bitrate"], r["representation_id"], r["total_viewing_time"]) for r in rows] == [
        ("1000", "", 8),
        ("1000", "2 of 2", 4),
        ("4000", "1 of 2", 3),
    ]
    assert list(rows[0])[:3] == ["bitrate", "representation_id", "cdn_throughput"]
    only_1000 = oracle.summary(*args, channel_id="ch1", stream_id="st1", bitrate="1000")
    assert [r["total_viewing_time"] for r in only_1000] == [8, 4]
    one = oracle.summary(*args, channel_id="ch1", stream_id="st1", representation_id="1 of 2")
    assert [(r["bitrate"], r["cdn_devices"]) for r in one] == [("4000", 0)]


def test_summary_level_needs_scope() -> None:
    with pytest.raises(ValueError):
        oracle.summary([], "c1", NOW, "10m", "stream")
    with pytest.raises(ValueError):
        oracle.summary([], "c1", NOW, "10m", "representation", channel_id="ch1")


def test_bitrate_filter_ignored_outside_stream_scope() -> None:
    t = utc(2026, 3, 15, 12, 30)
    beacons = [beacon(t, Bitrate="4000", ViewingTime=1), beacon(t, Bitrate="1000", ViewingTime=2)]
    [row] = oracle.summary_agg(beacons, "c1", NOW, "10m", channel_id="ch1", bitrate="4000")
    assert row["total_viewing_time"] == 3
    [row] = oracle.summary_agg(
        beacons, "c1", NOW, "10m", channel_id="ch1", stream_id="st1", bitrate="4000"
    )
    assert row["total_viewing_time"] == 1


# --- pagination -----------------------------------------------------------------------


def test_paginate() -> None:
    rows = [{"channel_id": str(i), "total_pretty_viewing_time": "0:00:00"} for i in range(5)]
    assert oracle.paginate(rows, 2, 0) == [{"total_pages": 3, "page": 0, "results": rows[0:2]}]
    assert oracle.paginate(rows, 2, 2) == [{"total_pages": 3, "page": 2, "results": [rows[4]]}]
    assert oracle.paginate(rows, 2, 3) == [{"total_pages": 3, "page": 3, "results": []}]
    assert oracle.paginate(rows, 5, 0) == [{"total_pages": 1, "page": 0, "results": rows}]
    assert oracle.paginate([], 5, 0) == [{"total_pages": 0, "page": 0, "results": []}]


# --- stats series ---------------------------------------------------------------------


def test_throughput_sums_column_over_all_sources() -> None:
    t = utc(2026, 3, 15, 12, 34, 51)
    beacons = [
        beacon(t, "a", "cdn", CdnDownlinkThroughput=100, P2pDownlinkThroughput=None),
        beacon(t, "b", "p2p", CdnDownlinkThroughput=50, P2pDownlinkThroughput=250),
        beacon(t, "c", "p2p"),
    ]
    assert oracle.stats(beacons, "c1", NOW, "live", "throughput", source="cdn") == [
        {"datetime": ms(utc(2026, 3, 15, 12, 34, 50)), "agg_throughput_cdn": 30.0}
    ]
    assert oracle.stats(beacons, "c1", NOW, "live", "throughput", source="p2p") == [
        {"datetime": ms(utc(2026, 3, 15, 12, 34, 50)), "agg_throughput_p2p": 50.0}
    ]


def test_source_required_for_source_keys() -> None:
    for metric in ("throughput", "buffer_health", "content_request_response_times"):
        with pytest.raises(ValueError):
            oracle.stats([], "c1", NOW, "10m", metric)


@pytest.mark.parametrize(
    ("metric", "column"),
    [
        ("buffer_health", "BufferHealth"),
        ("buffer_filling_rate", "AggregateBufferFillingRate"),
        ("dropped_frames", "DroppedFrames"),
    ],
)
def test_averages_per_source_ignore_nulls(metric: str, column: str) -> None:
    first = utc(2026, 3, 15, 12, 30, 0)
    second = utc(2026, 3, 15, 12, 30, 5)
    beacons = [
        beacon(first, "a", "cdn", **{column: 100}),
        beacon(first, "b", "cdn", **{column: 200}),
        beacon(first, "c", "cdn", **{column: None}),
        beacon(first, "d", "cdn"),
        beacon(first, "e", "p2p", **{column: 1000}),
        beacon(second, "e", "p2p", **{column: 1000}),
    ]
    key = f"avg_{metric}_cdn"
    assert oracle.stats(beacons, "c1", NOW, "10m", metric, source="cdn") == [
        {"datetime": ms(first), key: 150.0},
        {"datetime": ms(second), key: None},
    ]


def test_response_times_not_filtered_by_source() -> None:
    t = utc(2026, 3, 15, 12, 30)
    beacons = [
        beacon(t, "a", "cdn", CdnResponseTime=10, P2pResponseTime=None),
        beacon(t, "b", "p2p", CdnResponseTime=30, P2pResponseTime=7),
        beacon(t, "c", "p2p"),
    ]
    cdn = oracle.stats(beacons, "c1", NOW, "10m", "content_request_response_times", "cdn")
    p2p = oracle.stats(beacons, "c1", NOW, "10m", "content_request_response_times", "p2p")
    assert cdn == [{"datetime": ms(t), "avg_content_request_response_times_cdn": 20.0}]
    assert p2p == [{"datetime": ms(t), "avg_content_request_response_times_p2p": 7.0}]
    only_a = oracle.stats(beacons[:1], "c1", NOW, "10m", "content_request_response_times", "p2p")
    assert only_a == [{"datetime": ms(t), "avg_content_request_response_times_p2p": None}]


def test_rebuffering_ratio() -> None:
    t = utc(2026, 3, 15, 12, 30)
    beacons = [
        beacon(t, "a", "cdn", BufferingTime=100, PlayingTime=4000),
        beacon(t, "b", "cdn", BufferingTime=300, PlayingTime=4000),
        beacon(t, "c", "cdn", BufferingTime=None, PlayingTime=None),
        beacon(t, "d", "p2p", BufferingTime=400, PlayingTime=None),
    ]
    assert oracle.stats(beacons, "c1", NOW, "10m", "rebuffering") == [
        {"datetime": ms(t), "rebuffering_ratio": 0.1}  # 800 / 8000
    ]
    assert oracle.stats(beacons, "c1", NOW, "10m", "rebuffering", source="cdn") == [
        {"datetime": ms(t), "rebuffering_ratio": 0.05}  # 400 / 8000
    ]
    # Σ PlayingTime is 0 for p2p: the ratio is 0, not a division error.
    assert oracle.stats(beacons, "c1", NOW, "10m", "rebuffering", source="p2p") == [
        {"datetime": ms(t), "rebuffering_ratio": 0}
    ]
    # The source filter leaves no beacon: the point still exists.
    assert oracle.stats(beacons[:1], "c1", NOW, "10m", "rebuffering", source="p2p") == [
        {"datetime": ms(t), "rebuffering_ratio": 0}
    ]


@pytest.mark.parametrize(
    ("metric", "key", "column"),
    [
        ("os", "operating_systems", "OsName"),
        ("platforms", "platforms", "BrowserName"),
        ("connection_types", "connection_types", "ConnectionType"),
    ],
)
def test_device_breakdowns_count_distinct_sessions(metric: str, key: str, column: str) -> None:
    first = utc(2026, 3, 15, 12, 30, 0)
    second = utc(2026, 3, 15, 12, 30, 5)
    beacons = [
        beacon(first, "a", "cdn", **{column: "X"}),
        beacon(first, "a", "p2p", **{column: "X"}),
        beacon(first, "b", "cdn", **{column: "X"}),
        beacon(first, "c", "cdn", **{column: "Y"}),
        beacon(first, "d", "cdn", **{column: ""}),
        beacon(first, "e", "cdn", **{column: None}),
        beacon(second, "f", "cdn"),
    ]
    assert oracle.stats(beacons, "c1", NOW, "10m", metric) == [
        {"datetime": ms(first), key: {"X": 2, "Y": 1}},
        {"datetime": ms(second), key: {}},
    ]


def test_stats_scope_and_empty() -> None:
    t = utc(2026, 3, 15, 12, 30)
    beacons = [
        beacon(t, "a", Bitrate="4000", OsName="IOS"),
        beacon(t, "b", Bitrate="1000", OsName="IOS"),
        dict(beacon(t, "c", OsName="IOS"), StreamId="other"),
        dict(beacon(t, "d", OsName="IOS"), CustomerId="c2"),
    ]
    assert oracle.stats(beacons, "c1", NOW, "10m", "os") == [
        {"datetime": ms(t), "operating_systems": {"IOS": 3}}
    ]
    stream = oracle.stats(beacons, "c1", NOW, "10m", "os", channel_id="ch1", stream_id="st1")
    assert stream == [{"datetime": ms(t), "operating_systems": {"IOS": 2}}]
    filtered = oracle.stats(
        beacons, "c1", NOW, "10m", "os", channel_id="ch1", stream_id="st1", bitrate="4000"
    )
    assert filtered == [{"datetime": ms(t), "operating_systems": {"IOS": 1}}]
    assert oracle.stats(beacons, "c3", NOW, "10m", "os") == []


def test_last_point() -> None:
    assert oracle.last_point([]) == []
    assert oracle.last_point([{"datetime": 1}, {"datetime": 2}]) == [{"datetime": 2}]
