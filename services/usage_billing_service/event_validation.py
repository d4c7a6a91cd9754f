"""Validation of incoming usage events (CONTRACT §8, §10): each event accepted or rejected alone.

Two steps: `validate` checks one event's shape without the database; `resolve` then
checks the user and application against the accounts read for the batch and picks the
user's default application for events that name none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from edgestats_core.ingest_body import Invalid, checked_text

TYPES = ("conversion", "storage", "bandwidth")
MAX_ID = 256  # characters of an event, user or application id, or a tag
MAX_BYTES_VALUE = 2**63 - 1  # bigint
MAX_EXACT_FLOAT = 2**53  # a JSON number with a fraction part is exact below this
MAX_CLOCK_SKEW = timedelta(minutes=5)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Event:
    """A well-formed event; `application_id` None means the user's default application."""

    event_id: str
    type: str
    user_id: str
    application_id: str | None
    bytes: int
    occurred_at: datetime
    tag: str | None


@dataclass(frozen=True)
class Account:
    """What `resolve` needs of a user: its default application and all its applications."""

    default_application_id: str
    application_ids: frozenset[str]


@dataclass
class Batch:
    """Rows ready to store (event_id, type, user_id, application_id, bytes, occurred_at, tag),
    in request order, and per-item rejections (index, reason)."""

    rows: list[tuple] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _text(name: str, value: object, required: bool) -> str | None:
    """A non-empty string of at most MAX_ID characters without NUL; None when absent."""
    if value is None or value == "":
        if required:
            raise Invalid(f"{name}: field required")
        return None
    return checked_text(name, value, MAX_ID)


def parse_bytes(value: object) -> int:
    """A non-negative integer count of bytes; a JSON number like 1e6 or 10.0 is accepted when
    it is an exact integer."""
    if value is None:
        raise Invalid("bytes: field required")
    kind = type(value)
    if kind is float:
        if not math.isfinite(value) or not value.is_integer():
            raise Invalid("bytes: must be an integer")
        if abs(value) > MAX_EXACT_FLOAT:
            raise Invalid("bytes: write integers above 2^53 without a fraction or exponent")
        value = int(value)
    elif kind is not int:  # bool is not int by type()
        raise Invalid("bytes: must be an integer")
    if value < 0:
        raise Invalid("bytes: must not be negative")
    if value > MAX_BYTES_VALUE:
        raise Invalid("bytes: larger than 2^63 - 1")
    return value


def parse_timestamp(value: object, now: datetime) -> datetime:
    """ISO-8601 (no zone = UTC) or epoch milliseconds, truncated to the millisecond; from 1970
    up to 5 minutes ahead of now (clock skew)."""
    if value is None:
        raise Invalid("timestamp: field required")
    if not isinstance(value, datetime | str) and type(value) not in (int, float):
        raise Invalid("timestamp: must be an ISO-8601 string or epoch milliseconds")
    try:
        if isinstance(value, datetime):  # typed gRPC events
            instant = value if value.tzinfo else value.replace(tzinfo=UTC)
        elif type(value) is int or type(value) is float:
            instant = EPOCH + timedelta(milliseconds=value)
        else:
            instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
            instant = instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant
    except (ValueError, OverflowError, OSError) as exc:
        raise Invalid(f"timestamp: not a valid timestamp: {str(value)[:40]!r}") from exc
    instant = instant.astimezone(UTC)
    instant = instant.replace(microsecond=instant.microsecond // 1000 * 1000)
    if instant < EPOCH:
        raise Invalid("timestamp: before 1970")
    if instant > now + MAX_CLOCK_SKEW:
        raise Invalid("timestamp: more than 5 minutes in the future")
    return instant


def validate(item: object, now: datetime) -> Event:
    """One event dict -> an Event, or Invalid naming the first bad field."""
    if type(item) is not dict:
        raise Invalid("not a JSON object")
    get = item.get
    event_id = _text("id", get("id"), required=True)
    kind = get("type")
    if kind is None or kind == "":
        raise Invalid("type: field required")
    if kind not in TYPES:
        raise Invalid(f"type: must be one of {', '.join(TYPES)}")
    user_id = _text("user_id", get("user_id"), required=True)
    application_id = _text("application_id", get("application_id"), required=False)
    size = parse_bytes(get("bytes"))
    occurred_at = parse_timestamp(get("timestamp"), now)
    tag = _text("tag", get("tag"), required=False)
    if tag is not None and kind != "bandwidth":
        raise Invalid("tag: only bandwidth events carry an AutoGraph tag")
    return Event(event_id, kind, user_id, application_id, size, occurred_at, tag)  # type: ignore[arg-type]


Indexed = list[tuple[int, Event]]


def validate_all(items: list, now: datetime) -> tuple[Indexed, list[tuple[int, str]]]:
    """(index, Event) of the well-formed items and (index, reason) of the others."""
    events: Indexed = []
    rejected: list[tuple[int, str]] = []
    for index, item in enumerate(items):
        try:
            events.append((index, validate(item, now)))
        except Invalid as exc:
            rejected.append((index, str(exc)))
    return events, rejected


def resolve(event: Event, accounts: dict[str, Account]) -> tuple:
    """The row to store: the user must exist and the application must be one of its own."""
    account = accounts.get(event.user_id)
    if account is None:
        raise Invalid("user_id: unknown user")
    application_id = event.application_id or account.default_application_id
    if application_id not in account.application_ids:
        raise Invalid("application_id: not an application of this user")
    return (event.event_id, event.type, event.user_id, application_id, event.bytes,
            event.occurred_at, event.tag)


def resolve_all(
    events: Indexed, rejected: list[tuple[int, str]],
    accounts: dict[str, Account],
) -> Batch:
    """Rows of the events whose user and application check out; rejections in request order."""
    batch = Batch(rejected=list(rejected))
    for index, event in events:
        try:
            batch.rows.append(resolve(event, accounts))
        except Invalid as exc:
            batch.rejected.append((index, str(exc)))
    batch.rejected.sort()
    return batch
