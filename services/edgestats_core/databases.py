"""The databases of one service process: home (tenancy, usage) and each region's data.

Beacons and everything derived from them live only in their customer's region: a region
configured with its own database (Settings.region_urls) is written and read there, any other
region in the home database. Regions sharing a URL share one pool, so a single-database
deployment has exactly one. A region's reads may go to a streaming standby of its primary
(Settings.replica_urls) while it is fresh (edgestats_core.replicas); writes never do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from edgestats_core.config import REGIONS, Settings
from edgestats_core.db import Database
from edgestats_core.replicas import ReplicaMonitor


class Databases:
    """Pools by role: `home` for tenancy and usage, `primary(region)` for a region's data."""

    def __init__(self, settings: Settings) -> None:
        self._pools: dict[str, Database] = {}
        self.home = self._pool(settings, settings.database_url)
        self._primaries = {r: self._pool(settings, settings.region_url(r)) for r in REGIONS}
        self._monitors: dict[str, ReplicaMonitor] = {}
        for region in REGIONS:
            standbys = [self._pool(settings, url)
                        for r, url in settings.replica_urls if r == region]
            if standbys:
                self._monitors[region] = ReplicaMonitor(self._primaries[region], standbys)
        self._probes: list[asyncio.Task] = []

    def _pool(self, settings: Settings, url: str) -> Database:
        if url not in self._pools:
            self._pools[url] = Database(url, settings.pool_min, settings.pool_max,
                                        settings.statement_timeout_ms)
        return self._pools[url]

    def primary(self, region: str | None) -> Database:
        """Where a region's data is written (and read); the home database for no region."""
        return self._primaries.get(region or "", self.home)

    def reader(self, region: str | None) -> Database:
        """Where a region's data is read: a fresh standby when it has one, else its primary."""
        monitor = self._monitors.get(region or "")
        return (monitor.pick() if monitor else None) or self.primary(region)

    def by_database(
        self, customers: Iterable[str], region_of: Callable[[str], str | None],
    ) -> list[tuple[Database, tuple[str, ...]]]:
        """The customers grouped by the database that reads their data, in first-seen order
        (one group when every region shares a database)."""
        readers: dict[str | None, Database] = {}
        groups: dict[int, tuple[Database, list[str]]] = {}
        for customer in customers:
            region = region_of(customer)
            if region not in readers:
                readers[region] = self.reader(region)
            db = readers[region]
            groups.setdefault(id(db), (db, []))[1].append(customer)
        return [(db, tuple(members)) for db, members in groups.values()]

    def all(self) -> list[Database]:
        return list(self._pools.values())

    def primaries(self) -> list[Database]:
        """The home database and every region's primary (what must answer for the service
        to work; a standby down only sends its reads to the primary)."""
        return list({id(db): db for db in [self.home, *self._primaries.values()]}.values())

    async def open(self) -> None:
        for db in self.all():
            await db.open()
        self._probes = [asyncio.create_task(m.run()) for m in self._monitors.values()]

    async def close(self) -> None:
        for probe in self._probes:
            probe.cancel()
        for db in self.all():
            await db.close()
