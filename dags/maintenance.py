"""Daily: create partitions ahead and drop those past retention (raw 31 days, rollups 13 months)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from edgestats_core.migrations import run_partition_maintenance


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

    maintain_partitions()


maintenance()
