"""Druid's own error body (`{"error", "errorMessage", "errorClass", "host"}`) for /druid/ paths.

Druid clients read only those keys; the edgestats body's keys (`detail`, or `type`
and `title`) are kept beside them, so one documented error schema fits every path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from edgestats_core.errors import ApiError

_ERRORS = {400: "Plan validation failed", 403: "Forbidden", 404: "Not Found",
           504: "Query timeout", 503: "Service Unavailable"}
_HTTP = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.PERMISSION_DENIED: 403,
         grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.UNAVAILABLE: 503}


class DruidError(ApiError):
    """The same status as `error`, with Druid's body."""

    def __init__(self, error: ApiError) -> None:
        super().__init__()
        self.code, self.http_status, self.original = error.code, error.http_status, error

    def body(self) -> dict:
        """Druid's four keys, plus ours (the OpenAPI schema every path shares)."""
        status = self.http_status or _HTTP.get(self.code, 500)
        return {
            **self.original.body(),
            "error": _ERRORS.get(status, "Unknown exception"),
            "errorMessage": _message(self.original.body()),
            "errorClass": type(self.original).__name__,
            "host": None,
        }


def _message(body: dict) -> str:
    detail = body.get("detail", body.get("title"))
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return "; ".join(str(d.get("msg")) for d in detail)
    return detail if isinstance(detail, str) else json.dumps(body)


def is_druid_path(context: grpc.aio.ServicerContext) -> bool:
    metadata = dict(context.invocation_metadata() or ())
    return str(metadata.get("x-envoy-original-path", "")).startswith("/druid/")


@contextmanager
def for_path(context: grpc.aio.ServicerContext) -> Iterator[None]:
    """Re-raise API errors with Druid's body when the request came in on a /druid/ path."""
    try:
        yield
    except ApiError as error:
        if is_druid_path(context) and not isinstance(error, DruidError):
            raise DruidError(error) from None
        raise
