"""Unit tests of the synthetic beacon generator used by `edgestats demo-data`."""

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from edgestats_cli.demo_data import (
    COLUMNS,
    DEMO_CUSTOMERS,
    PEAK_HOUR_UTC,
    DemoCustomer,
    generate_beacons,
    to_json_ready,
)

SPORTS = DEMO_CUSTOMERS[0]
START = datetime(2024, 5, 6, PEAK_HOUR_UTC - 1, 50, 2, tzinfo=UTC)  # unaligned on purpose
END = START + timedelta(minutes=10, seconds=1)


@pytest.fixture(scope="module")
def beacons() -> list[dict]:
    return list(generate_beacons(SPORTS, START, END, seed=7))


def test_demo_customers_cover_every_region_and_tier():
    assert len(DEMO_CUSTOMERS) == 3
    assert {c.region for c in DEMO_CUSTOMERS} == {"americas", "emea", "apac"}
    assert {c.tier for c in DEMO_CUSTOMERS} == {"lite", "advanced"}
    assert len({c.customer_id for c in DEMO_CUSTOMERS}) == 3


def test_same_seed_gives_same_beacons(beacons):
    assert list(generate_beacons(SPORTS, START, END, seed=7)) == beacons
    assert list(generate_beacons(SPORTS, START, END, seed=8)) != beacons


def test_a_split_range_gives_the_same_beacons_as_the_whole(beacons):
    middle = START + timedelta(minutes=4, seconds=1)
    parts = [*generate_beacons(SPORTS, START, middle, 7), *generate_beacons(SPORTS, middle, END, 7)]
    assert parts == beacons


def test_every_column_is_present_and_required_ones_are_set(beacons):
    assert beacons
    for beacon in beacons:
        assert tuple(beacon) == COLUMNS
        assert all(beacon[c] is not None for c in ("__time", "CustomerId", "SessionId", "Source"))
        assert beacon["CustomerId"] == SPORTS.customer_id
        assert beacon["Source"] in {"cdn", "p2p"}


def test_cdn_plus_p2p_is_total(beacons):
    for beacon in beacons:
        cdn, p2p = beacon["CdnDownlinkThroughput"], beacon["P2pDownlinkThroughput"]
        assert cdn >= 0 and p2p >= 0
        assert cdn + p2p == beacon["TotalDownlinkThroughput"]


def test_one_beacon_per_session_per_window(beacons):
    keys = Counter((b["SessionId"], b["__time"]) for b in beacons)
    assert max(keys.values()) == 1


def test_times_are_in_range_aligned_and_ordered(beacons):
    times = [b["__time"] for b in beacons]
    assert times == sorted(times)
    for time in set(times):
        assert START <= time < END
        assert time.tzinfo is not None and time.utcoffset() == timedelta(0)
        assert time.microsecond == 0 and time.timestamp() % 5 == 0
    assert min(times) == datetime(2024, 5, 6, PEAK_HOUR_UTC - 1, 50, 5, tzinfo=UTC)
    assert max(times) == datetime(2024, 5, 6, PEAK_HOUR_UTC, 0, 0, tzinfo=UTC)


def test_an_empty_range_gives_no_beacon():
    assert list(generate_beacons(SPORTS, END, START)) == []
    assert list(generate_beacons(SPORTS, START, START)) == []


def test_not_compatible_devices_always_use_the_cdn(beacons):
    not_compatible = [b for b in beacons if b["P2pCompatible"] is False]
    assert not_compatible
    assert {b["Source"] for b in not_compatible} == {"cdn"}
    for beacon in beacons:
        if beacon["Source"] == "cdn":
            assert beacon["P2pDownlinkThroughput"] == 0
            assert beacon["P2pResponseTime"] is None
            assert beacon["ReceiveFromNodeId"] == "no-node-id"


def test_most_compatible_windows_are_p2p_with_a_realistic_offload(beacons):
    compatible = [b for b in beacons if b["P2pCompatible"]]
    p2p = [b for b in compatible if b["Source"] == "p2p"]
    assert len(p2p) > 0.7 * len(compatible)
    for beacon in p2p:
        if beacon["TotalDownlinkThroughput"] > 100:
            offload = beacon["P2pDownlinkThroughput"] / beacon["TotalDownlinkThroughput"]
            assert 0.49 <= offload <= 0.85


def test_playback_times_follow_the_player_state(beacons):
    states = Counter(b["PlayerState"] for b in beacons)
    assert states.most_common(1)[0][0] == "playing"
    for beacon in beacons:
        assert beacon["ViewingTime"] == beacon["PlayingTime"] / 1000
        assert beacon["PlayingTime"] + beacon["BufferingTime"] <= 5000
        if beacon["PlayerState"] == "playing":
            assert beacon["ViewingTime"] == 5
        if beacon["PlayerState"] == "paused":
            assert beacon["ViewingTime"] == 0


def test_starting_time_is_null_until_playback_then_constant(beacons):
    sessions = defaultdict(list)
    for beacon in beacons:
        sessions[beacon["SessionId"]].append(beacon)
    joined = 0
    for session in sessions.values():
        unknown = [i for i, b in enumerate(session) if b["StartingTime"] is None]
        assert unknown == list(range(len(unknown)))  # a prefix: the session's start-up
        assert all(session[i]["PlayerState"] == "buffering" for i in unknown)
        assert len({b["StartingTime"] for b in session[len(unknown) :]}) <= 1
        joined += bool(unknown) and len(unknown) < len(session)
    assert joined > 0


def test_renditions_match_the_ladder(beacons):
    sizes = {"6000": 1080, "4000": 720, "2000": 480, "800": 360}
    for beacon in beacons:
        rank, total = beacon["RepresentationId"].split(" of ")
        assert 1 <= int(rank) <= int(total)
        if beacon["Bitrate"] in sizes and total == "4":
            assert beacon["VideoResolutionHeight"] == sizes[beacon["Bitrate"]]
    assert len({b["StreamId"] for b in beacons}) > len({b["ChannelId"] for b in beacons}) > 2


@pytest.mark.parametrize("customer", DEMO_CUSTOMERS, ids=lambda c: c.customer_id)
def test_concurrency_is_near_peak_sessions_at_the_peak_hour(customer: DemoCustomer):
    peak = datetime(2024, 5, 6, PEAK_HOUR_UTC, tzinfo=UTC)
    window = generate_beacons(customer, peak, peak + timedelta(seconds=5))
    sessions = {b["SessionId"] for b in window}
    assert 0.6 * customer.peak_sessions <= len(sessions) <= 1.4 * customer.peak_sessions


def test_concurrency_is_lower_off_peak():
    night = datetime(2024, 5, 6, (PEAK_HOUR_UTC + 12) % 24, tzinfo=UTC)
    window = list(generate_beacons(SPORTS, night, night + timedelta(seconds=5)))
    assert 0 < len(window) < 0.5 * SPORTS.peak_sessions


def test_to_json_ready_gives_epoch_milliseconds(beacons):
    beacon = beacons[0]
    ready = to_json_ready(beacon)
    assert ready["__time"] == int(beacon["__time"].timestamp()) * 1000
    assert isinstance(ready["__time"], int)
    assert isinstance(beacon["__time"], datetime)
    assert {k: v for k, v in ready.items() if k != "__time"} == {
        k: v for k, v in beacon.items() if k != "__time"
    }


def test_an_hour_of_the_largest_customer_streams_without_holding_it():
    """Throughput check (no timing assert): one streamed pass over an hour of beacons."""
    start = datetime(2024, 5, 6, PEAK_HOUR_UTC, tzinfo=UTC)
    count = sum(1 for _ in generate_beacons(SPORTS, start, start + timedelta(hours=1)))
    windows = 3600 // 5
    assert 0.6 * SPORTS.peak_sessions * windows <= count <= 1.4 * SPORTS.peak_sessions * windows
