"""The DAG folder imports cleanly and the DAGs run (`airflow dags test`) against real PostgreSQL.

Airflow runs in a subprocess (its settings are read at import) with a throwaway SQLite
metadata database; the DAGs' own work goes to the test session's PostgreSQL database.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from edgestats_stack.airflow import airflow_env, run
from tests.builders import beacon, session_profile
from tests.db.test_rollups import store

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def env(db_url, tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow")
    environment = airflow_env(home, f"sqlite:///{home}/airflow.db", db_url)
    migrated = run(environment, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    return environment


def test_every_dag_imports(env):
    errors = run(env, "dags", "list-import-errors", "--output", "json")
    assert errors.returncode == 0, errors.stderr[-2000:]
    # stdout may start with warnings; the answer is its last line
    assert errors.stdout.strip().splitlines()[-1] in ("[]", "No data found"), errors.stdout
    assert run(env, "dags", "reserialize").returncode == 0
    listed = run(env, "dags", "list", "--output", "json")
    assert {"beacon_rollups", "maintenance"} <= {d["dag_id"] for d in _json(listed.stdout)}


def _json(text: str) -> list[dict]:
    """The JSON array printed last (after any warnings)."""
    return json.loads(text.strip().splitlines()[-1])


def test_beacon_rollups_publishes_its_hour(env, db_url):
    """`dags test` with an end date runs the interval before it, like the scheduler."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=12)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    rng = random.Random(3)
    profile = session_profile(0, ["ch-1"], rng)
    beacons = [beacon(customer_id, profile, end - timedelta(seconds=5 * (i + 1)), rng)
               for i in range(100)]
    store(db_url, customer_id, beacons, datetime.now(UTC))
    result = run(env, "dags", "test", "beacon_rollups", end.isoformat())
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    with psycopg.connect(db_url) as conn:
        hour_rows = conn.execute(
            'SELECT "time", sum(beacons)::int FROM beacons_hour WHERE customer_id = %s GROUP BY 1',
            (customer_id,),
        ).fetchall()
    assert hour_rows == [(end - timedelta(hours=1), 100)]


def test_maintenance_runs(env):
    result = run(env, "dags", "test", "maintenance", datetime.now(UTC).isoformat())
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
