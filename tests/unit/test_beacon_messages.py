"""Typed gRPC beacons: validate_messages answers exactly what beacon_to_item + validate_all
answer (rows, rejected indexes and reasons), and valid beacons skip the dict round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from edgestats.metrics.v1 import beacon_ingest_service_pb2 as pb
from edgestats.metrics.v1 import beacon_pb2
from metrics_service import beacon_messages
from metrics_service.beacon_messages import beacon_to_item, validate_messages
from metrics_service.beacon_validation import validate_all

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def stamp(when: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


def beacon(**fields) -> beacon_pb2.Beacon:
    base = {"time": stamp(NOW - timedelta(seconds=5)), "customer_id": "c1", "session_id": "s1",
            "source": "p2p", "channel_id": "ch", "cdn_downlink_throughput": 120.5,
            "dropped_frames": 2, "p2p_compatible": True}
    return beacon_pb2.Beacon(**{**base, **fields})


def assert_same(messages: list) -> None:
    # the wire round trip: what the servicer gets is a parsed request
    request = pb.IngestBeaconsRequest.FromString(
        pb.IngestBeaconsRequest(beacons=messages).SerializeToString())
    fast = validate_messages(request.beacons, "c1", NOW)
    reference = validate_all([beacon_to_item(b) for b in request.beacons], "c1", NOW)
    assert (fast.rows, fast.rejected) == (reference.rows, reference.rejected)


CASES = {
    "plain": {},
    "set empty string": {"channel_id": ""},
    "set zeros": {"dropped_frames": 0, "viewing_time": 0.0, "p2p_compatible": False},
    "negative zero": {"buffer_health": -0.0},
    "NaN": {"viewing_time": float("nan")},
    "infinity": {"latitude": float("-inf")},
    "sum overflows, each finite": {"viewing_time": 1e308, "buffer_health": 1e308},
    "int32 min": {"viewport_width": -(2**31)},
    "int32 min + 1": {"viewport_width": -(2**31) + 1},
    "int32 max": {"viewport_width": 2**31 - 1},
    "NUL": {"asn": "a\x00"},
    "1,024 characters": {"os_name": "é" * 1024},
    "1,025 characters": {"os_name": "x" * 1025},
    "no time": {"time": None},
    "old time": {"time": stamp(NOW - timedelta(days=31))},
    "future time": {"time": stamp(NOW + timedelta(minutes=6))},
    "time with nanos": {"time": Timestamp(seconds=int(NOW.timestamp()) - 3, nanos=999_999_999)},
    "other customer": {"customer_id": "c2"},
    "no customer": {"customer_id": ""},
    "no session": {"session_id": ""},
    "bad source": {"source": "satellite"},
    "no source": {"source": ""},
}


@pytest.mark.parametrize("case", list(CASES))
def test_odd_beacons_get_the_same_answer(case):
    fields = {k: v for k, v in CASES[case].items() if v is not None}
    odd = beacon(**fields)
    if CASES[case].get("time", 0) is None:
        odd.ClearField("time")
    assert_same([beacon(session_id="a"), odd, beacon(session_id="b")])


def test_a_beacon_with_every_field_unset_but_the_required_ones():
    assert_same([beacon_pb2.Beacon(time=stamp(NOW), customer_id="c1", session_id="s",
                                   source="cdn")])


def test_valid_beacons_skip_the_dict_round_trip(monkeypatch):
    def refuse(*args):
        raise AssertionError("slow path taken")

    monkeypatch.setattr(beacon_messages, "beacon_to_item", refuse)
    batch = validate_messages([beacon(session_id=f"s{i}") for i in range(5)], "c1", NOW)
    assert len(batch.rows) == 5 and not batch.rejected
