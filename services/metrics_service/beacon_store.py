"""Durable beacon writes: COPY into a staging table, then one deduplicating INSERT."""

from __future__ import annotations

from psycopg import sql

from edgestats_core.beacon_columns import COLUMNS
from edgestats_core.db import Database
from metrics_service.minute_rollups import FENCE_NAMESPACE

_NAMES = [c.name for c in COLUMNS]
_COLUMN_LIST = sql.SQL(", ").join(sql.Identifier(n) for n in _NAMES)
_STAGE = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS beacons_in (LIKE beacons INCLUDING DEFAULTS)"
    " ON COMMIT DELETE ROWS"
)
_COPY = sql.SQL("COPY beacons_in ({}) FROM STDIN").format(_COLUMN_LIST)
# DO NOTHING also absorbs duplicates inside the same batch. New beacons of an hour already
# rolled up mark it stale (rollup_stale), and those of a minute already rolled into the
# minute layer (before rollup_progress.fenced_to) mark that minute late, in the same
# transaction: queries then read them from raw until they are re-rolled. Every hour of new
# beacons is marked pending (rollup_pending; one row an hour, an index probe when marked):
# the roller publishes it once closed, or again after late data. Returns the number of new
# beacons.
# Before the merge (so that its snapshot sees a minute roll's fence): hold each recent hour
# of the batch shared, which a minute roll takes exclusively to wait for the ingests in
# flight. The roller only works on the current and the previous hour: older beacons need
# no lock (a batch of history takes a handful of locks, not one per hour).
_HOLD_HOURS = sql.SQL(
    "SELECT pg_advisory_xact_lock_shared({ns}, h) FROM (SELECT DISTINCT"
    " (extract(epoch FROM date_trunc('hour', \"time\")) / 3600)::int AS h FROM beacons_in"
    " WHERE \"time\" >= date_trunc('hour', now()) - interval '2 hours' ORDER BY 1) hours"
).format(ns=sql.Literal(FENCE_NAMESPACE))
_MERGE = sql.SQL("""
WITH new AS (
    INSERT INTO beacons ({cols}) SELECT {cols} FROM beacons_in ON CONFLICT DO NOTHING
    RETURNING "time"
), stale AS (
    INSERT INTO rollup_stale (hour)
    SELECT r.hour FROM rollup_runs r
    WHERE r.hour IN (SELECT DISTINCT date_trunc('hour', "time") FROM new)
    ON CONFLICT DO NOTHING
), late AS (
    INSERT INTO rollup_late_minutes (minute)
    SELECT DISTINCT date_trunc('minute', new."time") FROM new JOIN rollup_progress p
        ON p.hour = date_trunc('hour', new."time") AND new."time" < p.fenced_to
    ON CONFLICT DO NOTHING
), pending AS (
    INSERT INTO rollup_pending (hour)
    SELECT DISTINCT date_trunc('hour', "time") FROM new
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM new
""").format(cols=_COLUMN_LIST)


async def store(db: Database, rows: list[tuple]) -> int:
    """Insert rows in one transaction; returns how many were new (the rest were duplicates)."""
    if not rows:
        return 0
    async with db.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute(_STAGE)
        async with cur.copy(_COPY) as copy:
            for row in rows:
                await copy.write_row(row)
        await cur.execute(_HOLD_HOURS)
        await cur.execute(_MERGE)
        return (await cur.fetchone())[0]
