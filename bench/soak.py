"""Soak and overload: mixed ingest + queries through Envoy at a fixed offered rate (issue #8).

    PYTHONPATH=services:gen .venv/bin/python -m bench.soak                      # 10 min at 1×
    PYTHONPATH=services:gen .venv/bin/python -m bench.soak --minutes 3 --load 4 # 4× overload

A fresh `edgestats_soak` database gets `--hours` of demo beacons (closed hours rolled up,
as the hourly DAG would); the whole stack (every
service with its default workers, Envoy, default rate limits: 20 req/s, burst 100 per key)
starts on free ports, and the load starts once its live roller holds the loaded history (a
running service's state). Load is open-loop: requests are sent on a fixed schedule whatever the
answers take, so an overloaded server cannot slow the offered load down (closed-loop
clients would hide overload). `--load` multiplies every rate. Traffic:

- ingest: `--ingest-rate` JSON batches/s of `--batch` beacons of a live audience of
  demo-sports (`Batches`: each of rate × 5 × batch sessions reports once per 5 s, with the
  current time), spread over `--keys` keys (default 3 × 1,000/s: 15,000 viewers);
- queries: `--query-rate` requests/s (default 15) over `--keys` other keys, a dashboard mix
  whose windows move with the clock: `/summary?time=live`, `/stats/throughput/agg?time=10m`,
  v1 `audience` 24 h at `hour`, v1 `traffic` 1 h at `minute`, and a SQL KPI over the last
  hour (docs/reliability.md has the figures).

Printed: per class and status, counts and p50/p99 latency, every minute and at the end;
the gateway's own durations per cluster and status (Envoy's access log); the services' and
Envoy's RSS at start, maximum and end; and whether the stored beacons equal the beacons the
service accepted (0 lost, 0 doubled). Overload passes when every answer is 2xx, 429 or
503, refusals are fast, and RSS stays bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg

from bench.common import (
    CpuMeter,
    HttpConnection,
    customer_key,
    fresh_database,
    machine_note,
    percentile,
    running_stack,
)
from edgestats_cli.demo_data import DEMO_CUSTOMERS, generate_beacons, to_json_ready
from edgestats_cli.demo_loader import load_demo
from edgestats_core.query.windows import floor_to
from edgestats_stack import postgres
from metrics_service import rollups

SOAK_DB = "edgestats_soak"
CUSTOMER = DEMO_CUSTOMERS[0]  # demo-sports, advanced tier
TIMEOUT_S = 40.0  # above Envoy's 35 s route timeout: a client timeout means a lost answer
MAX_IN_FLIGHT = 2048


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def query_mix(now: datetime) -> list[tuple[str, str, bytes | None]]:
    """(class, path, JSON body or None for GET) of the dashboard mix."""
    v1 = "/analytics/v1/metrics/"
    day = orjson.dumps({"from_date": iso(now - timedelta(days=1)), "to_date": iso(now),
                        "granularity": "hour"})
    hour = orjson.dumps({"from_date": iso(now - timedelta(hours=1)), "to_date": iso(now),
                         "granularity": "minute"})
    sql = orjson.dumps({"query": 'SELECT COUNT(DISTINCT SessionId) AS viewers,'
                        ' SUM(TotalDownlinkThroughput) AS kbit FROM "sdk-emea-realtime"'
                        f" WHERE CustomerId = '{CUSTOMER.customer_id}'"
                        " AND __time >= CURRENT_TIMESTAMP - INTERVAL '1' HOUR"})
    return [
        ("summary live", "/summary?time=live", None),
        ("throughput agg 10m", "/stats/throughput/agg?time=10m&source=cdn", None),
        ("v1 audience 24h", v1 + "audience", day),
        ("v1 traffic 1h", v1 + "traffic", hour),
        ("sql kpi 1h", "/analytics/v1/query/sql", sql),
    ]


@dataclass
class Recorder:
    """Latencies per (class, status); status 0 = no answer (connection error or timeout)."""

    samples: dict[tuple[str, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    accepted: int = 0
    backlog_drops: int = 0

    def add(self, name: str, status: int, seconds: float) -> None:
        self.samples[(name, status)].append(seconds)

    def table(self, title: str) -> str:
        lines = [title]
        for (name, status), values in sorted(self.samples.items()):
            values.sort()
            lines.append(f"  {name:<20} {status:>3}: {len(values):>7,}  p50"
                         f" {percentile(values, 50) * 1000:8.1f} ms  p99"
                         f" {percentile(values, 99) * 1000:8.1f} ms")
        if self.backlog_drops:
            lines.append(f"  not sent (client in-flight cap {MAX_IN_FLIGHT}):"
                         f" {self.backlog_drops:,}")
        return "\n".join(lines)


class Pool:
    """Idle keep-alive connections per key, opened on demand."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.idle: dict[str, list[HttpConnection]] = defaultdict(list)

    async def send(self, key: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        idle = self.idle[key]
        connection = idle.pop() if idle else HttpConnection(
            self.base_url, {"Authorization": f"Bearer {key}"})
        try:
            answer = await asyncio.wait_for(
                connection.get(path) if body is None else connection.post(path, body), TIMEOUT_S)
        except BaseException:
            await connection.close()
            raise
        idle.append(connection)
        return answer


class Batches:
    """JSON ingest bodies as a live audience sends them: batch n carries one beacon of each of
    `size` sessions, timestamped with the 5-second slot the schedule sends it in; `per_slot`
    batches make up a slot, so `per_slot × size` sessions watch at once and none reports
    twice in a slot (no duplicates). Field values come from demo beacons."""

    def __init__(self, size: int, per_slot: int, seed: int) -> None:
        end = floor_to(datetime.now(UTC), 5)
        stream = generate_beacons(CUSTOMER, end - timedelta(minutes=30), end, seed)
        self.template = [to_json_ready(b) for b in itertools.islice(stream, size)]
        self.per_slot = max(1, per_slot)
        self.start_ms = int(end.timestamp()) * 1000
        self.counter = itertools.count()

    def next(self) -> tuple[bytes, int]:
        slot, part = divmod(next(self.counter), self.per_slot)
        at = self.start_ms + slot * 5000
        first = part * len(self.template)
        body = [{**b, "SessionId": f"soak-{first + i}", "__time": at}
                for i, b in enumerate(self.template)]
        return orjson.dumps(body), len(body)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def schedule(rate: float, seconds: float, fire) -> None:
    """Call `fire()` `rate` times a second for `seconds`, on a fixed clock (open loop)."""
    if rate <= 0:
        return
    start, interval = time.perf_counter(), 1.0 / rate
    for n in itertools.count():
        due = start + n * interval
        if due - start >= seconds:
            return
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        fire()


async def drive(args: argparse.Namespace, base_url: str, ingest_keys: list[str],
                query_keys: list[str], processes: list) -> Recorder:
    record, pool = Recorder(), Pool(base_url)
    batches = Batches(args.batch, round(args.ingest_rate * args.load * 5), args.seed)
    rng = random.Random(args.seed)
    in_flight: set[asyncio.Task] = set()
    seconds = args.minutes * 60

    async def one(name: str, key: str, path: str, body: bytes | None, items: int = 0) -> None:
        started = time.perf_counter()
        try:
            status, answer = await pool.send(key, path, body)
        except (OSError, TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            status, answer = 0, b""
        record.add(name, status, time.perf_counter() - started)
        if items and status == 200:
            record.accepted += orjson.loads(answer)["accepted"]

    def launch(coro) -> None:
        if len(in_flight) >= MAX_IN_FLIGHT:
            coro.close()
            record.backlog_drops += 1
            return
        task = asyncio.create_task(coro)
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    def ingest() -> None:
        body, items = batches.next()
        launch(one("ingest", rng.choice(ingest_keys), "/analytics/v1/ingest/beacons", body, items))

    def query() -> None:
        # dashboards refresh with a moving "now" (to the 5 s a beacon covers)
        name, path, body = rng.choice(query_mix(floor_to(datetime.now(UTC), 5)))
        launch(one(name, rng.choice(query_keys), path, body))

    rss: dict[str, list[float]] = defaultdict(list)

    async def sample_rss() -> None:
        while True:
            groups: dict[str, float] = defaultdict(float)
            for p in processes:
                groups[p.name.split("-")[0]] += rss_mb(p.pid)
            for name, value in groups.items():
                rss[name].append(value)
            await asyncio.sleep(5)

    async def progress() -> None:
        for minute in itertools.count(1):
            await asyncio.sleep(60)
            print(record.table(f"-- after {minute} min ({len(in_flight)} in flight)"), flush=True)
            print("  RSS MB now: " + ", ".join(f"{name} {v[-1]:.0f}" for name, v in rss.items()),
                  flush=True)

    watchers = [asyncio.create_task(sample_rss()), asyncio.create_task(progress())]
    await asyncio.gather(schedule(args.ingest_rate * args.load, seconds, ingest),
                         schedule(args.query_rate * args.load, seconds, query))
    if in_flight:
        await asyncio.wait(in_flight, timeout=TIMEOUT_S + 5)
    for w in watchers:
        w.cancel()
    print("RSS MB (summed over a service's workers): " + "; ".join(
        f"{name} start {v[0]:.0f} max {max(v):.0f} end {v[-1]:.0f}" for name, v in rss.items()))
    return record


def stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM beacons WHERE customer_id = %s"
                            " AND session_id LIKE %s", (CUSTOMER.customer_id, "soak-%")
                            ).fetchone()[0]


def gateway_table(access_log: Path) -> str:
    """Per upstream cluster and status, the gateway's own durations (Envoy's access log:
    first request byte to last answer byte), which a load generator's backlog cannot
    inflate."""
    times: dict[tuple[str, int], list[float]] = defaultdict(list)
    for line in access_log.read_text().splitlines() if access_log.exists() else []:
        entry = orjson.loads(line)
        times[(str(entry["cluster"]), int(entry["status"]))].append(float(entry["ms"]))
    lines = ["== at the gateway (Envoy access log)"]
    for (cluster, status), values in sorted(times.items()):
        values.sort()
        lines.append(f"  {cluster:<20} {status:>3}: {len(values):>7,}  p50"
                     f" {percentile(values, 50):8.1f} ms  p99 {percentile(values, 99):8.1f} ms")
    return "\n".join(lines)


def warm_up(url: str, limit: float = 600.0) -> None:
    """Wait until the live roller holds the last 90 minutes up to a few seconds ago, as in a
    service that has been running: a fresh stack first rolls the loaded history (its readers
    meanwhile read raw beacons), which is start-up, not the steady state measured."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.perf_counter() - started < limit:
            row = conn.execute("SELECT now() - rolled_to FROM live_progress").fetchone()
            if row is not None and row[0] < timedelta(seconds=10):
                break
            time.sleep(1)
    print(f"live layer caught up {time.perf_counter() - started:.0f} s after the start",
          flush=True)


def run(args: argparse.Namespace) -> None:
    admin, url = fresh_database(SOAK_DB)
    try:
        loaded = asyncio.run(load_demo(url, hours=args.hours))
        now_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        rolled = rollups.roll_up_interval(url, now_hour - timedelta(hours=args.hours + 1),
                                          now_hour)  # what the hourly DAG would have done
        print(f"{machine_note()}\nloaded {loaded:,} demo beacons ({args.hours} h),"
              f" {len(rolled)} closed hours rolled up")
        ingest_keys = [customer_key(url, CUSTOMER.customer_id) for _ in range(args.keys)]
        query_keys = [customer_key(url, CUSTOMER.customer_id) for _ in range(args.keys)]
        with running_stack(url) as stack:
            warm_up(url)
            print(f"offered: {args.ingest_rate * args.load:g} ingest batches/s of {args.batch}"
                  f" + {args.query_rate * args.load:g} queries/s (load {args.load:g}×) for"
                  f" {args.minutes:g} min, {args.keys} + {args.keys} keys", flush=True)
            started = time.perf_counter()
            meter = CpuMeter(stack, SOAK_DB)  # the load generator shares the cores: its share
            meter.start()
            record = asyncio.run(drive(args, stack.http_url, ingest_keys, query_keys,
                                       stack.processes))
            elapsed = time.perf_counter() - started
            print(meter.report())
            gateway = gateway_table(stack.access_log)
        print(record.table(f"== totals over {elapsed:.0f} s"))
        print(gateway)
        statuses = {status for _, status in record.samples}
        unexpected = statuses - {200, 429, 503}
        kept = stored(url)
        print(f"accepted beacons {record.accepted:,}, stored {kept:,}:"
              f" {'0 lost, 0 doubled' if kept == record.accepted else 'MISMATCH'}")
        total = sum(len(v) for v in record.samples.values())
        refused = sum(len(v) for (_, status), v in record.samples.items() if status != 200)
        print(f"refused (any answer but 200, no answer included): {refused:,} of {total:,}"
              f" = {100 * refused / max(total, 1):.2f} %")
        print(f"summary: load {args.load:g}×, {elapsed:.0f} s, statuses {sorted(statuses)};"
              f" {'only 2xx/429/503' if not unexpected else f'UNEXPECTED {sorted(unexpected)}'}")
    finally:
        if not args.keep_db:
            postgres.drop_database(admin, SOAK_DB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=1.0, help="multiplies every rate")
    parser.add_argument("--ingest-rate", type=float, default=3.0, help="batches/s")
    parser.add_argument("--batch", type=int, default=1000, help="beacons per batch")
    parser.add_argument("--query-rate", type=float, default=15.0, help="queries/s")
    parser.add_argument("--keys", type=int, default=8, help="keys per traffic kind")
    parser.add_argument("--hours", type=float, default=2.0, help="demo history loaded")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--keep-db", action="store_true")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
