"""v1 metrics latency through Envoy against a DuckDB scan of a Parquet export (issue #4).

    PYTHONPATH=services:gen .venv/bin/python -m bench.v1_latency \
        [--beacons 20000000] [--clients 8] [--requests 100] [--duration 30] [--duckdb-runs 10]
        [--keep-db] [--reuse]   # keep the loaded database / measure a kept one (skips 1.)

1. A fresh `edgestats_bench` database gets `--beacons` raw beacons of one customer
   (edgestats_cli.demo_data, demo-sports scaled so that 30 days give that volume), validated
   by beacon_validation.validate and COPYed into `beacons`, all within the 30-day raw
   retention of the frozen clock; every hour is rolled up (rollups.roll_up_hour), then
   VACUUM ANALYZE.
2. The customer's raw beacons are exported to Parquet (PostgreSQL COPY … CSV → DuckDB).
3. The stack starts with the clock frozen at the data's end and the result cache off, so
   every request queries PostgreSQL.
4. `audience` and `traffic` over 1 h, 24 h, 7 days and 30 days (ending at the frozen now,
   no data_layer: the planner chooses) are timed alone (`--baseline` sequential requests)
   and under `--clients` closed-loop clients; the same answer is computed by DuckDB over
   the Parquet file (`--duckdb-runs` times) and the two answers are compared.

Targets (issue #4): every range ≥ 24 h faster than the DuckDB scan; 30 days at `hour`
p99 ≤ 200 ms. When a target is missed, EXPLAIN ANALYZE of the slowest historical query is
printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

import duckdb
import psycopg
from psycopg import sql

from bench.common import (
    BENCH_DB,
    PG_PORT,
    CpuMeter,
    HttpConnection,
    code_version,
    customer_key,
    fresh_database,
    machine_note,
    percentile,
    running_stack,
)
from edgestats_cli.demo_data import DEMO_CUSTOMERS, WINDOW_SECONDS, daily_curve, generate_beacons
from edgestats_core.beacon_columns import COLUMNS
from edgestats_core.metrics.v1_definitions import V1_METRICS
from edgestats_core.migrations import migrate
from edgestats_core.query import planner
from edgestats_core.query.granularity import FIXED_SECONDS
from edgestats_core.query.v1_spec import V1Spec
from edgestats_core.tenancy import api_keys
from edgestats_stack import postgres
from edgestats_stack.stack import REPO, Stack
from metrics_service import rollups
from metrics_service.beacon_validation import validate

CUSTOMER = DEMO_CUSTOMERS[0]  # demo-sports, advanced tier
DAYS = 30
CHUNK = 50_000
# (label, range, granularity): every range ends at the frozen now.
CASES = (
    ("1 h", timedelta(hours=1), "minute"),
    ("24 h", timedelta(hours=24), "fifteen_minute"),
    ("24 h", timedelta(hours=24), "hour"),
    ("7 d", timedelta(days=7), "hour"),
    ("30 d", timedelta(days=30), "hour"),
    ("30 d", timedelta(days=30), "day"),
)
METRICS = ("audience", "traffic")
TARGET_MS = 200.0  # 30 days at hour, p99
AUDIENCE_TOLERANCE = 0.02  # HLL sketches of the historical layers


# --- data ----------------------------------------------------------------------------------


def peak_for(beacons: int, start: datetime, end: datetime) -> int:
    """peak_sessions giving at least about `beacons` beacons over [start, end) (Little's law;
    the sessions drawn vary by ~1 %, hence the margin)."""
    step = 300
    t, stop, windows = start.timestamp(), end.timestamp(), 0.0
    while t < stop:
        windows += daily_curve(t) * step / WINDOW_SECONDS
        t += step
    return max(1, math.ceil(beacons * 1.01 / windows))


def load(url: str, beacons: int, start: datetime, end: datetime, seed: int) -> int:
    """COPY the validated demo beacons of [start, end) into `beacons`; returns how many."""
    profile = replace(CUSTOMER, peak_sessions=peak_for(beacons, start, end))
    print(f"profile: {profile.customer_id} peak_sessions={profile.peak_sessions}"
          f" over {start.isoformat()} .. {end.isoformat()}")
    names = sql.SQL(", ").join(sql.Identifier(c.name) for c in COLUMNS)
    generated = generate_beacons(profile, start, end, seed)
    total, started, reported = 0, time.perf_counter(), 0
    with psycopg.connect(url) as conn:
        while chunk := list(islice(generated, CHUNK)):
            copy_sql = sql.SQL("COPY beacons ({}) FROM STDIN").format(names)
            with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                for beacon in chunk:
                    copy.write_row(validate(beacon, profile.customer_id, end))
            total += len(chunk)
            if total - reported >= 1_000_000:
                reported = total
                rate = total / (time.perf_counter() - started)
                print(f"  {total:,} beacons loaded, {rate:,.0f} beacons/s", flush=True)
    return total


def roll_up(url: str, start: datetime, end: datetime) -> None:
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        done = [rollups.roll_up_hour(conn, hour) for hour in rollups.hours_of(start, end)]
        seconds = time.perf_counter() - started
        raw = sum(r.raw_beacons for r in done)
        print(f"rolled up {len(done)} hours: {raw:,} beacons in {seconds:.0f} s ="
              f" {raw / seconds:,.0f} beacons/s; {sum(r.minute_rows for r in done):,} minute"
              f" rows, {sum(r.hour_rows for r in done):,} hour rows")
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        sizes = {t: conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits"
            " WHERE inhparent = %s::regclass", (t,)).fetchone()[0]
            for t in ("beacons", "beacons_minute", "beacons_hour")}
    print(f"VACUUM ANALYZE in {time.perf_counter() - started:.0f} s; size with indexes: "
          + ", ".join(f"{t} {float(b) / 1e6:,.0f} MB" for t, b in sizes.items()))


def export_parquet(url: str, directory: Path) -> Path:
    """The customer's raw beacons (time as UTC timestamp) as Parquet, through a CSV file."""
    started = time.perf_counter()
    csv_path, parquet = directory / "beacons.csv", directory / "beacons.parquet"
    others = ", ".join(f'"{c.name}"' for c in COLUMNS if c.name != "time")
    query = (f"""COPY (SELECT ("time" AT TIME ZONE 'UTC') AS "time", {others} FROM beacons"""
             f" WHERE customer_id = '{CUSTOMER.customer_id}') TO STDOUT WITH (FORMAT csv,"
             " HEADER true)")
    with (psycopg.connect(url) as conn, conn.cursor() as cur, open(csv_path, "wb") as out,
          cur.copy(query) as copy):
        for data in copy:
            out.write(data)
    csv_seconds = time.perf_counter() - started
    types = {c.name: {"time": "TIMESTAMP", "string": "VARCHAR", "bool": "BOOLEAN",
                      "int": "BIGINT", "double": "DOUBLE"}[c.type] for c in COLUMNS}
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT * FROM read_csv('{csv_path}', header = true,"
                    f" columns = {types!r})) TO '{parquet}' (FORMAT parquet)")
        rows = con.execute(f"SELECT count(*) FROM '{parquet}'").fetchone()[0]
    csv_bytes = csv_path.stat().st_size
    csv_path.unlink()
    print(f"exported {rows:,} beacons to Parquet: {parquet.stat().st_size / 1e6:,.0f} MB"
          f" (CSV {csv_bytes / 1e6:,.0f} MB in {csv_seconds:.0f} s; total"
          f" {time.perf_counter() - started:.0f} s)")
    return parquet


# --- edgestats through Envoy ---------------------------------------------------------------


@dataclass
class Timing:
    latencies: list[float]  # seconds, ascending
    elapsed: float
    errors: int = 0

    def ms(self, pct: float) -> float:
        return percentile(self.latencies, pct) * 1000


async def closed_loop(connections: list[HttpConnection], path: str, body: bytes,
                      requests: int, duration: float) -> Timing:
    deadline = time.perf_counter() + duration
    latencies: list[float] = []
    issued = errors = 0

    async def worker(connection: HttpConnection) -> None:
        nonlocal issued, errors
        while issued < requests and time.perf_counter() < deadline:
            issued += 1
            started = time.perf_counter()
            status, _ = await connection.post(path, body)
            latencies.append(time.perf_counter() - started)
            errors += status != 200

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    return Timing(sorted(latencies), time.perf_counter() - started, errors)


async def measure_service(stack: Stack, key: str, path: str, body: bytes,
                          args: argparse.Namespace) -> tuple[list[dict], Timing, Timing, str]:
    headers = {"authorization": f"Bearer {key}"}
    connections = [HttpConnection(stack.http_url, headers) for _ in range(args.clients)]
    try:
        status, answer = await connections[0].post(path, body)  # warm-up, and the answer
        if status != 200:
            raise SystemExit(f"{path} {body!r}: HTTP {status} {answer[:300]!r}")
        alone = await closed_loop(connections[:1], path, body, args.baseline, args.duration)
        meter = CpuMeter(stack)
        meter.start()
        loaded = await closed_loop(connections, path, body, args.requests, args.duration)
        cpu = meter.report()
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return json.loads(answer), alone, loaded, cpu


# --- DuckDB --------------------------------------------------------------------------------


def duckdb_sql(metric: str, parquet: Path, start: datetime, end: datetime,
               granularity: str) -> str:
    seconds = FIXED_SECONDS[granularity]
    value = ("count(DISTINCT session_id) AS audience" if metric == "audience" else
             "sum(cdn_downlink_throughput) * 125 AS cdn_traffic,"
             " sum(p2p_downlink_throughput) * 125 AS p2p_traffic,"
             " sum(total_downlink_throughput) * 125 AS total_traffic")
    naive = "TIMESTAMP '{}'"
    return (f"SELECT time_bucket(INTERVAL '{seconds} seconds', \"time\","
            f" TIMESTAMP '1970-01-01') AS bucket, {value} FROM '{parquet}'"
            f" WHERE \"time\" >= {naive.format(start.replace(tzinfo=None))}"
            f" AND \"time\" < {naive.format(end.replace(tzinfo=None))} GROUP BY 1 ORDER BY 1")


def measure_duckdb(con: duckdb.DuckDBPyConnection, query: str,
                   runs: int) -> tuple[list[tuple], Timing]:
    rows: list[tuple] = []
    latencies = []
    for _ in range(runs):
        started = time.perf_counter()
        rows = con.execute(query).fetchall()
        latencies.append(time.perf_counter() - started)
    return rows, Timing(sorted(latencies), sum(latencies))


def compare(metric: str, layer: str, answer: list[dict], rows: list[tuple]) -> tuple[bool, str]:
    """Whether edgestats' buckets equal DuckDB's (audience within 2 % on historical layers)."""
    fmt = "%Y-%m-%dT%H:%M:%S.000Z"
    theirs = {r[0].strftime(fmt): r[1:] for r in rows}
    keys = ("audience",) if metric == "audience" else ("cdn_traffic", "p2p_traffic",
                                                       "total_traffic")
    worst = 0.0
    exact = metric == "traffic" or layer == "realtime"
    ok = set(theirs) <= {a["timestamp"] for a in answer}
    for a in answer:
        expected = theirs.get(a["timestamp"], (0,) * len(keys))
        for k, e in zip(keys, expected, strict=True):
            e = e or 0
            err = abs(a[k] - e) / max(abs(e), 1)
            worst = max(worst, err)
            if exact and not math.isclose(a[k], e, rel_tol=1e-9, abs_tol=1e-6):
                ok = False
    if not exact and worst > AUDIENCE_TOLERANCE:
        ok = False
    return ok, f"{len(answer)} buckets, max rel. diff {worst:.2%}"


# --- the run -------------------------------------------------------------------------------


@dataclass
class Result:
    metric: str
    label: str
    granularity: str
    layer: str
    alone: Timing
    loaded: Timing
    duck: Timing
    agrees: bool
    diff: str

    @property
    def ranged(self) -> bool:
        return self.label != "1 h"


def explain(url: str, metric: str, start: datetime, end: datetime, granularity: str,
            now: datetime) -> None:
    spec = V1Spec((CUSTOMER.customer_id,), start, end, granularity, (), None, False, False)
    with psycopg.connect(url) as conn:
        rolled = frozenset(r[0] for r in conn.execute(
            "SELECT hour FROM rollup_runs WHERE hour >= %s AND hour < %s", (start, end)))
        plan = planner.plan(spec, V1_METRICS[metric], now, rolled)
        print(f"\nEXPLAIN ANALYZE of {metric} {granularity} over {end - start}"
              f" (layer {plan.layer}, {len(rolled)} rolled hours):")
        lines = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + plan.sql, plan.params).fetchall()
        for (line,) in lines:  # the rolled-hours array literal is hundreds of timestamps
            print("  " + re.sub(r"'\{[^}]{200,}\}'", "'{…rolled hours…}'", line))


def reusable_database() -> tuple[str, str, int, datetime] | None:
    """(admin URL, URL, beacons, data end) of a kept, loaded and rolled-up bench database,
    migrated to the current schema; None when there is none."""
    admin = postgres.ensure_cluster(REPO / ".run", PG_PORT)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)).fetchone():
            return None
    url = admin.rsplit("/", 1)[0] + "/" + BENCH_DB
    migrate(url)  # new rollup tables are backfilled by their migration
    with psycopg.connect(url) as conn:
        count, last = conn.execute('SELECT count(*), max("time") FROM beacons').fetchone()
    if not count:
        return None
    return admin, url, count, last.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def run(args: argparse.Namespace) -> None:
    reused = reusable_database() if args.reuse else None
    if reused:
        admin, url, loaded, end = reused
        print(f"reusing {BENCH_DB}: {loaded:,} beacons, rolled up, ending {end.isoformat()}")
    else:
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        admin, url = fresh_database()
    start = end - timedelta(days=DAYS) + timedelta(minutes=1)  # within the raw retention
    workdir = Path(tempfile.mkdtemp(prefix="edgestats-v1-bench-", dir=args.workdir))
    print(f"{machine_note()}; work dir {workdir}")
    try:
        if not reused:
            started = time.perf_counter()
            loaded = load(url, args.beacons, start, end, args.seed)
            seconds = time.perf_counter() - started
            print(f"loaded {loaded:,} beacons in {seconds:.0f} s ="
                  f" {loaded / seconds:,.0f} beacons/s")
            roll_up(url, start, end)
        parquet = export_parquet(url, workdir)
        key = customer_key(url, CUSTOMER.customer_id, "advanced")
        with psycopg.connect(url) as conn:  # measure queries, not the key's rate limit
            api_keys.set_rate_limit(conn, api_keys.key_id_of(key), 1e6, 1e6)
        env = {"EDGESTATS_FROZEN_NOW": end.isoformat(), "EDGESTATS_RESULT_CACHE_SECONDS": "0"}
        results = []
        duck = duckdb.connect()
        with psycopg.connect(url) as conn:  # every hour is rolled up: the planner's view
            rolled = frozenset(r[0] for r in conn.execute("SELECT hour FROM rollup_runs"))
        with running_stack(url, env) as stack:
            print(f"stack: Envoy {stack.http_url}, now frozen at {end.isoformat()},"
                  f" result cache off; {machine_note()}")
            for metric in METRICS:
                for label, span, granularity in CASES:
                    frm = end - span
                    spec = V1Spec((CUSTOMER.customer_id,), frm, end, granularity, (), None,
                                  False, False)
                    layer = planner.choose_layer(spec, end, V1_METRICS[metric], rolled)
                    body = json.dumps({"from_date": frm.isoformat().replace("+00:00", "Z"),
                                       "to_date": end.isoformat().replace("+00:00", "Z"),
                                       "granularity": granularity}).encode()
                    path = f"/analytics/v1/metrics/{metric}"
                    answer, alone, under_load, cpu = asyncio.run(
                        measure_service(stack, key, path, body, args))
                    rows, duck_timing = measure_duckdb(
                        duck, duckdb_sql(metric, parquet, frm, end, granularity),
                        args.duckdb_runs)
                    agrees, diff = compare(metric, layer, answer, rows)
                    r = Result(metric, label, granularity, layer, alone, under_load,
                               duck_timing, agrees, diff)
                    results.append(r)
                    print(f"== {metric} {label} {granularity} ({layer}):"
                          f" alone p50 {alone.ms(50):,.1f} ms p99 {alone.ms(99):,.1f} ms;"
                          f" {args.clients} clients {len(under_load.latencies)} req"
                          f" p50 {under_load.ms(50):,.1f} ms p99 {under_load.ms(99):,.1f} ms"
                          f" ({len(under_load.latencies) / under_load.elapsed:,.1f} req/s,"
                          f" {under_load.errors} errors); DuckDB p50 {duck_timing.ms(50):,.1f}"
                          f" ms p99 {duck_timing.ms(99):,.1f} ms;"
                          f" {'agree' if agrees else 'DISAGREE'} ({diff})\n   {cpu}",
                          flush=True)
        duck.close()
        print_table(results, args)
        slow = [r for r in results if r.ranged and r.layer != "realtime"
                and r.alone.ms(50) >= r.duck.ms(50)]
        target = [r for r in results if r.label == "30 d" and r.granularity == "hour"]
        if args.explain and (slow or any(r.loaded.ms(99) > TARGET_MS for r in target)):
            worst = max(target, key=lambda r: r.alone.ms(50))
            explain(url, worst.metric, end - timedelta(days=30), end, "hour", end)
        print("\nsummary: " + summary(results, loaded, parquet, args))
    finally:
        if not args.keep_db:
            postgres.drop_database(admin, BENCH_DB)
        if not args.keep_parquet:
            for f in workdir.iterdir():
                f.unlink()
            workdir.rmdir()


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(f"\n| metric | range | granularity | layer | alone p50 | alone p99 |"
          f" {args.clients} clients p50 | {args.clients} clients p99 | DuckDB p50 |"
          f" DuckDB p99 | faster than DuckDB | answers |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        faster = "yes" if r.loaded.ms(99) < r.duck.ms(50) else (
            "alone only" if r.alone.ms(99) < r.duck.ms(50) else "no")
        print(f"| {r.metric} | {r.label} | {r.granularity} | {r.layer} |"
              f" {r.alone.ms(50):,.0f} ms | {r.alone.ms(99):,.0f} ms |"
              f" {r.loaded.ms(50):,.0f} ms | {r.loaded.ms(99):,.0f} ms |"
              f" {r.duck.ms(50):,.0f} ms | {r.duck.ms(99):,.0f} ms | {faster} |"
              f" {'agree' if r.agrees else 'DISAGREE'} ({r.diff}) |")


def summary(results: list[Result], beacons: int, parquet: Path,
            args: argparse.Namespace) -> str:
    ranged = [r for r in results if r.ranged]
    beaten = [r for r in ranged if r.alone.ms(50) < r.duck.ms(50)]
    target = [r for r in results if r.label == "30 d" and r.granularity == "hour"]
    worst99 = max(r.loaded.ms(99) for r in target)
    agree = sum(r.agrees for r in results)
    return (f"v1 audience/traffic, {beacons / 1e6:.2f} M beacons over {DAYS} days (Parquet"
            f" {parquet.stat().st_size / 1e6:,.0f} MB), {args.clients} clients, code"
            f" {code_version()}: ranges ≥ 24 h faster than DuckDB (alone p50 < DuckDB p50)"
            f" {len(beaten)}/{len(ranged)}"
            f" — target {'met' if len(beaten) == len(ranged) else 'not met'};"
            f" 30 d at hour p99 {worst99:,.0f} ms under {args.clients} clients — target"
            f" ≤ {TARGET_MS:.0f} ms {'met' if worst99 <= TARGET_MS else 'not met'};"
            f" answers agree {agree}/{len(results)}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beacons", type=int, default=20_000_000, help="raw beacons loaded")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=100, help="at most per case, loaded")
    parser.add_argument("--baseline", type=int, default=10, help="sequential requests first")
    parser.add_argument("--duration", type=float, default=30.0, help="at most s per phase")
    parser.add_argument("--duckdb-runs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=11, help="demo data seed")
    parser.add_argument("--workdir", default=None, help="where the Parquet file goes")
    parser.add_argument("--no-explain", dest="explain", action="store_false")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--reuse", action="store_true",
                        help="measure a database kept by --keep-db instead of loading one")
    parser.add_argument("--keep-parquet", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    run(parse_args())
