"""edgestats_client's retry policy against a small in-process MetricsService: UNAVAILABLE is
retried (with the key on every attempt) up to `max_attempts`, after the server's pushback
when it sends one; other refusals are not retried."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from edgestats.metrics.v1 import metrics_service_pb2 as pb
from edgestats.metrics.v1 import metrics_service_pb2_grpc as rpc
from edgestats_client import connect


class Flaky(rpc.MetricsServiceServicer):
    """GetAudience answers `codes` in turn (OK once they run out), noting each attempt's key."""

    def __init__(self) -> None:
        self.codes: list[grpc.StatusCode] = []
        self.pushback_ms: int | None = None
        self.keys: list[str] = []
        self.lock = threading.Lock()

    def GetAudience(self, request, context):
        with self.lock:
            self.keys.append(dict(context.invocation_metadata()).get("authorization", ""))
            code = self.codes.pop(0) if self.codes else grpc.StatusCode.OK
        if code != grpc.StatusCode.OK:
            if self.pushback_ms is not None:
                context.set_trailing_metadata(
                    (("grpc-retry-pushback-ms", str(self.pushback_ms)),))
            context.abort(code, "refused")
        return pb.AudienceResponse(rows=[pb.AudienceRow(audience=7)])


@pytest.fixture
def flaky() -> Iterator[tuple[Flaky, str]]:
    servicer = Flaky()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    rpc.add_MetricsServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


def test_unavailable_is_retried_with_the_key(flaky):
    servicer, target = flaky
    servicer.codes = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE]
    with connect(target, key="es_k", timeout=10) as client:
        answer = client.metrics.GetAudience(pb.GetMetricRequest())
    assert [row.audience for row in answer.rows] == [7]
    assert servicer.keys == ["Bearer es_k"] * 3


def test_retries_stop_at_max_attempts(flaky):
    servicer, target = flaky
    servicer.codes = [grpc.StatusCode.UNAVAILABLE] * 5
    with (connect(target, key="es_k", timeout=10, max_attempts=3) as client,
          pytest.raises(grpc.RpcError) as caught):
        client.metrics.GetAudience(pb.GetMetricRequest())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(servicer.keys) == 3


def test_the_servers_pushback_is_waited_for(flaky):
    servicer, target = flaky
    servicer.codes, servicer.pushback_ms = [grpc.StatusCode.UNAVAILABLE], 600
    with connect(target, key="es_k", timeout=10) as client:
        started = time.monotonic()
        client.metrics.GetAudience(pb.GetMetricRequest())
    assert time.monotonic() - started >= 0.5  # the backoff alone is at most 0.2 s
    assert len(servicer.keys) == 2


def test_other_refusals_are_not_retried(flaky):
    servicer, target = flaky
    servicer.codes = [grpc.StatusCode.INVALID_ARGUMENT]
    with (connect(target, key="es_k", timeout=10) as client,
          pytest.raises(grpc.RpcError) as caught):
        client.metrics.GetAudience(pb.GetMetricRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(servicer.keys) == 1
