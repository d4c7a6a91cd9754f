r"""Usage facts (CONTRACT §8): hourly tag facts with the late-data catch-up, and daily facts with
the totals of the billing periods they touch.

Which bucket a run computes (`run_intervals.resolve_run_interval`, whole UTC hours or days):

- scheduled and backfill runs: their interval (`usage_facts_hourly` 09:00 is 09:00–10:00,
  `usage_facts_daily` 2026-11-24 is that UTC day);
- **Trigger** without a logical date (the button's default): the last hour (day) closed when
  it was triggered, with its billing periods for the daily DAG;
- **Trigger** with a logical date: the interval Airflow infers from it, the hour (day) *ending*
  at the date floored to the hour (day): 10:37 gives 09:00–10:00, 2026-11-25T05:00 the
  day 2026-11-24; or the interval entered under "Specify Manually", widened to whole buckets.

`usage_facts_hourly` then folds late events into every computed hour and day (`catch_up_late`).
Each run replaces its buckets' rows, so reruns and backfills never double count; an hour (day)
not ended yet is refused (the run fails). Backfill with `airflow backfill create --dag-id
usage_facts_daily --from-date ... --to-date ...` (or from the UI). Until a day (hour) is
computed the service answers it live from events (docs/usage-stats.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from edgestats_core import run_intervals
from edgestats_core.dag_settings import database_url
from usage_billing_service import facts


def buckets(period: timedelta, data_interval_start, data_interval_end, dag_run):
    return run_intervals.resolve_run_interval(
        data_interval_start, data_interval_end, dag_run.run_after, datetime.now(UTC), period)


@dag(
    # a real data interval per run (Airflow 3's default cron timetable has none)
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=4,
    tags=["edgestats", "usage"],
    doc_md=__doc__,
)
def usage_facts_hourly():
    @task
    def compute_tag_hours(data_interval_start=None, data_interval_end=None, dag_run=None) -> dict:
        start, end = buckets(run_intervals.HOUR, data_interval_start, data_interval_end, dag_run)
        return {r.bucket.isoformat(): r.events
                for r in facts.compute_tag_hours(database_url(), start, end)}

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
    doc_md=__doc__,
)
def usage_facts_daily():
    @task
    def compute_days(data_interval_start=None, data_interval_end=None, dag_run=None) -> dict:
        start, end = buckets(run_intervals.DAY, data_interval_start, data_interval_end, dag_run)
        return {r.bucket.isoformat(): r.events
                for r in facts.compute_days(database_url(), start, end)}

    compute_days()


usage_facts_hourly()
usage_facts_daily()
