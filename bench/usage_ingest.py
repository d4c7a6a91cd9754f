"""Usage-event ingest throughput: events/s through Envoy, typed gRPC batches and JSON arrays.

    PYTHONPATH=services:gen .venv/bin/python -m bench.usage_ingest \
        [--events 200000] [--clients 4] [--batch 1000 5000] [--transport grpc json] \
        [--resent 0.01] [--users 100]

Each (transport, batch size) run sends `--events` events of `--users` fresh usage users
(conversion, storage and bandwidth, a third of them on a second application, bandwidth
tagged) as precomputed bodies from `--clients` concurrent clients, each on its own
connection to the Envoy port: `UsageIngestService/RecordUsage` as native gRPC, or
`POST /v1/usage/events` with a JSON array. A fraction `--resent` of the events repeat an
earlier id (as a retrying producer would), so the run checks that PostgreSQL holds exactly
the distinct ids sent and that the answers counted the rest as duplicates.

Runs against its own database (`edgestats_bench_usage`, dropped and recreated) and its
own stack on free ports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import psycopg

from bench.common import _process_cpu, fresh_database, machine_note, percentile, running_stack
from bench.ingest_throughput import Payloads, drive
from edgestats.usage_billing.v1 import usage_ingest_service_pb2 as pb
from edgestats_core.tenancy.api_keys import create_role_key, key_id_of, set_rate_limit
from edgestats_stack import postgres
from edgestats_stack.stack import Stack
from usage_billing_service import accounts

GRPC_METHOD = "/edgestats.usage_billing.v1.UsageIngestService/RecordUsage"
JSON_PATH = "/v1/usage/events"
TYPES = ("conversion", "storage", "bandwidth")
# Its own database, so it never drops the one another benchmark is using (bench/common.py).
BENCH_DB = "edgestats_bench_usage"


def make_users(db_url: str, prefix: str, count: int) -> list[tuple[str, str]]:
    """(user_id, second application id) of `count` fresh users."""
    users = []
    with psycopg.connect(db_url) as conn:
        for n in range(count):
            user_id = f"{prefix}-u{n}"
            accounts.create_user(conn, user_id, datetime.now(UTC))
            accounts.create_application(conn, user_id, f"{user_id}-app")
            users.append((user_id, f"{user_id}-app"))
    return users


def make_events(users: list[tuple[str, str]], total: int, resent: float, seed: int) -> list[dict]:
    """`total` events over the last 24 hours; a fraction `resent` repeats an earlier one."""
    rng = random.Random(seed)
    now = datetime.now(UTC) - timedelta(minutes=1)
    events: list[dict] = []
    for n in range(total):
        if events and rng.random() < resent:
            events.append(rng.choice(events))
            continue
        user_id, app = rng.choice(users)
        kind = TYPES[n % 3]
        item = {"id": f"{user_id}-e{n}", "type": kind, "user_id": user_id,
                "bytes": rng.randint(0, 5_000_000_000),
                "timestamp": now - timedelta(seconds=rng.randint(0, 86_400))}
        if n % 3 == 1:
            item["application_id"] = app
        if kind == "bandwidth":
            item["tag"] = f"tag-{rng.randint(1, 50)}"
        events.append(item)
    return events


def grpc_body(events: list[dict]) -> bytes:
    request = pb.RecordUsageRequest()
    for item in events:
        message = request.events.add()
        for name, value in item.items():
            if name == "timestamp":
                message.timestamp.FromDatetime(value)
            else:
                setattr(message, name, value)
    return request.SerializeToString()


def json_body(events: list[dict]) -> bytes:
    wire = [{**e, "timestamp": int(e["timestamp"].timestamp() * 1000)} for e in events]
    return json.dumps(wire, separators=(",", ":")).encode()


def build(transport: str, events: list[dict], batch: int) -> Payloads:
    encode = grpc_body if transport == "grpc" else json_body
    payloads = Payloads([], [], len({e["id"] for e in events}))
    for start in range(0, len(events), batch):
        chunk = events[start:start + batch]
        payloads.bodies.append(encode(chunk))
        payloads.sizes.append(len(chunk))
    return payloads


class Tally:
    """What the answers said, summed over the run."""

    def __init__(self) -> None:
        self.accepted = self.duplicates = self.rejected = 0

    def add(self, accepted: int, duplicates: int, rejected: int) -> int:
        self.accepted += accepted
        self.duplicates += duplicates
        self.rejected += rejected
        return accepted


async def run_grpc(stack: Stack, key: str, payloads: Payloads, clients: int, tally: Tally):
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(stack.grpc_target, options=options)
                for _ in range(clients)]
    methods = [c.unary_unary(GRPC_METHOD, response_deserializer=pb.RecordUsageResponse.FromString)
               for c in channels]
    metadata = (("authorization", f"Bearer {key}"),)

    async def send(number: int, body: bytes) -> int:
        answer = await methods[number](body, metadata=metadata, timeout=300)
        return tally.add(answer.accepted, answer.duplicates, len(answer.rejected))

    try:
        await asyncio.gather(*(c.channel_ready() for c in channels))
        return await drive(send, payloads, clients)
    finally:
        await asyncio.gather(*(c.close() for c in channels))


async def run_json(stack: Stack, key: str, payloads: Payloads, clients: int, tally: Tally):
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    https = [httpx.AsyncClient(base_url=stack.http_url, timeout=300) for _ in range(clients)]

    async def send(number: int, body: bytes) -> int:
        response = await https[number].post(JSON_PATH, content=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        answer = response.json()
        return tally.add(answer["accepted"], answer["duplicates"], len(answer["rejected"]))

    try:
        await asyncio.gather(*(h.get("/ping") for h in https))
        return await drive(send, payloads, clients)
    finally:
        await asyncio.gather(*(h.aclose() for h in https))


def stored_count(db_url: str, prefix: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM usage_events WHERE user_id LIKE %s",
                            (f"{prefix}-%",)).fetchone()[0]


def service_cpu(stack: Stack) -> dict[str, float]:
    groups: dict[str, float] = {}
    for p in stack.processes:
        name = p.name.split("-")[0] if p.name.startswith("usage_billing") else p.name
        if name.startswith("usage_billing") or name == "envoy":
            groups[name] = groups.get(name, 0.0) + _process_cpu(p.pid)
    return groups


def measure(stack: Stack, db_url: str, key: str, transport: str, batch: int,
            args: argparse.Namespace) -> str:
    prefix = f"bench-{transport}-{batch}"
    users = make_users(db_url, prefix, args.users)
    payloads = build(transport, make_events(users, args.events, args.resent, args.seed), batch)
    print(f"\n== {transport}, batches of {batch:,}: {payloads.beacons:,} events "
          f"({payloads.distinct:,} distinct ids) in {len(payloads.bodies):,} bodies "
          f"({payloads.megabytes:,.1f} MB), {args.clients} clients")
    runner = run_grpc if transport == "grpc" else run_json
    tally = Tally()
    cpu_before, started = service_cpu(stack), time.perf_counter()
    result = asyncio.run(runner(stack, key, payloads, args.clients, tally))
    wall = time.perf_counter() - started
    cpu = {name: (used - cpu_before.get(name, 0.0)) / wall
           for name, used in service_cpu(stack).items()}
    stored = stored_count(db_url, prefix)
    rate = payloads.beacons / result.elapsed
    p50, p99 = (percentile(result.latencies, p) * 1000 for p in (50, 99))
    print(f"   {rate:,.0f} events/s ({result.elapsed:.1f} s); batch latency p50 {p50:,.0f} ms,"
          f" p99 {p99:,.0f} ms")
    ok = (stored == payloads.distinct and tally.rejected == 0
          and tally.accepted == payloads.beacons
          and tally.duplicates == payloads.beacons - payloads.distinct)
    print(f"   stored {stored:,} (distinct sent {payloads.distinct:,}); answers: accepted"
          f" {tally.accepted:,}, duplicates {tally.duplicates:,}, rejected {tally.rejected:,}:"
          f" {'OK' if ok else 'MISMATCH'}")
    print("   CPU cores: " + ", ".join(f"{n} {c:.2f}" for n, c in sorted(cpu.items())))
    if not ok:
        raise SystemExit("stored count differs from the distinct events sent")
    return f"{transport} ×{batch:,}: {rate:,.0f} events/s (p99 batch {p99:,.0f} ms)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--transport", nargs="+", choices=["grpc", "json"],
                        default=["grpc", "json"])
    parser.add_argument("--resent", type=float, default=0.01,
                        help="fraction of events that repeat an earlier id")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    admin, db_url = fresh_database(BENCH_DB)
    with psycopg.connect(db_url) as conn:
        key = create_role_key(conn, "bench-producer", "usage-ingest")
        # an internal producer's key gets its own limit (edgestats keys limit): measure ingest
        set_rate_limit(conn, key_id_of(key), 1e6, 1e6)
    lines = []
    try:
        with running_stack(db_url) as stack:
            print(f"stack: Envoy {stack.http_url}; {machine_note()}")
            for transport in args.transport:
                for batch in args.batch:
                    lines.append(measure(stack, db_url, key, transport, batch, args))
    finally:
        if not args.keep_db:
            postgres.drop_database(admin, BENCH_DB)
    print(f"\nsummary ({args.events:,} events per run, {args.clients} clients, through Envoy): "
          + "; ".join(lines))


if __name__ == "__main__":
    main()
