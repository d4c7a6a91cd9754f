"""Legacy Stats API latency through Envoy with ~10,000 live sessions for one customer.

    PYTHONPATH=services:gen .venv/bin/python -m bench.query_latency \
        [--sessions 10000] [--minutes 10] [--clients 32] [--duration 20] [--requests 2000]

Loads the last `--minutes` of realistic beacons (edgestats_cli.demo_data,
demo-sports' catalogue scaled so that `--sessions` sessions are live at the
end: 10,000 sessions × 120 windows ≈ 1.2 M beacons) straight through
metrics_service.beacon_store.store, rolls them into the live layer as the
live roller would have by then (`--raw`: not, every window reads raw beacons),
then starts the stack with its clock frozen at the end of the last beacon
window (EDGESTATS_FROZEN_NOW), so `time=live` always covers the newest beacons;
the result cache is off (`--result-cache`). Each endpoint is first timed
alone (`--baseline` sequential requests: the unloaded service time), then
under `--clients` closed-loop clients for `--duration` seconds or
`--requests` requests, whichever comes first.

The clients are closed loops, so latency ≈ clients ÷ throughput (Little's
law): p99 ≤ 50 ms at 32 clients needs well over 640 requests/s. They use a
minimal HTTP/1.1 client (bench.common.HttpConnection) because httpx alone
cost ~2.4 ms of CPU per request on these two shared cores. Every endpoint
also prints the CPU (in cores) used by the service, Envoy, PostgreSQL, this
client and the machine while it was measured.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import islice

import httpx
import psycopg

from bench.common import (
    BENCH_DB,
    CpuMeter,
    HttpConnection,
    code_version,
    customer_key,
    fresh_database,
    machine_note,
    percentile,
    running_stack,
)
from edgestats_cli.demo_data import DEMO_CUSTOMERS, DemoCustomer, daily_curve, generate_beacons
from edgestats_core.beacon_columns import COLUMNS
from edgestats_core.db import Database
from edgestats_core.query.windows import floor_to
from edgestats_stack import postgres
from edgestats_stack.stack import Stack
from metrics_service import beacon_store, live_rollups

CUSTOMER = DEMO_CUSTOMERS[0]  # demo-sports: advanced tier, real channel names
CHUNK = 10_000
TARGET = ("/summary?time=live", 50.0)  # p99 ms with 10,000 live sessions
# `{channel}` is the channel with the most live sessions.
ENDPOINTS = (
    "/summary?time=live",
    "/summary/agg?time=live",
    "/stats/throughput/agg?time=10m&source=cdn",
    "/summary?time=10m",
    "/summary?time=1h",
    "/stats/os?time=1h",
    "/channels/{channel}/summary?time=10m",
)


# --- data ----------------------------------------------------------------------------------


def live_sessions(profile: DemoCustomer, end: datetime, seed: int) -> int:
    """Sessions with a beacon in the last window before `end`."""
    return sum(1 for _ in generate_beacons(profile, end - timedelta(seconds=5), end, seed))


def calibrated_profile(sessions: int, end: datetime, seed: int) -> tuple[DemoCustomer, int]:
    """CUSTOMER scaled so that about `sessions` sessions are live at `end` (and how many)."""
    peak = max(1, round(sessions / daily_curve(end.timestamp())))
    profile = replace(CUSTOMER, peak_sessions=peak)
    live = live_sessions(profile, end, seed)
    profile = replace(profile, peak_sessions=max(1, round(peak * sessions / max(live, 1))))
    return profile, live_sessions(profile, end, seed)


def as_row(beacon: dict) -> tuple:
    """A generated beacon as a beacons row in COLUMNS order (what validate() returns)."""
    return tuple(beacon[column.druid] for column in COLUMNS)


async def load_beacons(
    db_url: str, profile: DemoCustomer, end: datetime, args: argparse.Namespace
) -> int:
    """Store the last `args.minutes` of the profile's beacons before `end`; returns how many."""
    beacons = generate_beacons(profile, end - timedelta(minutes=args.minutes), end, args.seed)
    db = Database(db_url, 1, 2)
    await db.open()
    stored = 0
    try:
        while chunk := list(islice(beacons, CHUNK)):
            stored += await beacon_store.store(db, [as_row(b) for b in chunk])
    finally:
        await db.close()
    return stored


@dataclass
class DataSet:
    beacons: int  # rows in the beacons table
    sessions: int  # distinct sessions over the whole load
    live: int  # distinct sessions in the live window
    channels: int
    streams: int
    megabytes: float  # beacons partitions, indexes included
    busiest_channel: str


def describe(db_url: str, customer_id: str, end: datetime) -> DataSet:
    """ANALYZE the table (as autovacuum would) and measure what was loaded."""
    with psycopg.connect(db_url) as conn:
        conn.execute("ANALYZE beacons")
        totals = conn.execute(
            "SELECT count(*), count(DISTINCT session_id), count(DISTINCT channel_id),"
            " count(DISTINCT stream_id) FROM beacons WHERE customer_id = %s", (customer_id,)
        ).fetchone()
        live = conn.execute(
            "SELECT channel_id, count(DISTINCT session_id) FROM beacons"
            " WHERE customer_id = %s AND time >= %s AND time < %s"
            " GROUP BY 1 ORDER BY 2 DESC", (customer_id, end - timedelta(seconds=5), end)
        ).fetchall()
        size = conn.execute(
            "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
            " WHERE inhparent = 'beacons'::regclass"
        ).fetchone()
    assert totals and size and live, "no beacon loaded"
    return DataSet(
        beacons=totals[0], sessions=totals[1], live=sum(n for _, n in live),
        channels=totals[2], streams=totals[3], megabytes=float(size[0]) / 1e6,
        busiest_channel=live[0][0],
    )


def prepare(db_url: str, args: argparse.Namespace) -> tuple[DataSet, datetime]:
    """Load the data set (rolled into the live layer unless --raw); returns it and the
    instant the service must treat as now."""
    end = floor_to(datetime.now(UTC), 5)
    started = time.perf_counter()
    profile, live = calibrated_profile(args.sessions, end, args.seed)
    print(f"profile: {profile.customer_id} with peak_sessions={profile.peak_sessions:,}"
          f" ⇒ {live:,} live sessions at {end.isoformat()}")
    stored = asyncio.run(load_beacons(db_url, profile, end, args))
    data = describe(db_url, profile.customer_id, end)
    print(f"loaded {stored:,} beacons in {time.perf_counter() - started:.0f} s; table:"
          f" {data.beacons:,} beacons ({data.megabytes:,.0f} MB with indexes),"
          f" {data.sessions:,} sessions over {args.minutes} min, {data.live:,} live,"
          f" {data.channels} channels, {data.streams} streams")
    if not args.raw:  # what the live roller has done by `end` (a frozen clock turns it off)
        started = time.perf_counter()
        with psycopg.connect(db_url, autocommit=True) as conn:
            live_rollups.catch_up(conn, end + live_rollups.LAG)
            conn.execute("ANALYZE beacons_live; ANALYZE beacons_live_devices")
        print(f"live layer rolled over the {args.minutes} min in"
              f" {time.perf_counter() - started:.1f} s")
    return data, end


# --- load generation -----------------------------------------------------------------------


@dataclass
class Measurement:
    clients: int
    elapsed: float
    latencies: list[float] = field(default_factory=list)  # seconds of every answer, ascending
    ok_latencies: list[float] = field(default_factory=list)  # seconds of the 200s, ascending
    statuses: Counter = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def ok_per_s(self) -> float:
        return len(self.ok_latencies) / self.elapsed

    def ms(self, pct: float, ok_only: bool = False) -> float:
        return percentile(self.ok_latencies if ok_only else self.latencies, pct) * 1000

    def errors(self) -> str:
        bad = {s: n for s, n in sorted(self.statuses.items()) if s != 200}
        return ", ".join(f"{n:,}×HTTP {s}" for s, n in bad.items()) or "none"

    def line(self) -> str:
        text = (f"{self.requests:,} requests in {self.elapsed:.1f} s, {self.ok_per_s:,.1f} OK/s;"
                f" p50 {self.ms(50):,.1f} ms, p99 {self.ms(99):,.1f} ms,"
                f" max {self.latencies[-1] * 1000:,.1f} ms; errors: {self.errors()}")
        if self.errors() != "none" and self.ok_latencies:
            ok50, ok99 = self.ms(50, ok_only=True), self.ms(99, ok_only=True)
            text += f" (200s only: p50 {ok50:,.0f} ms, p99 {ok99:,.0f} ms)"
        return text


async def closed_loop(
    connections: list[HttpConnection], path: str, duration: float, requests: int
) -> Measurement:
    """One worker per connection, each sending the next request as soon as the last answered."""
    deadline = time.perf_counter() + duration
    result = Measurement(len(connections), 0.0)
    issued = 0

    async def worker(connection: HttpConnection) -> None:
        nonlocal issued
        while issued < requests and time.perf_counter() < deadline:
            issued += 1
            started = time.perf_counter()
            status, _ = await connection.get(path)
            latency = time.perf_counter() - started
            result.latencies.append(latency)
            if status == 200:
                result.ok_latencies.append(latency)
            result.statuses[status] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    result.elapsed = time.perf_counter() - started
    result.latencies.sort()
    result.ok_latencies.sort()
    return result


@dataclass
class EndpointResult:
    path: str
    alone: Measurement | None
    loaded: Measurement


async def measure_endpoint(
    stack: Stack, key: str, path: str, args: argparse.Namespace
) -> EndpointResult:
    headers = {"authorization": f"Bearer {key}"}
    connections = [HttpConnection(stack.http_url, headers) for _ in range(args.clients)]
    try:
        status, body = await connections[0].get(path)  # warms up and checks the request
        if status != 200:
            raise SystemExit(f"{path}: HTTP {status} {body[:300]!r}")
        alone = None
        if args.baseline:
            alone = await closed_loop(connections[:1], path, args.duration / 4, args.baseline)
            print(f"   1 client  : {alone.line()}")
        meter = CpuMeter(stack)
        meter.start()
        loaded = await closed_loop(connections, path, args.duration, args.requests)
        print(f"   {args.clients} clients: {loaded.line()}")
        print(f"   {meter.report()}")
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return EndpointResult(path, alone, loaded)


def check_live_devices(stack: Stack, key: str, data: DataSet) -> None:
    """The service sees the frozen live window: its device counts add up to the live sessions
    (HyperLogLog estimates: within the documented 2 % of the exact count)."""
    answer = httpx.get(f"{stack.http_url}/summary/agg?time=live",
                       headers={"authorization": f"Bearer {key}"}, timeout=60).json()[0]
    devices = sum(answer[k] for k in ("cdn_devices", "p2p_devices", "not_compatible_devices"))
    error = devices / data.live - 1
    verdict = "OK (within 2 %)" if abs(error) <= 0.02 else "MISMATCH"
    print(f"live devices answered by /summary/agg?time=live: {devices:,}"
          f" (PostgreSQL, exact: {data.live:,}, {error:+.2%}): {verdict}")


def summary_line(results: list[EndpointResult], data: DataSet, args: argparse.Namespace) -> str:
    """One line for docs/performance.md, with the target verdict."""
    parts = "; ".join(f"{r.path} p50 {r.loaded.ms(50):,.0f} / p99 {r.loaded.ms(99):,.0f} ms"
                      f" ({r.loaded.ok_per_s:,.0f} OK/s"
                      f"{'' if r.loaded.errors() == 'none' else ', ' + r.loaded.errors()})"
                      for r in results)
    target_path, target_ms = TARGET
    hits = [r for r in results if r.path == target_path]
    verdict = ""
    if hits:
        met = hits[0].loaded.ms(99) <= target_ms
        verdict = f" — target {target_path} p99 ≤ {target_ms:.0f} ms {'met' if met else 'not met'}."
    return (f"Legacy API through Envoy ({data.live:,} live sessions, {data.beacons / 1e6:.2f} M"
            f" beacons over {args.minutes} min, {args.clients} clients, code {code_version()}):"
            f" {parts}{verdict}")


def print_table(results: list[EndpointResult], args: argparse.Namespace) -> None:
    print(f"\n{'endpoint':<44} {'alone p50':>9} | {args.clients} clients:"
          f" {'OK/s':>7} {'p50':>8} {'p99':>8} {'max':>8}  errors")
    for r in results:
        alone = f"{r.alone.ms(50):7.1f}ms" if r.alone else "       -"
        m = r.loaded
        print(f"{r.path:<44} {alone:>9} | {'':>{len(str(args.clients)) + 9}}"
              f"{m.ok_per_s:7.1f} {m.ms(50):6.0f}ms {m.ms(99):6.0f}ms"
              f" {m.latencies[-1] * 1000:6.0f}ms  {m.errors()}")


def run(args: argparse.Namespace) -> None:
    admin, db_url = fresh_database()
    try:
        data, end = prepare(db_url, args)
        key = customer_key(db_url, CUSTOMER.customer_id, "advanced")
        env = {"EDGESTATS_FROZEN_NOW": end.isoformat(),
               "EDGESTATS_RESULT_CACHE_SECONDS": str(args.result_cache),
               # one key asks everything: the per-key limit (20/s) is not what is measured
               "EDGESTATS_RATE_LIMIT": "1000000", "EDGESTATS_RATE_BURST": "1000000"}
        if args.pool_max:
            env["EDGESTATS_POOL_MAX"] = str(args.pool_max)
        with running_stack(db_url, env) as stack:
            print(f"stack: Envoy {stack.http_url}, now frozen at {end.isoformat()};"
                  f" {machine_note()}")
            check_live_devices(stack, key, data)
            results = []
            for template in args.endpoint:
                path = template.format(channel=data.busiest_channel)
                print(f"\n== GET {path}")
                results.append(asyncio.run(measure_endpoint(stack, key, path, args)))
    finally:
        if not args.keep_db:
            postgres.drop_database(admin, BENCH_DB)
    print_table(results, args)
    print("\nsummary: " + summary_line(results, data, args))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000, help="live sessions at the end")
    parser.add_argument("--minutes", type=int, default=10, help="minutes of beacons loaded")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per endpoint")
    parser.add_argument("--requests", type=int, default=2_000, help="at most per endpoint")
    parser.add_argument("--baseline", type=int, default=20,
                        help="sequential requests timed alone first (0: skip)")
    parser.add_argument("--endpoint", nargs="+", default=list(ENDPOINTS),
                        help="paths with query; {channel} = the busiest channel")
    parser.add_argument("--pool-max", type=int, default=0,
                        help="the service's EDGESTATS_POOL_MAX (0: its default, 10)")
    parser.add_argument("--seed", type=int, default=7, help="demo data seed")
    parser.add_argument("--raw", action="store_true",
                        help="leave the live layer empty (every window read from raw beacons)")
    parser.add_argument("--result-cache", type=float, default=0.0,
                        help="the services' EDGESTATS_RESULT_CACHE_SECONDS (default 0: off)")
    parser.add_argument("--keep-db", action="store_true", help="keep edgestats_bench afterwards")
    return parser.parse_args()


if __name__ == "__main__":
    run(parse_args())
