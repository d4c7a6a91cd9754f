"""A short-lived result cache with single flight, for answers many clients ask for at once.

Dashboards poll the same window: identical concurrent queries share one execution,
and its answer is reused for `ttl_seconds` (well inside the realtime layer's 5 s
freshness, CONTRACT §4). Keys must include the tenant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class ResultCache(Generic[T]):
    def __init__(self, ttl_seconds: float = 1.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, asyncio.Task[T]]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        """The cached answer for `key`, computing it once for all concurrent callers."""
        if self.ttl <= 0:
            return await compute()
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            if len(self._entries) >= self.max_entries:
                self._evict(now)
            task = asyncio.ensure_future(compute())
            entry = (now + self.ttl, task)
            self._entries[key] = entry
            task.add_done_callback(lambda t, k=key, e=entry: self._forget_failure(k, e, t))
        # shield: one caller giving up must not cancel the query the others wait for
        return await asyncio.shield(entry[1])

    def _forget_failure(self, key: Hashable, entry: tuple, task: asyncio.Task) -> None:
        """Errors are not cached: the next caller tries again."""
        if (task.cancelled() or task.exception() is not None) and self._entries.get(key) is entry:
            del self._entries[key]

    def _evict(self, now: float) -> None:
        expired = [k for k, (expires, _) in self._entries.items() if expires <= now]
        for key in expired or list(self._entries)[: self.max_entries // 2]:
            self._entries.pop(key, None)
