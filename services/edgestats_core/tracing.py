"""OpenTelemetry traces: a server span per call (continuing the caller's W3C `traceparent`,
which the gateway passes on with its own span) and a client span per database use, exported
over OTLP/gRPC when OTEL_EXPORTER_OTLP_ENDPOINT is set. Off otherwise: no provider, and the
interceptor and the database seam skip tracing after one boolean test.

The standard OTEL_* variables apply (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_BSP_SCHEDULE_DELAY,
OTEL_TRACES_SAMPLER…). Span attributes name the service, method, principal id and database,
never a key, a token or an SQL value.
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


_OFF = nullcontext()  # what the span functions give when tracing is off (reusable)


def server_span(service: str, method: str, metadata: Sequence[tuple[str, str | bytes]],
                ) -> AbstractContextManager[trace.Span | None]:
    """The span of one call, child of the `traceparent` it carries (None when off)."""
    return _server_span(service, method, metadata) if ENABLED else _OFF


@contextmanager
def _server_span(service: str, method: str,
                 metadata: Sequence[tuple[str, str | bytes]]) -> Iterator[trace.Span]:
    carrier = {key: value for key, value in metadata if isinstance(value, str)}
    with _tracer.start_as_current_span(
            f"{service}/{method}", context=propagate.extract(carrier), kind=SpanKind.SERVER,
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


def database_span(database: str) -> AbstractContextManager[None]:
    """A span around one use of a pooled connection of `database` (host:port/dbname)."""
    return _database_span(database) if ENABLED else _OFF


@contextmanager
def _database_span(database: str) -> Iterator[None]:
    with _tracer.start_as_current_span(
            "postgresql", kind=SpanKind.CLIENT,
            attributes={"db.system": "postgresql", "db.name": database.rsplit("/", 1)[-1],
                        "server.address": database.rsplit("/", 1)[0]}):
        yield
