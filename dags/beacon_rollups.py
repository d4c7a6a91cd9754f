"""Hourly: publish each closed hour to the historical layers, then re-roll hours that got late data.

Backfill any range from the UI (Trigger -> Backfill) or with
`airflow backfill create --dag-id beacon_rollups --from-date ... --to-date ...`: a run
replaces its hour's rows, so reruns and overlapping backfills never double count.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from metrics_service import rollups


def database_url() -> str:
    return os.environ["DATABASE_URL"]


@dag(
    # a real data interval per run (Airflow 3's default cron timetable has none)
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=4,
    tags=["edgestats", "rollups"],
)
def beacon_rollups():
    @task
    def roll_up_hour(data_interval_start=None, data_interval_end=None) -> int:
        done = rollups.roll_up_interval(database_url(), data_interval_start, data_interval_end)
        return sum(r.raw_beacons for r in done)

    @task
    def re_roll_late_hours(data_interval_start=None) -> list[str]:
        done = rollups.re_roll_late_hours(database_url(), before=data_interval_start)
        return [r.hour.isoformat() for r in done]

    roll_up_hour() >> re_roll_late_hours()


beacon_rollups()
