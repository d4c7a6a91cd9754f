"""Daily: create partitions ahead and drop those past retention (raw 31 days, rollups
13 months); delete expired OAuth access tokens."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import psycopg
from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from edgestats_core.migrations import run_partition_maintenance
from edgestats_core.tenancy import oauth


@dag(
    schedule=CronDataIntervalTimetable("30 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["edgestats", "maintenance"],
)
def maintenance():
    @task
    def maintain_partitions() -> None:
        run_partition_maintenance(os.environ["DATABASE_URL"])

    @task
    def delete_expired_tokens() -> None:
        with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
            oauth.delete_expired_tokens(conn)

    maintain_partitions()
    delete_expired_tokens()


maintenance()
