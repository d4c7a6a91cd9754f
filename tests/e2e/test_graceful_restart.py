"""A rolling restart of the service workers under ingest load (issue #8): SIGTERM drains
in-flight calls, Envoy sends new ones to the other worker, and no accepted beacon is lost."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from edgestats_stack.processes import start_service, wait_grpc_healthy
from edgestats_stack.stack import start_stack
from tests.e2e.api import Api

pytestmark = pytest.mark.e2e


def test_rolling_restart_under_load_drops_nothing(db_url, tenants, tmp_path_factory):
    customer_id, key = tenants.customer("lite")
    run_dir = Path(tmp_path_factory.mktemp("rolling"))
    # the real clock, but no rollers: they would publish every pending hour and roll the
    # last 90 minutes of the shared database, other tests' included
    env = {"EDGESTATS_RATE_LIMIT": "100000", "EDGESTATS_RATE_BURST": "100000",
           "EDGESTATS_MINUTE_ROLLUP_SECONDS": "0", "EDGESTATS_LIVE_ROLLUP_SECONDS": "0"}
    stack = start_stack(run_dir, db_url, workers=2, env=env)
    statuses: list[int] = []
    stop = threading.Event()
    sent = 0

    def client() -> None:
        nonlocal sent
        with httpx.Client(base_url=stack.http_url, timeout=30) as http:
            while not stop.is_set():
                now = int(time.time()) // 5 * 5
                batch = [{"__time": now * 1000, "CustomerId": customer_id,
                          "SessionId": f"roll-{sent}-{i}", "Source": "cdn"} for i in range(50)]
                while True:  # an SDK retries until the batch is accepted
                    response = http.post("/analytics/v1/ingest/beacons", json=batch,
                                         headers=Api.auth(key))
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        break
                    time.sleep(0.1)
                sent += 1

    sender = threading.Thread(target=client)
    sender.start()
    try:
        time.sleep(1)
        workers = [p for p in stack.processes if p.name.startswith("metrics_service")]
        for worker in workers:  # one at a time, like a deployment
            port = int(next(a for a in _env_ports(worker)))
            worker.stop()
            replacement = start_service("metrics_service", run_dir, port,
                                        {"DATABASE_URL": db_url, "EDGESTATS_WORKERS": "2", **env},
                                        name=worker.name)
            stack.processes[stack.processes.index(worker)] = replacement
            wait_grpc_healthy(port, replacement)
            time.sleep(3)  # Envoy's health check marks it healthy again
        stop.set()
        sender.join(timeout=60)
    finally:
        stop.set()
        stack.stop()
    assert sent > 20
    errors = [s for s in statuses if s != 200]
    assert len(errors) <= 2, errors  # at most a call caught between drain and health check
    with psycopg.connect(db_url) as conn:
        (stored,) = conn.execute(
            "SELECT count(*) FROM beacons WHERE customer_id = %s", (customer_id,)).fetchone()
    assert stored == sent * 50


def _env_ports(worker) -> list[str]:
    """The port the worker serves on, from its environment (EDGESTATS_PORT)."""
    environ = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
    return [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"EDGESTATS_PORT=")]
