"""A local PostgreSQL 15 cluster under .run/pg (used when DATABASE_URL is not set)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

PG_BIN = Path(os.environ.get("EDGESTATS_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "edgestats"

CONF = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 200
shared_buffers = 512MB
work_mem = 64MB
maintenance_work_mem = 256MB
wal_buffers = 16MB
max_wal_size = 4GB
checkpoint_timeout = 15min
synchronous_commit = on
fsync = on
log_min_messages = warning
"""


def _as_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str]) -> None:
    subprocess.run(_as_owner(cmd), check=True, stdout=subprocess.DEVNULL)


def cluster_dir(run_dir: Path, name: str = "pg") -> Path:
    """Where the cluster lives: run_dir/name, unless the `postgres` user (which runs it when we
    are root) cannot reach run_dir, as in a checkout under /root: then under its own home."""
    base = run_dir.resolve() / name
    if os.geteuid() != 0:
        return base
    reachable = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(run_dir.resolve())],
        check=False,
    ).returncode == 0
    if reachable:
        return base
    digest = hashlib.sha1(str(base).encode()).hexdigest()[:12]
    return Path("/var/lib/postgresql") / f"edgestats-{digest}"


def _base(run_dir: Path, name: str) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    base = cluster_dir(run_dir, name)
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    return base


def _start(base: Path, port: int) -> str:
    data = base / "data"
    status = subprocess.run(_as_owner([str(PG_BIN / "pg_ctl"), "-D", str(data), "status"]),
                            capture_output=True)
    if status.returncode != 0:
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "postgres.log"),
              "-w", "-t", "60", "start"])
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"


def ensure_cluster(run_dir: Path, port: int, name: str = "pg", extra_conf: str = "") -> str:
    """Initialise (once) and start the cluster run_dir/name; returns the superuser URL of
    database postgres. `extra_conf`: settings appended at initialisation."""
    base = _base(run_dir, name)
    data = base / "data"
    if not (data / "PG_VERSION").exists():
        _run([str(PG_BIN / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
              "-E", "UTF8", "--locale=C.UTF-8"])
        with open(data / "postgresql.auto.conf", "a") as conf:
            conf.write(CONF.format(port=port, socket_dir=base) + extra_conf)
    return _start(base, port)


def ensure_standby(run_dir: Path, name: str, port: int, primary_port: int) -> str:
    """A streaming hot standby of the local primary on `primary_port` (pg_basebackup once, as
    run_dir/name), started; returns its superuser URL of database postgres."""
    base = _base(run_dir, name)
    data = base / "data"
    if not (data / "PG_VERSION").exists():
        _run([str(PG_BIN / "pg_basebackup"), "-D", str(data), "-R", "-X", "stream", "-c",
              "fast", "-h", "127.0.0.1", "-p", str(primary_port), "-U", SUPERUSER])
        with open(data / "postgresql.auto.conf", "a") as conf:  # later lines win
            conf.write(f"\nport = {port}\nunix_socket_directories = '{base}'\n")
    return _start(base, port)


def stop_cluster(run_dir: Path, name: str = "pg") -> None:
    data = cluster_dir(run_dir, name) / "data"
    if (data / "postmaster.pid").exists():
        _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    if "://" in url:
        return urlunsplit(urlsplit(url)._replace(path="/" + dbname))
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


def create_database(admin_url: str, dbname: str) -> str:
    """Create the database if missing; returns its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    return with_database(admin_url, dbname)


def drop_database(admin_url: str, dbname: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        conn.execute(drop.format(sql.Identifier(dbname)))
