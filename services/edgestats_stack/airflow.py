"""Airflow 3 for the DAGs in dags/: its configuration (AIRFLOW_HOME/airflow.cfg, so any `airflow`
command needs only AIRFLOW_HOME), and `make airflow` (api-server, scheduler, dag-processor on the
project's PostgreSQL, UI and REST API at http://127.0.0.1:8090).

EDGESTATS_AIRFLOW_EXECUTOR picks the executor: `local` (default, LocalExecutor: tasks run on this
host) or `celery` (CeleryExecutor: tasks queued in a local redis-server, run by `airflow celery
worker` processes, one started here, more on any host with the same airflow.cfg)."""

from __future__ import annotations

import base64
import configparser
import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edgestats_core import dag_settings
from edgestats_stack import postgres
from edgestats_stack.processes import Process, spawn

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PORT = int(os.environ.get("EDGESTATS_AIRFLOW_PORT", "8090"))
REDIS_PORT = int(os.environ.get("EDGESTATS_REDIS_PORT", "6390"))
# the address other hosts reach this one at (broker and execution API); loopback: one host
HOST = os.environ.get("EDGESTATS_AIRFLOW_HOST", "127.0.0.1")
UNPAUSED = ("beacon_rollups", "maintenance", "usage_facts_hourly", "usage_facts_daily")
EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}


def executor_choice() -> str:
    """EDGESTATS_AIRFLOW_EXECUTOR: `local` (the default) or `celery`."""
    choice = os.environ.get("EDGESTATS_AIRFLOW_EXECUTOR", "local")
    if choice not in EXECUTORS:
        raise ValueError(f"EDGESTATS_AIRFLOW_EXECUTOR={choice!r}: use {' or '.join(EXECUTORS)}")
    return choice


def airflow_settings(
    metadata_url: str, data_url: str, port: int, executor: str = "local",
    broker_port: int = REDIS_PORT, host: str = "127.0.0.1", broker_password: str = "",
) -> dict[str, dict[str, str]]:
    """airflow.cfg sections for every Airflow process and command: metadata DB, our DAGs and
    their data DB, executor, small footprint. `host` is the address workers reach the broker
    and the execution API at."""
    settings = {
        "core": {
            "dags_folder": str(REPO / "dags"),
            "load_examples": "False",
            "executor": EXECUTORS[executor],
            "parallelism": "2",
            # the execution API URL is not derived from the port (PLATFORM-NOTES §8)
            "execution_api_server_url": f"http://{host}:{port}/execution/",
            "simple_auth_manager_users": "admin:admin",
        },
        "database": {"sql_alchemy_conn": metadata_url},
        "api": {"workers": "1", "port": str(port)},
        "dag_processor": {"parsing_processes": "1"},
        # Airflow's metrics through our StatsD client into Prometheus (airflow_metrics), its
        # tags as labels
        "metrics": {"statsd_on": "True", "statsd_influxdb_enabled": "True",
                    "statsd_custom_client_path":
                        "edgestats_stack.airflow_metrics.PrometheusStatsClient"},
        # region databases as EDGESTATS_REGION_DATABASES (none: every region in data_url)
        dag_settings.SECTION: {"database_url": data_url,
                               "region_databases": os.environ.get(
                                   "EDGESTATS_REGION_DATABASES", "")},
    }
    if executor == "celery":
        settings["celery"] = {
            "broker_url": f"redis://:{broker_password}@{host}:{broker_port}/0",
            # task states go back through the metadata database (Celery's SQLAlchemy backend)
            "result_backend": f"db+{metadata_url}",
            "worker_concurrency": "2",
        }
    return settings


def configure(
    home: Path, metadata_url: str, data_url: str, port: int = PORT, executor: str = "local",
    broker_port: int = REDIS_PORT, host: str = "127.0.0.1",
) -> dict[str, str]:
    """Write the settings into home/airflow.cfg, where every `airflow` command finds them with
    AIRFLOW_HOME alone, and return that environment. Options already in the file are kept
    unless set here (its secrets too, or new ones are generated, as Airflow does)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "airflow.cfg"
    # raw values: Airflow's own file holds %-escapes that must be written back unchanged
    config = configparser.ConfigParser(interpolation=None)
    config.read(path)
    # redis refuses other hosts without a password (protected mode); kept like the secrets
    password = broker_password(config) or secrets.token_urlsafe(24)
    settings = airflow_settings(metadata_url, data_url, port, executor, broker_port, host,
                                password)
    if executor == "celery":
        settings[dag_settings.SECTION]["redis_password"] = password
    for section in [*settings, "api_auth"]:
        if not config.has_section(section):
            config.add_section(section)
    if not config.get("core", "fernet_key", fallback=""):
        config["core"]["fernet_key"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
    if not config.get("api_auth", "jwt_secret", fallback=""):
        config["api_auth"]["jwt_secret"] = base64.b64encode(os.urandom(16)).decode()
    for section, options in settings.items():
        # Airflow reads the file with %-interpolation
        config[section].update({k: v.replace("%", "%%") for k, v in options.items()})
    path.touch(mode=0o600)
    path.chmod(0o600)  # database URLs and secrets
    with path.open("w") as file:
        config.write(file)
    return {**os.environ, "AIRFLOW_HOME": str(home)}


def broker_password(config: Path | configparser.ConfigParser) -> str:
    """The redis password `configure` keeps in airflow.cfg (`[edgestats] redis_password`)."""
    if isinstance(config, Path):
        path, config = config, configparser.ConfigParser(interpolation=None)
        config.read(path)
    return config.get(dag_settings.SECTION, "redis_password", fallback="").replace("%%", "%")


def backfill_command(home: Path, now: datetime) -> str:
    """The command `make airflow` prints: rerun beacon_rollups for the last three hours closed
    at `now` (runs that already succeeded included), with nothing but AIRFLOW_HOME set."""
    last = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return (f"AIRFLOW_HOME={shlex.quote(str(home))} {shlex.quote(AIRFLOW)} backfill create"
            f" --dag-id beacon_rollups --from-date {(last - timedelta(hours=2)).isoformat()}"
            f" --to-date {last.isoformat()} --reprocess-behavior completed")


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, check=False)


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def wait_api(port: int = PORT, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    health = f"http://127.0.0.1:{port}/api/v2/monitor/health"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError("Airflow api-server did not start; see .run/logs/airflow-api-server.log")


def start_redis(
    run_dir: Path, password: str, port: int = REDIS_PORT, host: str = "127.0.0.1",
    detach: bool = False,
) -> Process:
    """The Celery broker: redis-server on `port` (loopback, and `host`) with `password` (from
    a mode-600 file, not the command line), its files in run_dir/redis, nothing persisted
    (the scheduler re-queues tasks it loses)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise RuntimeError("redis-server is missing: run scripts/install_system.sh")
    data = run_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    conf = data / "redis.conf"
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    conf.write_text(f"requirepass {password}\n")
    binds = ["127.0.0.1"] + ([host] if host != "127.0.0.1" else [])
    cmd = [binary, str(conf), "--port", str(port), "--bind", *binds, "--dir", str(data),
           "--save", "", "--appendonly", "no"]
    process = spawn("redis", cmd, run_dir, {}, detach=detach)
    wait_redis(port, password, process)
    return process


def wait_redis(port: int, password: str, process: Process, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError("redis-server exited; see its log under logs/redis.log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(f"AUTH {password}\r\nPING\r\n".encode())
                replies = b""
                while replies.count(b"\r\n") < 2 and (chunk := sock.recv(64)):
                    replies += chunk
                if replies.startswith(b"+OK\r\n+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"redis-server not answering on port {port}")


def worker_command(home: Path) -> str:
    """What a second host runs (same checkout path, same airflow.cfg) to take Celery tasks."""
    return f"AIRFLOW_HOME={shlex.quote(str(home))} {shlex.quote(AIRFLOW)} celery worker"


def up(run_dir: Path, admin_url: str, data_url: str) -> None:
    """Write Airflow's configuration, migrate its metadata database, start its three processes
    (with celery also redis-server and one worker), unpause our DAGs."""
    home = run_dir / "airflow"
    executor = executor_choice()
    metadata = sqlalchemy_url(postgres.create_database(admin_url, "airflow"))
    env = configure(home, metadata, data_url, executor=executor, host=HOST)
    # Airflow's metrics go where the services' exporter reads (stack.fresh_dir made it)
    if (run_dir / "prometheus").is_dir():
        env["PROMETHEUS_MULTIPROC_DIR"] = str(run_dir / "prometheus")
    migrated = run(env, "db", "migrate")
    if migrated.returncode != 0:
        raise RuntimeError(migrated.stderr[-2000:])
    commands = [["api-server"], ["scheduler"], ["dag-processor"]]
    if executor == "celery":
        start_redis(run_dir, broker_password(home / "airflow.cfg"), REDIS_PORT, HOST,
                    detach=True)
        commands.append(["celery", "worker"])
    for command in commands:
        spawn(f"airflow-{'-'.join(command)}", [AIRFLOW, *command], run_dir, env, detach=True)
    wait_api()
    run(env, "dags", "reserialize")
    for dag_id in UNPAUSED:
        run(env, "dags", "unpause", dag_id)
    passwords = home / "simple_auth_manager_passwords.json.generated"
    password = json.loads(passwords.read_text()).get("admin") if passwords.exists() else "?"
    print(f"Airflow UI and REST API: http://127.0.0.1:{PORT}  (user admin, password {password},"
          f" from {passwords})")
    print(f"{', '.join(UNPAUSED)} are unpaused. `airflow` commands need only"
          f" AIRFLOW_HOME={home} (settings in its airflow.cfg), e.g. to rerun the last three"
          " closed hours (add --dry-run to list them first):\n  "
          + backfill_command(home, datetime.now(UTC)))
    if executor == "celery":
        print(f"CeleryExecutor: broker redis://{HOST}:{REDIS_PORT}/0 (redis-server, log"
              f" {run_dir / 'logs' / 'redis.log'}), one worker here (airflow-celery-worker.log);"
              " a second host with this checkout at the same path and a copy of"
              f" {home / 'airflow.cfg'} runs only:\n  " + worker_command(home))
