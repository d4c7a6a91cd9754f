"""Airflow 3 for the DAGs in dags/: its environment, and `make airflow` (api-server, scheduler,
dag-processor on the project's PostgreSQL, UI and REST API at http://127.0.0.1:8090)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from edgestats_stack import postgres
from edgestats_stack.processes import spawn

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PORT = int(os.environ.get("EDGESTATS_AIRFLOW_PORT", "8090"))
UNPAUSED = ("beacon_rollups", "maintenance", "usage_facts_hourly", "usage_facts_daily")


def airflow_env(home: Path, metadata_url: str, data_url: str) -> dict[str, str]:
    """Environment for every Airflow process: metadata DB, our DAGs, small footprint."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__PORT": str(PORT),
        # the execution API URL is not derived from the port (PLATFORM-NOTES §8)
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{PORT}/execution/",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "DATABASE_URL": data_url,
        "PYTHONPATH": os.pathsep.join([str(REPO / "services"), str(REPO / "gen")]),
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, check=False)


def _sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def _wait_api(timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    health = f"http://127.0.0.1:{PORT}/api/v2/monitor/health"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError("Airflow api-server did not start; see .run/logs/airflow-api-server.log")


def up(run_dir: Path, admin_url: str, data_url: str) -> None:
    """Migrate Airflow's metadata database, start its three processes, unpause our DAGs."""
    home = run_dir / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    metadata = _sqlalchemy_url(postgres.create_database(admin_url, "airflow"))
    env = airflow_env(home, metadata, data_url)
    migrated = run(env, "db", "migrate")
    if migrated.returncode != 0:
        raise RuntimeError(migrated.stderr[-2000:])
    for command in ("api-server", "scheduler", "dag-processor"):
        spawn(f"airflow-{command}", [AIRFLOW, command], run_dir, env, detach=True)
    _wait_api()
    run(env, "dags", "reserialize")
    for dag_id in UNPAUSED:
        run(env, "dags", "unpause", dag_id)
    passwords = home / "simple_auth_manager_passwords.json.generated"
    password = json.loads(passwords.read_text()).get("admin") if passwords.exists() else "?"
    print(f"Airflow UI and REST API: http://127.0.0.1:{PORT}  (user admin, password {password},"
          f" from {passwords})")
    print(f"{', '.join(UNPAUSED)} are unpaused; backfill with e.g.\n"
          f"  AIRFLOW_HOME={home} .venv/bin/airflow backfill create --dag-id beacon_rollups"
          " --from-date 2026-11-25T00:00:00+00:00 --to-date 2026-11-25T03:00:00+00:00")
