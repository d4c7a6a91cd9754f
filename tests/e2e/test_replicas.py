"""Read replicas (issue #15) through the gateway: a region whose primary has a streaming hot
standby reads from the standby while it is fresh, from the primary when the standby has
fallen behind by more than the freshness bound (its replay paused) or is down, and every
answer includes the beacons accepted before it (within the 5-second freshness contract).

Which database ran a query is seen in PostgreSQL itself: a slow SQL query (a cross join,
cancelled by its own timeout) shows up in the `pg_stat_activity` of the server running it.

The module runs a primary cluster (home and emea databases) and its standby of its own."""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
import pytest

from edgestats_core import replicas
from edgestats_core.tenancy.api_keys import create_customer_key
from edgestats_stack import postgres
from edgestats_stack.processes import free_ports
from edgestats_stack.stack import REPO, prepare_database, start_stack
from tests import oracle
from tests.builders import scenario, wire
from tests.compare import assert_same
from tests.e2e.api import Api
from tests.e2e.test_sql_hostile import running_on

pytestmark = pytest.mark.e2e
CUSTOMER = "c-replicated"
ME = f"CustomerId = '{CUSTOMER}'"
SLOW = ('SELECT COUNT(*) AS n FROM "sdk-emea-realtime" a, "sdk-emea-realtime" b,'
        f' "sdk-emea-realtime" c WHERE a.{ME} AND b.{ME} AND c.{ME}')


@dataclass
class Topology:
    run_dir: object
    primary: str   # the emea database on the primary
    standby: str   # the same database on the standby
    api: Api
    key: str
    beacons: list[dict]
    now: datetime


@pytest.fixture(scope="module")
def topology(frozen_now: datetime) -> Iterator[Topology]:
    if os.environ.get("DATABASE_URL"):
        pytest.skip("needs local clusters of its own")
    run_dir = REPO / ".run" / f"replicas-{uuid.uuid4().hex[:8]}"
    primary_port, standby_port = free_ports(2)
    admin = postgres.ensure_cluster(run_dir, primary_port, "primary")
    home = postgres.create_database(admin, "edgestats")
    emea = postgres.create_database(admin, "edgestats_emea")
    prepare_database(home, (("emea", emea),))
    with psycopg.connect(home) as conn:
        key = create_customer_key(conn, CUSTOMER, "emea", "advanced")
    standby = postgres.with_database(
        postgres.ensure_standby(run_dir, "standby", standby_port, primary_port), "edgestats_emea")
    env = {"EDGESTATS_FROZEN_NOW": frozen_now.isoformat(), "EDGESTATS_RESULT_CACHE_SECONDS": "0",
           "EDGESTATS_RATE_LIMIT": "1000000", "EDGESTATS_RATE_BURST": "1000000",
           "EDGESTATS_REGION_DATABASES": f"emea={emea}",
           "EDGESTATS_REGION_REPLICAS": f"emea={standby}"}
    stack = start_stack(run_dir, home, workers=1, env=env)
    try:
        with Api(stack.http_url) as api:
            made = Topology(run_dir, emea, standby, api, key, [], frozen_now)
            ingest(made, scenario(CUSTOMER, frozen_now, seed=61, sessions=10))
            yield made
    finally:
        stack.stop()
        for name in ("standby", "primary"):
            postgres.stop_cluster(run_dir, name)
            shutil.rmtree(postgres.cluster_dir(run_dir, name), ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def ingest(topology: Topology, beacons: list[dict]) -> None:
    response = topology.api.ingest(topology.key, [wire(b) for b in beacons])
    assert response.json() == {"accepted": len(beacons), "duplicates": 0, "rejected": []}
    topology.beacons += beacons


def running(url: str) -> int:
    """SQL queries running on the server (0 when it is down)."""
    try:
        return running_on(url)
    except psycopg.OperationalError:
        return 0


def served_by(topology: Topology) -> str:
    """Which server runs a slow SQL query sent now: 'standby' or 'primary'."""
    done = threading.Event()

    def send() -> None:
        with Api(topology.api.base_url) as api:
            api.sql(topology.key, SLOW, context={"timeout": 2500})
        done.set()

    worker = threading.Thread(target=send)
    worker.start()
    try:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline and not done.is_set():
            on_standby, on_primary = running(topology.standby), running(topology.primary)
            if on_standby or on_primary:
                assert not (on_standby and on_primary)
                return "standby" if on_standby else "primary"
            time.sleep(0.05)
        raise AssertionError("the slow query ran nowhere")
    finally:
        worker.join(10)


def settles_on(topology: Topology, server: str, tries: int = 3) -> bool:
    """`served_by` gives `server` within a few tries (the services' probes run every 0.2 s,
    later on a busy machine)."""
    return any(served_by(topology) == server for _ in range(tries))


def replayed_all(topology: Topology) -> bool:
    with psycopg.connect(topology.primary) as p, psycopg.connect(topology.standby) as s:
        written = p.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        return s.execute("SELECT pg_last_wal_replay_lsn() >= %s", (written,)).fetchone()[0]


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def assert_answers_everything(topology: Topology) -> None:
    api, key, now = topology.api, topology.key, topology.now
    for time_ in ("10m", "24h"):
        assert_same(api.get_json("/summary/agg", key, time=time_),
                    oracle.summary_agg(topology.beacons, CUSTOMER, now, time_))


def test_a_fresh_standby_serves_the_reads(topology):
    wait_for(lambda: replayed_all(topology))
    time.sleep(2 * replicas.PROBE_SECONDS)
    assert settles_on(topology, "standby")
    assert_answers_everything(topology)


def test_a_standby_behind_is_not_read_and_answers_stay_fresh(topology):
    with psycopg.connect(topology.standby, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
    try:
        late = scenario(CUSTOMER, topology.now, seed=62, sessions=2)
        ingest(topology, late)
        # within the bound the standby may still answer; past it only the primary does
        time.sleep(replicas.MAX_LAG_SECONDS + 2 * replicas.PROBE_SECONDS)
        assert_answers_everything(topology)
        assert served_by(topology) == "primary"
    finally:
        with psycopg.connect(topology.standby, autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_resume()")
    wait_for(lambda: replayed_all(topology))
    time.sleep(2 * replicas.PROBE_SECONDS)
    assert settles_on(topology, "standby")


def test_beacons_appear_within_the_freshness_bound(topology):
    """Accepted beacons are in every answer within 5 seconds, standby or not."""
    newest = topology.now - timedelta(seconds=20)
    extra = [dict(b, SessionId=f"fresh-{i}", __time=newest)
             for i, b in enumerate(topology.beacons[:5])]
    ingest(topology, extra)
    accepted = time.monotonic()
    expected = oracle.summary_agg(topology.beacons, CUSTOMER, topology.now, "10m")
    while not same(topology.api.get_json("/summary/agg", topology.key, time="10m"), expected):
        assert time.monotonic() - accepted < 5, "not fresh within 5 s"
        time.sleep(0.1)


def same(actual: object, expected: object) -> bool:
    try:
        assert_same(actual, expected)
    except AssertionError:
        return False
    return True


def test_a_standby_down_sends_reads_to_the_primary(topology):
    postgres.stop_cluster(topology.run_dir, "standby")
    time.sleep(replicas.STALE_SECONDS + 2 * replicas.PROBE_SECONDS)
    assert_answers_everything(topology)
    assert topology.api.get("/ping/db").status_code == 200
    assert served_by(topology) == "primary"
