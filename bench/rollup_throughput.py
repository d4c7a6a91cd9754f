"""Rollup throughput: raw beacons rolled per second into the minute and hour layers, and the
size ratio raw : minute : hour.

    PYTHONPATH=services:gen .venv/bin/python -m bench.rollup_throughput [--sessions N] [--hours H]
        [--database NAME] [--reuse] [--backfills K] [--load-only]

Loads H hours of demo beacons for one customer with N concurrent sessions at peak into a fresh
database (`edgestats_bench`, or NAME; with --reuse, NAME as an earlier run left it, its hours
read from its beacons: loading is the slow part), then times:
`rollups.roll_up_hour(from_raw=True)` for each hour (a backfill from raw, K times, default 2:
the second replaces the rows), the minute roller over the same hours a minute at a time, and
publishing each hour from those minutes (plain, and with the backfill's verification against
raw, and with a full merge of the hour rows as before issue #14). It prints beacons, minute
rows and hour rows an hour: the rows, not the beacons, drive the merge costs (dimension
combinations saturate), so nothing is scaled here.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import islice

import psycopg

from bench.common import BENCH_DB, PG_PORT, _process_cpu, fresh_database, machine_note
from edgestats_cli.demo_data import DEMO_CUSTOMERS, generate_beacons
from edgestats_core.db import Database
from edgestats_stack import postgres
from edgestats_stack.stack import REPO, prepare_database
from metrics_service import beacon_store, minute_rollups, rollups
from metrics_service.beacon_validation import validate


async def load(url: str, sessions: int, start: datetime, end: datetime) -> int:
    customer = replace(DEMO_CUSTOMERS[0], peak_sessions=sessions)
    db = Database(url, 1, 2)
    await db.open()
    total = 0
    try:
        beacons = generate_beacons(customer, start, end, seed=3)
        while chunk := list(islice(beacons, 20_000)):
            await beacon_store.store(db, [validate(b, customer.customer_id, end) for b in chunk])
            total += len(chunk)
    finally:
        await db.close()
    return total


def table_bytes(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint FROM pg_inherits"
        " WHERE inhparent = %s::regclass", (table,)
    ).fetchone()[0]


def loaded_hours(url: str) -> tuple[datetime, datetime] | None:
    """[start, end) of the whole hours holding the beacons of a database, None when empty."""
    with psycopg.connect(url) as conn:
        first, last = conn.execute('SELECT min("time"), max("time") FROM beacons').fetchone()
    if first is None:
        return None
    return rollups.floor_hour(first), rollups.floor_hour(last) + rollups.HOUR


def prepare(args: argparse.Namespace) -> tuple[str, datetime, datetime]:
    """(URL, start, end) of the loaded database: reused as it is, or fresh and loaded."""
    if args.reuse:
        admin = postgres.ensure_cluster(REPO / ".run", PG_PORT)
        url = postgres.with_database(admin, args.database)
        if (hours := loaded_hours(url)) is not None:
            prepare_database(url)  # this revision's migrations
            print(f"reusing {args.database}: beacons of {hours[0]:%H:%M}-{hours[1]:%H:%M}")
            return url, *hours
    _, url = fresh_database(args.database)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(hours=args.hours)
    started = time.perf_counter()
    loaded = asyncio.run(load(url, args.sessions, start, end))
    print(f"loaded {loaded:,} beacons ({args.hours} h, ~{args.sessions:,} sessions at peak)"
          f" in {time.perf_counter() - started:.0f} s")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE beacons")
    return url, start, end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--hours", type=int, default=2)
    parser.add_argument("--database", default=BENCH_DB)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--backfills", type=int, default=2, choices=range(1, 10))
    parser.add_argument("--load-only", action="store_true")
    args = parser.parse_args()
    url, start, end = prepare(args)
    if args.load_only:
        return
    print(machine_note())
    with psycopg.connect(url, autocommit=True) as conn:
        hours = list(rollups.hours_of(start, end))
        rate, raw = backfill(conn, hours, args.backfills)
        sizes = {t: table_bytes(conn, t) for t in ("beacons", "beacons_minute", "beacons_hour")}
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("beacons_minute", "beacons_hour")}
        publish = roll_and_publish(conn, hours, raw)
    raw_bytes = sizes["beacons"]
    print("size on disk after the backfill (with indexes): " + ", ".join(
        f"{t} {b / 1e6:,.1f} MB (1 : {raw_bytes / max(b, 1):,.1f})" for t, b in sizes.items()))
    per_hour = raw / len(hours)
    print(f"summary: {per_hour:,.0f} beacons, {rows['beacons_minute'] / len(hours):,.0f} minute"
          f" rows and {rows['beacons_hour'] / len(hours):,.0f} hour rows an hour; from raw"
          f" {rate:,.0f} beacons/s; publish from the rolled minutes {publish[0]:.2f} s an hour"
          f" (verified {publish[1]:.2f} s, with the full merge {publish[2]:.2f} s);"
          f" raw : minute : hour = 1 : {sizes['beacons_minute'] / raw_bytes:.3f}"
          f" : {sizes['beacons_hour'] / raw_bytes:.4f} by bytes")
    print(machine_note())


class Stopwatch:
    """Wall seconds and the CPU seconds of the connection's backend (the machine is shared:
    CPU seconds say what the work costs whatever else runs)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        self.wall, self.cpu = time.perf_counter(), _process_cpu(self.backend)

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, _process_cpu(self.backend) - self.cpu


def backfill(conn: psycopg.Connection, hours: list[datetime], runs: int) -> tuple[float, int]:
    """(beacons/s of the last run, beacons) of `runs` backfills of the hours from raw."""
    for attempt in ("backfill from raw", *("re-run from raw",) * (runs - 1)):
        watch = Stopwatch(conn)
        done = [rollups.roll_up_hour(conn, hour, from_raw=True) for hour in hours]
        seconds, cpu = watch.read()
        raw = sum(r.raw_beacons for r in done)
        print(f"{attempt}: {raw:,} beacons in {seconds:.1f} s (backend CPU {cpu:.1f} s)"
              f" = {raw / seconds:,.0f} beacons/s; {sum(r.minute_rows for r in done):,} minute"
              f" rows, {sum(r.hour_rows for r in done):,} hour rows")
    return raw / seconds, raw


def timed_publish(conn: psycopg.Connection, hours: list[datetime], verify: bool) -> float:
    """Seconds an hour to publish the hours from their rolled minutes."""
    watch = Stopwatch(conn)
    done = [rollups.roll_up_hour(conn, hour, verify=verify) for hour in hours]
    assert all(p.from_minutes is None for p in done)
    seconds, cpu = watch.read()
    print(f"  publish ({'verified' if verify else 'plain'}): {seconds / len(hours):.2f} s an hour"
          f" (backend CPU {cpu / len(hours):.2f} s), {sum(p.hour_rows for p in done):,} hour"
          " rows written")
    return seconds / len(hours)


def roll_and_publish(
    conn: psycopg.Connection, hours: list[datetime], raw: int,
) -> tuple[float, float, float]:
    """The minute roller over the hours a minute at a time (merging each minute into the hour
    rows), then publishing each hour: plain, with the backfill's verification (count raw),
    and with a full merge of the hour rows (as before #14: merge state forgotten); seconds
    an hour of each."""
    conn.execute("DELETE FROM rollup_runs; DELETE FROM rollup_progress")
    watch = Stopwatch(conn)
    each = []
    for hour in hours:
        for minute in range(1, 61):
            started = time.perf_counter()
            minute_rollups.roll_up_minutes(conn, hour + timedelta(minutes=minute))
            each.append(time.perf_counter() - started)
    rolling, cpu = watch.read()
    print(f"minute roller, a minute at a time: {raw:,} beacons in {rolling:.1f} s (backend CPU"
          f" {cpu:.1f} s) = {raw / rolling:,.0f} beacons/s; a minute: median"
          f" {sorted(each)[len(each) // 2]:.2f} s, slowest {max(each):.2f} s, the hour's last"
          f" (its last merge) {each[59]:.2f} s")
    plain = timed_publish(conn, hours, verify=False)
    verified = timed_publish(conn, hours, verify=True)
    conn.execute("UPDATE rollup_progress SET hour_rows_to = NULL")
    merged = timed_publish(conn, hours, verify=False)
    print(f"publish from the rolled minutes: {plain:.2f} s an hour; with the backfill's"
          f" verification (count raw) {verified:.2f} s; with a full merge {merged:.2f} s")
    return plain, verified, merged


if __name__ == "__main__":
    main()
