"""An hour's minute rows recomputed from raw beacons, with its hour rows kept in step (#14).

Publishing an hour used to merge all of its minute rows into hour rows at once (the sketch
unions of every hour group: minutes for a large hour). The minute roller now merges each
minute it rolls into the hour rows as it goes, so that publishing an hour it completed is
a mark. `rollup_progress.hour_rows_to` records how far: the hour rows of the hour are
exactly the merge of its minute rows [hour, hour_rows_to); NULL when unknown. Hour rows are
only read for published hours (`rollup_rows.COVERAGE_SQL`), so readers never see them while
they are partial; the roller never touches a published hour.

Sketch unions cannot be undone, so minutes recomputed after they were merged (late beacons)
re-merge from all the hour's minute rows the hour groups those minutes had or have, and
only those; with no usable `hour_rows_to` every hour row is rebuilt.
"""

from __future__ import annotations

import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from edgestats_core.metrics.rollup_rows import (
    COLUMNS,
    DIMS,
    TOTALS_COLUMNS,
    merged_select,
    session_rows_select,
    sessions_merged,
)

log = logging.getLogger(__name__)

# for the roll-up's statements: at the server's 64 MB a minute's aggregation sorted and the
# merges spilled their sketch states (~20 KB a group); with this they hash in memory (up to
# hash_mem_multiplier × this a node): a minute of 24 k beacons 0.55 -> 0.33 s CPU; an hour
# from raw still sorts on disk, ~10 % (performance.md). One roll-up at a time per hour.
ROLLUP_WORK_MEM = "512MB"
# the roller merges rolled minutes into the hour rows once this many wait (and at the hour's
# end): every merge rewrites each hour row its minutes touch, with its sketches grown over
# the hour; merging every minute cost the roller about 2x its CPU, every 10 minutes 1.4x
# (performance.md), and the last merge (at most this many minutes) still precedes publishing
MERGE_EVERY = timedelta(minutes=10)
HOUR = timedelta(hours=1)
# raw beacons are aggregated this many minutes a statement: an hour in one statement sorted
# its beacons on disk (6 GB for 14 M beacons), a minute's fit in work_mem (same rows: they
# are per minute)
STATEMENT_SPAN = timedelta(minutes=1)
_BETWEEN = '"time" >= %(start)s AND "time" < %(end)s'


def _minutes_sql(minutes: str, totals: str, run: str = "") -> str:
    """The minute rows and the minute totals of [start, end) from raw beacons into these
    tables, both grouped from one pass of per-session partials (the totals were a merge of
    the minute rows' sketches: ~20 us of CPU a minute row for each hll_union_agg, 40 % of
    a backfill); `run`: a last column appended to every row. Returns the minute rows."""
    return f"""
WITH per_session AS MATERIALIZED ({session_rows_select(_BETWEEN)}),
totals AS (INSERT INTO {totals}
           SELECT *{run} FROM ({sessions_merged("per_session", "source")}) AS t),
minutes AS (INSERT INTO {minutes}
            SELECT *{run} FROM ({sessions_merged("per_session")}) AS m RETURNING 1)
SELECT count(*) FROM minutes
"""


MINUTE_SQL = _minutes_sql("beacons_minute", "beacons_minute_totals")
# a whole hour from raw: its minutes are aggregated on `Helpers.connections` connections at
# once, each staging its rows under the roll's run number (migration 016), then copied in
_STAGE_SQL = _minutes_sql("beacons_minute_staged", "beacons_minute_totals_staged",
                          ", %(run)s::bigint")
_STAGED = {"beacons_minute": COLUMNS, "beacons_minute_totals": TOTALS_COLUMNS}
_ANY_BEACON_SQL = f"SELECT EXISTS (SELECT FROM beacons WHERE {_BETWEEN})"
# an hour group's identity: its customer and this key of its dimension values (NULL equal to
# NULL; migration 009, indexed on beacons_hour with "time" and customer_id)
_KEY = f"rollup_dims_key({DIMS})"
_HOUR_ROWS = '"time" = %(hour)s'
# hour rows of the hour from its minute rows of [start, end) (a rebuild from empty)
_MERGE_SQL = "INSERT INTO beacons_hour " + merged_select(
    f"beacons_minute WHERE {_BETWEEN}", "%(hour)s::timestamptz", DIMS, small_groups=True)
# the minute rows of [start, end) merged into the hour rows: each hour group they touch is
# replaced by the merge of its old hour row and those minute rows (one statement)
_ADD_SQL = f"""
WITH old AS (
    DELETE FROM beacons_hour WHERE {_HOUR_ROWS} AND (customer_id, {_KEY}) IN
        (SELECT customer_id, {_KEY} FROM beacons_minute WHERE {_BETWEEN})
    RETURNING {COLUMNS}
)
INSERT INTO beacons_hour {merged_select(
    f"(SELECT {COLUMNS} FROM old UNION ALL SELECT {COLUMNS} FROM beacons_minute"
    f" WHERE {_BETWEEN}) AS rows", "%(hour)s::timestamptz", DIMS, small_groups=True)}
"""
# hour groups whose minute rows in [start, end) are about to change (kept for _REMERGE_SQL)
_KEYS_SQL = f"""
INSERT INTO hour_groups_touched SELECT DISTINCT customer_id, {_KEY} FROM beacons_minute
WHERE {_BETWEEN}
"""
_TOUCHED = f"(customer_id, {_KEY}) IN (SELECT customer_id, key FROM hour_groups_touched)"
# those hour groups re-merged from every minute row of [hour, end)
_REMERGE_SQL = "INSERT INTO beacons_hour " + merged_select(
    f'beacons_minute WHERE "time" >= %(hour)s AND "time" < %(end)s AND {_TOUCHED}',
    "%(hour)s::timestamptz", DIMS, small_groups=True)


def _steps(start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """The starts of [start, end) cut every `step`."""
    out = []
    while start < end:
        out.append(start)
        start += step
    return out


def hour_rows_to(conn: psycopg.Connection, hour: datetime) -> datetime | None:
    """How far the hour rows of `hour` merge its minute rows (None: unknown)."""
    row = conn.execute("SELECT hour_rows_to FROM rollup_progress WHERE hour = %s",
                       (hour,)).fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class Helpers:
    """Connections to the roll's database (`url`) that aggregate the minutes of a recompute
    spanning several at once (`connections` at a time, PostgreSQL's work in parallel): a
    backfill from raw beacons. Their rows are staged and copied into the roll's transaction,
    so the roll stays atomic."""

    url: str
    connections: int  # the default is the backfill's (rollups.ROLLUP_CONNECTIONS)


def _stage(url: str, run: int, spans: list[tuple[datetime, datetime]]) -> None:
    """Aggregate these minute spans into the staged tables under `run`, on a connection of
    its own (one of `_staged`'s helpers)."""
    with psycopg.connect(url, autocommit=True) as conn:
        _session_settings(conn, local=False)
        for start, end in spans:
            conn.execute(_STAGE_SQL, {"start": start, "end": end, "run": run})


def _staged(conn: psycopg.Connection, helpers: Helpers,
            spans: list[tuple[datetime, datetime]]) -> int:
    """The minute rows and minute totals of these spans aggregated by the helpers, copied
    into the tables in `conn`'s transaction; returns the minute rows. (`conn` taking a share
    itself was no faster; merging the hour rows on the helpers too, a share of the hour
    groups each, was no faster at 1.36 M beacons, but the merge is 40 % of the wall at 14 M:
    performance.md.)"""
    run, parts = secrets.randbits(62), helpers.connections
    try:
        with ThreadPoolExecutor(parts) as pool:
            for done in [pool.submit(_stage, helpers.url, run, spans[i::parts])
                         for i in range(parts)]:
                done.result()  # a helper's error fails the roll
        conn.execute(_copy("beacons_minute_totals"), {"run": run})
        return conn.execute(_copy("beacons_minute"), {"run": run}).rowcount
    finally:  # copied (or failed): the staged rows go, whatever the roll's outcome
        try:
            with psycopg.connect(helpers.url, autocommit=True) as cleanup:
                for table in _STAGED:
                    cleanup.execute(f"DELETE FROM {table}_staged WHERE run = %s", (run,))
        except psycopg.Error as error:  # the roll's own outcome (or error) is what matters
            log.warning("staged rows of run %d left behind: %s", run, error)


def _copy(table: str) -> str:
    """The statement copying a run's staged rows into `table`."""
    return (f"INSERT INTO {table} SELECT {_STAGED[table]} FROM {table}_staged"
            " WHERE run = %(run)s")


def _session_settings(conn: psycopg.Connection, local: bool) -> None:
    """The roll-up statements' settings (`local`: for the transaction only)."""
    scope = "SET LOCAL" if local else "SET"
    conn.execute(f"{scope} work_mem = '{ROLLUP_WORK_MEM}'")
    # psycopg prepares a statement run five times and PostgreSQL then settles on a generic
    # plan, which for MINUTE_SQL (blind to the minute's size) took 3-6x as long
    conn.execute(f"{scope} plan_cache_mode = force_custom_plan")
    # a minute of 116 k beacons spent 160 ms of its 1.56 s compiling its expressions (JIT,
    # chosen by cost) on every statement: the expressions are cheap, the rows many
    conn.execute(f"{scope} jit = off")


def recompute(
    conn: psycopg.Connection, hour: datetime, start: datetime, end: datetime,
    helpers: Helpers | None = None,
) -> tuple[int, int]:
    """Replace the minute rows and minute totals of [start, end) of `hour` from raw beacons
    and bring its hour rows to the merge of its minute rows [hour, end), or leave them for a
    later roll while fewer than `MERGE_EVERY` minutes wait before the hour's end; returns the
    minute rows and the hour rows written. Run inside the transaction holding the hour's
    roll-up lock; records how far the hour rows merge in `hour_rows_to` (when the hour has
    a progress row). `helpers`: connections that aggregate several minutes at once."""
    _session_settings(conn, local=True)
    merged_to = hour_rows_to(conn, hour)
    bounds = {"hour": hour, "start": start, "end": end}
    # minutes already merged are replaced: only their hour groups are re-merged
    targeted = merged_to is not None and hour < start < merged_to <= end
    if targeted:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS hour_groups_touched"
                     " (customer_id text, key uuid) ON COMMIT DELETE ROWS")
        conn.execute(_KEYS_SQL, bounds)
    minutes = 0
    if start < end:
        for table in ("beacons_minute", "beacons_minute_totals"):
            conn.execute(f"DELETE FROM {table} WHERE {_BETWEEN}", bounds)
        # an hour with no beacon (history with gaps, a backfill of empty hours) costs one
        # probe, not a statement a minute
        if conn.execute(_ANY_BEACON_SQL, bounds).fetchone()[0]:
            spans = [(first, min(first + STATEMENT_SPAN, end))
                     for first in _steps(start, end, STATEMENT_SPAN)]
            if helpers is not None and helpers.connections > 1 and len(spans) > 1:
                minutes = _staged(conn, helpers, spans)
            else:
                for first, last in spans:
                    minutes += conn.execute(MINUTE_SQL, {"start": first, "end": last}
                                            ).fetchone()[0]
    if merged_to is None and start == hour:  # the whole hour anew: nothing merged yet
        conn.execute(f"DELETE FROM beacons_hour WHERE {_HOUR_ROWS}", bounds)
        merged_to = hour
    hours = 0
    if targeted:
        conn.execute(_KEYS_SQL, bounds)
        conn.execute(f"DELETE FROM beacons_hour WHERE {_HOUR_ROWS} AND {_TOUCHED}", bounds)
        hours = conn.execute(_REMERGE_SQL, bounds).rowcount
    elif merged_to is not None and merged_to <= start:
        if end - merged_to < MERGE_EVERY and end < hour + HOUR:
            end = merged_to  # merged by a later roll
        elif merged_to == hour:
            hours = conn.execute(_MERGE_SQL, bounds | {"start": hour}).rowcount
        elif merged_to < end:
            hours = conn.execute(_ADD_SQL, bounds | {"start": merged_to}).rowcount
    else:
        conn.execute(f"DELETE FROM beacons_hour WHERE {_HOUR_ROWS}", bounds)
        hours = conn.execute(_MERGE_SQL, bounds | {"start": hour}).rowcount
    conn.execute("UPDATE rollup_progress SET hour_rows_to = %s WHERE hour = %s", (end, hour))
    return minutes, hours
