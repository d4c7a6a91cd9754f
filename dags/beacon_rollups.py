r"""Hourly: publish each closed hour to the historical layers, then re-roll hours with late data,
in every region's database (a mapped task per database, run in parallel).

Which hours a run rolls up (`rollups.resolve_run_interval`):

- scheduled and backfill runs: their hour (logical date 09:00 is 09:00–10:00);
- **Trigger** without a logical date (the button's default): the last hour closed when it
  was triggered;
- **Trigger** with a logical date: the data interval Airflow infers from it, the hour
  *ending* at the date floored to the hour (10:00 or 10:37 gives 09:00–10:00), or the
  interval entered under "Specify Manually" (whole hours).

Every run then re-rolls the earlier hours that received beacons after their roll-up. A run
replaces its hours' rows, so reruns and overlapping backfills never double count; an hour
that has not ended yet is refused (the run fails). Rerun a range from the UI (Trigger →
Backfill, reprocess "completed" runs) or from the checkout (drop `--dry-run` to create the
runs; docs/rollups.md):

```sh
AIRFLOW_HOME=.run/airflow .venv/bin/airflow backfill create --dag-id beacon_rollups \
  --from-date 2026-11-25T00:00:00+00:00 --to-date 2026-11-25T03:00:00+00:00 \
  --reprocess-behavior completed --dry-run
```
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag, get_current_context, task
from airflow.timetables.interval import CronDataIntervalTimetable

from edgestats_core.dag_settings import region_databases
from metrics_service import rollups


def hours(data_interval_start, data_interval_end, dag_run) -> tuple[datetime, datetime]:
    return rollups.resolve_run_interval(
        data_interval_start, data_interval_end, dag_run.run_after, datetime.now(UTC))


@dag(
    # a real data interval per run (Airflow 3's default cron timetable has none)
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=4,
    tags=["edgestats", "rollups"],
    doc_md=__doc__,
)
def beacon_rollups():
    @task
    def databases() -> list[str]:
        """The regions' databases, one mapped task each (in parallel)."""
        return list(region_databases())

    @task(map_index_template="{{ regions }}")
    def roll_up_hour(regions: str, data_interval_start=None, data_interval_end=None,
                     dag_run=None) -> dict:
        get_current_context()["regions"] = regions  # type: ignore[index]
        start, end = hours(data_interval_start, data_interval_end, dag_run)
        done = rollups.roll_up_interval(region_databases()[regions], start, end)
        return {r.hour.isoformat(): r.raw_beacons for r in done}

    @task(map_index_template="{{ regions }}")
    def re_roll_late_hours(regions: str, data_interval_start=None, data_interval_end=None,
                           dag_run=None):
        get_current_context()["regions"] = regions  # type: ignore[index]
        start, _ = hours(data_interval_start, data_interval_end, dag_run)
        done = rollups.re_roll_late_hours(region_databases()[regions], before=start)
        return [r.hour.isoformat() for r in done]

    each = databases()
    roll_up_hour.expand(regions=each) >> re_roll_late_hours.expand(regions=each)


beacon_rollups()
