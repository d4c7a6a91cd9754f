"""Validated Statistics resource requests (seed 004, CONTRACT §8): query parameters in, frozen
queries out; a bad value is a 400 in the CONTRACT §9 format, an unknown type a 404."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit

from edgestats_core.errors import BadRequest, FieldError, Forbidden, NotFound, not_in_enum
from edgestats_core.http_query import QueryParams
from edgestats_core.tenancy.principals import Principal

TYPES = ("conversion", "storage", "bandwidth")
VIEWS = ["user", "application"]
ACTIONS = ["aggregate"]
FORMATS = ["json", "xml"]
TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")
XML_TYPES = ("application/xml", "text/xml")


@dataclass(frozen=True)
class Rendering:
    """How to print the answer: `xml` or `json`, indented when `human`."""

    format: str
    human: bool


@dataclass(frozen=True)
class StatsQuery:
    """GET /v1/stats/{type}: bounds are UTC instants, None when unbounded."""

    user_id: str
    type: str
    view: str
    aggregate: bool
    current_subscription: bool
    from_date: datetime | None
    to_date: datetime | None
    base_url: str
    rendering: Rendering


@dataclass(frozen=True)
class TagQuery:
    """GET /v1/stats/bandwidth/tags/{tag} (tag set) or /v1/stats/bandwidth/tags/ (tag None)."""

    user_id: str
    tag: str | None
    application_id: str | None
    aggregate: bool
    from_date: datetime | None
    to_date: datetime | None
    base_url: str
    rendering: Rendering


def usage_user(principal: Principal) -> str:
    """The usage user calling; any other principal (customer, reseller, role) → 403."""
    if not principal.is_usage_user or not principal.user_id:
        raise Forbidden("Usage statistics need a usage user's key or access token",
                        "KEY_KIND_FORBIDDEN")
    return principal.user_id


def metadata_of(context) -> dict[str, str]:
    """The call's text metadata (headers), by name."""
    return {key: value for key, value in (context.invocation_metadata() or ())
            if isinstance(value, str)}


def base_url(metadata: dict[str, str]) -> str:
    """`{scheme}://{host}` of the request as the client addressed it. Envoy sets
    x-forwarded-proto; the Host reaches the service only as `x-forwarded-host` (set by a
    fronting proxy or the gateway: gRPC Python does not expose the call's :authority)."""
    scheme = metadata.get("x-forwarded-proto", "http").split(",")[0].strip() or "http"
    host = (metadata.get("x-forwarded-host") or metadata.get(":authority")
            or metadata.get("host") or "localhost").split(",")[0].strip()
    return f"{scheme}://{host}"


def path_segment(metadata: dict[str, str], index: int, name: str, fallback: str) -> str:
    """A path segment of the original request (a query parameter of the same name cannot
    override it), or the request field for native gRPC callers."""
    return no_nul("path", name, _path_value(metadata, index, fallback))


def _path_value(metadata: dict[str, str], index: int, fallback: str) -> str:
    path = metadata.get("x-envoy-original-path")
    if path is None:
        return fallback
    parts = urlsplit(path).path.split("/")
    return unquote(parts[index]) if len(parts) > index else fallback


def no_nul(where: str, name: str, value: str) -> str:
    """PostgreSQL text cannot hold NUL: bad input, not a failed query."""
    if "\x00" in value:
        raise BadRequest([FieldError((where, name), "must not contain NUL characters",
                                     "value_error")])
    return value


def _choice(params: QueryParams, name: str, allowed: list[str], default: str | None
            ) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value not in allowed:
        raise BadRequest([not_in_enum("query", name, allowed)])
    return value


def _flag(params: QueryParams, name: str) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return False
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise BadRequest([FieldError(("query", name), "value could not be parsed to a boolean",
                                 "type_error.bool")])


def parse_iso(name: str, value: str | None) -> datetime | None:
    """ISO-8601 (`2015-04-19T00:00:00.000Z`, no zone = UTC) → UTC instant."""
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadRequest([FieldError(("query", name), "invalid datetime format",
                                     "value_error.datetime")]) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_epoch_ms(name: str, value: str | None) -> datetime | None:
    """JavaScript timestamp (epoch milliseconds) → UTC instant."""
    if value is None or value == "":
        return None
    try:
        millis = int(value.strip())
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)
    except (ValueError, OverflowError):
        raise BadRequest([FieldError(("query", name), "value is not a valid integer",
                                     "type_error.integer")]) from None


def _check_order(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start >= end:
        raise BadRequest([FieldError(("query", "to_date"), "to_date must be after from_date",
                                     "value_error")])


def rendering(params: QueryParams, metadata: dict[str, str]) -> Rendering:
    """`format` overrides the Accept header; JSON unless XML is asked for."""
    accept = metadata.get("accept", "").lower()
    default = "xml" if any(t in accept for t in XML_TYPES) and "json" not in accept else "json"
    return Rendering(_choice(params, "format", FORMATS, default), _flag(params, "human"))


def parse_stats(request, context, principal: Principal) -> StatsQuery:
    params, metadata = QueryParams(request, context), metadata_of(context)
    user_id = usage_user(principal)
    kind = path_segment(metadata, 3, "type", request.type)
    if kind not in TYPES:
        raise NotFound()
    start = parse_iso("from_date", params.get("from_date"))
    end = parse_iso("to_date", params.get("to_date"))
    return stats_query(user_id, kind, start, end, params, metadata)


def stats_query(user_id: str, kind: str, start: datetime | None, end: datetime | None,
                params: QueryParams, metadata: dict[str, str]) -> StatsQuery:
    """The checks after the bounds are parsed (the typed face has them as instants): their
    order, then the other parameters."""
    _check_order(start, end)
    return StatsQuery(
        user_id=user_id, type=kind, view=_choice(params, "view", VIEWS, "user"),
        aggregate=_choice(params, "action", ACTIONS, None) == "aggregate",
        current_subscription=_flag(params, "current_subscription"),
        from_date=start, to_date=end, base_url=base_url(metadata),
        rendering=rendering(params, metadata),
    )


def parse_tags(request, context, principal: Principal, tag: bool) -> TagQuery:
    params, metadata = QueryParams(request, context), metadata_of(context)
    user_id = usage_user(principal)
    start = parse_epoch_ms("from_date", params.get("from_date"))
    end = parse_epoch_ms("to_date", params.get("to_date"))
    return tag_query(user_id, _path_value(metadata, 5, request.tag) if tag else None,
                     start, end, params, metadata)


def tag_query(user_id: str, tag: str | None, start: datetime | None, end: datetime | None,
              params: QueryParams, metadata: dict[str, str]) -> TagQuery:
    """The checks after the bounds are parsed: their order, the tag (None: the top tags),
    then the other parameters."""
    _check_order(start, end)
    return TagQuery(
        user_id=user_id,
        tag=no_nul("path", "tag", tag) if tag is not None else None,
        application_id=params.get("application_id") or None,
        aggregate=tag is not None and _choice(params, "action", ACTIONS, None) == "aggregate",
        from_date=start, to_date=end, base_url=base_url(metadata),
        rendering=rendering(params, metadata),
    )
