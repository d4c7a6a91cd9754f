"""What the rollups hold of a range (rollup_runs, rollup_progress), for the query paths that
read the rollups there and raw beacons for the rest."""

from __future__ import annotations

from datetime import datetime

from edgestats_core.db import Database
from edgestats_core.metrics.rollup_rows import COVERAGE_SQL, Coverage


async def coverage(db: Database, start: datetime, end: datetime) -> Coverage:
    """The hours of [start, end) rolled up (and not marked stale by late beacons since) and
    the minutes of the others rolled into the minute layer (the rest is read from raw)."""
    rows = await db.fetch(COVERAGE_SQL, {"start": start, "end": end})
    return Coverage.of((row["hour"], row["minutes_to"]) for row in rows)
