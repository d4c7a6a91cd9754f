"""Ingest throughput: beacons/s sustained through Envoy, typed gRPC batches and JSON arrays.

    PYTHONPATH=services:gen .venv/bin/python -m bench.ingest_throughput \
        [--beacons 200000] [--clients 4] [--batch 1000 5000] [--transport grpc json]
    PYTHONPATH=services:gen .venv/bin/python -m bench.ingest_throughput --breakdown

Each (transport, batch size) run sends `--beacons` distinct realistic beacons
(edgestats_cli.demo_data, the last hours of a large customer) as precomputed
request bodies from `--clients` concurrent clients, each on its own connection
to the Envoy port: `BeaconIngestService/IngestBeacons` as native gRPC, or
`POST /analytics/v1/ingest/beacons` with a JSON array. Every run has its own
customer, so the count stored in PostgreSQL must equal the beacons sent.

Each run prints beacons/s, batches/s, batch latency percentiles, the stored
count check and the CPU (in cores) that the service, Envoy, PostgreSQL, this
client and the whole machine used meanwhile: the machine is shared, so
"machine busy" near 2.0 with our processes well below it means contention.

`--breakdown` starts no service: it times the service's own functions
(validate_body, validate_messages, beacon_store.store, and the exact fallback
paths parse_body, beacon_to_item, validate_all) in this process against the
same database, to show where an ingest batch spends its time.
`--profile FILE` runs the service under cProfile and prints its hottest functions.
`--metrics off` runs the stack without its Prometheus exporter (the cost of the metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path

import grpc
import httpx
import psycopg

from bench.common import (
    BENCH_DB,
    CpuMeter,
    code_version,
    customer_key,
    fresh_database,
    machine_note,
    percentile,
    running_stack,
)
from edgestats.metrics.v1 import beacon_ingest_service_pb2 as pb
from edgestats.metrics.v1 import beacon_pb2
from edgestats_cli.demo_data import DEMO_CUSTOMERS, generate_beacons, to_json_ready
from edgestats_core.beacon_columns import COLUMNS
from edgestats_core.db import Database
from edgestats_core.ingest_body import MAX_ITEMS, parse_body
from edgestats_core.query.windows import floor_to
from edgestats_stack import postgres
from edgestats_stack.stack import Stack
from metrics_service import beacon_store
from metrics_service.beacon_json import validate_body
from metrics_service.beacon_messages import beacon_to_item, validate_messages
from metrics_service.beacon_validation import validate_all

GRPC_METHOD = "/edgestats.metrics.v1.BeaconIngestService/IngestBeacons"
JSON_PATH = "/analytics/v1/ingest/beacons"
TARGET_BEACONS_PER_S = 20_000
# A large customer (demo-sports' catalogue, ~5,000 concurrent sessions at peak):
# 200,000 beacons are a few minutes of its traffic, one beacon per session per 5 s.
PROFILE = replace(DEMO_CUSTOMERS[0], peak_sessions=5_000)
HISTORY = timedelta(hours=24)
TRANSPORTS = ("grpc", "json")


# --- payloads ------------------------------------------------------------------------------


def beacon_stream(customer_id: str, total: int, seed: int) -> Iterator[dict]:
    """The first `total` beacons of PROFILE's last 24 hours, sent as `customer_id`."""
    end = floor_to(datetime.now(UTC), 5)
    for beacon in islice(generate_beacons(PROFILE, end - HISTORY, end, seed), total):
        beacon["CustomerId"] = customer_id
        yield beacon


def beacon_message(beacon: dict) -> beacon_pb2.Beacon:
    """The typed Beacon of a generated beacon dict (None = unset)."""
    message = beacon_pb2.Beacon()
    for column in COLUMNS:
        value = beacon.get(column.druid)
        if value is None:
            continue
        if column.type == "time":
            message.time.FromDatetime(value)
        else:
            setattr(message, column.name, value)
    return message


def grpc_body(beacons: list[dict]) -> bytes:
    """A serialized IngestBeaconsRequest (sent as is: no serialization while timing)."""
    request = pb.IngestBeaconsRequest(beacons=[beacon_message(b) for b in beacons])
    return request.SerializeToString()


def json_body(beacons: list[dict]) -> bytes:
    """A JSON array body, `__time` as epoch milliseconds."""
    return json.dumps([to_json_ready(b) for b in beacons], separators=(",", ":")).encode()


ENCODERS: dict[str, Callable[[list[dict]], bytes]] = {"grpc": grpc_body, "json": json_body}


@dataclass
class Payloads:
    """Precomputed request bodies of one run and what they hold."""

    bodies: list[bytes]
    sizes: list[int]  # beacons per body
    distinct: int  # distinct (SessionId, __time) among them

    @property
    def beacons(self) -> int:
        return sum(self.sizes)

    @property
    def megabytes(self) -> float:
        return sum(len(b) for b in self.bodies) / 1e6


def build_payloads(transport: str, customer_id: str, total: int, batch: int, seed: int) -> Payloads:
    """Bodies of `batch` beacons each, encoded for `transport`."""
    encode = ENCODERS[transport]
    stream = beacon_stream(customer_id, total, seed)
    payloads = Payloads([], [], 0)
    keys: set[tuple[str, datetime]] = set()
    while chunk := list(islice(stream, batch)):
        keys.update((b["SessionId"], b["__time"]) for b in chunk)
        payloads.bodies.append(encode(chunk))
        payloads.sizes.append(len(chunk))
    payloads.distinct = len(keys)
    return payloads


# --- sending -------------------------------------------------------------------------------

# send(client number, body) -> beacons accepted
Sender = Callable[[int, bytes], Awaitable[int]]


def check_answer(accepted: int, duplicates: int, rejected: int) -> int:
    if duplicates or rejected:
        raise RuntimeError(f"unexpected answer: {duplicates} duplicates, {rejected} rejected")
    return accepted


@dataclass
class RunResult:
    elapsed: float
    latencies: list[float]  # seconds per batch, ascending
    accepted: int


async def drive(send: Sender, payloads: Payloads, clients: int) -> RunResult:
    """Send every body once from `clients` concurrent clients; time each batch."""
    pending = iter(payloads.bodies)  # shared: each client takes the next body
    latencies: list[float] = []
    accepted = 0

    async def client(number: int) -> None:
        nonlocal accepted
        for body in pending:
            started = time.perf_counter()
            answered = await send(number, body)  # not `accepted += await`: that races
            latencies.append(time.perf_counter() - started)
            accepted += answered

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return RunResult(time.perf_counter() - started, sorted(latencies), accepted)


async def run_grpc(stack: Stack, key: str, payloads: Payloads, clients: int) -> RunResult:
    """Native gRPC through Envoy, one HTTP/2 connection per client."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(stack.grpc_target, options=options)
                for _ in range(clients)]
    # No request serializer: the bodies are already serialized requests.
    methods = [c.unary_unary(GRPC_METHOD, response_deserializer=pb.IngestBeaconsResponse.FromString)
               for c in channels]
    metadata = (("authorization", f"Bearer {key}"),)

    async def send(number: int, body: bytes) -> int:
        answer = await methods[number](body, metadata=metadata, timeout=300)
        return check_answer(answer.accepted, answer.duplicates, len(answer.rejected))

    try:
        await asyncio.gather(*(c.channel_ready() for c in channels))
        return await drive(send, payloads, clients)
    finally:
        await asyncio.gather(*(c.close() for c in channels))


async def run_json(stack: Stack, key: str, payloads: Payloads, clients: int) -> RunResult:
    """JSON arrays through Envoy's transcoder, one HTTP/1.1 connection per client."""
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    https = [httpx.AsyncClient(base_url=stack.http_url, timeout=300) for _ in range(clients)]

    async def send(number: int, body: bytes) -> int:
        response = await https[number].post(JSON_PATH, content=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        answer = response.json()
        return check_answer(answer["accepted"], answer["duplicates"], len(answer["rejected"]))

    try:
        await asyncio.gather(*(h.get("/ping") for h in https))  # open the connections
        return await drive(send, payloads, clients)
    finally:
        await asyncio.gather(*(h.aclose() for h in https))


RUNNERS = {"grpc": run_grpc, "json": run_json}


def stored_count(db_url: str, customer_id: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM beacons WHERE customer_id = %s",
                           (customer_id,)).fetchone()
        return row[0] if row else 0


@dataclass
class Figure:
    """One run's headline, for the summary line."""

    transport: str
    batch: int
    beacons_per_s: float
    p99_ms: float


def measure(
    stack: Stack, db_url: str, transport: str, batch: int, args: argparse.Namespace
) -> Figure:
    customer_id = f"bench-ingest-{transport}-{batch}"
    key = customer_key(db_url, customer_id)
    prepared = time.perf_counter()
    payloads = build_payloads(transport, customer_id, args.beacons, batch, args.seed)
    prepared = time.perf_counter() - prepared
    print(f"\n== {transport}, batches of {batch:,}: {payloads.beacons:,} beacons in "
          f"{len(payloads.bodies):,} bodies ({payloads.megabytes:,.1f} MB, precomputed in "
          f"{prepared:.1f} s), {args.clients} clients")
    meter = CpuMeter(stack)
    meter.start()
    result = asyncio.run(RUNNERS[transport](stack, key, payloads, args.clients))
    cpu = meter.report()
    stored = stored_count(db_url, customer_id)
    rate = payloads.beacons / result.elapsed
    p50, p99 = (percentile(result.latencies, p) * 1000 for p in (50, 99))
    print(f"   {rate:,.0f} beacons/s, {len(payloads.bodies) / result.elapsed:,.2f} batches/s "
          f"({result.elapsed:.1f} s); batch latency p50 {p50:,.0f} ms, p99 {p99:,.0f} ms, "
          f"max {result.latencies[-1] * 1000:,.0f} ms")
    verdict = "OK" if stored == payloads.distinct == result.accepted else "MISMATCH"
    print(f"   stored in PostgreSQL: {stored:,} (distinct sent {payloads.distinct:,}, "
          f"accepted {result.accepted:,}): {verdict}")
    print(f"   {cpu}")
    if verdict != "OK":
        raise SystemExit("stored count differs from the beacons sent")
    return Figure(transport, batch, rate, p99)


def summary_line(figures: list[Figure], args: argparse.Namespace) -> str:
    """One line for docs/performance.md, with the target verdict of each run."""
    def name(f: Figure) -> str:
        return f"{'gRPC' if f.transport == 'grpc' else 'JSON'} ×{f.batch:,}"

    runs = "; ".join(f"{name(f)}: {f.beacons_per_s:,.0f} beacons/s (p99 batch {f.p99_ms:,.0f} ms)"
                     for f in figures)
    met = [name(f) for f in figures if f.beacons_per_s >= TARGET_BEACONS_PER_S]
    missed = [name(f) for f in figures if f.beacons_per_s < TARGET_BEACONS_PER_S]
    verdict = f"target ≥ {TARGET_BEACONS_PER_S:,} beacons/s met by {', '.join(met) or 'none'}"
    if missed:
        verdict += f", not by {', '.join(missed)}"
    return (f"Ingest ({args.beacons:,} beacons per run, {args.clients} clients, through Envoy,"
            f" code {code_version()}): {runs} — {verdict}.")


def throughput(args: argparse.Namespace) -> None:
    admin, db_url = fresh_database()
    figures = []
    try:
        # no practical rate limit (the default, 20 calls/s per key, would refuse the runs)
        env = {"EDGESTATS_RATE_LIMIT": "1000000", "EDGESTATS_RATE_BURST": "1000000",
               **({"EDGESTATS_METRICS_PORT": "0"} if args.metrics == "off" else {})}
        print(f"Prometheus metrics {args.metrics}")
        with running_stack(db_url, env, profile=args.profile) as stack:
            print(f"stack: Envoy {stack.http_url}; {machine_note()}")
            for transport in args.transport:
                for batch in args.batch:
                    figures.append(measure(stack, db_url, transport, batch, args))
    finally:
        if not args.keep_db:
            postgres.drop_database(admin, BENCH_DB)
    print("\nsummary: " + summary_line(figures, args))


# --- breakdown: the service's functions timed in this process -----------------------------


class Stages:
    """Wall and this-process CPU seconds per named stage, in first-seen order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._started = (0.0, 0.0)

    def start(self) -> None:
        self._started = (time.perf_counter(), time.process_time())

    def stop(self, name: str) -> None:
        wall, cpu = self._started
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - wall
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu


async def copy_only(db: Database, rows: list[tuple]) -> None:
    """store()'s binary COPY into beacons alone, rolled back: how much of store() it is."""
    async with (
        db.connection() as conn,
        conn.transaction(force_rollback=True),
        conn.cursor() as cur,
        cur.copy(beacon_store._COPY_DIRECT) as copy,
    ):
        copy.set_types(beacon_store._TYPES)
        for row in rows:
            await copy.write_row(row)


JSON_BODY = "JSON: validate_body (msgspec, checked rows)"
PROTO_PARSE = "gRPC: IngestBeaconsRequest.FromString"
VALIDATE_GRPC = "gRPC: validate_messages (checked rows)"
COPY = "store: binary COPY into beacons only (rolled back)"
STORE = "store() total: locks + COPY + marks + commit"
# the exact paths taken by items the fast ones refuse (and the whole path before issue #14)
JSON_PARSE = "  fallback JSON: parse_body"
VALIDATE_JSON = "  fallback JSON: validate_all"
TO_ITEM = "  fallback gRPC: beacon_to_item"
VALIDATE_ITEMS = "  fallback gRPC: validate_all"


async def time_batch(db: Database, customer_id: str, chunk: list[dict], stages: Stages) -> int:
    """One batch through the service's steps; returns the rows stored."""
    now = datetime.now(UTC)
    raw_json, raw_grpc = json_body(chunk), grpc_body(chunk)
    stages.start()
    batch = validate_body(raw_json, customer_id, now)
    stages.stop(JSON_BODY)
    stages.start()
    request = pb.IngestBeaconsRequest.FromString(raw_grpc)
    stages.stop(PROTO_PARSE)
    stages.start()
    validate_messages(request.beacons, customer_id, now)
    stages.stop(VALIDATE_GRPC)
    stages.start()
    items = parse_body(raw_json)
    stages.stop(JSON_PARSE)
    stages.start()
    validate_all(items, customer_id, now)
    stages.stop(VALIDATE_JSON)
    stages.start()
    typed_items = [beacon_to_item(b) for b in request.beacons]
    stages.stop(TO_ITEM)
    stages.start()
    validate_all(typed_items, customer_id, now)
    stages.stop(VALIDATE_ITEMS)
    stages.start()
    await copy_only(db, batch.rows)
    stages.stop(COPY)
    stages.start()
    inserted = await beacon_store.store(db, batch.rows)
    stages.stop(STORE)
    return inserted


def _line(name: str, wall: float, cpu: float, beacons: int) -> str:
    per = 1e6 / beacons
    return f"   {name:<52} {wall:6.2f} s {wall * per:6.1f} µs/beacon  (CPU here {cpu * per:5.1f})"


def print_breakdown(stages: Stages, beacons: int) -> None:
    """Per-stage µs/beacon (wall, and CPU of this process = the service's share)."""
    wall, cpu = stages.seconds, stages.cpu
    for name in wall:
        print(_line(name, wall[name], cpu[name], beacons))
    print(_line("  ⇒ locks + marks + commit (difference)", wall[STORE] - wall[COPY],
                max(0.0, cpu[STORE] - cpu[COPY]), beacons))
    paths = {"JSON": (JSON_BODY, STORE), "gRPC": (PROTO_PARSE, VALIDATE_GRPC, STORE)}
    for path, names in paths.items():
        path_wall = sum(wall[n] for n in names)
        path_cpu = sum(cpu[n] for n in names)
        print(f"   {path} path, one batch after another: {beacons / path_wall:,.0f} beacons/s;"
              f" Python CPU {path_cpu / beacons * 1e6:.1f} µs/beacon ⇒ one service process"
              f" (one event loop) tops out near {beacons / path_cpu:,.0f} beacons/s")


async def breakdown_async(db_url: str, args: argparse.Namespace) -> None:
    db = Database(db_url, 1, 2)
    await db.open()
    try:
        for size in args.batch:
            customer_id = f"bench-breakdown-{size}"
            stages, stored, sent = Stages(), 0, 0
            stream = beacon_stream(customer_id, args.beacons, args.seed)
            while chunk := list(islice(stream, size)):
                stored += await time_batch(db, customer_id, chunk, stages)
                sent += len(chunk)
            print(f"\n== breakdown, batches of {size:,}: {sent:,} beacons, {stored:,} stored")
            print_breakdown(stages, sent)
    finally:
        await db.close()


def breakdown(args: argparse.Namespace) -> None:
    admin, db_url = fresh_database()
    print(f"breakdown in this process against database edgestats_bench; {machine_note()}")
    try:
        asyncio.run(breakdown_async(db_url, args))
    finally:
        if not args.keep_db:
            postgres.drop_database(admin, BENCH_DB)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beacons", type=int, default=200_000, help="beacons per run")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--batch", type=int, nargs="+", default=[1_000, 5_000],
                        help="beacons per request (at most 10,000)")
    parser.add_argument("--transport", nargs="+", choices=TRANSPORTS, default=list(TRANSPORTS))
    parser.add_argument("--breakdown", action="store_true",
                        help="time parse/validate/COPY in-process instead of through the stack")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="run the service under cProfile, write FILE and print its top")
    parser.add_argument("--seed", type=int, default=11, help="demo data seed")
    parser.add_argument("--metrics", choices=("on", "off"), default="on",
                        help="the services' Prometheus metrics shared with an exporter (on) or"
                        " kept in each process, never read (off)")
    parser.add_argument("--keep-db", action="store_true", help="keep edgestats_bench afterwards")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not all(0 < size <= MAX_ITEMS for size in args.batch):
        raise SystemExit(f"--batch: between 1 and {MAX_ITEMS:,} beacons per request")
    if args.breakdown:
        breakdown(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
