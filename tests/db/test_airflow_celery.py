"""The CeleryExecutor option of `make airflow` (EDGESTATS_AIRFLOW_EXECUTOR=celery): Airflow
configured by `edgestats_stack.airflow.configure` with the celery executor, redis-server and
`airflow celery worker` started as `make airflow` starts them, and a beacon_rollups run that
the worker executes (not the scheduler, not the CLI).

Airflow runs in subprocesses with a metadata database of its own; the DAG's work goes to a
migrated database of this module's own (a run rolls up an hour for every customer).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from edgestats_stack import postgres
from edgestats_stack.airflow import (
    AIRFLOW,
    broker_password,
    configure,
    run,
    sqlalchemy_url,
    start_redis,
    wait_api,
)
from edgestats_stack.processes import Process, free_ports, spawn
from tests.db.test_dags import UI_TRIGGER, AirflowApi, _hour_rows, _store_beacons
from tests.fixtures.stack import migrated_database

pytestmark = pytest.mark.db
HOUR = timedelta(hours=1)
WORKER_NAME = "edgestats-test"


@dataclass(frozen=True)
class CeleryAirflow:
    api: AirflowApi
    metadata_url: str  # for psycopg
    worker_log: Path


@pytest.fixture(scope="module")
def db_url(db_url: str) -> Iterator[str]:
    with migrated_database(postgres.with_database(db_url, "postgres"), "edgestats_celery") as url:
        yield url


@pytest.fixture(scope="module")
def celery_airflow(
    db_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryAirflow]:
    """redis-server, api-server (the workers' execution API), scheduler and one Celery worker
    on an AIRFLOW_HOME configured with the celery executor; beacon_rollups unpaused."""
    home = tmp_path_factory.mktemp("airflow-celery")
    admin = postgres.with_database(db_url, "postgres")
    name = f"airflow_celery_{uuid.uuid4().hex[:8]}"
    metadata = postgres.create_database(admin, name)
    api_port, redis_port, log_port = free_ports(3)
    env = configure(home, sqlalchemy_url(metadata), db_url, api_port, executor="celery",
                    broker_port=redis_port)
    env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(log_port)  # not a shared default
    processes: list[Process] = []
    try:
        for args in (("db", "migrate"), ("dags", "reserialize")):
            done = run(env, *args)
            assert done.returncode == 0, done.stderr[-2000:]
        processes.append(start_redis(home, broker_password(home / "airflow.cfg"), redis_port))
        worker = ["celery", "worker", "--celery-hostname", f"{WORKER_NAME}@%h"]
        for command in (["api-server"], ["scheduler"], worker):
            processes.append(spawn(f"airflow-{'-'.join(command[:2])}", [AIRFLOW, *command],
                                   home, env))
        wait_api(api_port)
        unpaused = run(env, "dags", "unpause", "beacon_rollups")
        assert unpaused.returncode == 0, unpaused.stderr[-2000:]
        passwords = home / "simple_auth_manager_passwords.json.generated"
        api = AirflowApi(api_port, json.loads(passwords.read_text())["admin"])
        yield CeleryAirflow(api, metadata, home / "logs" / "airflow-celery-worker.log")
    finally:
        for process in processes:  # each leads its own session, with its children
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.popen.wait()
        postgres.drop_database(admin, name)


def _run_state(metadata_url: str, run_id: str, timeout: float = 75.0) -> str | None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(metadata_url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT state FROM dag_run WHERE dag_id = 'beacon_rollups'"
                               " AND run_id = %s", (run_id,)).fetchone()
            state = row[0] if row else None
            if state in ("success", "failed") or time.monotonic() > deadline:
                return state
            time.sleep(0.5)


def test_beacon_rollups_runs_on_the_celery_worker(celery_airflow, db_url):
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 12 * HOUR
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    _store_beacons(db_url, customer_id, end - HOUR, 100)
    # as the UI's Trigger with a logical date: the hour ending at it (`airflow dags trigger
    # --logical-date` would roll the last closed hour: the CLI infers the interval from now)
    run_id = f"celery_test_{uuid.uuid4().hex[:8]}"
    celery_airflow.api.call("POST", "/api/v2/dags/beacon_rollups/dagRuns", {
        **UI_TRIGGER, "dag_run_id": run_id, "logical_date": end.strftime("%Y-%m-%dT%H:%M:%SZ")})

    state = _run_state(celery_airflow.metadata_url, run_id)
    worker_log = celery_airflow.worker_log.read_text(errors="replace")
    assert state == "success", worker_log[-3000:]
    with psycopg.connect(celery_airflow.metadata_url) as conn:
        tasks = conn.execute("SELECT task_id, state, external_executor_id FROM task_instance"
                             " WHERE dag_id = 'beacon_rollups' AND run_id = %s",
                             (run_id,)).fetchall()
    # the region databases, then a roll-up and a late re-roll mapped over them (one here)
    assert sorted(task for task, _, _ in tasks) == [
        "databases", "re_roll_late_hours", "roll_up_hour"]
    for task_id, task_state, celery_task_id in tasks:
        assert task_state == "success"
        # the Celery task id the scheduler got back, and the worker that received that task
        assert celery_task_id, task_id
        received = [line for line in worker_log.splitlines()
                    if celery_task_id in line and "Executing workload in Celery" in line]
        assert received and run_id in received[0] and task_id in received[0], worker_log[-3000:]
    assert f"{WORKER_NAME}@" in worker_log
    assert _hour_rows(db_url, customer_id) == {end - HOUR: 100}
