"""Typed gRPC calls against their JSON paths through the same gateway (issue #16).

    PYTHONPATH=services:gen .venv/bin/python -m bench.typed_vs_json \
        [--beacons 2000000] [--runs 40] [--keep-db] [--reuse]

1. A fresh `edgestats_bench_typed` database gets `--beacons` demo beacons of one customer
   over 30 days (bench.v1_latency's loader), every hour rolled up (`--reuse` measures a
   kept one).
2. The stack starts with the clock frozen at the data's end and the result cache off, so
   both faces query PostgreSQL every time.
3. Each case is asked `--runs` times of each face, alternating, one call at a time:
   - a 30-day hourly series (720 buckets) of audience and of viewing time:
     POST /analytics/v1/metrics/… against MetricsService/Get… ;
   - a 10,000-row SQL result: POST /analytics/v1/query/sql against SqlQueryService/Query
     and its streaming variant QueryStream.
   Latency is measured by the caller up to usable rows (JSON parsed, or the message
   decoded); bytes are the answer's payload (the JSON body; the serialized messages).
   The two answers are compared before timing (same rows, same values).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from bench.common import (
    HttpConnection,
    customer_key,
    machine_note,
    percentile,
    running_stack,
)
from bench.v1_latency import CUSTOMER, DAYS, load, roll_up
from edgestats.metrics.v1 import metrics_service_pb2 as metrics
from edgestats.metrics.v1 import types_pb2 as types
from edgestats.sql_query.v1 import sql_query_service_pb2 as sql
from edgestats_client import connect, timestamp
from edgestats_stack import postgres
from edgestats_stack.stack import REPO, prepare_database

DATABASE = "edgestats_bench_typed"
SQL_ROWS = 10_000


def database(args: argparse.Namespace) -> tuple[str, str, datetime]:
    """(admin URL, URL, data end) of the loaded, rolled-up database."""
    from bench.common import PG_PORT
    admin = postgres.ensure_cluster(REPO / ".run", PG_PORT)
    url = admin.rsplit("/", 1)[0] + "/" + DATABASE
    if args.reuse:
        prepare_database(url)
        with psycopg.connect(url) as conn:
            count, last = conn.execute('SELECT count(*), max("time") FROM beacons').fetchone()
        if count:
            end = last.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            print(f"reusing {DATABASE}: {count:,} beacons ending {end.isoformat()}")
            return admin, url, end
    postgres.drop_database(admin, DATABASE)
    url = postgres.create_database(admin, DATABASE)
    prepare_database(url)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(days=DAYS) + timedelta(minutes=1)
    loaded = load(url, args.beacons, start, end, seed=16)
    print(f"loaded {loaded:,} beacons")
    roll_up(url, start, end)
    return admin, url, end


def timed(call: Callable[[], int], runs: int) -> tuple[list[float], int]:
    """Ascending latencies (s) of `runs` calls, and the payload bytes of the last."""
    latencies, size = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        size = call()
        latencies.append(time.perf_counter() - started)
    return sorted(latencies), size


def report(label: str, face: str, latencies: list[float], size: int, rows: int) -> None:
    print(f"  {label:<28} {face:<18} p50 {percentile(latencies, 50) * 1000:7.1f} ms"
          f"   p99 {percentile(latencies, 99) * 1000:7.1f} ms   {size:>10,} bytes"
          f"   {rows:,} rows")


def compare(faces: dict[str, Callable[[], int]], label: str, runs: int, rows: int) -> None:
    """Time the faces alternately (both see the same machine) and print each against JSON."""
    results: dict[str, tuple[list[float], int]] = {face: ([], 0) for face in faces}
    for _ in range(runs):
        for face, call in faces.items():
            latencies, size = timed(call, 1)
            results[face] = (results[face][0] + latencies, size)
    base_latency = statistics.median(results["JSON"][0])
    for face, (latencies, size) in results.items():
        report(label, face, sorted(latencies), size, rows)
        if face != "JSON":
            print(f"  {'':<28} {face}: {base_latency / statistics.median(latencies):.2f}×"
                  f" the speed of JSON, {size / results['JSON'][1]:.2f}× its bytes")


def series_cases(client, http: HttpConnection, loop: asyncio.AbstractEventLoop, end: datetime,
                 runs: int) -> None:
    start = end - timedelta(days=30)
    body = json.dumps({"from_date": start.isoformat(), "to_date": end.isoformat(),
                       "granularity": "hour"}).encode()
    request = metrics.GetMetricRequest(from_date=timestamp(start), to_date=timestamp(end),
                                       granularity=types.GRANULARITY_HOUR)
    for path, rpc, key in (("audience", "GetAudience", "audience"),
                           ("viewing_time", "GetViewingTime", "total_viewing_time")):
        def json_call(path: str = path) -> int:
            status, data = loop.run_until_complete(
                http.post(f"/analytics/v1/metrics/{path}", body))
            assert status == 200, data
            orjson.loads(data)
            return len(data)

        def typed_call(rpc: str = rpc) -> int:
            return getattr(client.metrics, rpc)(request).ByteSize()

        status, data = loop.run_until_complete(http.post(f"/analytics/v1/metrics/{path}", body))
        expected = [row[key] for row in orjson.loads(data)]
        got = [getattr(r, key) for r in getattr(client.metrics, rpc)(request).rows]
        assert got == expected, f"{path}: the faces disagree"
        compare({"JSON": json_call, "typed": typed_call}, f"30 d hourly {path}", runs,
                len(expected))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beacons", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    admin, url, end = database(args)
    key = customer_key(url, CUSTOMER.customer_id)
    env = {"EDGESTATS_FROZEN_NOW": end.isoformat(), "EDGESTATS_RESULT_CACHE_SECONDS": "0",
           "EDGESTATS_RATE_LIMIT": "1000000", "EDGESTATS_RATE_BURST": "1000000"}
    try:
        with running_stack(url, env) as stack:
            http = HttpConnection(stack.http_url, {"authorization": f"Bearer {key}"})
            print(f"typed vs JSON, {args.runs} calls of each, one at a time; {machine_note()}")
            loop = asyncio.new_event_loop()  # the HTTP connection's
            with connect(stack.grpc_target, key) as client:
                series_cases(client, http, loop, end, args.runs)
                sql_cases(client, http, loop, end, args.runs)
    finally:
        if not args.keep_db:
            postgres.drop_database(admin, DATABASE)


def sql_cases(client, http: HttpConnection, loop: asyncio.AbstractEventLoop, end: datetime,
              runs: int) -> None:
    """10,000 raw beacons of the last day as rows of five columns, both faces."""
    text = ('SELECT __time, SessionId, Source, TotalDownlinkThroughput, PlayingTime'
            f' FROM "sdk-emea-realtime" WHERE CustomerId = \'{CUSTOMER.customer_id}\''
            f" AND __time >= TIMESTAMP '{(end - timedelta(days=1)):%Y-%m-%d %H:%M:%S}'"
            f" ORDER BY __time, SessionId LIMIT {SQL_ROWS}")
    body = json.dumps({"query": text}).encode()
    request = sql.SqlQueryRequest(query=text)

    def json_call() -> int:
        status, data = loop.run_until_complete(http.post("/analytics/v1/query/sql", body))
        assert status == 200, data
        orjson.loads(data)
        return len(data)

    def typed_call() -> int:
        return client.sql.Query(request).ByteSize()

    def stream_call() -> int:
        return sum(m.ByteSize() for m in client.sql.QueryStream(request))

    status, data = loop.run_until_complete(http.post("/analytics/v1/query/sql", body))
    expected = orjson.loads(data)
    typed = client.sql.Query(request)
    assert len(expected) == len(typed.rows) == SQL_ROWS, (len(expected), len(typed.rows))
    assert [r["SessionId"] for r in expected] == [r.values[1].string_value for r in typed.rows]
    streamed = [r for m in client.sql.QueryStream(request) for r in m.rows]
    assert streamed == list(typed.rows), "QueryStream and Query disagree"
    compare({"JSON": json_call, "typed Query": typed_call, "typed QueryStream": stream_call},
            f"SQL {SQL_ROWS:,} rows", runs, SQL_ROWS)


if __name__ == "__main__":
    main()
