"""Daily: create partitions ahead and drop those past retention (raw 31 days, rollups
13 months); delete expired OAuth access tokens and usage-event ids past the 35-day dedup
window."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from edgestats_core.dag_settings import database_url, every_database
from edgestats_core.migrations import run_partition_maintenance
from edgestats_core.tenancy import oauth
from usage_billing_service import event_store


@dag(
    schedule=CronDataIntervalTimetable("30 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["edgestats", "maintenance"],
)
def maintenance():
    @task
    def maintain_partitions() -> None:
        for url in every_database():  # the home database and every region's
            run_partition_maintenance(url)

    @task
    def delete_expired_tokens() -> None:
        with psycopg.connect(database_url()) as conn:
            oauth.delete_expired_tokens(conn)

    @task
    def forget_usage_event_ids() -> None:  # the 35-day dedup window of usage events
        event_store.forget_expired_ids(database_url())

    maintain_partitions()
    delete_expired_tokens()
    forget_usage_event_ids()


maintenance()
