"""Statistics resource latency through Envoy over a year of daily usage facts.

    PYTHONPATH=services:gen .venv/bin/python -m bench.usage_stats \
        [--users 10000] [--days 365] [--apps 2] [--clients 32] [--duration 20] [--requests 4000]

Loads `--days` complete days of daily facts (conversion, storage, bandwidth for each of
`--apps` applications) for `--users` usage users straight into usage_daily_facts with COPY,
marks those days computed (usage_fact_runs), and adds a few of today's events per user so
every answer also aggregates the live part (docs/usage-stats.md). Then
`GET /v1/stats/bandwidth?action=aggregate` is timed alone and under `--clients` closed-loop
clients, each cycling over its own users' keys (so the answers come from many users' rows,
not one user's cached pages). Runs in its own database (`edgestats_bench_usage`).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import time
from datetime import UTC, datetime, timedelta

import psycopg

from bench.common import (
    CpuMeter,
    HttpConnection,
    _process_cpu,
    fresh_database,
    machine_note,
    percentile,
    running_stack,
)
from edgestats_core.query.windows import floor_to
from edgestats_core.tenancy.api_keys import create_user_key
from edgestats_stack import postgres

DB = "edgestats_bench_usage"
PATH = "/v1/stats/bandwidth?action=aggregate"
TYPES = ("conversion", "storage", "bandwidth")
PG_PORT = int(os.environ.get("EDGESTATS_PG_PORT", "55432"))


def load(url: str, args: argparse.Namespace, now: datetime) -> list[str]:
    """Users, applications, keys, a year of facts (COPY) and today's events; returns keys."""
    today = now.date()
    rng = random.Random(args.seed)
    users = [f"bench-u{i:05}" for i in range(args.users)]
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy("COPY usage_users (user_id) FROM STDIN") as copy:
                for user in users:
                    copy.write_row((user,))
            with cur.copy("COPY usage_applications (user_id, application_id, is_default)"
                          " FROM STDIN") as copy:
                for user in users:
                    for a in range(args.apps):
                        copy.write_row((user, f"{user}-a{a}", a == 0))
            with cur.copy("COPY usage_daily_facts (user_id, type, day, application_id, bytes)"
                          " FROM STDIN") as copy:
                for user in users:
                    for d in range(args.days, 0, -1):
                        day = today - timedelta(days=d)
                        for type_ in TYPES:
                            for a in range(args.apps):
                                copy.write_row((user, type_, day, f"{user}-a{a}",
                                                rng.randrange(1, 10**10)))
            with cur.copy("COPY usage_fact_runs (grain, bucket, computed_at, events)"
                          " FROM STDIN") as copy:
                for d in range(args.days, 0, -1):
                    bucket = datetime.combine(today - timedelta(days=d), datetime.min.time(), UTC)
                    copy.write_row(("day", bucket, now, 0))
            events = io.StringIO()
            midnight = floor_to(now, 86_400)
            for user in users:
                for i in range(3):
                    at = midnight + (now - midnight) * rng.random()
                    events.write(f"{user}\t{at.isoformat()}\t{user}-e{i}\tbandwidth\t{user}-a0"
                                 f"\t{rng.randrange(1, 10**8)}\t\\N\n")
            with cur.copy("COPY usage_events (user_id, occurred_at, event_id, type,"
                          " application_id, bytes, tag) FROM STDIN") as copy:
                copy.write(events.getvalue())
        keys = [create_user_key(conn, user) for user in users]
        conn.execute("ANALYZE usage_daily_facts")
        conn.execute("ANALYZE usage_events")
        size = conn.execute("SELECT pg_total_relation_size('usage_daily_facts')").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM usage_daily_facts").fetchone()[0]
    print(f"loaded {rows:,} daily facts ({size / 1e6:,.0f} MB with indexes) for {args.users:,}"
          f" users × {args.days} days in {time.perf_counter() - started:.0f} s")
    return keys


async def closed_loop(base: str, keys: list[str], clients: int, duration: float,
                      requests: int) -> tuple[list[float], dict[int, int], float]:
    """Latencies (s, ascending), statuses and elapsed s; client i cycles over keys[i::clients]."""
    deadline, issued = time.perf_counter() + duration, 0
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def worker(own: list[str]) -> None:
        nonlocal issued
        connections = [HttpConnection(base, {"authorization": f"Bearer {k}"}) for k in own]
        try:
            i = 0
            while issued < requests and time.perf_counter() < deadline:
                issued += 1
                started = time.perf_counter()
                status, body = await connections[i % len(connections)].get(PATH)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
                if status != 200 and statuses[status] == 1:
                    print(f"   first HTTP {status}: {body[:200]!r}")
                i += 1
        finally:
            await asyncio.gather(*(c.close() for c in connections))

    started = time.perf_counter()
    await asyncio.gather(*(worker(keys[i::clients]) for i in range(min(clients, len(keys)))))
    return sorted(latencies), statuses, time.perf_counter() - started


def service_cpu(stack) -> float:
    """CPU seconds of the usage-billing workers (CpuMeter reports the other processes)."""
    return sum(_process_cpu(p.pid) for p in stack.processes
               if p.name.startswith("usage_billing_service"))


def line(latencies: list[float], statuses: dict[int, int], elapsed: float) -> str:
    ok = statuses.get(200, 0)
    bad = ", ".join(f"{n}×HTTP {s}" for s, n in sorted(statuses.items()) if s != 200) or "none"
    return (f"{len(latencies):,} requests in {elapsed:.1f} s, {ok / elapsed:,.1f} OK/s;"
            f" p50 {percentile(latencies, 50) * 1000:,.1f} ms,"
            f" p99 {percentile(latencies, 99) * 1000:,.1f} ms,"
            f" max {latencies[-1] * 1000:,.1f} ms; errors: {bad}")


def run(args: argparse.Namespace) -> None:
    admin, url = fresh_database(DB)
    now = floor_to(datetime.now(UTC), 5)
    try:
        keys = load(url, args, now)
        env = {"EDGESTATS_FROZEN_NOW": now.isoformat(), "EDGESTATS_RATE_LIMIT": "1000000",
               "EDGESTATS_RATE_BURST": "1000000"}
        with running_stack(url, env) as stack:
            print(f"stack: Envoy {stack.http_url}, now frozen at {now.isoformat()};"
                  f" {machine_note()}")
            print(f"\n== GET {PATH}")
            alone = asyncio.run(closed_loop(stack.http_url, keys[:50], 1, args.duration / 4,
                                            args.baseline))
            print(f"   1 client  : {line(*alone)}")
            meter = CpuMeter(stack, DB)
            meter.start()
            cpu_before, wall_before = service_cpu(stack), time.perf_counter()
            loaded = asyncio.run(closed_loop(stack.http_url, keys, args.clients, args.duration,
                                             args.requests))
            service = (service_cpu(stack) - cpu_before) / (time.perf_counter() - wall_before)
            print(f"   {args.clients} clients: {line(*loaded)}")
            print(f"   {meter.report()}; usage_billing_service {service:.2f}")
    finally:
        if not args.keep_db:
            postgres.drop_database(admin, DB)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365, help="days of facts per user")
    parser.add_argument("--apps", type=int, default=2, help="applications per user")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--requests", type=int, default=4_000, help="at most, under load")
    parser.add_argument("--baseline", type=int, default=50, help="sequential requests first")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-db", action="store_true", help=f"keep {DB} afterwards")
    return parser.parse_args()


if __name__ == "__main__":
    run(parse_args())
