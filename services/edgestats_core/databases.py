"""The databases of one service process: home (tenancy, usage) and each region's data.

Beacons and everything derived from them live only in their customer's region: a region
configured with its own database (Settings.region_urls) is written and read there, any other
region in the home database. Regions sharing a URL share one pool, so a single-database
deployment has exactly one. A region's reads may go to a streaming standby of its primary
(Settings.replica_urls) while it is fresh (edgestats_core.replicas); writes never do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from edgestats_core import sharding
from edgestats_core.config import REGIONS, Settings
from edgestats_core.db import Database
from edgestats_core.replicas import ReplicaMonitor

# How long a customer's shard is remembered: a moved bucket is followed within this.
ROUTE_CACHE_SECONDS = 60.0


class ShardRouter:
    """A coordinator's routing of customers to shard databases (edgestats_core.sharding)."""

    def __init__(self, coordinator: Database, url: str,
                 pool: Callable[[str], Awaitable[Database]]) -> None:
        self.coordinator, self.url, self.pool = coordinator, url, pool
        self._routes: dict[str, tuple[float, Database]] = {}

    async def shard_of(self, customer_id: str) -> Database:
        hit = self._routes.get(customer_id)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        rows = await self.coordinator.fetch(sharding.ROUTE_SQL, (customer_id,))
        shard = await self.pool(sharding.shard_url(self.url, rows[0]["srvoptions"]))
        if len(self._routes) > 100_000:
            self._routes.clear()
        self._routes[customer_id] = (time.monotonic() + ROUTE_CACHE_SECONDS, shard)
        return shard


class Databases:
    """Pools by role: `home` for tenancy and usage, a region's primary (or the shard of a
    customer in a sharded region) for its data, a fresh standby for its reads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pools: dict[str, Database] = {}
        self.home = self._pool(settings.database_url)
        self._primaries = {r: self._pool(settings.region_url(r)) for r in REGIONS}
        self._monitors: dict[str, ReplicaMonitor] = {}
        for region in REGIONS:
            standbys = [self._pool(url) for r, url in settings.replica_urls if r == region]
            if standbys:
                self._monitors[region] = ReplicaMonitor(self._primaries[region], standbys)
        self._routers: dict[str, ShardRouter] = {}
        self._checked: set[str] = set()  # regions whose database was asked if it shards
        self._opening = asyncio.Lock()
        self._probes: list[asyncio.Task] = []

    def _new(self, url: str) -> Database:
        return Database(url, self.settings.pool_min, self.settings.pool_max,
                        self.settings.statement_timeout_ms)

    def _pool(self, url: str) -> Database:
        if url not in self._pools:
            self._pools[url] = self._new(url)
        return self._pools[url]

    async def _shard_pool(self, url: str) -> Database:
        """A shard's pool, opened on first use (shards are found on the coordinator)."""
        async with self._opening:
            if url not in self._pools:
                db = self._new(url)
                await db.open()
                self._pools[url] = db
        return self._pools[url]

    async def _router(self, region: str | None) -> ShardRouter | None:
        """The region's shard routing when its database is a coordinator (asked once, on
        first use: a service starts while its databases are down, and answers 503)."""
        key = region or ""
        if key not in self._checked and key in self._primaries:
            async with self._opening:
                if key not in self._checked:
                    db = self._primaries[key]
                    if await db.fetch(sharding.SHARDS_SQL, (sharding.SERVER_PREFIX + "%",)):
                        self._routers[key] = ShardRouter(db, self.settings.region_url(key),
                                                         self._shard_pool)
                    self._checked.add(key)
        return self._routers.get(key)

    async def primary(self, region: str | None, customer_id: str | None = None) -> Database:
        """Where a region's data is written (and read): its primary, or in a sharded region
        the customer's shard; the home database for no region."""
        router = await self._router(region)
        if router is not None and customer_id is not None:
            return await router.shard_of(customer_id)
        return self._primaries.get(region or "", self.home)

    async def reader(self, region: str | None, customer_id: str | None = None) -> Database:
        """Where a region's data is read: a fresh standby when it has one, else where it is
        written."""
        monitor = self._monitors.get(region or "")
        return (monitor.pick() if monitor else None) or await self.primary(region, customer_id)

    async def sharded(self, region: str | None) -> bool:
        return await self._router(region) is not None

    async def by_database(
        self, customers: Iterable[str], region_of: Callable[[str], str | None],
    ) -> list[tuple[Database, tuple[str, ...]]]:
        """The customers grouped by the database that reads their data, in first-seen order
        (one group when every region shares a database)."""
        readers: dict[str | None, Database] = {}
        groups: dict[int, tuple[Database, list[str]]] = {}
        for customer in customers:
            region = region_of(customer)
            if await self.sharded(region):
                db = await self.reader(region, customer)
            else:
                if region not in readers:
                    readers[region] = await self.reader(region)
                db = readers[region]
            groups.setdefault(id(db), (db, []))[1].append(customer)
        return [(db, tuple(members)) for db, members in groups.values()]

    def all(self) -> list[Database]:
        return list(self._pools.values())

    def primaries(self) -> list[Database]:
        """The home database and every region's primary or coordinator (what must answer for
        the service to work; a standby or a shard down only fails its own reads)."""
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
