"""A request carrying a W3C `traceparent` leaves spans of the gateway, the service and each
of its SQL statements under that trace id, each the child of the one before, at a local OTLP
collector (a gRPC TraceService in this test). No span carries a value of the request."""

from __future__ import annotations

import secrets
import time
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)

from edgestats_stack.stack import start_stack
from tests.builders import scenario, wire
from tests.e2e.api import Api

pytestmark = pytest.mark.e2e


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every exported span with its resource's service.name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, object]] = []

    def Export(self, request, context):
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value
                          for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append((attributes.get("service.name", ""), span))
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture(scope="module")
def collector():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    received = Collector()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(received, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield received, port
    server.stop(None)


@pytest.fixture(scope="module")
def traced(db_url, frozen_now, tmp_path_factory, collector):
    _, port = collector
    env = {"EDGESTATS_FROZEN_NOW": frozen_now.isoformat(),
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
           "OTEL_BSP_SCHEDULE_DELAY": "100"}
    stack = start_stack(Path(tmp_path_factory.mktemp("traced")), db_url, env=env, workers=1)
    with Api(stack.http_url) as api:
        yield api
    stack.stop()


def spans_of(collector: Collector, trace_id: bytes, services: set[str],
             timeout: float = 20.0) -> list:
    """The trace's spans once every one of `services` exported some (Envoy flushes its spans
    every 5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [(name, s) for name, s in collector.spans if s.trace_id == trace_id]
        if services <= {name for name, _ in found} or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_traceparent_is_followed_to_the_database(traced, collector, tenants, frozen_now):
    received, _ = collector
    customer_id, key = tenants.customer("advanced")
    traced.ingest(key, [wire(b) for b in scenario(customer_id, frozen_now, seed=81)])
    trace_id, parent_id = secrets.token_bytes(16), secrets.token_bytes(8)
    traceparent = f"00-{trace_id.hex()}-{parent_id.hex()}-01"
    response = traced.http.get("/summary/agg", params={"time": "1h"},
                               headers={**traced.auth(key), "traceparent": traceparent})
    assert response.status_code == 200
    spans = spans_of(received, trace_id, {"edgestats-gateway", "edgestats-metrics"})
    by_service: dict[str, list] = {}
    for name, span in spans:
        by_service.setdefault(name, []).append(span)
    (gateway,) = by_service["edgestats-gateway"]
    assert gateway.parent_span_id == parent_id
    server = [s for s in by_service["edgestats-metrics"] if s.kind == s.SPAN_KIND_SERVER]
    (call,) = server
    assert call.name == "edgestats.metrics.v1.LegacyStatsJsonService/GetSummaryAggregate"
    assert call.parent_span_id == gateway.span_id
    attributes = {a.key: a.value.string_value for a in call.attributes}
    assert attributes["enduser.id"] == f"customer:{customer_id}"
    assert key not in str(call)
    statements = [s for s in by_service["edgestats-metrics"] if s.kind == s.SPAN_KIND_CLIENT]
    assert statements and all_statement_spans(statements, call)


def all_statement_spans(spans: list, call) -> bool:
    """Each span is one statement's, a child of `call`, named and described by its leading
    keyword and database alone."""
    for span in spans:
        attributes = {a.key: a.value.string_value for a in span.attributes}
        assert span.parent_span_id == call.span_id and span.trace_id == call.trace_id
        assert set(attributes) == {"db.system", "db.operation", "db.name"}, attributes
        assert attributes["db.system"] == "postgresql"
        assert span.name == f"{attributes['db.operation']} {attributes['db.name']}"
    return True


def traceparent_of(trace_id: bytes) -> str:
    return f"00-{trace_id.hex()}-{secrets.token_bytes(8).hex()}-01"


def test_sql_statements_are_spans_without_values(traced, collector, tenants, frozen_now):
    """A SQL query's statements are spans under the SQL service's call; its literal is in
    none of the trace's spans, nor is a literal PostgreSQL refuses with a syntax error."""
    received, _ = collector
    customer_id, key = tenants.customer("advanced")
    beacons = [wire(b) for b in scenario(customer_id, frozen_now, seed=82)]
    assert traced.ingest(key, beacons).json()["accepted"] == len(beacons)  # COPY, traced
    literal = f"zq-{secrets.token_hex(6)}"
    queries = {
        200: (f"SELECT COUNT(*) AS n FROM \"sdk-emea-realtime\" WHERE CustomerId = "
              f"'{customer_id}' AND StreamId <> '{literal}'"),
        400: f"SELECT 1 IS '{literal}'",  # PostgreSQL: syntax error at or near the literal
    }
    for status, query in queries.items():
        trace_id = secrets.token_bytes(16)
        response = traced.http.post(
            "/analytics/v1/query/sql", json={"query": query},
            headers={**traced.auth(key), "traceparent": traceparent_of(trace_id)})
        assert response.status_code == status, response.text
        spans = spans_of(received, trace_id, {"edgestats-gateway", "edgestats-sql"})
        (call,) = [s for name, s in spans
                   if name == "edgestats-sql" and s.kind == s.SPAN_KIND_SERVER]
        statements = [s for name, s in spans
                      if name == "edgestats-sql" and s.kind == s.SPAN_KIND_CLIENT]
        operations = [{a.key: a.value.string_value for a in s.attributes}["db.operation"]
                      for s in sorted(statements, key=lambda s: s.start_time_unix_nano)]
        # the key's lookup …, then the query's transaction: isolation, role, settings …
        assert "SET SET SELECT" in " ".join(operations), operations
        assert operations[-1] == "SELECT" and all_statement_spans(statements, call)
        failed = [s for s in statements if s.status.code == s.status.STATUS_CODE_ERROR]
        assert len(failed) == (status != 200)
        assert all(literal not in str(span) and key not in str(span) for _, span in spans)


def test_an_error_is_a_failed_span(traced, collector, tenants):
    received, _ = collector
    _, key = tenants.customer("lite")
    trace_id = secrets.token_bytes(16)
    response = traced.http.get("/summary", headers={**traced.auth(key),
                                                    "traceparent": traceparent_of(trace_id)})
    assert response.status_code == 400  # no time=
    spans = spans_of(received, trace_id, {"edgestats-metrics"})
    (call,) = [s for name, s in spans
               if name == "edgestats-metrics" and s.kind == s.SPAN_KIND_SERVER]
    assert call.status.code == call.status.STATUS_CODE_ERROR
    assert {a.key: a.value.string_value for a in call.attributes}[
        "rpc.grpc.status_code"] == "INVALID_ARGUMENT"
