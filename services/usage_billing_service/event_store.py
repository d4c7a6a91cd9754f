"""Durable usage-event writes: COPY into a staging table, then one deduplicating INSERT.

An event id is counted once: `usage_event_ids` records every id for 35 days
(DEDUP_WINDOW), and only events whose id is new there reach `usage_events`. Ids are
recorded in sorted order so that concurrent batches sharing ids wait on each other
instead of deadlocking.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from edgestats_core.db import Database
from usage_billing_service.event_validation import Account

DEDUP_WINDOW = timedelta(days=35)
# A deadlock between batches is retried in a new transaction (nothing of it was committed).
ATTEMPTS = 3

_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS usage_events_in (ord integer, event_id text, type text,"
    " user_id text, application_id text, bytes bigint, occurred_at timestamptz, tag text)"
    " ON COMMIT DELETE ROWS"
)
_COPY = (
    "COPY usage_events_in (ord, event_id, type, user_id, application_id, bytes, occurred_at, tag)"
    " FROM STDIN"
)
# The first occurrence of an id in the batch wins; a resent id inserts nothing.
_MERGE = """
WITH fresh AS (
    INSERT INTO usage_event_ids (event_id)
    SELECT DISTINCT event_id FROM usage_events_in ORDER BY event_id
    ON CONFLICT DO NOTHING
    RETURNING event_id
)
INSERT INTO usage_events (user_id, occurred_at, event_id, type, application_id, bytes, tag)
SELECT DISTINCT ON (i.event_id)
       i.user_id, i.occurred_at, i.event_id, i.type, i.application_id, i.bytes, i.tag
FROM usage_events_in i JOIN fresh USING (event_id)
ORDER BY i.event_id, i.ord
ON CONFLICT DO NOTHING
"""
_ACCOUNTS = """
SELECT u.user_id, a.application_id, a.is_default
FROM usage_users u LEFT JOIN usage_applications a USING (user_id)
WHERE u.user_id = ANY(%s)
"""


async def accounts(db: Database, user_ids: set[str]) -> dict[str, Account]:
    """The users among `user_ids` that exist, with their applications."""
    if not user_ids:
        return {}
    found: dict[str, tuple[str, set[str]]] = {}
    for row in await db.fetch(_ACCOUNTS, (sorted(user_ids),)):
        default, apps = found.setdefault(row["user_id"], ("", set()))
        if row["application_id"] is not None:
            apps.add(row["application_id"])
            if row["is_default"]:
                found[row["user_id"]] = (row["application_id"], apps)
    return {user: Account(default, frozenset(apps)) for user, (default, apps) in found.items()}


async def store(db: Database, rows: list[tuple]) -> int:
    """Store rows (event_id, type, user_id, application_id, bytes, occurred_at, tag) in one
    transaction; returns how many were new (the rest were duplicates)."""
    if not rows:
        return 0
    async with db.connection() as conn:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await _store_once(conn, rows)
            except psycopg.errors.DeadlockDetected:  # rolled back: try again, same connection
                if attempt == ATTEMPTS:
                    raise
    raise AssertionError("unreachable")


async def _store_once(conn: psycopg.AsyncConnection, rows: list[tuple]) -> int:
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(_STAGE)
        async with cur.copy(_COPY) as copy:
            for ord_, row in enumerate(rows):
                await copy.write_row((ord_, *row))
        await cur.execute(_MERGE)
        return cur.rowcount


def forget_expired_ids(url: str, now: datetime | None = None) -> int:
    """Drop dedup ids recorded more than 35 days ago (maintenance DAG); returns how many.

    An exact resend of an older event is still absorbed by the primary key of usage_events
    (same user, timestamp and id); only a changed one would count again."""
    with psycopg.connect(url, autocommit=True) as conn:
        cutoff = "now()" if now is None else "%s::timestamptz"
        params = () if now is None else (now,)
        cur = conn.execute(
            f"DELETE FROM usage_event_ids WHERE recorded_at < {cutoff} - %s",
            (*params, DEDUP_WINDOW),
        )
        return cur.rowcount
