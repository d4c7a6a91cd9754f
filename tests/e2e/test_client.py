"""edgestats_client against the gateway: one line to connect with a key, typed calls, rich
errors read without JSON, and retries of RESOURCE_EXHAUSTED after the delay the server asks."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest

from edgestats.metrics.v1 import metrics_service_pb2 as pb
from edgestats.metrics.v1 import metrics_service_pb2_grpc as rpc
from edgestats.metrics.v1 import types_pb2 as types
from edgestats_client import connect, error_details, timestamp
from edgestats_stack.stack import start_stack
from tests.builders import v1_scenario, wire

pytestmark = pytest.mark.e2e


def hour_request(now: datetime) -> pb.GetMetricRequest:
    return pb.GetMetricRequest(from_date=timestamp(now - timedelta(hours=1)),
                               to_date=timestamp(now), granularity=types.GRANULARITY_MINUTE)


def test_a_typed_call_in_one_line(api, stack, tenants, frozen_now):
    customer_id, key = tenants.customer("advanced")
    beacons = v1_scenario(customer_id, frozen_now, seed=51)
    api.ingest(key, [wire(b) for b in beacons])
    with connect(stack.grpc_target, key) as client:
        answer = client.metrics.GetViewingTime(hour_request(frozen_now))
    body = {"from_date": (frozen_now - timedelta(hours=1)).isoformat(),
            "to_date": frozen_now.isoformat(), "granularity": "minute"}
    expected = api.http.post("/analytics/v1/metrics/viewing_time", content=json.dumps(body),
                             headers=api.auth(key)).json()
    assert [r.total_viewing_time for r in answer.rows] == [e["total_viewing_time"]
                                                           for e in expected]
    # the oracle: the viewing time of the hour is the sum of its beacons' ViewingTime
    in_hour = [b for b in beacons
               if frozen_now - timedelta(hours=1) <= b["__time"] < frozen_now]
    assert in_hour
    assert sum(r.total_viewing_time for r in answer.rows) == pytest.approx(
        sum(b["ViewingTime"] or 0 for b in in_hour))


def test_errors_read_as_details(stack, tenants, frozen_now):
    _, lite_key = tenants.customer("lite")
    with connect(stack.grpc_target, lite_key) as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.metrics.GetAudienceByOs(hour_request(frozen_now))
        details = error_details(caught.value)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert details is not None and details.reason == "TIER_FORBIDDEN"
        with pytest.raises(grpc.RpcError) as caught:
            client.metrics.GetAudience(pb.GetMetricRequest())
        details = error_details(caught.value)
        assert details.reason == "INVALID_ARGUMENT"
        assert [f for f, _ in details.violations] == ["from_date", "to_date"]


@pytest.fixture(scope="module")
def limited(db_url, frozen_now, tmp_path_factory):
    """A gateway whose lite keys get a burst of 2 and one call a second."""
    env = {"EDGESTATS_FROZEN_NOW": frozen_now.isoformat(), "EDGESTATS_RATE_LIMIT": "1",
           "EDGESTATS_RATE_BURST": "2"}
    stack = start_stack(Path(tmp_path_factory.mktemp("client")), db_url, env=env, workers=1)
    yield stack
    stack.stop()


def test_rate_limited_calls_are_retried_after_the_servers_delay(limited, tenants, frozen_now):
    _, key = tenants.customer("lite")
    metadata = [("authorization", f"Bearer {key}")]
    with grpc.insecure_channel(limited.grpc_target) as channel:
        plain = rpc.MetricsServiceStub(channel)  # no retry policy: the refusal itself
        for _ in range(2):
            plain.GetAudience(hour_request(frozen_now), metadata=metadata, timeout=30)
        with pytest.raises(grpc.RpcError) as caught:
            plain.GetAudience(hour_request(frozen_now), metadata=metadata, timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = error_details(caught.value)
    assert details.reason == "RATE_LIMITED" and details.retry_delay == timedelta(seconds=1)
    with connect(limited.grpc_target, key) as client:
        started = time.monotonic()
        for _ in range(3):  # the bucket is empty: each call waits for its token
            client.metrics.GetAudience(hour_request(frozen_now))
        elapsed = time.monotonic() - started
    assert elapsed >= 1.5, "the retries waited for the server's delay"
