"""One Prometheus scrape for every service process of a host:
`python -m edgestats_stack.metrics_exporter` serves GET /metrics on
EDGESTATS_METRICS_HOST:EDGESTATS_METRICS_PORT (default 127.0.0.1:9464) from the files the
processes write in PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode)."""

from __future__ import annotations

import os
import signal
import threading

from prometheus_client import CollectorRegistry, multiprocess, start_http_server

DEFAULT_PORT = 9464


def main() -> None:
    host = os.environ.get("EDGESTATS_METRICS_HOST", "127.0.0.1")
    port = int(os.environ.get("EDGESTATS_METRICS_PORT", DEFAULT_PORT))
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    server, _ = start_http_server(port, host, registry)
    print(f"serving {os.environ['PROMETHEUS_MULTIPROC_DIR']} on {host}:{port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()


if __name__ == "__main__":
    main()
