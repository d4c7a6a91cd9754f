"""The shared tenancy interceptor: resolves the caller's key and maps domain errors to statuses.

Every service installs it; no service reads the Authorization header itself.
Resolution runs inside the wrapped handler (same task as the servicer method),
so the ContextVar it sets is reliably seen there (grpc/grpc#33071 is about
setting it in intercept_service, which runs elsewhere).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

import grpc
from google.protobuf.message import DecodeError

from edgestats_core.db import Database
from edgestats_core.errors import ApiError, BadRequest, FieldError, NotAuthenticated
from edgestats_core.tenancy.api_keys import (
    LOOKUP_SQL,
    hash_key,
    parse_authorization,
    principal_from_row,
)
from edgestats_core.tenancy.principals import Principal

log = logging.getLogger(__name__)

_principal: ContextVar[Principal | None] = ContextVar("edgestats_principal", default=None)

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
            rows = await self.db.fetch(LOOKUP_SQL, (digest,))
            principal = principal_from_row(rows[0]) if rows else None
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[digest] = (time.monotonic() + self.ttl, principal)
        if principal is None:
            raise NotAuthenticated()
        return principal


async def abort_with(context: grpc.aio.ServicerContext, error: ApiError) -> None:
    """Abort with the documented JSON body as grpc-message (the gateway makes it the HTTP body)."""
    trailing = (("x-http-status", str(error.http_status)),) if error.http_status else ()
    await context.abort(error.code, error.message(), trailing_metadata=trailing)


class TenancyInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call except `public_methods` and gRPC infrastructure."""

    def __init__(self, resolver: KeyResolver, public_methods: frozenset[str]) -> None:
        self.resolver = resolver
        self.public_methods = public_methods

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(PUBLIC_PREFIXES):
            return handler
        auth = dict(details.invocation_metadata or ()).get("authorization")
        public = details.method in self.public_methods

        async def enter() -> None:
            _principal.set(None if public else await self.resolver.resolve(auth))

        return _wrap(handler, enter)


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


def _wrap(handler: grpc.RpcMethodHandler, enter: Callable[[], Awaitable[None]]):
    """The same kind of handler, resolving the principal first and mapping errors."""
    deserializer = _tolerant(handler.request_deserializer)
    if handler.unary_unary:
        behavior = handler.unary_unary

        async def unary(request, context):
            try:
                await enter()
                _check_decoded(request)
                return await behavior(request, context)
            except ApiError as error:
                await abort_with(context, error)
            except Exception as exc:  # noqa: BLE001 - last resort: never leak internals
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                log.exception("unhandled error in %s", behavior)
                await abort_with(context, ApiError())

        return grpc.unary_unary_rpc_method_handler(
            unary, deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        behavior = handler.unary_stream

        async def stream(request, context):
            try:
                await enter()
                _check_decoded(request)
                async for item in behavior(request, context):
                    yield item
            except ApiError as error:
                await abort_with(context, error)
            except Exception as exc:  # noqa: BLE001
                if isinstance(exc, grpc.aio.AbortError):
                    raise
                log.exception("unhandled error in %s", behavior)
                await abort_with(context, ApiError())

        return grpc.unary_stream_rpc_method_handler(
            stream, deserializer, handler.response_serializer
        )
    return handler
