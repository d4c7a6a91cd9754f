"""The gRPC rich error model for typed callers: a google.rpc.Status with details.

The JSON surface carries the documented JSON body as grpc-message (the gateway makes it the
HTTP body); a typed service's caller gets instead a readable message and, in the
`grpc-status-details-bin` trailer, BadRequest field violations, an ErrorInfo reason
(TIER_FORBIDDEN, RATE_LIMITED, …) and, for errors worth retrying, RetryInfo.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from edgestats_core.errors import (
    ApiError,
    BadRequest,
    FieldError,
    GatewayTimeout,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unavailable,
)

DOMAIN = "edgestats"
# Where a field error's location starts (the JSON surface's "body", "query", "path").
_PLACES = ("body", "query", "path")
# ErrorInfo reasons of the errors that do not carry their own.
_REASONS: dict[type[ApiError], str] = {
    BadRequest: "INVALID_ARGUMENT",
    NotAuthenticated: "NOT_AUTHENTICATED",
    NotFound: "NOT_FOUND",
    Unavailable: "DATABASE_UNAVAILABLE",
    PayloadTooLarge: "PAYLOAD_TOO_LARGE",
    GatewayTimeout: "QUERY_TIMEOUT",
    TooManyRequests: "RATE_LIMITED",
}
# Seconds a caller waits before retrying an unavailable database.
UNAVAILABLE_RETRY_SECONDS = 1


def renaming_fields(rename: Callable[[FieldError], FieldError]):
    """A decorator for a typed servicer's async methods: field errors of the JSON face's
    validation are re-raised with `rename` applied (JSON names → the typed request's)."""
    def decorate(call: Callable):
        @functools.wraps(call)
        async def wrapped(*args, **kwargs):
            try:
                return await call(*args, **kwargs)
            except BadRequest as error:
                raise BadRequest([rename(e) for e in error.errors]) from None
        return wrapped
    return decorate


def field_path(loc: list | tuple) -> str:
    """`["body", "filter", "channel_id"]` → `filter.channel_id` (the typed request's field)."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in _PLACES:
        parts = parts[1:]
    return ".".join(parts)


def _packed(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def reason_of(error: ApiError) -> str:
    """The ErrorInfo reason: the error's own (Forbidden, QueryCancelled), else one per kind."""
    if error.reason:
        return error.reason
    for kind in type(error).__mro__:
        if kind in _REASONS:
            return _REASONS[kind]
    return error.code.name


def retry_seconds(error: ApiError) -> int | None:
    """Seconds to wait before retrying `error`'s call; None when a retry will not help."""
    if isinstance(error, TooManyRequests):
        return error.retry_after
    if isinstance(error, Unavailable):
        return UNAVAILABLE_RETRY_SECONDS
    return None


def status_of(error: ApiError, message: str | None = None) -> status_pb2.Status:
    """The google.rpc.Status a typed caller receives for `error`; `message` replaces the
    readable text (an ingest caller's grpc-message stays the JSON body)."""
    body = error.body()
    detail = body.get("detail")
    details = []
    if isinstance(detail, list):  # field errors: one violation each
        violations = [
            error_details_pb2.BadRequest.FieldViolation(
                field=field_path(item.get("loc", ())), description=str(item.get("msg", "")),
                reason=str(item.get("type", "")))
            for item in detail if isinstance(item, dict)
        ]
        details.append(_packed(error_details_pb2.BadRequest(field_violations=violations)))
        text = "; ".join(f"{v.field or 'request'}: {v.description}" for v in violations)
    else:
        text = str(body.get("title") or detail or error.code.name)
    info = error_details_pb2.ErrorInfo(reason=reason_of(error), domain=DOMAIN)
    details.insert(0, _packed(info))
    retry = retry_seconds(error)
    if retry is not None:
        delay = duration_pb2.Duration(seconds=retry)
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(code=error.code.value[0], message=text if message is None else message,
                             details=details)


def abort_arguments(error: ApiError, message: str | None = None,
                    ) -> tuple[grpc.StatusCode, str, tuple[tuple[str, object], ...]]:
    """Code, message and trailers to abort a typed call with: `grpc-status-details-bin`, and
    for a retryable error `grpc-retry-pushback-ms`, which gRPC's own retry policy honours
    (the same delay as RetryInfo). `message`: the grpc-message when not the readable text."""
    status = status_of(error, message)
    trailers: list[tuple[str, object]] = [
        (rpc_status.GRPC_DETAILS_METADATA_KEY, status.SerializeToString())]
    retry = retry_seconds(error)
    if retry is not None:
        trailers.append(("grpc-retry-pushback-ms", str(retry * 1000)))
    return error.code, status.message, tuple(trailers)
