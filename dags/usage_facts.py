"""Usage facts (CONTRACT §8): hourly tag facts with the late-data catch-up, and daily facts with
the totals of the billing periods they touch.

Each run replaces its bucket's rows, so reruns and backfills never double count: backfill
with `airflow backfill create --dag-id usage_facts_daily --from-date ... --to-date ...`
(or from the UI). Until a day (hour) is computed the service answers it live from events.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from edgestats_core.dag_settings import database_url
from usage_billing_service import facts


@dag(
    # a real data interval per run (Airflow 3's default cron timetable has none)
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=4,
    tags=["edgestats", "usage"],
)
def usage_facts_hourly():
    @task
    def compute_tag_hours(data_interval_start=None, data_interval_end=None) -> int:
        runs = facts.compute_tag_hours(database_url(), data_interval_start, data_interval_end)
        return sum(r.events for r in runs)

    @task
    def catch_up_late() -> list[str]:
        return [f"{r.grain} {r.bucket.isoformat()}" for r in facts.catch_up_late(database_url())]

    compute_tag_hours() >> catch_up_late()


@dag(
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=2,
    tags=["edgestats", "usage"],
)
def usage_facts_daily():
    @task
    def compute_days(data_interval_start=None, data_interval_end=None) -> int:
        runs = facts.compute_days(database_url(), data_interval_start, data_interval_end)
        return sum(r.events for r in runs)

    compute_days()


usage_facts_hourly()
usage_facts_daily()
