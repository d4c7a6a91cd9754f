"""A short-lived result cache with single flight, for answers many clients ask for at once.

Dashboards poll the same window: identical concurrent queries share one execution,
and its answer is reused for `ttl_seconds` after it was computed (well inside the
realtime layer's 5 s freshness, CONTRACT §4); callers may give long windows, where the
last seconds weigh nothing, a longer ttl. Keys must include the tenant.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from edgestats_core import prometheus_metrics

T = TypeVar("T")


# expired answers are dropped at most this often (on a miss): windows move with the clock, so
# most keys are never asked again, and their answers must not wait for `max_entries`
SWEEP_SECONDS = 1.0


class ResultCache(Generic[T]):
    def __init__(self, ttl_seconds: float = 1.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, asyncio.Task[T]]] = {}
        self._swept = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(
        self, key: Hashable, compute: Callable[[], Awaitable[T]], ttl: float | None = None
    ) -> T:
        """The cached answer for `key`, computing it once for all concurrent callers; it is
        reused for `ttl` (default: the cache's) seconds after it was computed."""
        if self.ttl <= 0:
            return await compute()
        now = time.monotonic()
        entry = self._entries.get(key)
        hit = entry is not None and entry[0] > now
        prometheus_metrics.CACHE.labels("hit" if hit else "miss").inc()
        if not hit:
            if len(self._entries) >= self.max_entries or now - self._swept >= SWEEP_SECONDS:
                self._evict(now)
            task = asyncio.ensure_future(compute())
            entry = (math.inf, task)  # shared while it runs
            self._entries[key] = entry
            keep = self.ttl if ttl is None else ttl
            task.add_done_callback(lambda t, k=key, e=entry: self._settle(k, e, t, keep))
        # shield: one caller giving up must not cancel the query the others wait for
        return await asyncio.shield(entry[1])

    def _settle(self, key: Hashable, entry: tuple, task: asyncio.Task, ttl: float) -> None:
        """Keep a computed answer for ttl from now; errors are not cached."""
        if self._entries.get(key) is not entry:
            return
        if task.cancelled() or task.exception() is not None:
            del self._entries[key]
        else:
            self._entries[key] = (time.monotonic() + ttl, task)

    def _evict(self, now: float) -> None:
        """Drop the expired answers; when none is and the cache is full, the older half."""
        self._swept = now
        expired = [k for k, (expires, _) in self._entries.items() if expires <= now]
        if not expired and len(self._entries) >= self.max_entries:
            expired = list(self._entries)[: self.max_entries // 2]
        for key in expired:
            self._entries.pop(key, None)
