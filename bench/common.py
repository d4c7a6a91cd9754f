"""Shared benchmark plumbing: a fresh database, the stack, keys, percentiles and CPU accounting.

Every benchmark runs against its own database (`edgestats_bench`, dropped and
recreated) on the local PostgreSQL cluster under .run/pg, and its own metrics
service + Envoy on free ports, so it never touches `make run` or the tests.
"""

from __future__ import annotations

import asyncio
import math
import os
import pstats
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from edgestats_core.tenancy.api_keys import create_customer_key
from edgestats_stack import postgres
from edgestats_stack.stack import REPO, Stack, prepare_database, start_stack

BENCH_DB = "edgestats_bench"
PG_PORT = int(os.environ.get("EDGESTATS_PG_PORT", "55432"))
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def fresh_database(name: str = BENCH_DB) -> tuple[str, str]:
    """(admin URL, URL) of a just-created, migrated database (`edgestats_bench`)."""
    admin = postgres.ensure_cluster(REPO / ".run", PG_PORT)
    postgres.drop_database(admin, name)
    url = postgres.create_database(admin, name)
    prepare_database(url)
    return admin, url


def start_profiled_stack(run_dir: Path, db_url: str, profile: Path, env: dict[str, str]) -> Stack:
    """One metrics service worker under cProfile (the profile is written when it stops)."""
    profiler = ("-m", "cProfile", "-o", str(profile.resolve()))
    return start_stack(run_dir, db_url, env=env, workers=1,
                       python_args={"metrics_service": profiler})


def print_profile(profile: Path, limit: int = 30) -> None:
    """The service's hottest functions by own time, then by cumulative time."""
    stats = pstats.Stats(str(profile))
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)


@contextmanager
def running_stack(
    db_url: str, env: dict[str, str] | None = None, profile: Path | None = None
) -> Iterator[Stack]:
    """The metrics service and Envoy on free ports; the run dir is kept only on failure.

    With `profile`, the service runs under cProfile and the profile is printed on exit.
    """
    run_dir = Path(tempfile.mkdtemp(prefix="edgestats-bench-"))
    if profile is None:
        stack = start_stack(run_dir, db_url, env=env)
    else:
        stack = start_profiled_stack(run_dir, db_url, profile, env or {})
    try:
        yield stack
    except BaseException:
        stack.stop()
        print(f"service and Envoy logs kept in {run_dir}/logs")
        raise
    stack.stop()  # the service writes its profile when it stops
    shutil.rmtree(run_dir, ignore_errors=True)
    if profile is not None:
        print(f"\nprofile of the metrics service: {profile}")
        print_profile(profile)


def customer_key(db_url: str, customer_id: str, tier: str = "advanced") -> str:
    """Create the customer (region emea) and return a fresh API key for it."""
    with psycopg.connect(db_url) as conn:
        return create_customer_key(conn, customer_id, "emea", tier)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def machine_note() -> str:
    """Code version, cores and load average, printed with every result: the machine is shared."""
    one, five, _ = os.getloadavg()
    return (f"code {code_version()}; {os.cpu_count()} cores, load average {one:.2f} (1 min)"
            f" {five:.2f} (5 min)")


def code_version() -> str:
    """The commit measured, and whether services/ had uncommitted changes."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "services")
    return commit + (" + local changes in services/" if dirty else "")


# --- CPU accounting from /proc: who used the cores during a measurement ---------------------


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def _postgres_pids(dbname: str | None) -> list[int]:
    """PostgreSQL processes (all, or the backends connected to `dbname`) by their title."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres") and (dbname is None or f" {dbname} " in title):
            pids.append(int(entry.name))
    return pids


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / CLOCK_TICK, total / CLOCK_TICK


@dataclass
class CpuMeter:
    """CPU seconds per wall second of the stack's processes, this client and the machine."""

    stack: Stack
    dbname: str = BENCH_DB
    _start: dict[str, float] = field(default_factory=dict)
    _pg_start: dict[int, float] = field(default_factory=dict)
    _wall: float = 0.0

    def _named(self) -> dict[str, float]:
        named: dict[str, float] = {}
        for p in self.stack.processes:  # the service's worker processes count as one group
            group = "metrics_service" if p.name.startswith("metrics_service") else p.name
            named[group] = named.get(group, 0.0) + _process_cpu(p.pid)
        named["bench client"] = time.process_time()
        named["machine busy"] = _machine_busy()[0]
        return named

    def start(self) -> None:
        self._start = self._named()
        self._pg_start = {pid: _process_cpu(pid) for pid in _postgres_pids(None)}
        self._wall = time.perf_counter()

    def report(self) -> str:
        """`name x.xx` core-seconds per second for each process group since start()."""
        wall = time.perf_counter() - self._wall
        now = self._named()
        used = {name: now[name] - self._start.get(name, 0.0) for name in now}
        bench_backends = set(_postgres_pids(self.dbname))
        pg_all = pg_bench = 0.0
        for pid in _postgres_pids(None):
            delta = _process_cpu(pid) - self._pg_start.get(pid, 0.0)
            pg_all += delta
            if pid in bench_backends:
                pg_bench += delta
        used["postgres (bench backends)"] = pg_bench
        used["postgres (all, shared cluster)"] = pg_all
        order = ["metrics_service", "envoy", "postgres (bench backends)",
                 "postgres (all, shared cluster)", "bench client", "machine busy"]
        cores = os.cpu_count() or 1
        parts = [f"{name} {used[name] / wall:.2f}" for name in order if name in used]
        return f"CPU cores used (of {cores}): " + ", ".join(parts)


# --- a lean HTTP/1.1 client for query load -------------------------------------------------


class HttpConnection:
    """One keep-alive HTTP/1.1 connection (GET, JSON POST): ~20× less client CPU than httpx.

    The load generator shares the two cores with Envoy, the service and
    PostgreSQL, so its own cost per request must stay small.
    """

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parsed = urlsplit(base_url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._head = f"HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{extra}\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None

    async def get(self, path: str) -> tuple[int, bytes]:
        """(status, body) of `GET path`; reconnects when the server closed the connection."""
        return await self._exchange(b"GET " + path.encode() + b" " + self._head)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of a JSON `POST path`."""
        head = self._head[:-2] + (b"content-type: application/json\r\ncontent-length: "
                                  + str(len(body)).encode() + b"\r\n\r\n")
        return await self._exchange(b"POST " + path.encode() + b" " + head + body)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request and read its answer."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(request)
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionError("connection closed by the server")
        status = int(status_line.split(None, 2)[1])
        headers: dict[bytes, bytes] = {}
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        body = await self._body(headers)
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return status, body

    async def _body(self, headers: dict[bytes, bytes]) -> bytes:
        assert self._reader is not None
        if b"content-length" in headers:
            return await self._reader.readexactly(int(headers[b"content-length"]))
        if headers.get(b"transfer-encoding", b"").lower() != b"chunked":
            return b""
        parts = []
        while size := int((await self._reader.readline()).split(b";")[0], 16):
            parts.append(await self._reader.readexactly(size))
            await self._reader.readline()
        await self._reader.readline()  # the empty trailer line
        return b"".join(parts)
