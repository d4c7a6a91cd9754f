"""Rollup throughput: raw beacons rolled per second into the minute and hour layers, and the
size ratio raw : minute : hour.

    PYTHONPATH=services:gen .venv/bin/python -m bench.rollup_throughput [--sessions N] [--hours H]

Loads H hours of demo beacons for one customer with N concurrent sessions at peak into a fresh
`edgestats_bench` database, then times: `rollups.roll_up_hour(from_raw=True)` for each hour
(a backfill from raw, twice: the second replaces the rows), the minute roller over the same
hours a minute at a time, and publishing each hour from those minutes (plain, and with the
backfill's verification against raw). The 72 M figures scale the per-hour times linearly
with the beacons of an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import islice

import psycopg

from bench.common import fresh_database
from edgestats_cli.demo_data import DEMO_CUSTOMERS, generate_beacons
from edgestats_core.db import Database
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--hours", type=int, default=2)
    args = parser.parse_args()
    _, url = fresh_database()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(hours=args.hours)
    started = time.perf_counter()
    loaded = asyncio.run(load(url, args.sessions, start, end))
    print(f"loaded {loaded:,} beacons ({args.hours} h, ~{args.sessions:,} sessions at peak)"
          f" in {time.perf_counter() - started:.0f} s")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE beacons")
        hours = list(rollups.hours_of(start, end))
        for attempt in ("backfill from raw", "re-run from raw"):
            started = time.perf_counter()
            done = [rollups.roll_up_hour(conn, hour, from_raw=True) for hour in hours]
            seconds = time.perf_counter() - started
            raw = sum(r.raw_beacons for r in done)
            print(f"{attempt}: {raw:,} beacons in {seconds:.1f} s = {raw / seconds:,.0f} beacons/s;"
                  f" {sum(r.minute_rows for r in done):,} minute rows,"
                  f" {sum(r.hour_rows for r in done):,} hour rows")
        rate = raw / seconds
        # the minute roller's work, a minute at a time, then publishing from those minutes
        conn.execute("DELETE FROM rollup_runs; DELETE FROM rollup_progress")
        started = time.perf_counter()
        for hour in hours:
            for minute in range(1, 61):
                minute_rollups.roll_up_minutes(conn, hour + timedelta(minutes=minute))
        rolling = time.perf_counter() - started
        started = time.perf_counter()
        published = [rollups.roll_up_hour(conn, hour) for hour in hours]
        publishing = time.perf_counter() - started
        assert all(p.from_minutes is None for p in published)
        started = time.perf_counter()
        verified = [rollups.roll_up_hour(conn, hour, verify=True) for hour in hours]
        verifying = time.perf_counter() - started
        assert all(p.from_minutes is None for p in verified)
        print(f"minute roller, a minute at a time: {raw:,} beacons in {rolling:.1f} s"
              f" = {raw / rolling:,.0f} beacons/s")
        print(f"publish from the rolled minutes: {publishing:.2f} s for {len(hours)} h"
              f" ({publishing / len(hours):.2f} s an hour); with the backfill's verification"
              f" (count raw): {verifying:.2f} s ({verifying / len(hours):.2f} s an hour)")
        sizes = {t: table_bytes(conn, t) for t in ("beacons", "beacons_minute", "beacons_hour")}
    raw_bytes = sizes["beacons"]
    print("size on disk (with indexes): " + ", ".join(
        f"{t} {b / 1e6:,.1f} MB (1 : {raw_bytes / max(b, 1):,.1f})" for t, b in sizes.items()))
    scale = 72e6 / (raw / len(hours))
    print(f"summary: rollups ({raw:,} beacons, {args.sessions:,} sessions): from raw"
          f" {rate:,.0f} beacons/s, an hour of 72 M beacons {72e6 / rate / 60:,.1f} min;"
          f" published from minutes {publishing / len(hours):.2f} s an hour, scaled to 72 M"
          f" {publishing / len(hours) * scale / 60:,.1f} min (verified"
          f" {verifying / len(hours) * scale / 60:,.1f} min);"
          f" raw : minute : hour = 1 : {sizes['beacons_minute'] / raw_bytes:.3f}"
          f" : {sizes['beacons_hour'] / raw_bytes:.4f}")

if __name__ == "__main__":
    main()
