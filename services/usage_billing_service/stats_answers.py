"""Pure builders of the Statistics resource's facts (seed 004, CONTRACT §8) from fact rows.

Bounds are epoch ms. A complete day's fact spans [day start + 1 ms, next day start]; the
current day's [day start, now]. Tag facts span [hour start, hour end]. An aggregate spans
from its first fact's from_date to its last fact's to_date.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
TOP_TAGS = 10
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Span:
    """Bytes of a user (`application_id` None) or application over the days first..last: one
    day, or an aggregate's first and last days with usage."""

    application_id: str | None
    first_day: date
    last_day: date
    bytes: int


@dataclass(frozen=True)
class Row:
    """One (application or user, bucket) amount; `application_id` None in the user view."""

    application_id: str | None
    bucket: datetime
    bytes: int


def epoch_ms(instant: datetime) -> int:
    """UTC instant → epoch milliseconds (truncated)."""
    return (instant - EPOCH) // timedelta(milliseconds=1)


def day_bounds(day: date, now: datetime) -> tuple[int, int]:
    """(from_date, to_date) of a day's fact: +1 ms for a complete day, now for the current one.

    >>> day_bounds(date(2015, 7, 31), datetime(2015, 8, 3, tzinfo=UTC))
    (1438300800001, 1438387200000)
    >>> day_bounds(date(2015, 7, 8), datetime(2015, 7, 8, 10, 21, 3, 827000, tzinfo=UTC))
    (1436313600000, 1436350863827)
    """
    start = epoch_ms(datetime.combine(day, time(), tzinfo=UTC))
    if start + DAY_MS <= epoch_ms(now):
        return start + 1, start + DAY_MS
    return start, epoch_ms(now)


def user_ref(user_id: str, base_url: str) -> dict:
    return {"id": user_id, "href": f"{base_url}/v1/users/{user_id}"}


def application_ref(application_id: str, base_url: str | None) -> dict:
    """The seed's stats facts show only the id; tag facts add the href."""
    if base_url is None:
        return {"id": application_id}
    return {"id": application_id, "href": f"{base_url}/v1/applications/{application_id}"}


def daily_facts(spans: Iterable[Span], type_: str, user_id: str, base_url: str, now: datetime
                ) -> list[dict]:
    """A fact per span, from its first day's from_date to its last day's to_date."""
    facts = []
    for span in spans:
        who = ({"application": application_ref(span.application_id, None)}
               if span.application_id is not None else {"user": user_ref(user_id, base_url)})
        facts.append({**who, "from_date": day_bounds(span.first_day, now)[0],
                      "to_date": day_bounds(span.last_day, now)[1],
                      f"{type_}_data": span.bytes})
    return facts


def _aggregate(facts: list[dict], who: str, data_key: str) -> list[dict]:
    """One fact per user or application (sorted by id), summing the amounts."""
    groups: dict[str, dict] = {}
    for fact in facts:
        key = fact[who]["id"]
        if key not in groups:
            groups[key] = {**fact}
        else:
            group = groups[key]
            group["from_date"] = min(group["from_date"], fact["from_date"])
            group["to_date"] = max(group["to_date"], fact["to_date"])
            group[data_key] += fact[data_key]
    return [groups[key] for key in sorted(groups)]


def tag_facts(rows: Iterable[Row], tag: str, base_url: str, aggregate: bool) -> list[dict]:
    """Hourly facts of one tag per application, rows sorted by (hour, application)."""
    facts = []
    for row in rows:
        start = epoch_ms(row.bucket)
        facts.append({"tag": tag, "application": application_ref(row.application_id, base_url),
                      "from_date": start, "to_date": start + HOUR_MS, "bandwidth_data": row.bytes})
    return _aggregate(facts, "application", "bandwidth_data") if aggregate else facts


@dataclass(frozen=True)
class TagTotal:
    """A tag's bandwidth in an application over the range, with its first and last hours."""

    application_id: str
    tag: str
    bytes: int
    first_hour: datetime
    last_hour: datetime


def top_tags(totals: Iterable[TagTotal], base_url: str) -> list[dict]:
    """Per application (sorted by id): its 10 tags with the most bytes (ties by tag), and the
    range of hours with data."""
    per_app: dict[str, list[TagTotal]] = {}
    for total in totals:
        per_app.setdefault(total.application_id, []).append(total)
    answer = []
    for application_id in sorted(per_app):
        tags = per_app[application_id]
        best = sorted(tags, key=lambda t: (-t.bytes, t.tag))[:TOP_TAGS]
        answer.append({
            "top_tags": [{"tag": t.tag, "bandwidth_data": t.bytes} for t in best],
            "application": application_ref(application_id, base_url),
            "from_date": epoch_ms(min(t.first_hour for t in tags)),
            "to_date": epoch_ms(max(t.last_hour for t in tags) + timedelta(hours=1)),
        })
    return answer
