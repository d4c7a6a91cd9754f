"""PostgreSQL down (CONTRACT §9): 503 within 2 s, /ping still pong, and recovery without a restart.

Runs its own PostgreSQL cluster (so stopping it disturbs no other test) and its own stack.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

from edgestats_core.tenancy.api_keys import create_customer_key
from edgestats_stack import postgres
from edgestats_stack.processes import free_port
from edgestats_stack.stack import REPO, prepare_database, start_stack
from tests.e2e.api import Api

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def outage():
    if os.environ.get("DATABASE_URL"):
        pytest.skip("needs a local cluster it may stop (DATABASE_URL is set)")
    # under .run/ rather than pytest's tmp (mode 700): PostgreSQL runs as its own user
    run_dir = REPO / ".run" / f"outage-{uuid.uuid4().hex[:8]}"
    admin = postgres.ensure_cluster(run_dir, free_port())
    url = postgres.create_database(admin, "edgestats")
    prepare_database(url)
    import psycopg

    with psycopg.connect(url) as conn:
        key = create_customer_key(conn, "outage-customer", "emea", "lite")
    # no result cache: the answers must come from the (stopped) database
    stack = start_stack(run_dir, url, workers=1, env={"EDGESTATS_RESULT_CACHE_SECONDS": "0"})
    with Api(stack.http_url) as api:
        yield api, key, run_dir, url
    stack.stop()
    postgres.stop_cluster(run_dir)
    shutil.rmtree(postgres.cluster_dir(run_dir), ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)


def test_503_within_two_seconds_then_recovery(outage):
    api, key, run_dir, _ = outage
    assert api.get("/summary", key, time="1h").status_code == 200
    postgres.stop_cluster(run_dir)
    try:
        for path, params in [("/summary", {"time": "1h"}), ("/stats/throughput/agg",
                                                             {"time": "10m", "source": "cdn"})]:
            started = time.monotonic()
            # a new key is resolved from the database too: both paths must fail fast
            response = api.get(path, key, **params)
            elapsed = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.json() == {"detail": "Service Unavailable"}
            assert elapsed < 2.5, elapsed
        assert api.get("/ping").text == "pong"
        db_ping = api.get("/ping/db")
        assert db_ping.status_code == 503 and db_ping.json() == {"detail": "Service Unavailable"}
        beacon = {"__time": int(time.time()) * 1000, "CustomerId": "outage-customer",
                  "SessionId": "s", "Source": "cdn"}
        ingest = api.ingest(key, [beacon])  # the whole batch, never a partial accept
        assert ingest.status_code == 503 and ingest.json() == {"detail": "Service Unavailable"}
    finally:
        postgres.ensure_cluster(run_dir, 0)  # port already configured at initdb
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if api.get("/summary", key, time="1h").status_code == 200:
            break
        time.sleep(0.5)
    assert api.get("/summary", key, time="1h").status_code == 200
    assert api.get("/ping/db").text == "pong"


def test_a_query_over_its_time_budget_is_cancelled_with_504(db_url, frozen_now, tenants,
                                                             tmp_path_factory):
    """A 1 ms statement budget: PostgreSQL cancels the query; the answer is the documented 504."""
    _, key = tenants.customer("advanced")
    env = {"EDGESTATS_FROZEN_NOW": frozen_now.isoformat(), "EDGESTATS_STATEMENT_TIMEOUT_MS": "1",
           "EDGESTATS_KEY_CACHE_SECONDS": "60"}
    stack = start_stack(Path(tmp_path_factory.mktemp("slow")), db_url, env=env, workers=1)
    try:
        with Api(stack.http_url) as api:
            answers = [api.get("/stats/os", key, time="2M") for _ in range(3)]
        # the key lookup itself may be the statement that times out: 504 either way
        assert {a.status_code for a in answers} == {504}, [a.text for a in answers]
        assert answers[-1].json()["detail"].startswith("Gateway Timeout")
    finally:
        stack.stop()


def _kill_cluster(run_dir: Path) -> None:
    """SIGKILL the postmaster and every backend: a crash, not a shutdown."""
    import signal
    import subprocess

    pid = int((postgres.cluster_dir(run_dir) / "data" / "postmaster.pid").read_text().split()[0])
    listed = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    os.kill(pid, signal.SIGKILL)  # first, so it cannot restart its children
    for child in map(int, listed.split()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in [pid, *map(int, listed.split())]):
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def send_through_a_crash(
    api: Api, key: str, path: str, batches: list[list[dict]], run_dir: Path
) -> tuple[list[dict], list[str]]:
    """Post the batches in order from a client that retries each on 5xx and connection errors
    (as an SDK or producer does) while the cluster is SIGKILLed after 5 accepted batches and
    restarted (crash recovery). Returns the 200 answers and the failures met on the way."""
    import threading

    import httpx

    answers: list[dict] = []
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=api.base_url, timeout=10) as http:
            for batch in batches:
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    try:
                        response = http.post(path, json=batch, headers=api.auth(key))
                        if response.status_code == 200:
                            answers.append(response.json())
                            break
                        assert response.status_code >= 500, response.text
                        failures.append(str(response.status_code))
                    except httpx.TransportError as exc:
                        failures.append(type(exc).__name__)
                    time.sleep(0.2)

    sender = threading.Thread(target=client)
    sender.start()
    deadline = time.monotonic() + 60
    while len(answers) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(answers) >= 5
    _kill_cluster(run_dir)
    time.sleep(1)
    postgres.ensure_cluster(run_dir, 0)  # crash recovery, same port
    sender.join(timeout=180)
    assert not sender.is_alive()
    return answers, failures


def test_sigkill_during_ingest_loses_and_doubles_nothing(outage):
    """A client that retries on 5xx and connection errors, as an SDK does, while PostgreSQL is
    killed mid-stream: the stored beacons are exactly the distinct beacons sent."""
    import psycopg

    api, key, run_dir, url = outage
    now = int(time.time()) // 5 * 5
    batches = [
        [{"__time": (now - 5 * (i % 700)) * 1000, "CustomerId": "outage-customer",
          "SessionId": f"kill-{b}-{i}", "Source": "p2p", "ViewingTime": 5}
         for i in range(500)]
        for b in range(40)
    ]
    answers, _ = send_through_a_crash(api, key, "/analytics/v1/ingest/beacons", batches,
                                      run_dir)
    assert len(answers) == len(batches) and all(a["accepted"] == 500 for a in answers)
    with psycopg.connect(url) as conn:
        stored, distinct = conn.execute(
            'SELECT count(*), count(DISTINCT (session_id, "time")) FROM beacons'
            " WHERE customer_id = 'outage-customer' AND session_id LIKE 'kill-%'").fetchone()
    assert stored == distinct == sum(len(b) for b in batches)
