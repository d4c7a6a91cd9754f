"""Scale-out (#15): ingest straight to a shard vs through the coordinator, and reads on a
streaming standby vs the primary, on throwaway clusters, one command.

    PYTHONPATH=services:gen .venv/bin/python -m bench.scale_out \
        [--beacons 60000] [--copy-beacons 20000] [--batch 500] \
        [--sessions 2000] [--minutes 60] [--requests 200] [--only ingest|reads]

Every PostgreSQL 15 cluster (the configuration of `edgestats_stack.postgres`) lives under
.run/bench-scale-<random> on free ports and is stopped and removed at the end, also on
Ctrl-C or SIGTERM.

1. Ingest. Two shard clusters, migrated (`prepare_database(url, ())`), and a coordinator
   database over them (`sharding.create_coordinator`: 16 hash buckets, servers with
   batch_size 1000). For each path, one customer routed to each shard (`ROUTE_SQL` on the
   coordinator) gets half the rows: realistic demo beacons of the last hour
   (edgestats_cli.demo_data), validated beforehand (beacon_validation.validate), sent in
   batches of `--batch` by one client, one transaction per batch, customers in turn, each
   customer's first batch before the clock starts (a warm-up):
   a. direct: the service's own write path, `beacon_store.store` on the customer's shard
      (what the ingest RPC does after routing: hour locks, COPY, late marks);
   b. coordinator INSERT … VALUES: one `INSERT INTO beacons (…) VALUES (…), (…), … ON
      CONFLICT DO NOTHING` of the batch's rows on the coordinator (postgres_fdw routes the rows
      to the bucket's shard, as one remote INSERT of up to batch_size rows);
   b'. coordinator INSERT … SELECT unnest: the same batch as one array per column (a short
      statement psycopg caches and prepares; the 500-row VALUES list has 24,000 placeholders,
      which psycopg converts in Python for every batch: see the client's CPU);
   c. coordinator COPY: `COPY beacons (…) FROM STDIN` per batch on the coordinator, at most
      `--copy-beacons` rows (PostgreSQL 15 sends a COPY into a foreign table as one INSERT
      per row).
   The coordinator paths give `ingested_at` (the coordinator's tables have no defaults).
   Each path is checked against the rows stored on each customer's shard, and prints rows/s
   and the CPU cores of the client, the coordinator cluster, each shard cluster and the
   whole machine. Part 2 of the issue's plan (beacons/s per shard through the whole stack)
   is not measured here.
2. Reads. One primary cluster with a home database (keys) and a migrated emea region
   database holding the last `--minutes` of demo-sports beacons scaled to `--sessions` live
   sessions (loaded through beacon_store.store as bench.query_latency does), the minute
   layer rolled as the minute roller keeps it and the live layer caught up, VACUUM ANALYZE;
   then a streaming standby (`pg_basebackup -R -X stream`, edgestats_stack.postgres
   .ensure_standby), waited for until it has replayed the primary's WAL. Its replay lag
   while idle is measured as the services measure it (edgestats_core.replicas, a probe every
   0.2 s). Two stacks (services + Envoy) run on the same databases with the clock frozen at
   the data's end, the result cache off and no rate limit: one reads the primary, the other
   has EDGESTATS_REGION_REPLICAS set to the standby. Each request is sent `--requests`
   times to each stack, sequentially and interleaved (primary, standby, standby,
   primary, …), after a warm-up; p50/p99 for each, whether both answered the same, and the
   rows read in each server's region database during the run (the standby stack's reads
   must land on the standby).

The machine is shared: figures come with the load average and the CPU of the rest of the
machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import signal
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

import psycopg
from psycopg import sql

from bench.common import (
    HttpConnection,
    _machine_busy,
    code_version,
    customer_key,
    machine_note,
    percentile,
)
from bench.ingest_vs_copy import Cluster
from bench.query_latency import CUSTOMER, calibrated_profile, describe, load_beacons
from edgestats_cli.demo_data import generate_beacons
from edgestats_core import sharding
from edgestats_core.db import Database
from edgestats_core.query.windows import floor_to
from edgestats_core.replicas import PROBE_SECONDS, lsn_value, replay_lag
from edgestats_core.tenancy import api_keys
from edgestats_stack import postgres
from edgestats_stack.processes import free_ports
from edgestats_stack.stack import REPO, Stack, prepare_database, start_stack
from metrics_service import beacon_store, live_rollups, minute_rollups
from metrics_service.beacon_store import _COLUMN_LIST
from metrics_service.beacon_validation import validate

DBNAME = "edgestats"
HOME_DBNAME = "edgestats_home"
PATHS = {"direct": "direct to the shard (beacon_store.store)",
         "values": "coordinator INSERT … VALUES (500 rows)",
         "unnest": "coordinator INSERT … SELECT unnest(arrays)",
         "copy": "coordinator COPY"}
# The coordinator's tables have no column defaults (sharding.create_coordinator copies names,
# types and NOT NULL), and postgres_fdw sends every column: beacons.ingested_at (NOT NULL
# DEFAULT now() on the shards) must be given, or the shard refuses the row.
WITH_INGESTED = sql.SQL("{}, ingested_at").format(_COLUMN_LIST)
NO_LIMITS = {"EDGESTATS_RATE_LIMIT": "1000000", "EDGESTATS_RATE_BURST": "1000000",
             "EDGESTATS_RESULT_CACHE_SECONDS": "0", "EDGESTATS_LONG_RESULT_CACHE_SECONDS": "0"}
LEGACY = ("/summary?time=1h", "/stats/throughput/agg?time=10m&source=cdn", "/summary?time=live")
V1_AUDIENCE = "/analytics/v1/metrics/audience"


# --- throwaway clusters --------------------------------------------------------------------


class Clusters:
    """Clusters under .run/bench-scale-<random>; `close` stops and removes every one."""

    def __init__(self) -> None:
        parent = REPO / ".run"
        parent.mkdir(parents=True, exist_ok=True)
        self.run_dir = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=parent))
        self.run_dir.chmod(0o755)  # the postgres user runs the clusters when we are root
        self.names: list[str] = []

    def primary(self, name: str, port: int) -> Cluster:
        self.names.append(name)
        admin = postgres.ensure_cluster(self.run_dir, port, name)
        return Cluster(admin, postgres.cluster_dir(self.run_dir, name) / "data")

    def standby(self, name: str, port: int, primary_port: int) -> Cluster:
        self.names.append(name)
        admin = postgres.ensure_standby(self.run_dir, name, port, primary_port)
        return Cluster(admin, postgres.cluster_dir(self.run_dir, name) / "data")

    def stop(self, names: list[str] | None = None) -> None:
        """Stop and remove the named clusters (default: all), standbys first."""
        for name in reversed([n for n in self.names if names is None or n in names]):
            try:
                postgres.stop_cluster(self.run_dir, name)
            except Exception as error:  # noqa: BLE001 - go on stopping the others
                print(f"could not stop cluster {name}: {error!r}")
            shutil.rmtree(postgres.cluster_dir(self.run_dir, name), ignore_errors=True)
            self.names.remove(name)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)


@dataclass
class Meter:
    """Wall time and CPU cores of this client, each cluster and the machine."""

    clusters: dict[str, Cluster]
    _cpu: dict[str, float] = field(default_factory=dict)
    _began: float = 0.0

    def _snapshot(self) -> dict[str, float]:
        used = {"client": time.process_time()}
        used |= {name: cluster.cpu_seconds() for name, cluster in self.clusters.items()}
        used["machine busy"] = _machine_busy()[0]
        return used

    def start(self) -> None:
        self._cpu, self._began = self._snapshot(), time.perf_counter()

    def stop(self) -> tuple[float, dict[str, float]]:
        elapsed = time.perf_counter() - self._began
        now = self._snapshot()
        return elapsed, {name: (now[name] - self._cpu[name]) / elapsed for name in now}


def cores_text(cores: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in cores.items())


# --- 1. ingest: straight to a shard vs through the coordinator -------------------------------


def route(coordinator_url: str, customer_id: str) -> str:
    """The URL of the shard the coordinator routes the customer to."""
    with psycopg.connect(coordinator_url) as conn:
        _, options = conn.execute(sharding.ROUTE_SQL, (customer_id,)).fetchone()
    return sharding.shard_url(coordinator_url, options)


def customers_per_shard(coordinator_url: str, shards: list[str], path: str) -> dict[str, str]:
    """customer id -> shard URL: the first customers `scale-<path>-<n>` covering each shard."""
    chosen: dict[str, str] = {}
    for number in range(1000):
        customer_id = f"scale-{path}-{number}"
        shard = route(coordinator_url, customer_id)
        if shard not in chosen.values():
            chosen[customer_id] = shard
        if len(chosen) == len(shards):
            return chosen
    raise RuntimeError(f"no customer routed to some shard of {shards}")


def validated_rows(customer_id: str, count: int, now: datetime, seed: int) -> list[tuple]:
    """The first `count` demo beacons of the customer over the last hour, validated."""
    # at the quietest hour (daily_curve 0.15) a peak session gives 0.15 × 720 beacons an hour
    peak = max(2000, math.ceil(count / (0.15 * 720) * 1.5))
    profile = replace(CUSTOMER, customer_id=customer_id, peak_sessions=peak)
    beacons = generate_beacons(profile, now - timedelta(hours=1), now, seed)
    rows = [validate(beacon, customer_id, now) for beacon in islice(beacons, count)]
    if len(rows) < count:
        raise RuntimeError(f"{customer_id}: {len(rows)} beacons generated, {count} asked")
    return rows


def batches_in_turn(rows: dict[str, list[tuple]], size: int) -> Iterator[tuple[str, list[tuple]]]:
    """(customer, batch) of each customer in turn until all are sent."""
    offsets = dict.fromkeys(rows, 0)
    while offsets:
        for customer in list(offsets):
            start = offsets[customer]
            yield customer, rows[customer][start:start + size]
            offsets[customer] = start + size
            if offsets[customer] >= len(rows[customer]):
                del offsets[customer]


# Each sender sends the first `warm` batches (one per customer) before the clock starts:
# the connections' caches (catalog, partitions, the coordinator's remote connections) warm.
Batches = list[tuple[str, list[tuple]]]


async def send_direct(batches: Batches, warm: int, shard_of: dict[str, str],
                      meter: Meter) -> tuple[float, dict[str, float]]:
    """The service's write path on each customer's shard, one batch at a time."""
    pools = {url: Database(url, 1, 1) for url in set(shard_of.values())}
    try:
        for pool in pools.values():
            await pool.open()
        for number, (customer, chunk) in enumerate(batches):
            if number == warm:
                meter.start()
            await beacon_store.store(pools[shard_of[customer]], chunk)
        return meter.stop()  # before the backends exit (their CPU is read while they live)
    finally:
        for pool in pools.values():
            await pool.close()


def insert_statement(count: int) -> sql.Composed:
    """`count` rows of the beacon columns, `ingested_at` given as now() (see WITH_INGESTED)."""
    one = sql.SQL("({}, now())").format(
        sql.SQL(", ").join([sql.Placeholder()] * len(beacon_store._NAMES)))
    return sql.SQL("INSERT INTO beacons ({}) VALUES {} ON CONFLICT DO NOTHING").format(
        WITH_INGESTED, sql.SQL(", ").join([one] * count))


# A batch as one array per column: the statement stays short (psycopg caches and prepares
# it; a VALUES list of 500 rows has 24,000 placeholders, which psycopg converts anew for each
# batch, in Python: its cache stops at 4,096 bytes and 50 parameters).
UNNEST = sql.SQL("INSERT INTO beacons ({}) SELECT u.*, now() FROM unnest({}) AS u"
                 " ON CONFLICT DO NOTHING").format(
    WITH_INGESTED, sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(kind))
                                      for kind in beacon_store._TYPES))


def send_insert(coordinator_url: str, batches: Batches, warm: int, meter: Meter,
                form: str) -> tuple[float, dict[str, float]]:
    """One INSERT … ON CONFLICT DO NOTHING per batch on the coordinator: a VALUES list of the
    batch's rows (`values`) or a SELECT over one array per column (`unnest`)."""
    with psycopg.connect(coordinator_url, autocommit=True) as conn:
        statements = {n: insert_statement(n).as_bytes(conn)  # composed once, not per batch
                      for n in {len(chunk) for _, chunk in batches}}
        for number, (_, chunk) in enumerate(batches):
            if number == warm:
                meter.start()
            if form == "values":
                conn.execute(statements[len(chunk)], [value for row in chunk for value in row])
            else:
                conn.execute(UNNEST, [list(column) for column in zip(*chunk, strict=True)])
        return meter.stop()


def send_copy(coordinator_url: str, batches: Batches, warm: int,
              meter: Meter) -> tuple[float, dict[str, float]]:
    """One COPY per batch on the coordinator, a commit per batch."""
    statement = sql.SQL("COPY beacons ({}) FROM STDIN").format(WITH_INGESTED)
    with psycopg.connect(coordinator_url) as conn:
        for number, (_, chunk) in enumerate(batches):
            if number == warm:
                meter.start()
            ingested = (datetime.now(UTC),)
            with conn.cursor().copy(statement) as copy:
                for row in chunk:
                    copy.write_row(row + ingested)
            conn.commit()
        return meter.stop()


def stored_on_shards(shard_of: dict[str, str]) -> dict[str, int]:
    """Rows of each customer on its own shard."""
    counts = {}
    for customer, url in shard_of.items():
        with psycopg.connect(url) as conn:
            counts[customer] = conn.execute(
                "SELECT count(*) FROM beacons WHERE customer_id = %s", (customer,)).fetchone()[0]
    return counts


@dataclass
class IngestFigure:
    path: str
    rows: int
    seconds: float
    cores: dict[str, float]

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds


def ingest(clusters: Clusters, args: argparse.Namespace) -> list[IngestFigure]:
    print("\n== 1. ingest: straight to a shard vs through the coordinator")
    ports = free_ports(3)
    started = time.perf_counter()
    shards = [clusters.primary(f"shard-{i}", port) for i, port in enumerate(ports[:2], 1)]
    coordinator = clusters.primary("coordinator", ports[2])
    shard_urls = [postgres.create_database(s.admin_url, DBNAME) for s in shards]
    for url in shard_urls:
        prepare_database(url, ())
    coordinator_url = postgres.create_database(coordinator.admin_url, DBNAME)
    sharding.create_coordinator(coordinator_url, shard_urls)
    print(f"2 shard clusters (ports {ports[0]}, {ports[1]}) migrated and a coordinator"
          f" (port {ports[2]}, {sharding.BUCKETS} buckets, batch_size 1000) in"
          f" {time.perf_counter() - started:.0f} s")
    shard_names = {url: f"shard-{i}" for i, url in enumerate(shard_urls, 1)}
    meter = Meter({"coordinator": coordinator,
                   **{f"shard-{i}": s for i, s in enumerate(shards, 1)}})
    sizes = {"direct": args.beacons, "values": args.beacons, "unnest": args.beacons,
             "copy": min(args.copy_beacons, args.beacons)}
    now = datetime.now(UTC)
    plan = {}
    started = time.perf_counter()
    for path, total in sizes.items():
        shard_of = customers_per_shard(coordinator_url, shard_urls, path)
        share = total // len(shard_of)
        if share <= args.batch:
            raise SystemExit(f"{path}: {share} rows per customer; more than a batch"
                             f" ({args.batch}) needed (the first is a warm-up)")
        rows = {c: validated_rows(c, share, now, args.seed) for c in shard_of}
        plan[path] = (shard_of, rows)
    print(f"{sum(sizes.values()):,} demo beacons generated and validated in"
          f" {time.perf_counter() - started:.0f} s; per path one customer on each shard"
          f" ({', '.join(f'{c} → {shard_names[u]}' for c, u in plan['direct'][0].items())}),"
          f" batches of {args.batch}, one client, a transaction per batch; each customer's first"
          f" batch is a warm-up, not timed")
    print(f"   {machine_note()}")
    figures = []
    for path, (shard_of, rows) in plan.items():
        batches, warm = list(batches_in_turn(rows, args.batch)), len(rows)
        try:
            if path == "direct":
                seconds, cores = asyncio.run(send_direct(batches, warm, shard_of, meter))
            elif path in ("values", "unnest"):
                seconds, cores = send_insert(coordinator_url, batches, warm, meter, path)
            else:
                seconds, cores = send_copy(coordinator_url, batches, warm, meter)
        except psycopg.Error as error:  # its remote SQL context would print every row
            raise SystemExit(f"{PATHS[path]}: {type(error).__name__}:"
                             f" {str(error).splitlines()[0][:500]}") from None
        sent = sum(len(r) for r in rows.values())
        timed = sum(len(chunk) for _, chunk in batches[warm:])
        stored = stored_on_shards(shard_of)
        verdict = "OK" if all(stored[c] == len(r) for c, r in rows.items()) else "MISMATCH"
        figure = IngestFigure(path, timed, seconds, cores)
        figures.append(figure)
        print(f"   {PATHS[path]:<42} {figure.rows_per_s:>8,.0f} rows/s  ({timed:,} rows in"
              f" {seconds:5.1f} s; {sent:,} sent, stored on their shards {sum(stored.values()):,}"
              f" {verdict})\n      CPU cores: {cores_text(cores)}")
        if verdict != "OK":
            raise SystemExit(f"{path}: stored {stored}, sent "
                             f"{ {c: len(r) for c, r in rows.items()} }")
    size = sum(_beacons_bytes(url) for url in shard_urls)
    stored_rows = sum(sum(len(r) for r in rows.values()) for _, rows in plan.values())
    print(f"   beacons on the shards: {stored_rows:,} rows, {size / 1e6:,.0f} MB with indexes")
    direct = figures[0].rows_per_s
    print("   ÷ direct: " + ", ".join(f"{PATHS[f.path]} {f.rows_per_s / direct:.3f}"
                                      for f in figures[1:]))
    clusters.stop(["shard-1", "shard-2", "coordinator"])
    return figures


def _beacons_bytes(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)"
                           " FROM pg_inherits WHERE inhparent = 'beacons'::regclass").fetchone()
    return int(row[0])




# --- 3. reads: a streaming standby vs the primary --------------------------------------------


def wal_caught_up(primary_url: str, standby_url: str, timeout: float = 300.0) -> float:
    """Wait until the standby has replayed the primary's current WAL position; seconds."""
    started = time.perf_counter()
    with psycopg.connect(primary_url, autocommit=True) as primary:
        goal = lsn_value(primary.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
    while time.perf_counter() - started < timeout:
        try:
            with psycopg.connect(standby_url, autocommit=True, connect_timeout=5) as standby:
                replayed = standby.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0]
            if replayed and lsn_value(replayed) >= goal:
                return time.perf_counter() - started
        except psycopg.OperationalError:  # still starting up
            pass
        time.sleep(0.2)
    raise SystemExit(f"the standby did not catch up within {timeout:.0f} s")


def idle_lag(primary_url: str, standby_url: str, seconds: float) -> str:
    """The services' measure of the standby's lag (edgestats_core.replicas), probed every
    PROBE_SECONDS for `seconds` while nothing writes, and pg_stat_replication's view."""
    samples: deque[tuple[float, int]] = deque(maxlen=int(30 / PROBE_SECONDS))
    lags, behind = [], []
    with (psycopg.connect(primary_url, autocommit=True) as primary,
          psycopg.connect(standby_url, autocommit=True) as standby):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            position = lsn_value(primary.execute(
                "SELECT pg_current_wal_lsn()::text").fetchone()[0])
            samples.append((time.monotonic(), position))
            replayed = lsn_value(standby.execute(
                "SELECT pg_last_wal_replay_lsn()::text").fetchone()[0])
            lags.append(replay_lag(samples, replayed, time.monotonic()))
            behind.append(max(0, position - replayed))
            time.sleep(PROBE_SECONDS)
        reported = primary.execute(
            "SELECT state, coalesce(replay_lag::text, 'null'),"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM pg_stat_replication"
        ).fetchall()
    states = "; ".join(f"{state}, replay_lag {lag}, {int(diff)} bytes behind"
                       for state, lag, diff in reported) or "no standby connected!"
    return (f"replica lag while idle ({len(lags)} probes over {seconds:.0f} s, every"
            f" {PROBE_SECONDS} s as the services probe): max {max(lags):.3f} s, mean"
            f" {sum(lags) / len(lags):.3f} s, WAL behind max {max(behind):,} bytes;"
            f" pg_stat_replication: {states}")


def rows_read(url: str) -> tuple[int, int]:
    """(transactions, rows returned + fetched) of the database so far."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit + xact_rollback, tup_returned + tup_fetched"
                           " FROM pg_stat_database WHERE datname = current_database()"
                           ).fetchone()
    return int(row[0]), int(row[1])


@dataclass
class ReadFigure:
    request: str
    latencies: dict[str, list[float]]  # stack -> seconds, ascending
    errors: dict[str, int]
    same_answer: bool

    def ms(self, stack: str, pct: float) -> float:
        return percentile(self.latencies[stack], pct) * 1000


async def time_requests(stacks: dict[str, Stack], key: str, requests: list[tuple[str, bytes]],
                        count: int, warmup: int) -> list[ReadFigure]:
    headers = {"authorization": f"Bearer {key}"}
    connections = {name: HttpConnection(s.http_url, headers) for name, s in stacks.items()}

    async def send(name: str, path: str, body: bytes) -> tuple[int, bytes]:
        connection = connections[name]
        return await (connection.post(path, body) if body else connection.get(path))

    figures = []
    try:
        for path, body in requests:
            label = f"POST {path} {body.decode()}" if body else f"GET {path}"
            answers = {}
            for name in connections:
                for _ in range(warmup):
                    status, answers[name] = await send(name, path, body)
                    if status != 200:
                        raise SystemExit(f"{name} stack, {label}: HTTP {status}"
                                         f" {answers[name][:300]!r}")
            latencies: dict[str, list[float]] = {name: [] for name in connections}
            errors = dict.fromkeys(connections, 0)
            order = list(connections)
            for number in range(count):
                for name in order if number % 2 == 0 else reversed(order):
                    started = time.perf_counter()
                    status, _ = await send(name, path, body)
                    latencies[name].append(time.perf_counter() - started)
                    errors[name] += status != 200
            figure = ReadFigure(label, {n: sorted(v) for n, v in latencies.items()}, errors,
                                len(set(answers.values())) == 1)
            figures.append(figure)
            print(f"   {label}")
            for name in connections:
                print(f"      {name:<8} p50 {figure.ms(name, 50):7.1f} ms, p99"
                      f" {figure.ms(name, 99):7.1f} ms, max {figure.ms(name, 100):7.1f} ms;"
                      f" {count} requests, {errors[name]} errors")
            print(f"      same answer from both: {'yes' if figure.same_answer else 'NO'}")
    finally:
        await asyncio.gather(*(c.close() for c in connections.values()))
    return figures


def reads(clusters: Clusters, args: argparse.Namespace) -> list[ReadFigure]:
    print("\n== 3. reads: a streaming standby vs the primary")
    primary_port, standby_port = free_ports(2)
    primary = clusters.primary("primary", primary_port)
    home = postgres.create_database(primary.admin_url, HOME_DBNAME)
    region = postgres.create_database(primary.admin_url, DBNAME)
    prepare_database(home, (("emea", region),))
    end = floor_to(datetime.now(UTC), 5)
    started = time.perf_counter()
    profile, live = calibrated_profile(args.sessions, end, args.seed)
    load_args = argparse.Namespace(minutes=args.minutes, seed=args.seed)
    stored = asyncio.run(load_beacons(region, profile, end, load_args))
    print(f"primary (port {primary_port}): {stored:,} beacons of {profile.customer_id}"
          f" (peak_sessions {profile.peak_sessions:,} ⇒ {live:,} live at {end.isoformat()})"
          f" over {args.minutes} min loaded in {time.perf_counter() - started:.0f} s")
    took = []
    with psycopg.connect(region, autocommit=True) as conn:
        for step in (lambda: minute_rollups.roll_up_minutes(conn, end),
                     lambda: live_rollups.catch_up(conn, end + live_rollups.LAG),
                     lambda: conn.execute("VACUUM ANALYZE")):
            started = time.perf_counter()
            step()
            took.append(time.perf_counter() - started)
        minute_rows = conn.execute("SELECT count(*) FROM beacons_minute").fetchone()[0]
    data = describe(region, profile.customer_id, end)
    print(f"minute layer rolled ({minute_rows:,} minute rows) in {took[0]:.0f} s, live layer"
          f" caught up in {took[1]:.0f} s, VACUUM ANALYZE in {took[2]:.0f} s; data:"
          f" {data.beacons:,} beacons ({data.megabytes:,.0f} MB with indexes), {data.sessions:,}"
          f" sessions, {data.live:,} live at the end, {data.channels} channels")
    started = time.perf_counter()
    standby = clusters.standby("standby", standby_port, primary_port)
    replica = postgres.with_database(standby.admin_url, DBNAME)
    waited = wal_caught_up(region, replica)
    print(f"standby (port {standby_port}): pg_basebackup and start in"
          f" {time.perf_counter() - started - waited:.0f} s, caught up {waited:.1f} s later")
    print(idle_lag(region, replica, args.lag_seconds))

    key = customer_key(home, profile.customer_id)  # region emea
    with psycopg.connect(home) as conn:  # measure reads, not the key's rate limit
        api_keys.set_rate_limit(conn, api_keys.key_id_of(key), 1e6, 1e6)
    env = {**NO_LIMITS, "EDGESTATS_FROZEN_NOW": end.isoformat(),
           "EDGESTATS_REGION_DATABASES": f"emea={region}"}
    stacks: dict[str, Stack] = {}
    try:
        stacks["primary"] = start_stack(clusters.run_dir / "stack-primary", home, env=env)
        stacks["standby"] = start_stack(clusters.run_dir / "stack-standby", home, env={
            **env, "EDGESTATS_REGION_REPLICAS": f"emea={replica}"})
        time.sleep(1.0)  # the standby stack's probes have measured the standby's lag
        v1_end = floor_to(end, 60)
        body = json.dumps({"from_date": _z(v1_end - timedelta(hours=1)), "to_date": _z(v1_end),
                           "granularity": "minute"}).encode()
        requests = [(path, b"") for path in LEGACY] + [(V1_AUDIENCE, body)]
        print(f"two stacks (services + Envoy each), now frozen at {end.isoformat()}, result"
              f" cache off: 'primary' reads the primary, 'standby' has"
              f" EDGESTATS_REGION_REPLICAS=emea=<standby>; {args.requests} sequential requests"
              f" each, interleaved, after {args.warmup} warm-up; {machine_note()}")
        before = {"primary": rows_read(region), "standby": rows_read(replica)}
        figures = asyncio.run(time_requests(stacks, key, requests, args.requests, args.warmup))
        after = {"primary": rows_read(region), "standby": rows_read(replica)}
    finally:
        for stack in stacks.values():
            stack.stop()
    print("   during the measurements, in the region database (both stacks' probes included): "
          + "; ".join(f"{name} server {after[name][0] - before[name][0]:,} transactions,"
                      f" {after[name][1] - before[name][1]:,} rows read" for name in after))
    print(f"   {machine_note()}")
    clusters.stop(["primary", "standby"])
    return figures


def _z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- the run ---------------------------------------------------------------------------------


def summary(ingested: list[IngestFigure], read: list[ReadFigure],
            args: argparse.Namespace) -> None:
    print(f"\nsummary (code {code_version()}):")
    if ingested:
        direct = ingested[0].rows_per_s
        print(f"   ingest, 2 shards, batches of {args.batch}, 1 client: "
              + "; ".join(f"{PATHS[f.path]} {f.rows_per_s:,.0f} rows/s"
                          f" ({f.rows:,} rows, ×{f.rows_per_s / direct:.2f})" for f in ingested))
    if read:
        print(f"   reads, {args.minutes} min of {args.sessions:,}-live-session beacons,"
              f" {args.requests} sequential requests, p50/p99 ms primary → standby: "
              + "; ".join(f"{f.request.split(' {')[0]} {f.ms('primary', 50):.1f}/"
                          f"{f.ms('primary', 99):.1f} → {f.ms('standby', 50):.1f}/"
                          f"{f.ms('standby', 99):.1f}" for f in read))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("ingest", "reads"), help="run one part only")
    parser.add_argument("--beacons", type=int, default=60_000,
                        help="rows per ingest path (direct, coordinator INSERT)")
    parser.add_argument("--copy-beacons", type=int, default=20_000,
                        help="rows of the coordinator COPY path (slow: an INSERT per row)")
    parser.add_argument("--batch", type=int, default=500, help="rows per batch")
    parser.add_argument("--sessions", type=int, default=2_000,
                        help="live sessions at the end of the read data set")
    parser.add_argument("--minutes", type=int, default=60,
                        help="minutes of beacons in the read data set (≤ 60: the minute layer"
                             " covers the current and previous hour, as the roller keeps it)")
    parser.add_argument("--requests", type=int, default=200, help="per request and stack")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests first")
    parser.add_argument("--lag-seconds", type=float, default=3.0,
                        help="how long the idle replica lag is probed")
    parser.add_argument("--seed", type=int, default=7, help="demo data seed")
    return parser.parse_args()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _interrupt)  # cleaned up as on Ctrl-C
    began = time.perf_counter()
    clusters = Clusters()
    print(f"{machine_note()}; clusters under {clusters.run_dir}")
    ingested: list[IngestFigure] = []
    read: list[ReadFigure] = []
    try:
        if args.only in (None, "ingest"):
            ingested = ingest(clusters, args)
        if args.only in (None, "reads"):
            read = reads(clusters, args)
    finally:
        clusters.close()
    summary(ingested, read, args)
    print(f"total {time.perf_counter() - began:.0f} s; {machine_note()}")


if __name__ == "__main__":
    main()
