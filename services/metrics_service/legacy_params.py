"""Validation of Legacy Stats API query parameters into a LegacyQuery (errors as seed 001)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from edgestats_core.beacon_columns import SOURCES
from edgestats_core.errors import BadRequest, FieldError, Forbidden, missing, not_in_enum
from edgestats_core.http_query import QueryParams
from edgestats_core.metrics.definitions import StatMetric
from edgestats_core.query.windows import TIME_VALUES, Window, legacy_window
from edgestats_core.tenancy.principals import Principal

MAX_PER_PAGE = 1000
DEFAULT_PER_PAGE = 10


@dataclass(frozen=True)
class LegacyQuery:
    """A validated legacy request: who, which beacons, which window."""

    customer_id: str
    window: Window
    channel_id: str | None = None
    stream_id: str | None = None
    bitrate: str | None = None
    representation_id: str | None = None
    source: str | None = None
    per_page: int | None = None
    page: int | None = None

    @property
    def paginated(self) -> bool:
        return self.per_page is not None


def _integer(
    params: QueryParams, name: str, minimum: int, maximum: int, errors: list[FieldError]
) -> int | None:
    raw = params.get(name, text=False)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        errors.append(
            FieldError(("query", name), "value is not a valid integer", "type_error.integer")
        )
        return None
    if value < minimum:
        errors.append(FieldError(
            ("query", name), f"ensure this value is greater than or equal to {minimum}",
            "value_error.number.not_ge", {"limit_value": minimum},
        ))
    elif value > maximum:
        errors.append(FieldError(
            ("query", name), f"ensure this value is less than or equal to {maximum}",
            "value_error.number.not_le", {"limit_value": maximum},
        ))
    return value


def customer_of(principal: Principal) -> str:
    """The Legacy Stats API is per customer: a reseller key has no customer to answer for."""
    if not principal.is_customer or not principal.customer_id:
        raise Forbidden("The Legacy Stats API needs a customer key", "KEY_KIND_FORBIDDEN")
    return principal.customer_id


def require_tier(principal: Principal, tier: str) -> None:
    if tier == "advanced" and not principal.is_advanced:
        raise Forbidden("This endpoint needs the Advanced tier", "TIER_FORBIDDEN")


def parse(
    params: QueryParams,
    principal: Principal,
    now: datetime,
    *,
    source: str = "none",
    paginate: bool = False,
    problems: Sequence[FieldError] = (),
) -> LegacyQuery:
    """Validate `time`, `source` (required|optional|none), pagination and scope filters;
    `problems` are the caller's own findings, refused together with the parameters' errors."""
    customer_id = customer_of(principal)
    errors: list[FieldError] = list(problems)
    time = params.get("time", text=False)
    if time is None:
        errors.append(missing("query", "time"))
    elif time not in TIME_VALUES:
        errors.append(not_in_enum("query", "time", TIME_VALUES))
    chosen = params.get("source", text=False) if source != "none" else None
    if source == "required" and chosen is None:
        errors.append(missing("query", "source"))
    elif chosen is not None and chosen not in SOURCES:
        errors.append(not_in_enum("query", "source", list(SOURCES)))
    per_page = page = None
    if paginate:
        per_page = _integer(params, "per_page", 1, MAX_PER_PAGE, errors)
        page = _integer(params, "page", 0, 10**9, errors)
    if errors:
        raise BadRequest(errors)
    stream_id = params.path("stream_id")
    return LegacyQuery(
        customer_id=customer_id,
        window=legacy_window(time, now),  # type: ignore[arg-type]
        channel_id=params.path("channel_id"),
        stream_id=stream_id,
        # bitrate and representation_id apply to the stream scope only (seed 000)
        bitrate=params.get("bitrate") if stream_id is not None else None,
        representation_id=params.get("representation_id") if stream_id is not None else None,
        source=chosen,
        per_page=per_page if per_page is not None or page is None else DEFAULT_PER_PAGE,
        page=(page or 0) if per_page is not None or page is not None else None,
    )


def parse_stats(
    params: QueryParams, principal: Principal, now: datetime, metric: StatMetric,
    problems: Sequence[FieldError] = (),
) -> LegacyQuery:
    """Tier first (403), then parameters (400)."""
    customer_of(principal)
    require_tier(principal, metric.tier)
    return parse(params, principal, now, source=metric.source, problems=problems)
