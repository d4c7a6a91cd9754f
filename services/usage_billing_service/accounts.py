"""Usage users, their applications and subscriptions (CONTRACT §8, §11): creation by the CLI.

Both creations are safe to repeat: creating an existing user, or an application the
user already has, changes nothing (no second default application or subscription).
Conflicts (an application id of another user, an unknown user) raise ValueError with
a message the CLI prints as is.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

# User and application ids: URL-safe (they appear in hrefs), at most 64 characters.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class UserAccount:
    user_id: str
    default_application_id: str
    created: bool  # False when the user already existed (nothing was changed)


def check_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value or ""):
        raise ValueError(
            f"{what} {value!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a"
            " letter or digit"
        )
    return value


def default_application_id(user_id: str) -> str:
    """The id of a user's default application: 24 hex digits (the seed's id shape), derived
    from the user id, so it is stable and known without a lookup.

    >>> default_application_id("552b874d14eab3a29d1b3d8d")
    '485d07a9c4b817278bdada9a'
    """
    digest = hashlib.sha256(b"edgestats-default-application:" + user_id.encode()).hexdigest()
    return digest[:24]


def _owner(cur: psycopg.Cursor, application_id: str) -> str | None:
    cur.execute(
        "SELECT user_id FROM usage_applications WHERE application_id = %s", (application_id,)
    )
    row = cur.fetchone()
    return row[0] if row else None


def user_exists(conn: psycopg.Connection, user_id: str) -> bool:
    row = conn.execute("SELECT 1 FROM usage_users WHERE user_id = %s", (user_id,)).fetchone()
    return row is not None


def create_user(conn: psycopg.Connection, user_id: str, now: datetime) -> UserAccount:
    """The user, its default application and a monthly subscription starting today (UTC)."""
    check_id(user_id, "user id")
    app_id = default_application_id(user_id)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO usage_users (user_id) VALUES (%s) ON CONFLICT DO NOTHING", (user_id,)
        )
        if cur.rowcount == 0:
            cur.execute(
                "SELECT application_id FROM usage_applications"
                " WHERE user_id = %s AND is_default",
                (user_id,),
            )
            row = cur.fetchone()
            return UserAccount(user_id, row[0] if row else app_id, created=False)
        owner = _owner(cur, app_id)
        if owner is not None:  # only if someone created an application with this very id
            raise ValueError(f"application {app_id} (default of {user_id}) belongs to {owner}")
        cur.execute(
            "INSERT INTO usage_applications (user_id, application_id, is_default)"
            " VALUES (%s, %s, true)",
            (user_id, app_id),
        )
        today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        cur.execute(
            "INSERT INTO usage_subscriptions (user_id, starts_at, period_months)"
            " VALUES (%s, %s, 1)",
            (user_id, today),
        )
    return UserAccount(user_id, app_id, created=True)


def create_application(conn: psycopg.Connection, user_id: str, application_id: str) -> bool:
    """Add an application to a user; False when the user already had it."""
    check_id(application_id, "application id")
    with conn.transaction(), conn.cursor() as cur:
        if not user_exists(conn, user_id):
            raise ValueError(f"unknown user {user_id!r}: create it with `usage users create`")
        cur.execute(
            "INSERT INTO usage_applications (user_id, application_id) VALUES (%s, %s)"
            " ON CONFLICT DO NOTHING",
            (user_id, application_id),
        )
        if cur.rowcount == 1:
            return True
        owner = _owner(cur, application_id)
        if owner != user_id:
            raise ValueError(f"application {application_id!r} belongs to another user")
        return False
