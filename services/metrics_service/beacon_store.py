"""Durable beacon writes: one binary COPY straight into beacons, or, when the batch holds a
beacon already stored (or one twice), COPY into a staging table and a deduplicating INSERT."""

from __future__ import annotations

from psycopg import sql
from psycopg.errors import DeadlockDetected, UniqueViolation

from edgestats_core.beacon_columns import COLUMNS
from edgestats_core.db import Database
from metrics_service.minute_rollups import FENCE_NAMESPACE

_NAMES = [c.name for c in COLUMNS]
_PG_TYPES = {"time": "timestamptz", "string": "text", "bool": "bool", "int": "int4",
             "double": "float8"}
_TYPES = [_PG_TYPES[c.type] for c in COLUMNS]
_COLUMN_LIST = sql.SQL(", ").join(sql.Identifier(n) for n in _NAMES)
_STAGE = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS beacons_in (LIKE beacons INCLUDING DEFAULTS)"
    " ON COMMIT DELETE ROWS"
)
_COPY = sql.SQL("COPY beacons_in ({}) FROM STDIN").format(_COLUMN_LIST)
_COPY_DIRECT = sql.SQL("COPY beacons ({}) FROM STDIN (FORMAT BINARY)").format(_COLUMN_LIST)
# DO NOTHING also absorbs duplicates inside the same batch. New beacons of an hour already
# rolled up mark it stale (rollup_stale), those of a minute already rolled into the minute
# layer (before rollup_progress.fenced_to) mark that minute late, and those of a 5-second
# bucket the live layer holds (before live_progress.fenced_to) mark it late
# (live_late_buckets), in the same transaction: queries then read them from raw until they
# are re-rolled (those marks have no key: a batch always adds its own, never waiting for a
# re-roll deleting older ones; the ON CONFLICT there is inert). Every hour of new beacons
# is marked pending (rollup_pending; one row an hour, an index probe when marked): the
# roller publishes it once closed, or again after late data. Returns the number of new
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
# Both paths end with these marks, after a CTE `new` of the new beacons' "time"s.
_MARKS = """
stale AS (
    INSERT INTO rollup_stale (hour)
    SELECT r.hour FROM rollup_runs r
    WHERE r.hour IN (SELECT DISTINCT date_trunc('hour', "time") FROM new)
    ON CONFLICT DO NOTHING
), late AS (
    INSERT INTO rollup_late_minutes (minute)
    SELECT DISTINCT date_trunc('minute', new."time") FROM new JOIN rollup_progress p
        ON p.hour = date_trunc('hour', new."time") AND new."time" < p.fenced_to
    ON CONFLICT DO NOTHING
), live_late AS (
    INSERT INTO live_late_buckets (bucket)
    SELECT DISTINCT date_bin('5 seconds', new."time", timestamptz 'epoch') FROM new, live_progress p
    WHERE new."time" >= p.held_from AND new."time" < p.fenced_to
), pending AS (
    INSERT INTO rollup_pending (hour)
    SELECT DISTINCT date_trunc('hour', "time") FROM new
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM new
"""
_MERGE = sql.SQL("""
WITH new AS (
    INSERT INTO beacons ({cols}) SELECT {cols} FROM beacons_in ON CONFLICT DO NOTHING
    RETURNING "time"
), """ + _MARKS).format(cols=_COLUMN_LIST)
# The direct path (no staging table): the same locks before the rows are written, and the
# same marks after, over the batch's distinct times given as a parameter (all its beacons
# are new when the COPY succeeds).
_HOLD_HOURS_OF = sql.SQL(
    "SELECT pg_advisory_xact_lock_shared({ns}, h) FROM (SELECT DISTINCT"
    " (extract(epoch FROM date_trunc('hour', t)) / 3600)::int AS h"
    " FROM unnest(%s::timestamptz[]) t"
    " WHERE t >= date_trunc('hour', now()) - interval '2 hours' ORDER BY 1) hours"
).format(ns=sql.Literal(FENCE_NAMESPACE))
_MARK_NEW = sql.SQL(
    'WITH new AS (SELECT unnest(%s::timestamptz[]) AS "time"), ' + _MARKS)


async def store(db: Database, rows: list[tuple]) -> int:
    """Insert rows, committed together; returns how many were new (the rest duplicates).

    A batch of new beacons is one binary COPY straight into beacons. The first duplicate
    (stored before, or twice in the batch) fails it: the transaction is rolled back and the
    batch goes through the staging table and `INSERT … ON CONFLICT DO NOTHING` in a new one.
    Either way the batch's recent hours are held shared before its rows are written, and its
    late hours and minutes are marked (see above)."""
    if not rows:
        return 0
    times = sorted({row[0] for row in rows})
    async with db.connection() as conn:
        try:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(_HOLD_HOURS_OF, (times,))
                async with cur.copy(_COPY_DIRECT) as copy:
                    copy.set_types(_TYPES)
                    for row in rows:
                        await copy.write_row(row)
                await cur.execute(_MARK_NEW, (times,))
            return len(rows)
        except (UniqueViolation, DeadlockDetected):
            pass
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(_STAGE)
            async with cur.copy(_COPY) as copy:
                for row in rows:
                    await copy.write_row(row)
            await cur.execute(_HOLD_HOURS)
            await cur.execute(_MERGE)
            return (await cur.fetchone())[0]
