"""The HTTP query string as the client sent it, for JSON callers coming through Envoy.

The transcoder copies query parameters into request fields but does not decode
`+` as a space (PLATFORM-NOTES §3), so `representation_id=2+of+4` would arrive
as "2+of+4". Envoy passes the original path in `x-envoy-original-path`; parsing
it with the form-encoding rules gives what the client meant.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import grpc

from edgestats_core.errors import BadRequest, FieldError


def original_query(context: grpc.aio.ServicerContext) -> dict[str, str] | None:
    """Query parameters of the original HTTP request (last value wins), or None for gRPC callers."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-envoy-original-path":
            return dict(parse_qsl(urlsplit(value).query, keep_blank_values=True))
    return None


class QueryParams:
    """Reads request fields, preferring the original query string's decoding when there is one."""

    def __init__(self, request, context: grpc.aio.ServicerContext) -> None:
        self.request = request
        self.query = original_query(context)
        self.values: dict[str, str] | None = None

    @classmethod
    def of(cls, values: dict[str, str]) -> QueryParams:
        """Parameters given as strings by name (query and path alike): a typed request's
        fields spelled as the JSON face's parameters."""
        params = cls.__new__(cls)
        params.request, params.query, params.values = None, None, dict(values)
        return params

    def get(self, name: str, text: bool = True) -> str | None:
        """A query parameter; `text` values (used as SQL parameters) may not contain NUL."""
        if self.query is not None and name in self.query:
            value = self.query[name]
        else:
            value = self._field(name)
        return _checked("query", name, value) if text else value

    def path(self, name: str) -> str | None:
        """A path parameter (the gateway never fills these from the query string)."""
        return _checked("path", name, self._field(name))

    def _field(self, name: str) -> str | None:
        if self.values is not None:
            return self.values.get(name)
        return getattr(self.request, name) if self.request.HasField(name) else None


def _checked(where: str, name: str, value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL: refuse it as bad input rather than fail the query."""
    if value is not None and "\x00" in value:
        error = FieldError((where, name), "must not contain NUL characters", "value_error")
        raise BadRequest([error])
    return value
