"""OpenTelemetry traces: a server span per call (continuing the caller's W3C `traceparent`,
which the gateway passes on with its own span) and a client span per SQL statement
(edgestats_core.traced_cursor), exported over OTLP/gRPC when OTEL_EXPORTER_OTLP_ENDPOINT is
set. Off otherwise: no provider, the pools' connections keep psycopg's own cursor, and the
interceptor skips tracing after one boolean test.

The standard OTEL_* variables apply (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_BSP_SCHEDULE_DELAY,
OTEL_TRACES_SAMPLER…). Span attributes name the service, method, principal id and database,
never a key, a token, an SQL text or value. No span records an exception's message
(PostgreSQL's may quote a value): a failure is named by its code or class.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

ENABLED = bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
_tracer = trace.get_tracer("edgestats")


def setup(service_name: str) -> None:
    """Install the OTLP exporter for this process (once, at start) when enabled."""
    if not ENABLED:
        return
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def shutdown() -> None:
    """Export what is left (at the process's stop)."""
    provider = trace.get_tracer_provider()
    if ENABLED and hasattr(provider, "shutdown"):
        provider.shutdown()


OFF = nullcontext()  # what the span functions give when tracing is off (reusable)


def server_span(service: str, method: str, metadata: Sequence[tuple[str, str | bytes]],
                ) -> AbstractContextManager[trace.Span | None]:
    """The span of one call, child of the `traceparent` it carries (None when off)."""
    return _server_span(service, method, metadata) if ENABLED else OFF


@contextmanager
def _server_span(service: str, method: str,
                 metadata: Sequence[tuple[str, str | bytes]]) -> Iterator[trace.Span]:
    carrier = {key: value for key, value in metadata if isinstance(value, str)}
    with _tracer.start_as_current_span(
            f"{service}/{method}", context=propagate.extract(carrier), kind=SpanKind.SERVER,
            record_exception=False, set_status_on_exception=False,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
    ) as span:
        yield span


def set_error(span: trace.Span | None, code: str) -> None:
    """Mark a call's span failed with its gRPC code."""
    if span is not None:
        span.set_attribute("rpc.grpc.status_code", code)
        span.set_status(Status(StatusCode.ERROR, code))


def set_principal(principal_id: str) -> None:
    """Name the caller on the current span (an id, never its key)."""
    if ENABLED:
        trace.get_current_span().set_attribute("enduser.id", principal_id)


def statement_span(database: str, operation: str) -> AbstractContextManager[object]:
    """A client span around one statement on `database` (its name): `operation` is the
    statement's leading keyword; a failure sets the span's status to the error's class."""
    return _statement_span(database, operation) if ENABLED else OFF


@contextmanager
def _statement_span(database: str, operation: str) -> Iterator[None]:
    with _tracer.start_as_current_span(
            f"{operation} {database}", kind=SpanKind.CLIENT, record_exception=False,
            set_status_on_exception=False,
            attributes={"db.system": "postgresql", "db.operation": operation,
                        "db.name": database}) as span:
        try:
            yield
        except Exception as error:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            raise
