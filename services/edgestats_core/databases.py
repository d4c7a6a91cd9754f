"""The databases of one service process: home (tenancy, usage) and each region's data.

Beacons and everything derived from them live only in their customer's region: a region
configured with its own database (Settings.region_urls) is written and read there, any other
region in the home database. Regions sharing a URL share one pool, so a single-database
deployment has exactly one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from edgestats_core.config import REGIONS, Settings
from edgestats_core.db import Database


class Databases:
    """Pools by role: `home` for tenancy and usage, `primary(region)` for a region's data."""

    def __init__(self, settings: Settings) -> None:
        self._pools: dict[str, Database] = {}
        self.home = self._pool(settings, settings.database_url)
        self._primaries = {r: self._pool(settings, settings.region_url(r)) for r in REGIONS}

    def _pool(self, settings: Settings, url: str) -> Database:
        if url not in self._pools:
            self._pools[url] = Database(url, settings.pool_min, settings.pool_max,
                                        settings.statement_timeout_ms)
        return self._pools[url]

    def primary(self, region: str | None) -> Database:
        """Where a region's data is written (and read); the home database for no region."""
        return self._primaries.get(region or "", self.home)

    def reader(self, region: str | None) -> Database:
        """Where a region's data is read."""
        return self.primary(region)

    def by_database(
        self, customers: Iterable[str], region_of: Callable[[str], str | None],
    ) -> list[tuple[Database, tuple[str, ...]]]:
        """The customers grouped by the database that holds their data, in first-seen order
        (one group when every region shares a database)."""
        groups: dict[int, tuple[Database, list[str]]] = {}
        for customer in customers:
            db = self.reader(region_of(customer))
            groups.setdefault(id(db), (db, []))[1].append(customer)
        return [(db, tuple(members)) for db, members in groups.values()]

    def all(self) -> list[Database]:
        return list(self._pools.values())

    async def open(self) -> None:
        for db in self.all():
            await db.open()

    async def close(self) -> None:
        for db in self.all():
            await db.close()
