"""The whole local stack: database, the services and Envoy, for `make run` and the tests."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from edgestats_core.config import Settings
from edgestats_core.migrations import migrate_every_database
from edgestats_stack import gateway, postgres
from edgestats_stack.metrics_exporter import DEFAULT_PORT as DEFAULT_METRICS_PORT
from edgestats_stack.processes import (
    Process,
    free_ports,
    spawn,
    start_envoy,
    start_service,
    wait_envoy_ready,
    wait_grpc_healthy,
)
from edgestats_stack.services import SERVICES

REPO = Path(__file__).resolve().parents[2]
GEN = REPO / "gen"
DEFAULT_ADMIN_PORT = 9901


@dataclass
class Stack:
    database_url: str
    http_url: str
    grpc_target: str
    processes: list[Process] = field(default_factory=list)
    access_log: Path = Path("/dev/null")  # Envoy's, one JSON line per request
    metrics_url: str = ""  # the services' Prometheus scrape
    admin_url: str = ""  # Envoy's admin (its own statistics at /stats/prometheus)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def fresh_dir(path: Path) -> Path:
    """An empty directory at `path` (the last run's metric files are not this run's)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def database_url(run_dir: Path, dbname: str = "edgestats") -> tuple[str, str]:
    """(admin URL, database URL): DATABASE_URL when set, else the local cluster under run_dir."""
    if os.environ.get("DATABASE_URL"):
        url = os.environ["DATABASE_URL"]
        return url, url
    admin = postgres.ensure_cluster(run_dir, int(os.environ.get("EDGESTATS_PG_PORT", "55432")))
    return admin, postgres.create_database(admin, dbname)


def prepare_database(url: str, region_urls: tuple[tuple[str, str], ...] | None = None) -> list[str]:
    """Migrate and maintain the home database and every region database (default: those of
    EDGESTATS_REGION_DATABASES); returns the migrations applied."""
    if region_urls is None:
        region_urls = Settings.from_env(database_url=url).region_urls
    return migrate_every_database(Settings(url, region_urls=region_urls))


def start_stack(
    run_dir: Path, db_url: str, *, host: str = "127.0.0.1", port: int | None = None,
    env: dict[str, str] | None = None, detach: bool = False, workers: int | None = None,
    python_args: dict[str, tuple[str, ...]] | None = None,
) -> Stack:
    """Start `workers` processes of every service (default EDGESTATS_WORKERS, 2) and Envoy on
    free ports (Envoy on `port` when given). `python_args` per service module run it under
    e.g. a profiler (benchmarks)."""
    workers = workers or int(os.environ.get("EDGESTATS_WORKERS", "2"))
    ports = free_ports(3 + workers * len(SERVICES))
    settings = {**os.environ, **(env or {})}
    # `make run` (a given port) serves the metrics and Envoy's admin on known ports (local to
    # the host, for a Prometheus there); tests on any free port
    http_port = port or ports.pop()
    metrics_port = int(settings.get("EDGESTATS_METRICS_PORT", DEFAULT_METRICS_PORT)
                       if port else ports.pop())
    if settings.get("EDGESTATS_METRICS_PORT") == "0":  # off: no exporter, nothing shared
        metrics_port = 0
    admin_port = int(settings.get("EDGESTATS_ENVOY_ADMIN_PORT", DEFAULT_ADMIN_PORT)
                     if port else ports.pop())
    metrics_host = settings.get("EDGESTATS_METRICS_HOST", "127.0.0.1")
    service_ports = {spec.cluster: [ports.pop() for _ in range(workers)] for spec in SERVICES}
    stack = Stack(db_url, f"http://{host}:{http_port}", f"{host}:{http_port}",
                  access_log=run_dir / "logs" / "envoy-access.log",
                  metrics_url=f"http://{metrics_host}:{metrics_port}/metrics" if metrics_port
                  else "",
                  admin_url=f"http://127.0.0.1:{admin_port}")
    multiproc_dir = fresh_dir(run_dir / "prometheus") if metrics_port else None
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)} if multiproc_dir else {}
    # every process can answer health for every service name (edgestats_core.peer_health)
    peers = " ".join(f"{name}={host}:{service_port}" for spec in SERVICES
                     for service_port in service_ports[spec.cluster]
                     for name in spec.grpc_services)
    try:
        started = []
        for spec in SERVICES:
            for index, service_port in enumerate(service_ports[spec.cluster]):
                process_env = {"DATABASE_URL": db_url, "EDGESTATS_WORKERS": str(workers),
                               "EDGESTATS_PEERS": peers, **shared, **(env or {})}
                process = start_service(
                    spec.module, run_dir, service_port, process_env, detach,
                    name=f"{spec.module}-{index}",
                    python_args=(python_args or {}).get(spec.module, ()),
                )
                stack.processes.append(process)
                started.append((service_port, process))
        for service_port, process in started:
            wait_grpc_healthy(service_port, process)
        if metrics_port:
            stack.processes.append(spawn(
                "metrics-exporter", [sys.executable, "-m", "edgestats_stack.metrics_exporter"],
                run_dir, {**shared, "EDGESTATS_METRICS_HOST": metrics_host,
                          "EDGESTATS_METRICS_PORT": str(metrics_port)}, detach))
        config = run_dir / "envoy.yaml"
        config.write_text(gateway.render(
            max_concurrent_rpcs=int(settings.get("EDGESTATS_MAX_CONCURRENT_RPCS", "16")),
            max_heap_mb=int(settings.get("EDGESTATS_GATEWAY_MAX_HEAP_MB", "1024")),
            access_log=stack.access_log,
            host=host, port=http_port, admin_port=admin_port, service_ports=service_ports,
            descriptor=GEN / "edgestats.binpb", openapi_json=GEN / "openapi.json",
            otlp_endpoint=settings.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ))
        envoy = start_envoy(config, run_dir, detach)
        stack.processes.append(envoy)
        wait_envoy_ready(admin_port, envoy)
    except BaseException:
        stack.stop()
        raise
    return stack
