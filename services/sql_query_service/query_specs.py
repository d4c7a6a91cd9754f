"""A SQL request body (Druid's SQL API fields) → a validated QuerySpec, or the §9 400 list."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from google.protobuf import json_format

from edgestats_core.errors import BadRequest, FieldError, Forbidden, missing, not_in_enum
from edgestats_core.tenancy.principals import Principal

RESULT_FORMATS = ["object", "array", "objectLines", "arrayLines", "csv"]
DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 30_000  # cap on context.timeout (Envoy's route allows 60 s)
QUERY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class QuerySpec:
    query: str
    query_id: str
    timeout_ms: int
    approximate_count_distinct: bool
    skip_empty_buckets: bool
    result_format: str
    header: bool
    parameters: tuple


def _value(request, name: str) -> object:
    return json_format.MessageToDict(getattr(request, name)) if request.HasField(name) else None


def _type_error(name: str, msg: str) -> BadRequest:
    return BadRequest([FieldError(("body", name), msg, "type_error")])


def _flag(value: object, name: str) -> bool:
    """A Druid context boolean: true/false, "true"/"false", 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise _type_error(name, "value could not be parsed to a boolean")


def _timeout(value: object) -> int:
    try:
        millis = int(float(value)) if not isinstance(value, bool) else -1
    except (TypeError, ValueError):
        millis = -1
    if millis <= 0:
        raise _type_error("context", "timeout must be a positive number of milliseconds")
    return min(millis, MAX_TIMEOUT_MS)


def _context(value: object, principal: Principal) -> tuple[str, int, bool, bool]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _type_error("context", "value is not a valid dict")
    query_id = value.get("sqlQueryId") or str(uuid.uuid4())
    if not isinstance(query_id, str) or not QUERY_ID.match(query_id):
        raise _type_error("context", "sqlQueryId must be 1-128 of A-Z a-z 0-9 . _ : -")
    timeout = _timeout(value["timeout"]) if "timeout" in value else DEFAULT_TIMEOUT_MS
    approximate = True
    if "useApproximateCountDistinct" in value:
        approximate = _flag(value["useApproximateCountDistinct"], "context")
        if not approximate and not principal.is_advanced:
            raise Forbidden(
                "useApproximateCountDistinct cannot be changed in the lite tier", "TIER_FORBIDDEN"
            )
    skip = _flag(value["skipEmptyBuckets"], "context") if "skipEmptyBuckets" in value else False
    return query_id, timeout, approximate, skip


def _parameters(value: object) -> tuple:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _type_error("parameters", "value is not a valid list")
    return tuple(value)


def parse(request, principal: Principal) -> QuerySpec:
    """Validate the request fields; unknown fields were already dropped by the gateway."""
    return spec_of(
        principal, _value(request, "query"), _value(request, "context"),
        _value(request, "result_format"), _value(request, "header"),
        _value(request, "parameters"),
    )


def spec_of(
    principal: Principal, query: object, context: object = None, result_format: object = None,
    header: object = None, parameters: object = None,
) -> QuerySpec:
    """Validate a request's fields as JSON values (None: not sent); the typed face sends the
    JSON its request stands for."""
    if query is None:
        raise BadRequest([missing("body", "query")])
    if not isinstance(query, str):
        raise _type_error("query", "str type expected")
    query_id, timeout, approximate, skip = _context(context, principal)
    result_format = result_format or "object"
    if result_format not in RESULT_FORMATS:
        raise BadRequest([not_in_enum("body", "resultFormat", RESULT_FORMATS)])
    return QuerySpec(
        query, query_id, timeout, approximate, skip, str(result_format),
        False if header is None else _flag(header, "header"),
        _parameters(parameters),
    )
