"""Which streaming standby may answer a region's reads: its replay lag, measured against its
primary's WAL position several times a second.

The rule: a standby is read only while the oldest primary WAL position it has not replayed
was reached at most `MAX_LAG_SECONDS` ago (lag 0 when it has replayed everything seen) and
that was measured at most `STALE_SECONDS` ago. Otherwise (behind, unreachable, primary not
answering the probe, probe loop late) reads go to the primary. An answer from a standby
therefore misses at most the last second of accepted beacons, inside the realtime freshness
contract (beacons appear within 5 seconds of acceptance).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque

from edgestats_core.db import Database

log = logging.getLogger(__name__)

MAX_LAG_SECONDS = 1.0
PROBE_SECONDS = 0.2
STALE_SECONDS = 1.0


def lsn_value(text: str) -> int:
    """A pg_lsn ('16/B374D848') as a byte position."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def replay_lag(samples: deque[tuple[float, int]], replayed: int, now: float) -> float:
    """Seconds since the newest primary sample the standby has replayed when a later one is
    not replayed yet (0 when every sample is replayed; inf when none is)."""
    if not samples or replayed >= samples[-1][1]:
        return 0.0
    reached = [t for t, position in samples if position <= replayed]
    return now - reached[-1] if reached else float("inf")


class ReplicaMonitor:
    """Probes one primary and its standbys; `pick` names a standby fresh enough to read."""

    def __init__(self, primary: Database, replicas: list[Database]) -> None:
        self.primary = primary
        self.replicas = replicas
        self.samples: deque[tuple[float, int]] = deque(maxlen=int(30 / PROBE_SECONDS))
        self.lag = [float("inf")] * len(replicas)
        self.checked = [0.0] * len(replicas)
        self._turn = itertools.count()

    async def probe(self) -> None:
        """Sample the primary's WAL position, then each standby's replayed position."""
        rows = await self.primary.fetch("SELECT pg_current_wal_lsn()::text AS lsn")
        self.samples.append((time.monotonic(), lsn_value(rows[0]["lsn"])))
        for index, replica in enumerate(self.replicas):
            try:
                rows = await replica.fetch("SELECT pg_last_wal_replay_lsn()::text AS lsn")
            except Exception:  # noqa: BLE001 - unreachable: not fresh until it answers again
                self.lag[index] = float("inf")
                continue
            replayed = lsn_value(rows[0]["lsn"]) if rows[0]["lsn"] else -1
            now = time.monotonic()
            self.lag[index], self.checked[index] = replay_lag(self.samples, replayed, now), now

    async def run(self) -> None:
        """Probe every PROBE_SECONDS until cancelled; a failed probe is retried."""
        while True:
            try:
                await self.probe()
            except Exception as error:  # noqa: BLE001 - the primary is down: nothing is fresh
                log.debug("replica probe failed: %s", error)
            await asyncio.sleep(PROBE_SECONDS)

    def pick(self) -> Database | None:
        """A fresh standby (in turn when several are), or None: read the primary."""
        now = time.monotonic()
        fresh = [replica for replica, lag, checked in zip(self.replicas, self.lag, self.checked,
                                                          strict=True)
                 if lag <= MAX_LAG_SECONDS and now - checked <= STALE_SECONDS]
        return fresh[next(self._turn) % len(fresh)] if fresh else None
