"""Which hours the hourly roll-up has done (rollup_runs), for the query paths that read the
rollups for those hours and raw beacons for the rest."""

from __future__ import annotations

from datetime import datetime

from edgestats_core.db import Database
from edgestats_core.metrics.rollup_rows import ROLLED_HOURS_SQL


async def rolled_hours(db: Database, start: datetime, end: datetime) -> frozenset[datetime]:
    """Hours of [start, end) the hourly DAG has rolled up and no late beacon has changed
    since (the rest is read from raw)."""
    rows = await db.fetch(ROLLED_HOURS_SQL, (start, end))
    return frozenset(row["hour"] for row in rows)
