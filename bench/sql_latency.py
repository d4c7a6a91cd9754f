"""SQL endpoint latency through Envoy on the v1 benchmark's database (issue #5 "Proof").

    PYTHONPATH=services:gen .venv/bin/python -m bench.sql_latency \
        [--beacons 20000000] [--reuse] [--keep-db] [--clients 4] [--requests 200]
        [--baseline 30] [--duration 30] [--translations 300] [--no-compare]

1. The database: with `--reuse`, a kept `edgestats_bench` that holds beacons (built by
   `bench.v1_latency --keep-db`, or by this benchmark with `--keep-db`) is used as it is
   (migrated to the current schema) and never dropped; otherwise a fresh one gets
   `--beacons` demo beacons of one customer over 30 days and every hour rolled up, by
   v1_latency's own `load` and `roll_up` (dropped at the end unless `--keep-db`).
   `--database NAME` builds or reuses another database, for a small trial run that must
   not replace the shared 20 M-beacon one.
2. The stack starts with the clock frozen at the data's end, the result cache off and no
   practical rate limit.
3. Five representative queries (below) are each timed alone (`--baseline` sequential
   requests) and under `--clients` closed-loop clients, p50 and p99 through Envoy; their
   translation (parse + validate + rewrite, and the rollup relation once the rolled hours
   are known) is timed in process (`--translations` runs, median and p99; target < 5 ms).
4. Unless `--no-compare`, the 30-day hourly series is also asked of the realtime layer
   (the same text over raw beacons: what the historical layer cost before it read the
   rollups) and the two answers are compared: sums equal, audience within 2 % (HLL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from bench.common import (
    BENCH_DB,
    PG_PORT,
    HttpConnection,
    code_version,
    customer_key,
    fresh_database,
    machine_note,
    percentile,
    running_stack,
)
from bench.v1_latency import CUSTOMER, DAYS, Timing, closed_loop, load, reusable_database, roll_up
from edgestats_core.metrics.rollup_rows import Coverage
from edgestats_core.tenancy.principals import Principal
from edgestats_stack import postgres
from edgestats_stack.stack import REPO, prepare_database
from sql_query_service.druid_sql import functions, pipeline

PATH = "/analytics/v1/query/sql"
TRANSLATION_TARGET_MS = 5.0


def queries(customer: str) -> dict[str, str]:
    """(name → Druid SQL) of the five representative dashboard queries; `now` is frozen."""
    who = f"CustomerId = '{customer}'"
    return {
        "KPI 24 h (realtime)":
            "SELECT COUNT(*) AS beacons, COUNT(DISTINCT SessionId) AS devices,"
            " SUM(TotalDownlinkThroughput) * 125 AS traffic_bytes, AVG(BufferHealth) AS bh"
            f' FROM "sdk-emea-realtime" WHERE {who}'
            " AND __time >= CURRENT_TIMESTAMP - INTERVAL '24' HOUR",
        "hourly series 30 d (historical-hour)":
            "SELECT TIME_FLOOR(__time, 'PT1H') AS \"timestamp\","
            " COUNT(DISTINCT SessionId) AS audience,"
            " SUM(TotalDownlinkThroughput) / 3600 AS throughput, SUM(ViewingTime) AS vt"
            f' FROM "{{layer}}" WHERE {who}'
            " AND __time >= CURRENT_TIMESTAMP - INTERVAL '30' DAY GROUP BY 1 ORDER BY 1",
        "top-10 channels 7 d (historical-hour)":
            "SELECT ChannelId, COUNT(DISTINCT SessionId) AS devices, SUM(ViewingTime) AS vt"
            f' FROM "sdk-emea-historical-hour" WHERE {who}'
            " AND __time >= CURRENT_TIMESTAMP - INTERVAL '7' DAY"
            " GROUP BY 1 ORDER BY 3 DESC LIMIT 10",
        "percentile 7 d (historical-hour)":
            "SELECT APPROX_QUANTILE_DS(DownlinkSpeed, 0.5) AS median_kbps,"
            " APPROX_QUANTILE_DS(DownlinkSpeed, 0.95) AS p95_kbps,"
            " APPROX_QUANTILE_DS(StartingTime, 0.5) AS median_join_ms"
            f' FROM "sdk-emea-historical-hour" WHERE {who}'
            " AND __time >= CURRENT_TIMESTAMP - INTERVAL '7' DAY",
        "window share 24 h (realtime)":
            "SELECT Source, SUM(TotalDownlinkThroughput) AS traffic, 100.0 *"
            " SUM(TotalDownlinkThroughput) / SUM(SUM(TotalDownlinkThroughput)) OVER () AS share"
            f' FROM "sdk-emea-realtime" WHERE {who}'
            " AND __time >= CURRENT_TIMESTAMP - INTERVAL '24' HOUR GROUP BY 1 ORDER BY 2 DESC",
    }


def text_of(template: str, layer: str = "sdk-emea-historical-hour") -> str:
    return template.replace("{layer}", layer)


# --- translation, in process -----------------------------------------------------------------


@dataclass
class Translation:
    median_ms: float
    p99_ms: float
    render_ms: float        # binding the rollup relation once the rolled hours are known
    on_rollups: bool


def time_translation(query: str, now: datetime, rolled: frozenset[datetime],
                     runs: int) -> Translation:
    principal = Principal("bench", "customer", "advanced", CUSTOMER.customer_id, "emea")
    options = functions.Options(now)
    for _ in range(20):
        translated = pipeline.translate(query, principal, options)
    samples, renders = [], []
    for _ in range(runs):
        started = time.perf_counter()
        translated = pipeline.translate(query, principal, options)
        middle = time.perf_counter()
        if translated.rollups:
            translated.render(Coverage(rolled))
        samples.append((middle - started) * 1000)
        renders.append((time.perf_counter() - middle) * 1000)
    samples.sort()
    return Translation(statistics.median(samples), percentile(samples, 99),
                       statistics.median(renders), bool(translated.rollups))


# --- through Envoy ---------------------------------------------------------------------------


async def measure(stack, key: str, query: str, args: argparse.Namespace
                  ) -> tuple[list, Timing, Timing]:
    headers = {"authorization": f"Bearer {key}"}
    body = json.dumps({"query": query, "context": {"timeout": 30000}}).encode()
    connections = [HttpConnection(stack.http_url, headers) for _ in range(args.clients)]
    try:
        status, answer = await connections[0].post(PATH, body)  # warm-up, and the answer
        if status != 200:
            raise SystemExit(f"HTTP {status} {answer[:400]!r} for {query}")
        alone = await closed_loop(connections[:1], PATH, body, args.baseline, args.duration)
        loaded = await closed_loop(connections, PATH, body, args.requests, args.duration)
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return json.loads(answer), alone, loaded


async def once(stack, key: str, query: str) -> tuple[int, list | str, float]:
    connection = HttpConnection(stack.http_url, {"authorization": f"Bearer {key}"})
    body = json.dumps({"query": query, "context": {"timeout": 30000}}).encode()
    try:
        started = time.perf_counter()
        status, answer = await connection.post(PATH, body)
        seconds = time.perf_counter() - started
    finally:
        await connection.close()
    return status, (json.loads(answer) if status == 200 else answer.decode()[:300]), seconds


def compare(historical: list[dict], realtime: list[dict]) -> str:
    """Sums equal (1e-9), audience within 2 %: the historical answer is the realtime one."""
    theirs = {r["timestamp"]: r for r in realtime}
    worst, bad = 0.0, 0
    for row in historical:
        other = theirs.get(row["timestamp"])
        if other is None:
            bad += 1
            continue
        for name in ("throughput", "vt"):
            if not math.isclose(row[name] or 0, other[name] or 0, rel_tol=1e-9, abs_tol=1e-6):
                bad += 1
        worst = max(worst, abs(row["audience"] - other["audience"]) / max(other["audience"], 1))
    verdict = "agree" if not bad and worst <= 0.02 and len(historical) == len(realtime) else (
        "DISAGREE")
    return (f"{verdict}: {len(historical)} vs {len(realtime)} buckets, {bad} sum mismatches,"
            f" audience max rel. diff {worst:.2%}")


def rolled_hours(url: str, start: datetime, end: datetime) -> frozenset[datetime]:
    with psycopg.connect(url) as conn:
        return frozenset(r[0] for r in conn.execute(
            "SELECT hour FROM rollup_runs WHERE hour >= %s AND hour < %s", (start, end)))


def reusable(name: str) -> tuple[str, str, int, datetime] | None:
    """(admin URL, URL, beacons, data end) of a kept database `name` that holds beacons."""
    if name == BENCH_DB:
        return reusable_database()  # v1_latency's: the same database, the same checks
    admin = postgres.ensure_cluster(REPO / ".run", PG_PORT)
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return None
    url = admin.rsplit("/", 1)[0] + "/" + name
    prepare_database(url)
    with psycopg.connect(url) as conn:
        count, last = conn.execute('SELECT count(*), max("time") FROM beacons').fetchone()
    if not count:
        return None
    return admin, url, count, last.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def fresh(name: str) -> tuple[str, str]:
    """(admin URL, URL) of a just-created, migrated database `name`."""
    if name == BENCH_DB:
        return fresh_database()
    admin = postgres.ensure_cluster(REPO / ".run", PG_PORT)
    postgres.drop_database(admin, name)
    url = postgres.create_database(admin, name)
    prepare_database(url)
    return admin, url


def run(args: argparse.Namespace) -> None:
    reused = reusable(args.database) if args.reuse else None
    if reused:
        admin, url, beacons, end = reused
        print(f"reusing {args.database}: {beacons:,} beacons, ending {end.isoformat()}")
    else:
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        admin, url = fresh(args.database)
        start = end - timedelta(days=DAYS) + timedelta(minutes=1)  # within the raw retention
        started = time.perf_counter()
        beacons = load(url, args.beacons, start, end, args.seed)
        print(f"loaded {beacons:,} beacons in {time.perf_counter() - started:.0f} s")
        roll_up(url, start, end)
    try:
        texts = queries(CUSTOMER.customer_id)
        rolled = rolled_hours(url, end - timedelta(days=DAYS + 1), end)
        print(f"{len(rolled)} rolled hours; {machine_note()}")
        if len(rolled) < DAYS * 24 * 0.9:
            print("warning: most hours are not rolled up: the historical layer aggregates them"
                  " from raw beacons on the fly (bench.v1_latency rolls every hour up)")
        translations = {name: time_translation(text_of(q), end, rolled, args.translations)
                        for name, q in texts.items()}
        key = customer_key(url, CUSTOMER.customer_id, "advanced")
        # every request reaches PostgreSQL (no result cache) and none is rate-limited
        env = {"EDGESTATS_FROZEN_NOW": end.isoformat(), "EDGESTATS_RESULT_CACHE_SECONDS": "0",
               "EDGESTATS_RATE_LIMIT": "1000000", "EDGESTATS_RATE_BURST": "1000000"}
        rows = []
        with running_stack(url, env) as stack:
            print(f"stack: Envoy {stack.http_url}, now frozen at {end.isoformat()},"
                  " result cache off")
            answers = {}
            for name, template in texts.items():
                answer, alone, loaded = asyncio.run(measure(stack, key, text_of(template), args))
                answers[name] = answer
                t = translations[name]
                rows.append((name, t, alone, loaded))
                print(f"== {name}: {len(answer)} rows; alone p50 {alone_ms(alone, 50)} p99"
                      f" {alone_ms(alone, 99)}; {args.clients} clients p50"
                      f" {alone_ms(loaded, 50)} p99 {alone_ms(loaded, 99)}"
                      f" ({len(loaded.latencies) / loaded.elapsed:,.1f} req/s,"
                      f" {loaded.errors} errors); translation {t.median_ms:.2f} ms"
                      f" (p99 {t.p99_ms:.2f}) + render {t.render_ms:.2f} ms", flush=True)
            verdict = "not compared"
            if args.compare:
                series = next(n for n in texts if n.startswith("hourly"))
                status, realtime, seconds = asyncio.run(
                    once(stack, key, text_of(texts[series], "sdk-emea-realtime")))
                if status == 200:
                    verdict = compare(answers[series], realtime)  # type: ignore[arg-type]
                    print(f"== the same 30-day hourly series on raw beacons (realtime):"
                          f" {seconds * 1000:,.0f} ms; {verdict}")
                else:
                    verdict = f"realtime answered HTTP {status} after {seconds:.1f} s"
                    print(f"== realtime 30-day series: {verdict}: {realtime}")
        print_table(rows, args)
        slowest = max(t.median_ms + t.render_ms for _, t, _, _ in rows)
        print(f"\nsummary: SQL endpoint, {beacons / 1e6:.2f} M beacons over {DAYS} days,"
              f" {args.clients} clients, code {code_version()}; translation + render median"
              f" ≤ {slowest:.2f} ms (target {TRANSLATION_TARGET_MS:.0f} ms:"
              f" {'met' if slowest < TRANSLATION_TARGET_MS else 'MISSED'}); historical ="
              f" realtime: {verdict}")
    finally:
        if not args.keep_db and not reused:
            postgres.drop_database(admin, args.database)


def alone_ms(timing: Timing, pct: float) -> str:
    return f"{timing.ms(pct):,.1f} ms"


def print_table(rows, args: argparse.Namespace) -> None:
    print(f"\n| query | rollups | translation p50 | translation p99 | render p50 | alone p50 |"
          f" alone p99 | {args.clients} clients p50 | {args.clients} clients p99 | req/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, t, alone, loaded in rows:
        print(f"| {name} | {'yes' if t.on_rollups else 'no'} | {t.median_ms:.2f} ms |"
              f" {t.p99_ms:.2f} ms | {t.render_ms:.2f} ms | {alone.ms(50):,.0f} ms |"
              f" {alone.ms(99):,.0f} ms | {loaded.ms(50):,.0f} ms | {loaded.ms(99):,.0f} ms |"
              f" {len(loaded.latencies) / loaded.elapsed:,.1f} |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beacons", type=int, default=20_000_000, help="raw beacons loaded")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=200, help="at most per query, loaded")
    parser.add_argument("--baseline", type=int, default=30, help="sequential requests first")
    parser.add_argument("--duration", type=float, default=30.0, help="at most s per phase")
    parser.add_argument("--translations", type=int, default=300, help="in-process runs")
    parser.add_argument("--seed", type=int, default=11, help="demo data seed")
    parser.add_argument("--keep-db", action="store_true", help="keep a database built here")
    parser.add_argument("--database", default=BENCH_DB,
                        help="another name for a small trial run (never the shared bench one)")
    parser.add_argument("--reuse", action="store_true",
                        help="measure a kept edgestats_bench that holds beacons (no loading)")
    parser.add_argument("--no-compare", dest="compare", action="store_false",
                        help="skip the 30-day series over raw beacons")
    return parser.parse_args()


if __name__ == "__main__":
    run(parse_args())
