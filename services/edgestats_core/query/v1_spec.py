"""Validation of a v1 metrics body into a V1Spec (CONTRACT §6, errors as §9).

Checks run in this order: 403 reseller/tier rules of the path, then every field
(all field errors listed together), then 403 for a customer the reseller does not
resell, then the rules of the range (from < to, data layer, retention, bucket count).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from edgestats_core.errors import BadRequest, FieldError, Forbidden, missing, not_in_enum
from edgestats_core.query import buckets
from edgestats_core.query.granularity import NAMES, parse_granularity, rank
from edgestats_core.tenancy.principals import REGIONS, Principal

MAX_BUCKETS = 10_000
FILTERS: tuple[str, ...] = (
    "source", "channel_id", "bitrate", "stream_id", "stream_uri", "stream_state",
    "representation_id",
)  # fmt: skip
# body field -> beacon column
FILTER_COLUMNS: dict[str, str] = {
    "source": "source", "channel_id": "channel_id", "bitrate": "bitrate",
    "stream_id": "stream_id", "stream_uri": "masked_stream_uri",
    "stream_state": "stream_state", "representation_id": "representation_id",
}  # fmt: skip
STREAM_STATES = ["live", "vod", "dvr", "unknown"]
LAYERS = ["realtime", "historical-minute", "historical-hour"]
NO_FILTER = "-1"
REALTIME_RETENTION = timedelta(days=30)
REALTIME_MAX_RANGE = timedelta(hours=48)
HISTORICAL_RETENTION_MONTHS = 13


@dataclass(frozen=True)
class V1Spec:
    """A validated v1 request: whose beacons, which range and buckets, which filters."""

    customer_ids: tuple[str, ...]
    start: datetime
    end: datetime
    granularity: str
    filters: tuple[tuple[str, str], ...]   # (beacon column, value)
    data_layer: str | None
    exact_distinct: bool
    reseller: bool                         # rows carry customer_id


def _error(name: str, msg: str, type_: str = "value_error") -> FieldError:
    return FieldError(("body", name), msg, type_)


def _text(body: dict, name: str, errors: list[FieldError]) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(_error(name, "str type expected", "type_error"))
        return None
    if "\x00" in value:
        errors.append(_error(name, "must not contain NUL characters"))
        return None
    return value


def _instant(body: dict, name: str, errors: list[FieldError]) -> datetime | None:
    if body.get(name) is None:
        errors.append(missing("body", name))
        return None
    text = _text(body, name, errors)
    if text is None:
        return None
    try:
        return buckets.parse_instant(text)
    except (ValueError, OverflowError):
        errors.append(_error(name, "invalid datetime format"))
        return None


def _customers(body: dict, principal: Principal, path_is_reseller: bool,
               errors: list[FieldError]) -> tuple[str, ...]:
    if path_is_reseller:
        value = body.get("customer_ids")
        if value is None:
            return principal.customers
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            errors.append(_error("customer_ids", "value is not a valid list of strings",
                                 "type_error"))
            return ()
        return tuple(dict.fromkeys(value))
    if principal.kind != "reseller":
        return (principal.customer_id,) if principal.customer_id else ()
    target = _text(body, "target_customer_id", errors)
    if target is None and body.get("target_customer_id") is None:
        errors.append(missing("body", "target_customer_id"))
    return (target,) if target is not None else ()


def _check_access(principal: Principal, path_is_reseller: bool, tier: str) -> None:
    if path_is_reseller and principal.kind != "reseller":
        raise Forbidden("The reseller metrics need a reseller key", "KEY_KIND_FORBIDDEN")
    if principal.kind not in ("customer", "reseller"):
        raise Forbidden("The metrics need a customer or reseller key", "KEY_KIND_FORBIDDEN")
    if tier == "advanced" and not principal.is_advanced:
        raise Forbidden("This endpoint needs the Advanced tier", "TIER_FORBIDDEN")


def parse_body(body: object, principal: Principal, *, tier: str, reseller: bool) -> V1Spec:
    """Validate the JSON body of a metrics path (range rules are checked by `check_range`)."""
    _check_access(principal, reseller, tier)
    if not isinstance(body, dict):
        raise BadRequest([FieldError(("body",), "value is not a valid dict", "type_error")])
    errors: list[FieldError] = []
    start = _instant(body, "from_date", errors)
    end = _instant(body, "to_date", errors)
    granularity = "second"
    raw = _text(body, "granularity", errors)
    if raw is not None:
        if parse_granularity(raw) is None:
            errors.append(not_in_enum("body", "granularity", list(NAMES)))
        else:
            granularity = parse_granularity(raw)  # type: ignore[assignment]
    filters = []
    for name in FILTERS:
        value = _text(body, name, errors)
        if value is None or value == NO_FILTER:
            continue
        if name == "stream_state" and value not in STREAM_STATES:
            errors.append(not_in_enum("body", name, STREAM_STATES))
            continue
        filters.append((FILTER_COLUMNS[name], value))
    layer = _text(body, "data_layer", errors)
    if layer is not None and layer not in LAYERS:
        errors.append(not_in_enum("body", "data_layer", LAYERS))
        layer = None
    approximate = body.get("approximate_count_distinct")
    if approximate is not None and not isinstance(approximate, bool):
        errors.append(_error("approximate_count_distinct", "value could not be parsed to a boolean",
                             "type_error"))
        approximate = None
    region = _text(body, "region", errors) if reseller else None
    if region is not None and region not in REGIONS:
        errors.append(not_in_enum("body", "region", list(REGIONS)))
    customers = _customers(body, principal, reseller, errors)
    if errors:
        raise BadRequest(errors)
    if principal.kind == "reseller" and any(c not in principal.customers for c in customers):
        raise Forbidden("The reseller may only query its own customers", "CUSTOMER_FORBIDDEN")
    return V1Spec(
        customer_ids=customers, start=start, end=end, granularity=granularity,  # type: ignore[arg-type]
        filters=tuple(filters), data_layer=layer,  # type: ignore[arg-type]
        # lite keys keep the default (seed 001): approximate
        exact_distinct=approximate is False and principal.is_advanced, reseller=reseller,
    )


def check_range(spec: V1Spec, now: datetime) -> None:
    """The range rules of CONTRACT §6 for `now`: one 400 naming the first rule broken."""
    error = range_error(spec, now)
    if error is not None:
        raise BadRequest([error])


def range_error(spec: V1Spec, now: datetime) -> FieldError | None:
    start, end, granularity, layer = spec.start, spec.end, spec.granularity, spec.data_layer
    if start >= end:
        return _error("to_date", "to_date must be later than from_date")
    oldest = buckets.add_months(now, -HISTORICAL_RETENTION_MONTHS)
    if start < oldest:
        return _error("from_date", "the range is older than the retention of 13 months")
    if layer == "realtime":
        if rank(granularity) > rank("thirty_minute"):
            return _error("granularity",
                          "the realtime layer answers granularities up to thirty_minute")
        if end - start > REALTIME_MAX_RANGE:
            return _error("to_date", "the realtime layer answers ranges of at most 48 hours")
        if start < now - REALTIME_RETENTION:
            return _error("from_date", "the realtime layer keeps 30 days: the range is older")
    if layer == "historical-minute" and granularity == "second":
        return _error("granularity", "the finest granularity of historical-minute is minute")
    if layer == "historical-hour" and rank(granularity) < rank("hour"):
        return _error("granularity", "the finest granularity of historical-hour is hour")
    if spec.exact_distinct and start < now - REALTIME_RETENTION:
        return _error("approximate_count_distinct",
                      "exact distinct counts need raw data, kept 30 days: the range is older")
    count = buckets.count_buckets(start, end, granularity)
    if count > MAX_BUCKETS:
        return _error("granularity", _too_many(count, start, end, granularity))
    return None


def _too_many(count: int, start: datetime, end: datetime, granularity: str) -> str:
    coarser = next((g for g in NAMES[rank(granularity) + 1:]
                    if buckets.count_buckets(start, end, g) <= MAX_BUCKETS), None)
    hint = f": use a coarser granularity such as {coarser}" if coarser else ""
    return f"the range has {count} buckets of {granularity}, more than {MAX_BUCKETS}{hint}"
