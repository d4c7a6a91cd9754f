"""History loaded through the API is rolled up with no Airflow (issue #14): v1 over 24 h
against DuckDB over the same raw rows, within a minute of the load.

    PYTHONPATH=services:gen .venv/bin/python -m bench.history_rollup \
        [--sessions 300] [--hours 26] [--clients 4] [--batch 5000] [--requests 20]

1. A fresh `edgestats_bench` database; the stack (metrics service + Envoy) starts on the
   real clock, so its minute roller runs as under `make run`; the result cache is off.
2. `--hours` of demo beacons of one customer (`--sessions` at peak) ending now are sent
   through Envoy as JSON batches (`POST /analytics/v1/ingest/beacons`) by `--clients`.
3. From the end of the load, the seconds until every hour of it is in the rollups
   (published, or the current ones rolled by the minute roller) and nothing is pending, and
   until the live layer holds the load's last 90 minutes (its roller recomputes them: they
   arrived late, after their seconds had been rolled empty).
4. Then, and once more a minute after the load: `audience`, `traffic` and `viewing_time`
   over the last 24 h at `hour` and over the last hour at `minute` (read from the live
   layer) (no data_layer: the planner chooses), p50 of `--requests`
   sequential requests, against DuckDB over a Parquet export of the same raw beacons (p50 of
   5 runs), with the answers compared (traffic and viewing time exactly, audience within 2 %).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

import duckdb
import psycopg

from bench.common import (
    HttpConnection,
    customer_key,
    fresh_database,
    machine_note,
    percentile,
    running_stack,
)
from edgestats_cli.demo_data import DEMO_CUSTOMERS, generate_beacons, to_json_ready
from edgestats_core.beacon_columns import COLUMNS
from edgestats_core.metrics.live_rows import COVERAGE_SQL
from edgestats_core.query.windows import floor_to

METRICS = {
    "audience": "count(DISTINCT session_id) AS audience",
    "traffic": "sum(cdn_downlink_throughput) * 125 AS cdn_traffic,"
               " sum(p2p_downlink_throughput) * 125 AS p2p_traffic,"
               " sum(total_downlink_throughput) * 125 AS total_traffic",
    "viewing_time": "sum(viewing_time) FILTER (WHERE source = 'cdn') AS cdn_viewing_time,"
                    " sum(viewing_time) FILTER (WHERE source = 'p2p') AS p2p_viewing_time,"
                    " sum(viewing_time) AS total_viewing_time",
}


async def send(url: str, key: str, beacons: Iterator[dict], batch: int, clients: int) -> int:
    """POST the beacons as JSON batches through Envoy from `clients` connections (encoded as
    they go: 26 h of beacons do not fit in memory as bodies); the beacons accepted."""
    connections = [HttpConnection(url, {"authorization": f"Bearer {key}"})
                   for _ in range(clients)]
    accepted = 0

    async def worker(connection: HttpConnection) -> None:
        nonlocal accepted
        while chunk := list(islice(beacons, batch)):
            body = json.dumps([to_json_ready(b) for b in chunk], separators=(",", ":")).encode()
            status, answer = await connection.post("/analytics/v1/ingest/beacons", body)
            if status != 200:
                raise SystemExit(f"ingest: HTTP {status} {answer[:200]!r}")
            accepted += json.loads(answer)["accepted"]

    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return accepted


def live_held(url: str, end: datetime) -> bool:
    """Whether the live layer holds every beacon up to `end` (no late bucket before it)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(COVERAGE_SQL).fetchone()
    return row is not None and row[1] >= end


def unrolled(url: str, start: datetime, end: datetime) -> tuple[int, int]:
    """(hours of [start, end) neither published nor minute-rolled to their end (the current
    hour: to within 2 minutes), closed hours pending)."""
    with psycopg.connect(url) as conn:
        missing = conn.execute("""
            SELECT count(*) FROM generate_series(%(start)s::timestamptz, %(end)s, '1 hour') h
            WHERE h < %(end)s
              AND NOT EXISTS (SELECT FROM rollup_runs r WHERE r.hour = h
                              AND NOT EXISTS (SELECT FROM rollup_stale s WHERE s.hour = h))
              AND NOT EXISTS (SELECT FROM rollup_progress p WHERE p.hour = h
                              AND p.rolled_to >= least(h + interval '1 hour',
                                                       now() - interval '2 minutes'))
        """, {"start": floor_to(start, 3600), "end": end}).fetchone()[0]
        pending = conn.execute("SELECT count(*) FROM rollup_pending"
                               " WHERE hour < date_trunc('hour', now())").fetchone()[0]
    return missing, pending


def export_parquet(url: str, customer_id: str, directory: Path) -> Path:
    csv_path, parquet = directory / "beacons.csv", directory / "beacons.parquet"
    others = ", ".join(f'"{c.name}"' for c in COLUMNS if c.name != "time")
    query = (f"""COPY (SELECT ("time" AT TIME ZONE 'UTC') AS "time", {others} FROM beacons"""
             f" WHERE customer_id = '{customer_id}') TO STDOUT WITH (FORMAT csv, HEADER true)")
    with (psycopg.connect(url) as conn, conn.cursor() as cur, open(csv_path, "wb") as out,
          cur.copy(query) as copy):
        for data in copy:
            out.write(data)
    types = {c.name: {"time": "TIMESTAMP", "string": "VARCHAR", "bool": "BOOLEAN",
                      "int": "BIGINT", "double": "DOUBLE"}[c.type] for c in COLUMNS}
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT * FROM read_csv('{csv_path}', header = true,"
                    f" columns = {types!r})) TO '{parquet}' (FORMAT parquet)")
    csv_path.unlink()
    return parquet


def duck(parquet: Path, metric: str, start: datetime, end: datetime,
         seconds: int = 3600) -> tuple[list, float]:
    naive = "TIMESTAMP '{}'"
    query = (f"SELECT time_bucket(INTERVAL '{seconds} seconds', \"time\", TIMESTAMP '1970-01-01')"
             f" AS bucket, {METRICS[metric]} FROM '{parquet}'"
             f" WHERE \"time\" >= {naive.format(start.replace(tzinfo=None))}"
             f" AND \"time\" < {naive.format(end.replace(tzinfo=None))} GROUP BY 1 ORDER BY 1")
    times, rows = [], []
    with duckdb.connect() as con:
        for _ in range(5):
            started = time.perf_counter()
            rows = con.execute(query).fetchall()
            times.append(time.perf_counter() - started)
    return rows, percentile(sorted(times), 50)


async def service(url: str, key: str, metric: str, start: datetime, end: datetime,
                  requests: int, granularity: str = "hour") -> tuple[list[dict], float]:
    fmt = "%Y-%m-%dT%H:%M:%S.000Z"
    body = json.dumps({"from_date": start.strftime(fmt), "to_date": end.strftime(fmt),
                       "granularity": granularity}).encode()
    connection = HttpConnection(url, {"authorization": f"Bearer {key}"})
    times, answer = [], b"[]"
    try:
        for _ in range(requests):
            started = time.perf_counter()
            status, answer = await connection.post(f"/analytics/v1/metrics/{metric}", body)
            times.append(time.perf_counter() - started)
            if status != 200:
                raise SystemExit(f"{metric}: HTTP {status} {answer[:200]!r}")
    finally:
        await connection.close()
    return json.loads(answer), percentile(sorted(times), 50)


def agrees(metric: str, answer: list[dict], rows: list[tuple]) -> bool:
    fmt = "%Y-%m-%dT%H:%M:%S.000Z"
    theirs = {r[0].strftime(fmt): r[1:] for r in rows}
    for row in answer:
        values = [v for k, v in row.items() if k != "timestamp"]
        for got, want in zip(values, theirs.get(row["timestamp"], (0,) * len(values)),
                             strict=True):
            tolerance = 0.02 if metric == "audience" else 1e-9
            if not math.isclose(got, want or 0, rel_tol=tolerance, abs_tol=1e-6):
                return False
    return True


# (label, hours back from the end, granularity, its seconds): the day chart issue #14
# measured, and the last hour at minute (read from the live layer)
CASES = (("24 h at hour", 24, "hour", 3600), ("1 h at minute", 1, "minute", 60))


async def compare(url: str, key: str, parquet: Path, end: datetime, requests: int,
                  label: str) -> None:
    """The 24 hours up to the load's last whole minute from a whole hour, and the last hour
    up to it."""
    end = floor_to(end, 60)
    for case, hours, granularity, seconds in CASES:
        start = end - timedelta(hours=hours)
        if seconds == 3600:
            start = floor_to(end, 3600) - timedelta(hours=hours - 1)
        for metric in METRICS:
            answer, ours = await service(url, key, metric, start, end, requests, granularity)
            rows, theirs = duck(parquet, metric, start, end, seconds)
            print(f"{label}: {metric:<13} {case}: edgestats p50 {ours * 1000:7.1f} ms,"
                  f" DuckDB p50 {theirs * 1000:7.1f} ms: {theirs / ours:5.2f}× DuckDB;"
                  f" answers {'agree' if agrees(metric, answer, rows) else 'DIFFER'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--hours", type=float, default=26)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    _, url = fresh_database()
    customer = replace(DEMO_CUSTOMERS[0], peak_sessions=args.sessions)
    env = {"EDGESTATS_RESULT_CACHE_SECONDS": "0", "EDGESTATS_LONG_RESULT_CACHE_SECONDS": "0",
           "EDGESTATS_RATE_LIMIT": "1000000", "EDGESTATS_RATE_BURST": "1000000"}
    with running_stack(url, env=env) as stack:
        key = customer_key(url, customer.customer_id)
        end = floor_to(datetime.now(UTC), 5)
        start = end - timedelta(hours=args.hours)
        beacons = generate_beacons(customer, start, end, seed=7)
        started = time.perf_counter()
        sent = asyncio.run(send(stack.http_url, key, beacons, args.batch, args.clients))
        loading = time.perf_counter() - started
        loaded_at = time.perf_counter()
        print(f"loaded {sent:,} beacons ({args.hours:g} h, {args.sessions} sessions at peak)"
              f" through Envoy in {loading:.0f} s ({sent / loading:,.0f} beacons/s)")
        while (state := unrolled(url, start, end)) != (0, 0):
            if time.perf_counter() - loaded_at > 900:
                raise SystemExit(f"not rolled up 15 min after the load: {state}")
            time.sleep(1)
        print(f"every hour in the rollups {time.perf_counter() - loaded_at:.0f} s after the load"
              " (no Airflow, no backfill)")
        while not live_held(url, end):
            if time.perf_counter() - loaded_at > 900:
                raise SystemExit("the live layer not complete 15 min after the load")
            time.sleep(0.5)
        print(f"the live layer complete {time.perf_counter() - loaded_at:.0f} s after the load")
        with tempfile.TemporaryDirectory() as tmp:
            parquet = export_parquet(url, customer.customer_id, Path(tmp))
            asyncio.run(compare(stack.http_url, key, parquet, end, args.requests,
                                "after the load"))
            wait = 60 - (time.perf_counter() - loaded_at)
            if wait > 0:
                time.sleep(wait)
            asyncio.run(compare(stack.http_url, key, parquet, end, args.requests,
                                "a minute after"))
    print(machine_note())


if __name__ == "__main__":
    main()
