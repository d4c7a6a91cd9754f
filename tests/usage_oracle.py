"""Usage statistics test data and their expected answers, computed in plain Python.

The deliberate second implementation of CONTRACT §8 (no import from the service): users
are inserted with SQL, events are dicts in the wire format of `POST /v1/usage/events`.
"""

from __future__ import annotations

import calendar
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(instant: datetime) -> int:
    return (instant - EPOCH) // timedelta(milliseconds=1)


def next_month(instant: datetime) -> datetime:
    """One calendar month later, the day clamped to the month's length (Jan 31 → Feb 28)."""
    year, month = instant.year + instant.month // 12, instant.month % 12 + 1
    return instant.replace(year=year, month=month,
                           day=min(instant.day, calendar.monthrange(year, month)[1]))


def midnight(instant: datetime) -> datetime:
    return instant.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class UsageUser:
    user_id: str
    default_app: str
    apps: list[str]
    events: list[dict] = field(default_factory=list)
    key: str = ""


def create_user(db_url: str, apps: int, subscription_start: datetime, months: int = 1
                ) -> UsageUser:
    """A user with a default application, `apps` more and one subscription (SQL)."""
    user_id = f"u-{uuid.uuid4().hex[:10]}"
    names = [f"{user_id}-app{i}" for i in range(apps + 1)]
    with psycopg.connect(db_url) as conn, conn.transaction():
        conn.execute("INSERT INTO usage_users (user_id) VALUES (%s)", (user_id,))
        for i, name in enumerate(names):
            conn.execute("INSERT INTO usage_applications (user_id, application_id, is_default)"
                         " VALUES (%s, %s, %s)", (user_id, name, i == 0))
        conn.execute("INSERT INTO usage_subscriptions (user_id, starts_at, period_months)"
                     " VALUES (%s, %s, %s)", (user_id, subscription_start, months))
    return UsageUser(user_id, names[0], names)


def event(user: UsageUser, type_: str, at: datetime, nbytes: int, app: str | None = None,
          tag: str | None = None) -> dict:
    item = {"id": uuid.uuid4().hex, "type": type_, "user_id": user.user_id, "bytes": nbytes,
            "timestamp": at.isoformat().replace("+00:00", "Z")}
    if app is not None:
        item["application_id"] = app
    if tag is not None:
        item["tag"] = tag
    user.events.append(item)
    return item


def insert(db_url: str, user: UsageUser, events: list[dict]) -> None:
    """Direct INSERT (the db tests; e2e posts them to the ingest endpoint)."""
    with psycopg.connect(db_url) as conn, conn.transaction():
        for e in events:
            conn.execute(
                "INSERT INTO usage_events (user_id, occurred_at, event_id, type,"
                " application_id, bytes, tag) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (e["user_id"], _when(e), e["id"], e["type"],
                 e.get("application_id") or user.default_app, e["bytes"], e.get("tag")),
            )


def _when(e: dict) -> datetime:
    return datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))


def _app(user: UsageUser, e: dict) -> str:
    return e.get("application_id") or user.default_app


def daily(user: UsageUser, type_: str, now: datetime, base: str, view: str = "user",
          start: datetime | None = None, end: datetime | None = None,
          aggregate: bool = False) -> list[dict]:
    """The expected `stats` of GET /v1/stats/{type_}."""
    per_app: dict[tuple[str, datetime], int] = {}
    for e in user.events:
        at = _when(e)
        day = midnight(at)
        if e["type"] != type_ or at > now:
            continue
        if (start and day + DAY <= start) or (end and day >= end):
            continue
        key = (_app(user, e), day)
        per_app[key] = (max(per_app.get(key, 0), e["bytes"]) if type_ == "storage"
                        else per_app.get(key, 0) + e["bytes"])
    amounts: dict[tuple[str | None, datetime], int] = defaultdict(int)
    for (app, day), value in per_app.items():
        amounts[(app if view == "application" else None, day)] += value
    facts = []
    for (app, day) in sorted(amounts, key=lambda k: (k[1], k[0] or "")):
        done = day + DAY <= now
        bounds = (ms(day) + 1, ms(day + DAY)) if done else (ms(day), ms(now))
        who = ({"application": {"id": app}} if app else
               {"user": {"id": user.user_id, "href": f"{base}/v1/users/{user.user_id}"}})
        facts.append({**who, "from_date": bounds[0], "to_date": bounds[1],
                      f"{type_}_data": amounts[(app, day)]})
    if not aggregate:
        return facts
    groups: dict[str, list[dict]] = defaultdict(list)
    for f in facts:
        groups[(f.get("application") or f["user"])["id"]].append(f)
    return [{**group[0], "from_date": group[0]["from_date"], "to_date": group[-1]["to_date"],
             f"{type_}_data": sum(f[f"{type_}_data"] for f in group)}
            for _, group in sorted(groups.items())]


def _tag_hours(user: UsageUser, now: datetime, start: datetime | None, end: datetime | None,
               app: str | None) -> dict[tuple[str, str, datetime], int]:
    out: dict[tuple[str, str, datetime], int] = defaultdict(int)
    for e in user.events:
        at = _when(e)
        hour = at.replace(minute=0, second=0, microsecond=0)
        if e["type"] != "bandwidth" or not e.get("tag") or at > now:
            continue
        if (start and hour + HOUR <= start) or (end and hour >= end):
            continue
        if app and _app(user, e) != app:
            continue
        out[(_app(user, e), e["tag"], hour)] += e["bytes"]
    return out


def tag_stats(user: UsageUser, tag: str, now: datetime, base: str, start=None, end=None,
              app=None, aggregate=False) -> list[dict]:
    """The expected `stats` of GET /v1/stats/bandwidth/tags/{tag}."""
    hours = {k: v for k, v in _tag_hours(user, now, start, end, app).items() if k[1] == tag}
    facts = [{"tag": tag, "application": {"id": a, "href": f"{base}/v1/applications/{a}"},
              "from_date": ms(h), "to_date": ms(h + HOUR), "bandwidth_data": hours[(a, t, h)]}
             for (a, t, h) in sorted(hours, key=lambda k: (k[2], k[0]))]
    if not aggregate:
        return facts
    out = []
    for a in sorted({f["application"]["id"] for f in facts}):
        mine = [f for f in facts if f["application"]["id"] == a]
        out.append({**mine[0], "to_date": mine[-1]["to_date"],
                    "bandwidth_data": sum(f["bandwidth_data"] for f in mine)})
    return out


def top_tags(user: UsageUser, now: datetime, base: str, start=None, end=None, app=None
             ) -> list[dict]:
    """The expected `stats` of GET /v1/stats/bandwidth/tags/."""
    hours = _tag_hours(user, now, start, end, app)
    out = []
    for a in sorted({k[0] for k in hours}):
        totals: dict[str, int] = defaultdict(int)
        for (app_id, tag, _), value in hours.items():
            if app_id == a:
                totals[tag] += value
        mine = [h for (app_id, _, h) in hours if app_id == a]
        best = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        out.append({"top_tags": [{"tag": t, "bandwidth_data": b} for t, b in best],
                    "application": {"id": a, "href": f"{base}/v1/applications/{a}"},
                    "from_date": ms(min(mine)), "to_date": ms(max(mine) + HOUR)})
    return out
