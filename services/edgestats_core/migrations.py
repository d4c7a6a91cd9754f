"""Versioned SQL migrations: each service's schema/NNN_name.sql applied once, in order."""

from __future__ import annotations

from importlib import resources

import psycopg

from edgestats_core import sharding
from edgestats_core.config import Settings

# Components in dependency order; each owns `<package>/schema/*.sql`.
COMPONENTS = ("edgestats_core", "metrics_service", "sql_query_service", "usage_billing_service")
LOCK_ID = 7301  # advisory lock serialising concurrent migrators


def pending(conn: psycopg.Connection, component: str) -> list[tuple[str, str]]:
    """(version, sql) of the component's files not yet applied."""
    applied = {
        row[0]
        for row in conn.execute(
            "SELECT version FROM schema_migrations WHERE component = %s", (component,)
        )
    }
    folder = resources.files(component) / "schema"
    files = sorted(f for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(f.name, f.read_text()) for f in files if f.name not in applied]


def migrate(url: str) -> list[str]:
    """Apply every pending migration, each in its own transaction; returns what was applied."""
    done: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (component text, version text,"
            " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"
        )
        for component in COMPONENTS:
            for version, sql in pending(conn, component):
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (component, version) VALUES (%s, %s)",
                        (component, version),
                    )
                done.append(f"{component}/{version}")
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
    return done


def run_partition_maintenance(url: str) -> None:
    """Create partitions ahead and drop those past retention (pg_partman); forget the roll-up
    state of hours whose raw beacons are gone (no beacon can arrive for them any more)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT partman.run_maintenance(p_analyze := false)")
        for table in ("rollup_progress", "rollup_pending"):
            conn.execute(f"DELETE FROM {table} WHERE hour < now() - interval '31 days'")


def every_database(settings: Settings) -> list[str]:
    """The home database and every database holding beacons — a sharded region's shards, not
    its coordinator (sharding.py): what migrations and partition maintenance run on."""
    return sharding.expand(settings.all_urls())


def migrate_every_database(settings: Settings) -> list[str]:
    """Migrate and maintain every database of `settings`; returns the migrations applied."""
    applied: list[str] = []
    for url in every_database(settings):
        applied += migrate(url)
        run_partition_maintenance(url)
    return applied
