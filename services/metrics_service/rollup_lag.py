"""How far the rollups are behind now, per database, for the Prometheus gauges
(edgestats_rollup_newest_seconds, edgestats_rollup_lag_seconds,
edgestats_rollup_stale_hours): the live layer's complete upto, the minute layer's
rolled-to, the newest published hour, the hours marked stale."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from edgestats_core.config import Settings
from edgestats_core.metrics import live_rows
from edgestats_core.prometheus_metrics import (
    ROLLUP_LAG,
    ROLLUP_NEWEST,
    STALE_HOURS,
    database_label,
)

log = logging.getLogger(__name__)

# Seconds between two reports.
REPORT_SECONDS = 10.0
STATE_SQL = """
SELECT (SELECT max(hour) + interval '1 hour' FROM rollup_runs) AS hour_to,
       (SELECT max(rolled_to) FROM rollup_progress) AS minute_to,
       (SELECT count(DISTINCT hour) FROM rollup_stale) AS stale_hours
"""


def newest(state: dict, live_upto: datetime | None) -> dict[str, datetime | None]:
    """The end of each layer's newest rolled data (None: the layer holds nothing yet). The
    minute layer holds every published hour too."""
    minute_to = max((t for t in (state["minute_to"], state["hour_to"]) if t), default=None)
    return {"live": live_upto, "minute": minute_to, "hour": state["hour_to"]}


async def report(url: str, regions: str, now: datetime) -> None:
    """Read the rollup state of the database at `url` (holding `regions`: "emea",
    "americas/shard-1", "americas+apac"…) and set its gauges."""
    label = database_label(url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                     connect_timeout=2) as conn:
        cur = conn.cursor(row_factory=dict_row)
        state = await (await cur.execute(STATE_SQL)).fetchone()
        live = await (await cur.execute(live_rows.COVERAGE_SQL)).fetchone()
    for layer, end in newest(state, live and live["upto"]).items():
        if end is not None:
            ROLLUP_NEWEST.labels(regions, label, layer).set(end.timestamp())
            ROLLUP_LAG.labels(regions, label, layer).set(max(0.0, (now - end).total_seconds()))
    STALE_HOURS.labels(regions, label).set(state["stale_hours"])


async def report_forever(settings: Settings, url: str, regions: str) -> None:
    """Report every REPORT_SECONDS; a failed read (database down) is logged and retried."""
    while True:
        try:
            await report(url, regions, settings.now())
        except psycopg.Error as error:
            log.warning("rollup lag of %s not read: %s", database_label(url), error)
        await asyncio.sleep(REPORT_SECONDS)
