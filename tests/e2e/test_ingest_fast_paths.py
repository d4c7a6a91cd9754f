"""Issue #14's fast ingest paths through Envoy: for odd JSON bodies and odd typed beacons the
service answers exactly what the reference path (parse_body/beacon_to_item + validate_all)
computes for the same body and clock, and stores exactly the accepted beacons."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import grpc
import pytest

from edgestats.metrics.v1 import beacon_ingest_service_pb2 as ingest_pb
from edgestats.metrics.v1 import beacon_ingest_service_pb2_grpc as ingest_rpc
from edgestats.metrics.v1 import beacon_pb2
from edgestats_core.errors import ApiError
from edgestats_core.ingest_body import parse_body
from metrics_service.beacon_messages import beacon_to_item
from metrics_service.beacon_validation import validate_all
from tests.builders import scenario, wire
from tests.e2e.ingest_bodies import answer, post
from tests.e2e.test_ingest import PATHS, bearer, count, minimal, to_proto

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ingest_stub(stack):
    with grpc.insecure_channel(stack.grpc_target) as channel:
        yield ingest_rpc.BeaconIngestServiceStub(channel)


def expected(data: bytes, customer_id: str, now: datetime) -> dict:
    batch = validate_all(parse_body(data), customer_id, now)
    return {"accepted": len(batch.rows), "rejected": [
        {"index": i, "reason": r} for i, r in batch.rejected]}


def body(customer_id: str, now: datetime, fragments: list[str]) -> bytes:
    """A JSON array of valid beacons, each followed by one carrying a raw JSON fragment."""
    items = []
    for i, fragment in enumerate(fragments):
        items.append(json.dumps(wire(minimal(customer_id, f"good-{i}", now))))
        bad = json.dumps(wire(minimal(customer_id, f"odd-{i}", now - timedelta(seconds=5))))
        items.append(bad[:-1] + ", " + fragment + "}")
    return ("[" + ",\n".join(items) + "]").encode()


FRAGMENTS = {
    "wrong types": ['"BufferHealth": "1"', '"DroppedFrames": 1.5', '"P2pCompatible": 1',
                    '"ChannelId": 5', '"StreamId": {"a": [1]}', '"Source": "satellite"'],
    "huge numbers": ['"ViewingTime": 1' + "0" * 400, '"DroppedFrames": 2147483648',
                     '"Extra": 1e999', '"ViewingTime": 1180591620717411303424'],
    "duplicate keys": ['"Source": "x", "Source": "cdn"', '"Source": "cdn", "Source": 5',
                       '"SessionId": "", "SessionId": "dup-ok"'],
    "nested and unknown": ['"Extra": {"a": {"b": [1, null, {"c": true}]}}', '"x": null'],
    "NaN": ['"ViewingTime": NaN', '"Latitude": 1.5'],
    "NUL and surrogates": ['"ChannelId": "a\\u0000b"', '"AsName": "\\ud83d\\ude00"',
                           '"Asn": "\\udc00"'],
}


@pytest.mark.parametrize("case", list(FRAGMENTS))
def test_odd_json_bodies_get_the_reference_answer(api, tenants, frozen_now, db_url, case):
    customer_id, key = tenants.customer()
    data = body(customer_id, frozen_now - timedelta(seconds=30), FRAGMENTS[case])
    got = answer(post(api, PATHS[0], data, key))
    want = expected(data, customer_id, frozen_now)
    assert {"accepted": got["accepted"], "rejected": got["rejected"]} == want
    assert got["duplicates"] == 0 and count(db_url, customer_id) == want["accepted"]


def test_a_resent_json_body_counts_every_beacon_as_a_duplicate(api, tenants, frozen_now,
                                                               db_url):
    customer_id, key = tenants.customer()
    data = json.dumps([wire(b) for b in scenario(customer_id, frozen_now, seed=41)]).encode()
    first = answer(post(api, PATHS[0], data, key))
    again = answer(post(api, PATHS[0], data, key))
    assert again == {**first, "duplicates": first["accepted"]} and first["duplicates"] == 0
    assert count(db_url, customer_id) == first["accepted"]


def test_a_body_the_reference_refuses_is_refused_alike(api, tenants):
    _, key = tenants.customer()
    for data in (b"[NaN", b'[{"a": 1}] [', b"\xef\xbb\xbf[]x"):
        with pytest.raises(ApiError):
            parse_body(data)
        assert post(api, PATHS[0], data, key).status_code == 400


def test_odd_typed_beacons_get_the_reference_answer(ingest_stub, tenants, frozen_now, db_url):
    customer_id, key = tenants.customer()
    now = frozen_now - timedelta(seconds=30)
    odd = [{"viewing_time": float("nan")}, {"latitude": float("inf")},
           {"viewport_width": -(2**31)}, {"viewport_width": -(2**31) + 1},
           {"os_name": "x" * 1025}, {"asn": "a\x00"}, {"channel_id": ""},
           {"dropped_frames": 0, "p2p_compatible": False}, {"source": "satellite"}]
    beacons = []
    for i, fields in enumerate(odd):
        beacons.append(to_proto(minimal(customer_id, f"good-{i}", now)))
        message = to_proto(minimal(customer_id, f"odd-{i}", now - timedelta(seconds=5)))
        message.MergeFrom(beacon_pb2.Beacon(**fields))
        beacons.append(message)
    request = ingest_pb.IngestBeaconsRequest(beacons=beacons)
    reply = ingest_stub.IngestBeacons(request, metadata=bearer(key), timeout=60)
    want = validate_all([beacon_to_item(b) for b in request.beacons], customer_id, frozen_now)
    assert reply.accepted == len(want.rows) and reply.duplicates == 0
    assert [(r.index, r.reason) for r in reply.rejected] == want.rejected
    assert count(db_url, customer_id) == len(want.rows)
