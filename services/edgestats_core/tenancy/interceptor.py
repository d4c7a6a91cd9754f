"""The shared tenancy interceptor: resolves the caller's key and maps domain errors to statuses.

Every service installs it; no service reads the Authorization header itself.
Resolution runs inside the wrapped handler (same task as the servicer method),
so the ContextVar it sets is reliably seen there (grpc/grpc#33071 is about
setting it in intercept_service, which runs elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

import grpc
from google.protobuf.message import DecodeError

from edgestats_core import json_logs, prometheus_metrics, rich_errors, tracing
from edgestats_core.db import Database
from edgestats_core.errors import (
    ApiError,
    BadRequest,
    FieldError,
    NotAuthenticated,
    TooManyRequests,
)
from edgestats_core.tenancy.api_keys import (
    LOOKUP_SQL,
    hash_key,
    parse_authorization,
    principal_from_row,
)
from edgestats_core.tenancy.principals import Principal
from edgestats_core.tenancy.rate_limits import RateLimiter

log = logging.getLogger(__name__)

_principal: ContextVar[Principal | None] = ContextVar("edgestats_principal", default=None)
# Response headers of the call being served, sent with its answer (success or error).
_headers: ContextVar[list[tuple[str, str]] | None] = ContextVar("edgestats_headers", default=None)

# gRPC infrastructure that answers without a key.
PUBLIC_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def current_principal() -> Principal:
    """The caller of the RPC being served; only public methods have none."""
    principal = _principal.get()
    if principal is None:
        raise NotAuthenticated()
    return principal


class KeyResolver:
    """Resolves keys to principals with a short-lived cache (negative answers included)."""

    def __init__(self, db: Database, ttl_seconds: float = 10.0) -> None:
        self.db = db
        self.ttl = ttl_seconds
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}

    async def resolve(self, authorization: str | None) -> Principal:
        key = parse_authorization(authorization)
        if key is None:
            raise NotAuthenticated()
        digest = hash_key(key)
        hit = self._cache.get(digest)
        if hit and hit[0] > time.monotonic():
            principal = hit[1]
        else:
            rows = await self.db.fetch(LOOKUP_SQL, {"digest": digest})
            principal = principal_from_row(rows[0]) if rows else None
            ttl = self.ttl
            if rows and rows[0]["expires_in"] is not None:  # an access token: not past expiry
                ttl = min(ttl, rows[0]["expires_in"])
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[digest] = (time.monotonic() + ttl, principal)
        if principal is None:
            raise NotAuthenticated()
        return principal


def add_response_header(name: str, value: str) -> None:
    """A header for the current call's answer (e.g. X-Druid-SQL-Query-Id). Handlers must not
    send initial metadata themselves: metadata sent before an error empties the error body."""
    headers = _headers.get()
    if headers is None:
        headers = []
        _headers.set(headers)
    headers.append((name.lower(), value))


# How a call's errors are told: "json" — the documented JSON body as grpc-message (HTTP
# callers through the gateway); "rich" — the typed services' rich error model; "json+details"
# — a native gRPC caller of an ingest service: the JSON message it always had, plus the rich
# model's details beside it.
ErrorStyle = Literal["json", "rich", "json+details"]
# Set by the gateway on calls it transcoded from HTTP.
ORIGINAL_PATH = "x-envoy-original-path"


async def abort_with(context: grpc.aio.ServicerContext, error: ApiError,
                     style: ErrorStyle = "json") -> None:
    """Abort with the documented JSON body as grpc-message (the gateway makes it the HTTP body);
    response headers travel as trailing metadata, which the gateway turns into headers.
    Other `style`s add the rich error model (rich_errors)."""
    trailing: list[tuple[str, str | bytes]] = list(_headers.get() or ())
    if isinstance(error, TooManyRequests):
        trailing.append(("retry-after", str(error.retry_after)))
    if style == "json":
        if error.http_status:
            trailing.append(("x-http-status", str(error.http_status)))
        await context.abort(error.code, error.message(), trailing_metadata=tuple(trailing))
    else:
        message = error.message() if style == "json+details" else None
        code, text, trailers = rich_errors.abort_arguments(error, message)
        await context.abort(code, text, trailing_metadata=(*trailing, *trailers))


async def send_headers(context: grpc.aio.ServicerContext) -> None:
    """Send the collected response headers with a successful answer."""
    headers = _headers.get()
    if headers:
        await context.send_initial_metadata(tuple(headers))


class TenancyInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call except `public_methods` and gRPC infrastructure."""

    def __init__(
        self, resolver: KeyResolver, public_methods: frozenset[str],
        limiter: RateLimiter | None = None, typed_services: frozenset[str] = frozenset(),
        detailed_services: frozenset[str] = frozenset(),
    ) -> None:
        self.resolver = resolver
        self.public_methods = public_methods
        self.limiter = limiter
        self.typed_services = typed_services  # their callers get the rich error model
        self.detailed_services = detailed_services  # native callers get its details too

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(PUBLIC_PREFIXES):
            return handler
        metadata = dict(details.invocation_metadata or ())
        auth = metadata.get("authorization")
        public = details.method in self.public_methods

        async def enter() -> None:
            _headers.set(None)
            principal = None if public else await self.resolver.resolve(auth)
            _principal.set(principal)
            if principal is not None:
                tracing.set_principal(principal.id)
                json_logs.bind(principal=principal.id)
            if principal is not None and self.limiter is not None:
                self.check_rate(principal)

        service, _, method = details.method[1:].partition("/")
        native = ORIGINAL_PATH not in metadata
        call = _Call(self.error_style(service, native), service, method,
                     "grpc" if native else "http")
        return _wrap(handler, enter, call)

    def error_style(self, service: str, native: bool) -> ErrorStyle:
        """How a call's errors are told (see ErrorStyle)."""
        if service in self.typed_services:
            return "rich"
        return "json+details" if native and service in self.detailed_services else "json"

    def check_rate(self, principal: Principal) -> None:
        """Spend a token of the key's bucket; the answer carries X-RateLimit-* either way."""
        decision = self.limiter.take(principal.key_id, principal.tier, principal.limit)
        add_response_header("x-ratelimit-limit", f"{decision.limit:g}")
        add_response_header("x-ratelimit-remaining", str(decision.remaining))
        if not decision.allowed:
            prometheus_metrics.RATE_LIMITED.labels(principal.tier).inc()
            raise TooManyRequests(retry_after=decision.retry_after)


class _Undecodable:
    """Stands for a request the transcoder built from bytes that are not valid UTF-8."""


_UNDECODABLE = _Undecodable()


def _tolerant(deserializer: Callable[[bytes], object] | None) -> Callable[[bytes], object] | None:
    """A deserializer that yields _UNDECODABLE instead of failing the call with INTERNAL."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> object:
        try:
            return deserializer(data)
        except DecodeError:
            return _UNDECODABLE
    return deserialize


def _check_decoded(request: object) -> None:
    if request is _UNDECODABLE:
        raise BadRequest([FieldError(("query",), "the request is not valid UTF-8", "value_error")])


@dataclass(frozen=True)
class _Call:
    """What the interceptor knows of a call before it runs."""

    style: ErrorStyle
    service: str
    method: str
    transport: str  # http: transcoded by the gateway; grpc: a native caller


@asynccontextmanager
async def _answering(
    context: grpc.aio.ServicerContext, request: object, enter: Callable[[], Awaitable[None]],
    behavior: object, call: _Call,
) -> AsyncIterator[None]:
    """Resolve the principal, then run the call; domain errors become their documented
    bodies, anything else a bare 500 (logged, never leaked). Counted and timed."""
    started = time.perf_counter()
    code, http_status = grpc.StatusCode.OK, None
    metadata = context.invocation_metadata() or ()
    with tracing.server_span(call.service, call.method, metadata) as span:
        json_logs.clear()
        json_logs.bind(method=f"{call.service}/{call.method}", transport=call.transport,
                       **_request_ids(metadata, span))
        try:
            await enter()
            _check_decoded(request)
            yield
        except ApiError as error:
            code, http_status = error.code, error.http_status
            await abort_with(context, error, call.style)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # noqa: BLE001 - last resort: never leak internals
            if isinstance(exc, grpc.aio.AbortError):
                code = grpc.StatusCode.UNKNOWN
                raise
            code = grpc.StatusCode.INTERNAL
            log.exception("unhandled error in %s", behavior)
            await abort_with(context, ApiError(), call.style)
        finally:
            seconds = time.perf_counter() - started
            if code != grpc.StatusCode.OK:
                tracing.set_error(span, code.name)
            prometheus_metrics.observe_call(call.service, call.method, call.transport, code,
                                            http_status, seconds)
            log.info("answered", extra={"grpc_code": code.name,
                                        "ms": round(seconds * 1000, 1)})


def _request_ids(metadata, span) -> dict[str, str]:
    """The gateway's request id and the trace id (this call's span's, else the caller's
    `traceparent`'s) of a call, for its log lines."""
    ids: dict[str, str] = {}
    for key, value in metadata:
        if key == "x-request-id" and isinstance(value, str):
            ids["request_id"] = value
        elif key == "traceparent" and isinstance(value, str) and value.count("-") == 3:
            ids["trace_id"] = value.split("-")[1]
    if span is not None:
        ids["trace_id"] = format(span.get_span_context().trace_id, "032x")
    return ids


def _wrap(handler: grpc.RpcMethodHandler, enter: Callable[[], Awaitable[None]], call: _Call):
    """The same kind of handler, resolving the principal first and mapping errors."""
    deserializer = _tolerant(handler.request_deserializer)
    if handler.unary_unary:
        behavior = handler.unary_unary

        async def unary(request, context):
            async with _answering(context, request, enter, behavior, call):
                response = await behavior(request, context)
                await send_headers(context)
                return response

        return grpc.unary_unary_rpc_method_handler(
            unary, deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        behavior = handler.unary_stream

        async def stream(request, context):
            async with _answering(context, request, enter, behavior, call):
                first = True
                # closed with the call: a stream the caller left stops its work at once
                async with aclosing(behavior(request, context)) as items:
                    async for item in items:
                        if first:  # computed before the first message: headers go with it
                            await send_headers(context)
                            first = False
                        yield item

        return grpc.unary_stream_rpc_method_handler(
            stream, deserializer, handler.response_serializer
        )
    return handler
