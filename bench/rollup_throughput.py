"""Rollup throughput: raw beacons rolled per second into the minute and hour layers, and the
size ratio raw : minute : hour.

    PYTHONPATH=services:gen .venv/bin/python -m bench.rollup_throughput [--sessions N] [--hours H]

Loads H hours of demo beacons for one customer with N concurrent sessions at peak into a fresh
`edgestats_bench` database, then times `rollups.roll_up_hour` for each hour (and a second run
of the same hours, which replaces the rows).
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
from metrics_service import beacon_store, rollups
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
        for attempt in ("first run", "re-run"):
            started = time.perf_counter()
            done = [rollups.roll_up_hour(conn, hour) for hour in rollups.hours_of(start, end)]
            seconds = time.perf_counter() - started
            raw = sum(r.raw_beacons for r in done)
            print(f"{attempt}: {raw:,} beacons in {seconds:.1f} s = {raw / seconds:,.0f} beacons/s;"
                  f" {sum(r.minute_rows for r in done):,} minute rows,"
                  f" {sum(r.hour_rows for r in done):,} hour rows")
        sizes = {t: table_bytes(conn, t) for t in ("beacons", "beacons_minute", "beacons_hour")}
    raw_bytes = sizes["beacons"]
    print("size on disk (with indexes): " + ", ".join(
        f"{t} {b / 1e6:,.1f} MB (1 : {raw_bytes / max(b, 1):,.1f})" for t, b in sizes.items()))
    rate = raw / seconds
    print(f"summary: rollups ({raw:,} beacons, {args.sessions:,} sessions): {rate:,.0f} beacons/s;"
          f" an hour at 20,000 beacons/s (72 M) would take {72e6 / rate / 60:,.1f} min;"
          f" raw : minute : hour = 1 : {sizes['beacons_minute'] / raw_bytes:.3f}"
          f" : {sizes['beacons_hour'] / raw_bytes:.4f}")

if __name__ == "__main__":
    main()
