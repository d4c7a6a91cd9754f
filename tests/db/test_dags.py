"""The DAG folder imports cleanly, the DAGs run against real PostgreSQL, and Airflow configured
as `make airflow` does answers the commands it prints, the commands in docs/rollups.md and
the UI's Trigger button.

Airflow runs in subprocesses (its settings are read at import) with an AIRFLOW_HOME written by
`edgestats_stack.airflow.configure` and a metadata database of its own; the DAGs' work goes to
the test session's PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry, multiprocess

from edgestats_stack import postgres
from edgestats_stack.airflow import (
    AIRFLOW,
    REPO,
    backfill_command,
    configure,
    run,
    sqlalchemy_url,
    wait_api,
)
from edgestats_stack.processes import free_port, spawn
from metrics_service import rollups
from tests import usage_oracle
from tests.builders import beacon, session_profile
from tests.db.test_rollups import store
from tests.fixtures.stack import migrated_database
from tests.ops_config import every_metric_name

pytestmark = pytest.mark.db
# the dashboard's DAG-run metrics: the scheduler's (airflow_metrics: dagrun.duration.*)
DAGRUN = "airflow_dagrun_"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Airflow:
    home: Path
    env: dict[str, str]
    port: int


@pytest.fixture(scope="module")
def db_url(db_url: str) -> Iterator[str]:
    """A migrated database of this module's own: its DAG runs publish hours and compute
    usage days for every customer and user, which must not change what other tests read."""
    with migrated_database(postgres.with_database(db_url, "postgres"), "edgestats_dags") as url:
        yield url


@pytest.fixture(scope="module")
def airflow(db_url, tmp_path_factory) -> Iterator[Airflow]:
    """An AIRFLOW_HOME configured and migrated as `make airflow` does, DAGs serialized."""
    home = tmp_path_factory.mktemp("airflow")
    admin = postgres.with_database(db_url, "postgres")
    name = f"airflow_test_{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = configure(home, sqlalchemy_url(postgres.create_database(admin, name)), db_url, port)
    migrated = run(env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    serialized = run(env, "dags", "reserialize")
    assert serialized.returncode == 0, serialized.stderr[-2000:]
    yield Airflow(home, env, port)
    postgres.drop_database(admin, name)


def bare_env() -> dict[str, str]:
    """An operator's shell: no Airflow setting, no DATABASE_URL, no PYTHONPATH."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("AIRFLOW") and k not in ("DATABASE_URL", "PYTHONPATH")}


def shell(command: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=bare_env(), capture_output=True,
                          text=True, check=False)


def test_every_dag_imports(airflow):
    errors = run(airflow.env, "dags", "list-import-errors", "--output", "json")
    assert errors.returncode == 0, errors.stderr[-2000:]
    # stdout may start with warnings; the answer is its last line
    assert errors.stdout.strip().splitlines()[-1] in ("[]", "No data found"), errors.stdout
    listed = run(airflow.env, "dags", "list", "--output", "json")
    assert {"beacon_rollups", "maintenance"} <= {d["dag_id"] for d in _json(listed.stdout)}


def _json(text: str) -> list[dict]:
    """The JSON array printed last (after any warnings)."""
    return json.loads(text.strip().splitlines()[-1])


def _store_beacons(db_url: str, customer_id: str, hour: datetime, count: int) -> None:
    rng = random.Random(count)
    profile = session_profile(0, ["ch-1"], rng)
    beacons = [beacon(customer_id, profile, hour + timedelta(seconds=5 * (i + 1)), rng)
               for i in range(count)]
    store(db_url, customer_id, beacons, datetime.now(UTC))


def _hour_rows(db_url: str, customer_id: str) -> dict[datetime, int]:
    with psycopg.connect(db_url) as conn:
        return dict(conn.execute(
            'SELECT "time", sum(beacons)::int FROM beacons_hour WHERE customer_id = %s GROUP BY 1',
            (customer_id,),
        ).fetchall())


def test_beacon_rollups_publishes_its_hour(airflow, db_url):
    """`dags test` with a date runs the hour ending at it (Airflow's manual data interval)."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=12)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    _store_beacons(db_url, customer_id, end - HOUR, 100)
    result = run(airflow.env, "dags", "test", "beacon_rollups", end.isoformat())
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert _hour_rows(db_url, customer_id) == {end - HOUR: 100}


def test_beacon_rollups_rolls_every_region_database(airflow, db_url):
    """With region databases configured, each region's hour is published in its own
    database (a mapped task per database)."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=14)
    admin = postgres.with_database(db_url, "postgres")
    with migrated_database(admin, "edgestats_emea") as emea, \
            migrated_database(admin, "edgestats_apac") as apac:
        customers = {}
        for url, count in ((emea, 40), (apac, 70)):
            customers[url] = f"c-{uuid.uuid4().hex[:10]}"
            _store_beacons(url, customers[url], end - HOUR, count)
        env = {**airflow.env,
               "AIRFLOW__EDGESTATS__REGION_DATABASES": f"emea={emea} apac={apac}"}
        result = run(env, "dags", "test", "beacon_rollups", end.isoformat())
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert _hour_rows(emea, customers[emea]) == {end - HOUR: 40}
        assert _hour_rows(apac, customers[apac]) == {end - HOUR: 70}
        for url in (emea, apac):
            assert _hour_rows(db_url, customers[url]) == {}


def test_maintenance_runs(airflow):
    result = run(airflow.env, "dags", "test", "maintenance", datetime.now(UTC).isoformat())
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_printed_backfill_command_lists_its_hours(airflow):
    """The exact text `make airflow` prints, plus --dry-run, in a shell with no other setting."""
    now = datetime.now(UTC)
    listed = shell(backfill_command(airflow.home, now) + " --dry-run")
    assert listed.returncode == 0, (listed.stdout + listed.stderr)[-3000:]
    last = now.replace(minute=0, second=0, microsecond=0) - HOUR
    assert _dry_run_hours(listed.stdout) == [last - 2 * HOUR, last - HOUR, last]


def _dry_run_hours(output: str) -> list[datetime]:
    """The logical dates in the table `backfill create --dry-run` prints."""
    dates = re.findall(r"^\| (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00) ", output, re.MULTILINE)
    return [datetime.fromisoformat(d) for d in dates]


def _documented_commands(path: Path) -> list[str]:
    """The `airflow` command lines of a file's ```sh blocks (continuations joined)."""
    blocks = "\n".join(re.findall(r"```sh\n(.*?)```", path.read_text(), re.DOTALL))
    return [line for line in blocks.replace("\\\n", "").splitlines() if "bin/airflow " in line]


def test_documented_commands_work_as_written(airflow, tmp_path):
    """Every command of docs/rollups.md and the DAG's doc, from a checkout-like directory:
    .run/airflow is the configured home, .venv the project's."""
    (tmp_path / ".run").mkdir()
    (tmp_path / ".run" / "airflow").symlink_to(airflow.home)
    (tmp_path / ".venv").symlink_to(Path(AIRFLOW).parents[1])
    commands = [*_documented_commands(REPO / "docs" / "rollups.md"),
                *_documented_commands(REPO / "dags" / "beacon_rollups.py")]
    assert len(commands) == 4
    for command in dict.fromkeys(commands):
        done = shell(command, cwd=tmp_path)
        assert done.returncode == 0, (command, (done.stdout + done.stderr)[-3000:])
        if "backfill create" in command:
            start = datetime(2026, 11, 25, tzinfo=UTC)
            assert _dry_run_hours(done.stdout) == [start + h * HOUR for h in range(4)]


def test_airflow_metrics_reach_the_prometheus_directory(airflow, db_url, tmp_path):
    """A DAG run's task metrics, through our StatsD client, land in the multiprocess
    directory the host's exporter serves, with Airflow's tags as labels."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=15)
    env = {**airflow.env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    result = run(env, "dags", "test", "beacon_rollups", end.isoformat())
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
    samples = [s for family in registry.collect() for s in family.samples]
    finished = [s for s in samples if s.name == "airflow_ti_finish_total"
                and s.labels.get("dag_id") == "beacon_rollups"]
    assert finished and all(s.labels["state"] == "success" for s in finished)
    durations = [s for s in samples if s.name == "airflow_task_duration_seconds_count"
                 and s.labels.get("dag_id") == "beacon_rollups"]
    assert sum(s.value for s in durations) == sum(s.value for s in finished)
    # what the dashboard's task panels read is there (`dags test` times no DAG run: the
    # scheduler's are checked in test_ui_trigger_with_and_without_logical_date)
    task_names = {n for n in every_metric_name()
                  if n.startswith("airflow_") and not n.startswith(DAGRUN)}
    assert task_names and task_names <= {s.name for s in samples}


# The CLI tests above run before `airflow_api` starts a scheduler on the same metadata
# database: `dags test` racing the scheduler over a just-triggered run of the same DAG
# ended once in CI with an OperationalError of Airflow's metadata database.


class AirflowApi:
    """Airflow's REST API as the UI calls it: a SimpleAuthManager token, JSON bodies;
    `metrics_dir`: where the scheduler's metrics go (as `make airflow` sets it), since
    `started` (this module's scheduler; None for one whose metrics are not read)."""

    def __init__(self, port: int, password: str, metrics_dir: Path | None = None,
                 started: datetime | None = None) -> None:
        self.metrics_dir, self.started = metrics_dir, started
        self.base = f"http://127.0.0.1:{port}"
        self.token = ""
        self.token = self.call("POST", "/auth/token",
                               {"username": "admin", "password": password})["access_token"]

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


@pytest.fixture(scope="module")
def airflow_api(airflow, tmp_path_factory) -> Iterator[AirflowApi]:
    """api-server and scheduler running on the configured home, beacon_rollups unpaused,
    their metrics in a Prometheus multiprocess directory of their own."""
    metrics_dir = tmp_path_factory.mktemp("airflow-prometheus")
    env = {**airflow.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    started = datetime.now(UTC)
    processes = [spawn(f"airflow-{command}", [AIRFLOW, command], airflow.home, env)
                 for command in ("api-server", "scheduler")]
    try:
        wait_api(airflow.port)
        passwords = airflow.home / "simple_auth_manager_passwords.json.generated"
        api = AirflowApi(airflow.port, json.loads(passwords.read_text())["admin"],
                         metrics_dir, started)
        api.call("PATCH", "/api/v2/dags/beacon_rollups", {"is_paused": False})
        yield api
    finally:
        for process in processes:  # each leads its own session, with its workers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.popen.wait()


# the body the UI's Trigger form posts (Airflow 3.3.2) when no field is filled in
UI_TRIGGER = {"conf": {}, "data_interval_start": None, "data_interval_end": None,
              "logical_date": None, "partition_key": None}


def _current_hour() -> datetime:
    """The start of the current UTC hour, with at least a minute of it left: the last closed
    hour (and day) must not change while a test's runs are triggered."""
    if datetime.now(UTC).minute == 59:
        time.sleep(61 - datetime.now(UTC).second)
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def test_ui_trigger_with_and_without_logical_date(airflow_api, db_url):
    now = _current_hour()
    closed, dated, late = now - HOUR, now - 6 * HOUR, now - 10 * HOUR
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    _store_beacons(db_url, customer_id, closed, 3)
    _store_beacons(db_url, customer_id, dated - HOUR, 4)
    _store_beacons(db_url, customer_id, late, 1)
    rollups.roll_up_interval(db_url, late, late + HOUR)
    _store_beacons(db_url, customer_id, late + timedelta(minutes=30), 2)  # late data

    logical = (dated + timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    runs = {date: airflow_api.call("POST", "/api/v2/dags/beacon_rollups/dagRuns",
                                   {**UI_TRIGGER, "logical_date": date})
            for date in (None, logical)}
    assert runs[None]["logical_date"] is None and runs[None]["data_interval_start"] is None
    assert datetime.fromisoformat(runs[logical]["data_interval_start"]) == dated - HOUR
    assert _wait_for(airflow_api, "beacon_rollups", runs.values()) == ["success", "success"]

    # one mapped roll_up_hour per region database: here one database holds every region
    rolled = {date: _xcom(airflow_api, "beacon_rollups", run["dag_run_id"], "roll_up_hour", 0)
              for date, run in runs.items()}
    assert list(rolled[None]) == [closed.isoformat()] and rolled[None][closed.isoformat()] >= 3
    assert list(rolled[logical]) == [(dated - HOUR).isoformat()]
    # the late hour is re-rolled by the first run that looks (a manual or the scheduled one)
    assert _hour_rows(db_url, customer_id) == {closed: 3, dated - HOUR: 4, late: 3}
    # the scheduler timed every run it finished (these two, the scheduled one, the one
    # test_documented_commands_work_as_written queued) for the dashboard's DAG-run panel
    timed, finished = _dag_run_durations(airflow_api, "beacon_rollups")
    assert timed.keys() == finished.keys() and finished["manual"][0] >= 2, (timed, finished)
    for run_type, (count, seconds) in finished.items():
        assert timed[run_type][0] == count
        assert timed[run_type][1] == pytest.approx(seconds, abs=0.01 * count)
    dagrun_names = {n for n in every_metric_name() if n.startswith(DAGRUN)}
    assert dagrun_names and dagrun_names <= {s.name for s in _samples(airflow_api.metrics_dir)}


def _dag_run_durations(api: AirflowApi, dag_id: str, timeout: float = 20.0):
    """({run_type: (count, seconds)} of `airflow_dagrun_duration_success_seconds{dag_id}`,
    the same of the DAG's runs the API lists as succeeded since the scheduler started, not
    `dags test`'s), once the counts agree (or at the timeout): runs still going may finish
    between the two reads."""
    deadline = time.monotonic() + timeout
    while True:
        timed: dict[str, list[float]] = {}
        for sample in _samples(api.metrics_dir):
            if (sample.name.startswith("airflow_dagrun_duration_success_seconds_")
                    and sample.labels.get("dag_id") == dag_id):
                kind = sample.name.rsplit("_", 1)[-1]
                if kind in ("count", "sum"):
                    entry = timed.setdefault(sample.labels["run_type"], [0, 0.0])
                    entry[kind == "sum"] += sample.value
        finished: dict[str, list[float]] = {}
        listed = api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?state=success")
        for dag_run in listed["dag_runs"]:
            start, end = (datetime.fromisoformat(dag_run[k]) for k in ("start_date", "end_date"))
            if end > api.started:
                entry = finished.setdefault(dag_run["run_type"], [0, 0.0])
                entry[0] += 1
                entry[1] += (end - start).total_seconds()
        counts_agree = {k: v[0] for k, v in timed.items()} == {
            k: v[0] for k, v in finished.items()}
        if counts_agree or time.monotonic() > deadline:
            return ({k: tuple(v) for k, v in timed.items()},
                    {k: tuple(v) for k, v in finished.items()})
        time.sleep(0.5)


def _ui_date(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_ui_trigger_usage_facts_with_and_without_logical_date(airflow_api, db_url):
    """Without a logical date usage_facts_hourly computes the last closed hour and
    usage_facts_daily the last closed day with its billing periods; with one, the interval
    Airflow infers (the hour or day ending at the date floored to it)."""
    now = _current_hour()
    today = now.replace(hour=0)
    closed_hour, dated_hour = now - HOUR, now - 7 * HOUR
    closed_day, dated_day = today - DAY, today - 4 * DAY
    e = usage_oracle.event
    hourly_user = usage_oracle.create_user(db_url, 0, today - 9 * DAY)
    usage_oracle.insert(db_url, hourly_user, [
        e(hourly_user, "bandwidth", closed_hour + timedelta(minutes=5), 10, None, "t"),
        e(hourly_user, "bandwidth", dated_hour + timedelta(minutes=5), 20, None, "t")])
    daily_user = usage_oracle.create_user(db_url, 0, today - 2 * DAY)  # after dated_day
    usage_oracle.insert(db_url, daily_user, [
        e(daily_user, "storage", closed_day + 2 * HOUR, 300),
        e(daily_user, "conversion", dated_day + 3 * HOUR, 40)])
    dated = {"usage_facts_hourly": dated_hour + HOUR + timedelta(minutes=20),
             "usage_facts_daily": dated_day + DAY + 5 * HOUR}
    runs = {}
    for dag_id, date in dated.items():
        airflow_api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        runs[dag_id] = [airflow_api.call("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                                         {**UI_TRIGGER, "logical_date": logical})
                        for logical in (None, _ui_date(date))]
    for dag_id, (plain, with_date) in runs.items():
        assert plain["logical_date"] is None and plain["data_interval_start"] is None
        assert _wait_for(airflow_api, dag_id, (plain, with_date)) == ["success", "success"]

    hours = [_xcom(airflow_api, "usage_facts_hourly", r["dag_run_id"], "compute_tag_hours")
             for r in runs["usage_facts_hourly"]]
    assert [list(h) for h in hours] == [[closed_hour.isoformat()], [dated_hour.isoformat()]]
    days = [_xcom(airflow_api, "usage_facts_daily", r["dag_run_id"], "compute_days")
            for r in runs["usage_facts_daily"]]
    assert [list(d) for d in days] == [[closed_day.isoformat()], [dated_day.isoformat()]]
    with psycopg.connect(db_url) as conn:
        tag_hours = conn.execute(
            "SELECT hour, bytes FROM usage_tag_hour_facts WHERE user_id = %s",
            (hourly_user.user_id,)).fetchall()
        daily = conn.execute(
            "SELECT day, type, bytes FROM usage_daily_facts WHERE user_id = %s",
            (daily_user.user_id,)).fetchall()
        totals = conn.execute(
            "SELECT period_start, type, bytes FROM usage_period_totals WHERE user_id = %s",
            (daily_user.user_id,)).fetchall()
    assert dict(tag_hours) == {closed_hour: 10, dated_hour: 20}
    assert sorted(daily) == [(dated_day.date(), "conversion", 40),
                             (closed_day.date(), "storage", 300)]
    # the billing period the last closed day touches (dated_day is before the subscription)
    assert totals == [(today - 2 * DAY, "storage", 300)]


def _wait_for(api: AirflowApi, dag_id: str, runs, timeout: float = 180.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        states = [api.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{r['dag_run_id']}")["state"]
                  for r in runs]
        if all(s in ("success", "failed") for s in states) or time.monotonic() > deadline:
            return states
        time.sleep(1)


def _xcom(api: AirflowApi, dag_id: str, run_id: str, task_id: str, map_index: int = -1):
    """A task's return value (map_index: of one mapped task instance, e.g. a region's)."""
    path = (f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
            f"/xcomEntries/return_value?map_index={map_index}")
    return api.call("GET", path)["value"]


def _samples(directory: Path) -> list:
    """Every sample the exporter would serve from a multiprocess directory."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return [s for family in registry.collect() for s in family.samples]
