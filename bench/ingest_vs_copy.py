"""Ingest through Envoy against plain COPY into the same table: the issue #14 ratio, one command.

    PYTHONPATH=services:gen .venv/bin/python -m bench.ingest_vs_copy \
        [--beacons 200000] [--batch 500] [--processes 1 2] [--rounds 2] [--transport json grpc]

Starts a throwaway PostgreSQL 15 cluster (initdb in a temporary directory, the
configuration of `edgestats_stack.postgres`, migrated by the project's
migrations: the same partitioned `beacons` table with its primary key and
indexes), the metrics service (2 workers, no per-key rate limit) and Envoy on
it, then, in each round:

1. plain COPY: `--processes` client processes, each with its own connection,
   COPYing pre-encoded text batches of `--batch` rows straight into `beacons`,
   one commit per batch (the ceiling: no validation, no deduplication; the
   services sit idle meanwhile);
2. ingestion: `--processes` client processes, each sending precomputed bodies
   of `--batch` beacons one after another on its own connection through Envoy,
   as JSON arrays (`POST /analytics/v1/ingest/beacons`) and as typed gRPC
   batches (`IngestBeacons`).

Every run sends the same demo beacons (each process as its own customer) and
checks that PostgreSQL holds exactly the rows sent. It prints rows/s and the
CPU (in cores) of the load generator, the service, Envoy, the cluster's
PostgreSQL processes and the whole machine; then, from the best of the rounds,
the ratio ingest ÷ COPY, the CPU µs per row of each process group (steadier
than rows/s on a shared machine) and the best ingest ÷ best COPY.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from multiprocessing.synchronize import Barrier
from pathlib import Path

import psycopg
from psycopg import sql

from bench.common import (
    CLOCK_TICK,
    _machine_busy,
    _process_cpu,
    code_version,
    customer_key,
    machine_note,
)
from edgestats_stack import postgres
from edgestats_stack.processes import free_port
from edgestats_stack.stack import Stack, prepare_database, start_stack

DBNAME = "edgestats_bench"
KINDS = ("copy", "json", "grpc")
# a key's default rate (20 requests/s, burst 100) would throttle batches of 500
# no rate limit; the roller off: the demo beacons are of the last hours, which it would
# publish over and over while they load (its cost is bench.rollup_throughput's)
NO_RATE_LIMIT = {"EDGESTATS_RATE_LIMIT": "1000000", "EDGESTATS_RATE_BURST": "1000000",
                 "EDGESTATS_MINUTE_ROLLUP_SECONDS": "0"}


# --- the throwaway cluster -----------------------------------------------------------------


@dataclass
class Cluster:
    admin_url: str
    data: Path

    def cpu_seconds(self) -> float:
        """CPU of the postmaster, of every live process it forked (backends, walwriter…) and of
        those that exited (a closed connection's backend: in the postmaster's cutime/cstime)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        total = sum(int(f) for f in fields[11:15]) / CLOCK_TICK
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                    total += _process_cpu(int(entry.name))
        return total


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """initdb + start in a temporary directory on a free port; stopped and removed on exit."""
    run_dir = Path(tempfile.mkdtemp(prefix="edgestats-copy-"))
    run_dir.chmod(0o755)  # the postgres user runs the cluster when we are root
    try:
        admin = postgres.ensure_cluster(run_dir, free_port())
        yield Cluster(admin, postgres.cluster_dir(run_dir) / "data")
    finally:
        postgres.stop_cluster(run_dir)
        shutil.rmtree(postgres.cluster_dir(run_dir), ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


# --- client processes (spawned: each builds its payload, then waits for the start) ----------


@dataclass
class Job:
    kind: str  # copy | json | grpc
    customer_id: str
    beacons: int
    batch: int
    seed: int
    db_url: str
    key: str = ""
    http_url: str = ""
    grpc_target: str = ""


def copy_batches(job: Job) -> list[bytes]:
    """Pre-encoded COPY text of validated rows, `job.batch` rows per element."""
    from bench.ingest_throughput import beacon_stream
    from metrics_service.beacon_validation import validate

    now = datetime.now(UTC)
    stream = beacon_stream(job.customer_id, job.beacons, job.seed)
    batches = []
    while chunk := list(islice(stream, job.batch)):
        batches.append("".join(copy_line(validate(b, job.customer_id, now))
                               for b in chunk).encode())
    return batches


def copy_line(row: tuple) -> str:
    """One row in COPY text format."""
    fields = []
    for value in row:
        if value is None:
            fields.append("\\N")
        elif isinstance(value, bool):
            fields.append("t" if value else "f")
        elif isinstance(value, str):
            fields.append(value.replace("\\", "\\\\").replace("\t", "\\t")
                          .replace("\n", "\\n").replace("\r", "\\r"))
        elif isinstance(value, datetime):
            fields.append(value.isoformat())
        else:
            fields.append(repr(value))
    return "\t".join(fields) + "\n"


def send_copy(job: Job, batches: list[bytes]) -> int:
    from metrics_service.beacon_store import _COLUMN_LIST

    statement = sql.SQL("COPY beacons ({}) FROM STDIN").format(_COLUMN_LIST)
    with psycopg.connect(job.db_url) as conn:
        for data in batches:
            with conn.cursor().copy(statement) as copy:
                copy.write(data)
            conn.commit()
    return sum(data.count(b"\n") for data in batches)


async def send_json(job: Job, bodies: list[bytes]) -> int:
    import orjson

    from bench.common import HttpConnection

    http = HttpConnection(job.http_url, {"authorization": f"Bearer {job.key}"})
    accepted = 0
    try:
        for body in bodies:
            status, answer = await http.post("/analytics/v1/ingest/beacons", body)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {answer[:300]!r}")
            accepted += checked(**orjson.loads(answer))
    finally:
        await http.close()
    return accepted


async def send_grpc(job: Job, bodies: list[bytes]) -> int:
    import grpc

    from bench.ingest_throughput import GRPC_METHOD
    from edgestats.metrics.v1 import beacon_ingest_service_pb2 as pb

    async with grpc.aio.insecure_channel(job.grpc_target) as channel:
        method = channel.unary_unary(GRPC_METHOD,
                                     response_deserializer=pb.IngestBeaconsResponse.FromString)
        metadata = (("authorization", f"Bearer {job.key}"),)
        accepted = 0
        for body in bodies:
            answer = await method(body, metadata=metadata, timeout=300)
            accepted += checked(answer.accepted, answer.duplicates, answer.rejected)
    return accepted


def checked(accepted: int, duplicates: int, rejected: list) -> int:
    if duplicates or rejected:
        raise RuntimeError(f"unexpected answer: {duplicates} duplicates, {len(rejected)} rejected")
    return accepted


def client(job: Job, start: Barrier, out: multiprocessing.Queue) -> None:
    """One load-generator process: build the payload, wait for the others, send, report."""
    try:
        if job.kind == "copy":
            payload = copy_batches(job)
        else:
            from bench.ingest_throughput import build_payloads
            payload = build_payloads(job.kind, job.customer_id, job.beacons, job.batch,
                                     job.seed).bodies
        start.wait()
        cpu = time.process_time()
        if job.kind == "copy":
            sent = send_copy(job, payload)
        else:
            sender = send_json if job.kind == "json" else send_grpc
            sent = asyncio.run(sender(job, payload))
        out.put((job.customer_id, sent, time.process_time() - cpu, None))
    except BaseException as exc:  # reported to the parent, which fails the run
        start.abort()
        out.put((job.customer_id, 0, 0.0, repr(exc)))


# --- one run --------------------------------------------------------------------------------


@dataclass
class Figure:
    kind: str
    processes: int
    rows_per_s: float
    cpu: dict[str, float]  # cores used per process group


def cpu_snapshot(cluster: Cluster, stack: Stack | None) -> dict[str, float]:
    used: dict[str, float] = {"postgres": cluster.cpu_seconds()}
    for p in stack.processes if stack else []:
        group = "service" if p.name.startswith("metrics_service") else (
            "envoy" if p.name == "envoy" else "other services")
        used[group] = used.get(group, 0.0) + _process_cpu(p.pid)
    used["machine busy"] = _machine_busy()[0]
    return used


def run(kind: str, processes: int, args: argparse.Namespace, cluster: Cluster, db_url: str,
        stack: Stack, round_: int) -> Figure:
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(processes + 1), context.Queue()
    jobs = []
    for number in range(processes):
        customer_id = f"bench-{kind}-{processes}p-{number}-r{round_}"
        job = Job(kind, customer_id, args.beacons // processes, args.batch, args.seed, db_url)
        if kind != "copy":
            job.key = customer_key(db_url, customer_id)
            job.http_url, job.grpc_target = stack.http_url, stack.grpc_target
        jobs.append(job)
    children = [context.Process(target=client, args=(job, start, out)) for job in jobs]
    for child in children:
        child.start()
    start.wait(timeout=600)  # every client has built its payload
    services = None if kind == "copy" else stack  # idle during COPY: not counted
    before, began = cpu_snapshot(cluster, services), time.perf_counter()
    results = [out.get() for _ in children]
    elapsed = time.perf_counter() - began
    after = cpu_snapshot(cluster, services)
    for child in children:
        child.join()
    errors = [error for *_, error in results if error]
    if errors:
        raise SystemExit(f"{kind}: {errors[0]}")
    sent = sum(r[1] for r in results)
    stored = stored_rows(db_url, [j.customer_id for j in jobs])
    if stored != sent or sent != (args.beacons // processes) * processes:
        raise SystemExit(f"{kind}: stored {stored:,}, sent {sent:,}")
    cpu = {name: (after[name] - before[name]) / elapsed for name in after}
    cpu["load generator"] = sum(r[2] for r in results) / elapsed
    figure = Figure(kind, processes, sent / elapsed, cpu)
    print(f"   {label(figure):<24} {figure.rows_per_s:>9,.0f} rows/s  ({sent:,} rows,"
          f" {elapsed:5.1f} s, stored {stored:,} OK)  CPU cores: {cpu_text(cpu)}")
    return figure


def stored_rows(db_url: str, customers: list[str]) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM beacons WHERE customer_id = ANY(%s)",
                           (customers,)).fetchone()
    return row[0] if row else 0


def label(figure: Figure) -> str:
    name = {"copy": "plain COPY", "json": "ingest JSON", "grpc": "ingest gRPC"}[figure.kind]
    return f"{name}, {figure.processes} proc"


def cpu_text(cpu: dict[str, float]) -> str:
    order = ["load generator", "service", "envoy", "postgres", "other services", "machine busy"]
    return ", ".join(f"{name} {cpu[name]:.2f}" for name in order if name in cpu)


OURS = ("load generator", "service", "envoy", "postgres", "other services")


def ours(figure: Figure) -> float:
    """Cores used by the processes of the run (not the rest of the shared machine)."""
    return sum(figure.cpu.get(name, 0.0) for name in OURS)


def per_row_text(figure: Figure) -> str:
    parts = [f"{name} {figure.cpu[name] / figure.rows_per_s * 1e6:.1f}"
             for name in OURS if figure.cpu.get(name, 0.0) > 0]
    total = ours(figure) / figure.rows_per_s * 1e6
    others = max(0.0, figure.cpu["machine busy"] - ours(figure))
    return (", ".join(parts) + f"; total {total:.1f} (2 cores ⇒ ≤ {2e6 / total:,.0f} rows/s);"
            f" rest of the machine {others:.2f} cores")


def report(figures: list[Figure], args: argparse.Namespace) -> None:
    copies = {f.processes: f.rows_per_s for f in figures if f.kind == "copy"}
    print("\nratio ingest ÷ plain COPY (same process count):")
    for f in figures:
        if f.kind != "copy" and f.processes in copies:
            print(f"   {label(f):<24} {f.rows_per_s / copies[f.processes]:.3f}")
    print("\nCPU µs per row (where the time goes; the machine is shared, so this is steadier"
          " than rows/s):")
    for f in figures:
        print(f"   {label(f):<24} {per_row_text(f)}")
    copy_cost = min(ours(f) / f.rows_per_s for f in figures if f.kind == "copy")
    for f in figures:
        if f.kind != "copy":
            print(f"   CPU-cost ratio, {label(f):<22} plain COPY's µs per row ÷ ingest's:"
                  f" {copy_cost / (ours(f) / f.rows_per_s):.3f}")
    best_copy = max(copies.values())
    for kind in ("json", "grpc"):
        ingest = [f.rows_per_s for f in figures if f.kind == kind]
        if ingest:
            print(f"summary: {kind.upper()} ingest through Envoy {max(ingest):,.0f} beacons/s"
                  f" ÷ plain COPY {best_copy:,.0f} rows/s = {max(ingest) / best_copy:.3f}"
                  f" (best of {', '.join(map(str, args.processes))} processes and"
                  f" {args.rounds} rounds; {args.beacons:,} rows per run, batches of"
                  f" {args.batch}; code {code_version()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beacons", type=int, default=200_000, help="rows per run")
    parser.add_argument("--batch", type=int, default=500, help="rows per COPY / request")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--transport", nargs="+", choices=KINDS[1:], default=list(KINDS[1:]))
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of every run, interleaved; the best of each is kept")
    parser.add_argument("--seed", type=int, default=11, help="demo data seed")
    args = parser.parse_args()
    print(f"{machine_note()}")
    with throwaway_cluster() as cluster:
        db_url = postgres.create_database(cluster.admin_url, DBNAME)
        prepare_database(db_url)
        print(f"throwaway cluster {cluster.data} migrated; {args.beacons:,} demo beacons per run,"
              f" batches of {args.batch}")
        run_dir = Path(tempfile.mkdtemp(prefix="edgestats-bench-"))
        stack = start_stack(run_dir, db_url, env=NO_RATE_LIMIT)
        best: dict[tuple[str, int], Figure] = {}
        try:
            for round_ in range(1, args.rounds + 1):
                print(f"round {round_} of {args.rounds}: {machine_note()}")
                for kind in ("copy", *args.transport):
                    for processes in args.processes:
                        figure = run(kind, processes, args, cluster, db_url, stack, round_)
                        key = (kind, processes)
                        if key not in best or figure.rows_per_s > best[key].rows_per_s:
                            best[key] = figure
        finally:
            stack.stop()
            shutil.rmtree(run_dir, ignore_errors=True)
    print(f"load average after the runs: {machine_note()}")
    print(f"\nbest of {args.rounds} rounds:")
    for figure in best.values():
        print(f"   {label(figure):<24} {figure.rows_per_s:>9,.0f} rows/s  CPU cores:"
              f" {cpu_text(figure.cpu)}")
    report(list(best.values()), args)


if __name__ == "__main__":
    main()
