"""Domain errors and the one table mapping them to gRPC codes and documented JSON bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import grpc


class ApiError(Exception):
    """An error with a documented JSON body."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    # Set when the HTTP status is not the one the gateway derives from `code`.
    http_status: int | None = None
    # The typed callers' ErrorInfo reason when the kind of error does not say it all.
    reason: str | None = None

    def body(self) -> dict:
        return {"detail": "Internal Server Error"}

    def message(self) -> str:
        """The grpc-message: the exact JSON body, which the gateway turns into the HTTP body."""
        return json.dumps(self.body(), separators=(",", ":"), ensure_ascii=False)


@dataclass
class FieldError:
    """One entry of a 400 detail list, in the seed's (pydantic v1) format."""

    loc: tuple[str, ...]
    msg: str
    type: str
    ctx: dict | None = None

    def as_dict(self) -> dict:
        item: dict = {"loc": list(self.loc), "msg": self.msg, "type": self.type}
        if self.ctx is not None:
            item["ctx"] = self.ctx
        return item


@dataclass
class BadRequest(ApiError):
    """400 with a detail list."""

    errors: list[FieldError] = field(default_factory=list)
    code = grpc.StatusCode.INVALID_ARGUMENT

    def body(self) -> dict:
        return {"detail": [e.as_dict() for e in self.errors]}


def missing(where: str, name: str) -> FieldError:
    """A required parameter that was not sent."""
    return FieldError((where, name), "field required", "value_error.missing")


def not_in_enum(where: str, name: str, allowed: list[str]) -> FieldError:
    """A value outside its enumeration; lists the permitted values."""
    permitted = ", ".join(f"'{v}'" for v in allowed)
    return FieldError(
        (where, name),
        f"value is not a valid enumeration member; permitted: {permitted}",
        "type_error.enum",
        {"enum_values": list(allowed)},
    )


class NotAuthenticated(ApiError):
    """401: missing or invalid key."""

    code = grpc.StatusCode.UNAUTHENTICATED

    def body(self) -> dict:
        return {"type": "not-authenticated", "title": "Not authenticated"}


@dataclass
class Forbidden(ApiError):
    """403 for a tier or reseller rule; `title` names the rule, `reason` is the typed
    callers' ErrorInfo reason (TIER_FORBIDDEN, KEY_KIND_FORBIDDEN, CUSTOMER_FORBIDDEN,
    REGION_FORBIDDEN)."""

    title: str = "Forbidden"
    reason: str = "FORBIDDEN"
    code = grpc.StatusCode.PERMISSION_DENIED

    def body(self) -> dict:
        return {"type": "forbidden", "title": self.title}


class NotFound(ApiError):
    """404 for an unknown path or resource."""

    code = grpc.StatusCode.NOT_FOUND

    def body(self) -> dict:
        return {"detail": "Not Found"}


class Unavailable(ApiError):
    """503: the database cannot be reached."""

    code = grpc.StatusCode.UNAVAILABLE

    def body(self) -> dict:
        return {"detail": "Service Unavailable"}


@dataclass
class PayloadTooLarge(ApiError):
    """413: an ingest batch over its item or byte limit."""

    limit: str = ""
    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 413

    def body(self) -> dict:
        return {"detail": f"Payload Too Large: {self.limit}"}


class GatewayTimeout(ApiError):
    """504: a query ran past its time budget and was cancelled in PostgreSQL."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504

    def body(self) -> dict:
        return {"detail": "Gateway Timeout: the query ran past its time budget and was cancelled"}


@dataclass
class TooManyRequests(ApiError):
    """429 when a key exceeds its rate (CONTRACT §9); `retry_after` in seconds."""

    retry_after: int = 1
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def body(self) -> dict:
        return {"detail": "Too Many Requests"}
