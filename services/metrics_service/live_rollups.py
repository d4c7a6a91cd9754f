"""Rolling the newest seconds into the live layer as they close (issue #14).

The legacy live / 10m / 1h windows used to aggregate every raw beacon of their window on
each request (1.8 M beacons for 10 minutes of 15,000 viewers). The metrics service now rolls
each closed 5-second bucket of every customer into beacons_live and beacons_live_devices
(edgestats_core.metrics.live_rows) about a second after it closes, each complete 30-second
bucket from those, each complete 5 minutes from the 30-second rows, and the 5-minute
blocks' edge rows (prefixes as they grow, suffixes once a block is complete); readers
(metrics_service.live_reads) take the fewest rows up to where the layer is complete and only
the newest seconds from raw beacons.

Never behind raw, as the minute roller (minute_rollups): a roll first fences — it takes the
advisory locks of the hours it will cover exclusively, which waits for the ingest
transactions in flight (they hold their recent hours shared, beacon_store), and sets
live_progress.fenced_to; an ingest committing later with a beacon before fenced_to marks its
bucket in live_late_buckets in the same transaction, readers stop at the earliest late
bucket, and the next roll recomputes from there. The layer keeps `RETENTION` (90 minutes:
the 1h window and its edges); older rows are deleted as the roller goes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from edgestats_core.config import Settings
from edgestats_core.metrics.live_rows import (
    BLOCK_WIDTH,
    LIVE_WIDTH,
    TABLE_WIDTHS,
    WIDTHS,
    all_sessions_select,
    coarse_select,
    edge_select,
    live_devices_select,
    live_select,
)
from edgestats_core.query.windows import floor_to
from metrics_service.minute_rollups import FENCE_NAMESPACE
from metrics_service.rollups import hour_key, hours_of

log = logging.getLogger(__name__)

# only one process rolls (a session lock its connection keeps; the others skip)
LIVE_ROLLER_LOCK = (7305, 0)
# a bucket is rolled this long after it closed: a beacon arriving later is late (re-rolled)
LAG = timedelta(milliseconds=500)
RETENTION = timedelta(minutes=90)
# at most this much is recomputed per roll: a roller catching up (started, or behind after a
# burst) commits its progress every few seconds, and readers use it at once
STEP = timedelta(seconds=30)
TABLES = ("beacons_live", "beacons_live_devices")
_STEP_5S = timedelta(seconds=LIVE_WIDTH)
_RAW = '"time" >= %(start)s AND "time" < %(end)s'
_INSERTS = {  # the 5-second rows of [start, end) of each table, beacons_live's first
    "beacons_live": (f"INSERT INTO beacons_live {live_select(_RAW)}",),
    "beacons_live_devices": (f"INSERT INTO beacons_live_devices {live_devices_select(_RAW)}",
                             f"INSERT INTO beacons_live_devices {all_sessions_select()}"),
}


@dataclass(frozen=True)
class LiveRoll:
    """Buckets [start, end) recomputed; the layer holds [held_from, end)."""

    held_from: datetime
    start: datetime
    end: datetime


def goal_of(now: datetime) -> datetime:
    """Where a roll at `now` brings the layer: the last 5-second bucket closed `LAG` ago."""
    return floor_to(now - LAG, LIVE_WIDTH)


def _fence(
    conn: psycopg.Connection, goal: datetime,
) -> tuple[datetime, datetime, datetime] | None:
    """Fence up to `goal`, or `STEP` past the start of the recomputation when that is
    earlier; (held_from, start, end of the recomputation) or None when the layer is complete
    up to `goal` already."""
    # whole buckets of every width: the layer starts on a 5-minute boundary
    oldest = floor_to(goal - RETENTION, WIDTHS[-1])
    with conn.transaction():
        row = conn.execute("SELECT held_from, rolled_to, fenced_to FROM live_progress"
                           " FOR UPDATE").fetchone()
        held_from, rolled_to, fenced_to = row or (oldest, oldest, oldest)
        # the hours a beacon may land in unfenced until now: ingests in flight there finish
        for hour in hours_of(max(min(fenced_to, goal), oldest), goal):
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (FENCE_NAMESPACE, hour_key(hour)))
        late = min((r[0] for r in conn.execute(
            "DELETE FROM live_late_buckets RETURNING bucket")), default=None)
        start = max(min(rolled_to, late or rolled_to), oldest)
        held_from = max(held_from, oldest)
        if rolled_to < oldest:  # the roller was off: nothing before `oldest` is kept
            held_from = start
        if start >= goal and row is not None:
            return None
        goal = min(goal, start + STEP)
        # readers keep [held_from, start): its rows are complete
        conn.execute(
            "INSERT INTO live_progress (held_from, rolled_to, fenced_to) VALUES (%s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET held_from = EXCLUDED.held_from,"
            " rolled_to = EXCLUDED.rolled_to, fenced_to = EXCLUDED.fenced_to",
            (held_from, start, goal))
    return held_from, start, goal


def _roll(conn: psycopg.Connection, held_from: datetime, start: datetime, goal: datetime) -> None:
    """Replace the 5-second rows of [start, goal), the coarser rows and the edge rows they
    complete, expire rows before `held_from`, and advance rolled_to, in one transaction."""
    with conn.transaction():
        for table in TABLES:
            widths = TABLE_WIDTHS[table]
            spans = {w: {"start": floor_to(start, w), "end": floor_to(goal, w)} for w in widths}
            conn.execute(f'DELETE FROM {table} WHERE "time" < %s', (held_from,))
            for width, span in spans.items():
                conn.execute(f"DELETE FROM {table} WHERE width = {width} AND {_RAW}", span)
            for insert in _INSERTS[table]:
                conn.execute(insert, spans[LIVE_WIDTH])
            for width in widths[1:]:  # each from the finer rows just written or held
                if spans[width]["end"] > spans[width]["start"]:
                    conn.execute(f"INSERT INTO {table} {coarse_select(table, width)}",
                                 spans[width])
        _roll_edges(conn, start, goal)
        conn.execute("UPDATE live_progress SET rolled_to = %s, rolled_at = now()", (goal,))


def _roll_edges(conn: psycopg.Connection, start: datetime, goal: datetime) -> None:
    """Replace the edge rows (live_rows: block prefixes and suffixes) holding a bucket of
    [start, goal): each prefix extended by the next 5-second row, and the suffixes of every
    block [start, goal) completes, from its end backwards (a 5-second row and the suffix
    after it)."""
    block = timedelta(seconds=BLOCK_WIDTH)
    conn.execute(
        f'DELETE FROM beacons_live WHERE width NOT IN {WIDTHS} AND "time" >= %(first)s'
        """ AND "time" < %(end)s AND "time" + width * interval '1 second' > %(start)s""",
        {"first": floor_to(start, BLOCK_WIDTH), "start": start, "end": goal})
    insert = f"INSERT INTO beacons_live {edge_select()}"
    bucket = start
    while bucket < goal:  # prefixes [B, bucket + 5 s)
        first = floor_to(bucket, BLOCK_WIDTH)
        done = int((bucket - first).total_seconds())
        if done and done + LIVE_WIDTH not in WIDTHS:
            conn.execute(insert, {"time": first, "width": done + LIVE_WIDTH, "a_time": first,
                                  "a_width": done, "b_time": bucket, "b_width": LIVE_WIDTH})
        bucket += _STEP_5S
    end = floor_to(start, BLOCK_WIDTH) + block
    while end <= goal:  # suffixes [x, end) of a completed block, x from its end backwards
        bucket = end - 2 * _STEP_5S
        while bucket > end - block:
            width = int((end - bucket).total_seconds())
            if width not in WIDTHS:
                conn.execute(insert, {"time": bucket, "width": width, "a_time": bucket,
                                      "a_width": LIVE_WIDTH, "b_time": bucket + _STEP_5S,
                                      "b_width": width - LIVE_WIDTH})
            bucket -= _STEP_5S
        end += block


def roll_up_live(conn: psycopg.Connection, now: datetime) -> LiveRoll | None:
    """Bring the live layer towards `goal_of(now)` (at most `STEP` at once): from where it
    was rolled to, or from its earliest late bucket; None when it is complete there
    already."""
    goal = goal_of(now)
    row = conn.execute("SELECT rolled_to, EXISTS (SELECT FROM live_late_buckets)"
                       " FROM live_progress").fetchone()
    if row is not None and row[0] >= goal and not row[1]:
        return None  # most cycles stop here, without a lock
    fenced = _fence(conn, goal)
    if fenced is None:
        return None
    held_from, start, end = fenced
    _roll(conn, held_from, start, end)
    return LiveRoll(held_from, start, end)


def catch_up(conn: psycopg.Connection, now: datetime) -> list[LiveRoll]:
    """`roll_up_live` until the layer is complete up to `goal_of(now)`."""
    done = []
    while (roll := roll_up_live(conn, now)) is not None:
        done.append(roll)
        if roll.end >= goal_of(now):
            break
    return done


class LiveRoller:
    """The live roller of one process: a connection of its own, holding LIVE_ROLLER_LOCK
    once it got it (then it rolls every cycle; the other processes' cycles do nothing)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.Connection | None = None

    def cycle(self, now: datetime) -> LiveRoll | None:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            self.leader = False
        if not self.leader:
            self.leader = self.conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", LIVE_ROLLER_LOCK).fetchone()[0]
            if not self.leader:
                return None
        return roll_up_live(self.conn, now)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


async def roll_live_forever(settings: Settings, url: str | None = None) -> None:
    """Every `settings.live_rollup_seconds`, bring the live layer of the database at `url`
    (default: the home database) up to the last closed bucket (off when 0, or when the clock
    is frozen). A failed cycle is logged; the next one reconnects and tries again."""
    if settings.live_rollup_seconds <= 0 or settings.frozen_now is not None:
        return
    roller = LiveRoller(url or settings.database_url)
    behind = False
    try:
        while True:
            if not behind:  # a roll that stopped at STEP goes on at once
                await asyncio.sleep(settings.live_rollup_seconds)
            behind = False
            try:
                roll = await asyncio.to_thread(roller.cycle, settings.now())
                behind = roll is not None and roll.end < goal_of(settings.now())
            except psycopg.Error as error:
                log.warning("live roll-up failed, retrying next cycle: %s", error)
                roller.close()
            except Exception:  # a bug must not stop the roller for good; it is logged
                log.exception("live roll-up failed, retrying next cycle")
                roller.close()
    finally:
        roller.close()
