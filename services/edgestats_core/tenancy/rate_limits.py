"""Per-key token buckets (CONTRACT §9): default 20 requests/s sustained, bursts of 100.

Each service process holds its own buckets; the gateway spreads a key's calls over the
`workers` processes of a service, so each process enforces rate/workers and burst/workers
(CONTRACT limits hold within rounding; no shared state on the request path).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    rate: float   # requests per second, sustained
    burst: float  # bucket size


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: float           # the key's sustained rate, requests/s (X-RateLimit-Limit)
    remaining: int         # requests left in the burst now (X-RateLimit-Remaining)
    retry_after: int = 0   # seconds until one request is allowed again (Retry-After)


class RateLimiter:
    """Token buckets per key id; tiers (and keys) may have their own limits."""

    def __init__(self, default: Limit, per_tier: dict[str, Limit] | None = None,
                 workers: int = 1, max_keys: int = 100_000) -> None:
        self.default = default
        self.per_tier = per_tier or {}
        self.workers = max(workers, 1)
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)

    def limit_for(self, tier: str) -> Limit:
        return self.per_tier.get(tier, self.default)

    def take(self, key_id: str, tier: str, override: tuple[float, float] | None = None,
             now: float | None = None) -> Decision:
        """Spend one token of the key's bucket if there is one; `override` is the key's own
        (rate, burst), which wins over its tier's."""
        limit = Limit(*override) if override else self.limit_for(tier)
        rate, burst = limit.rate / self.workers, max(limit.burst / self.workers, 1.0)
        now = time.monotonic() if now is None else now
        tokens, updated = self._buckets.get(key_id, (burst, now))
        tokens = min(burst, tokens + (now - updated) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if len(self._buckets) >= self.max_keys and key_id not in self._buckets:
            self._buckets.clear()  # a flood of keys: start over rather than grow unbounded
        self._buckets[key_id] = (tokens, now)
        retry = 0 if allowed else max(1, math.ceil((1.0 - tokens) / rate))
        return Decision(allowed, limit.rate, int(tokens * self.workers), retry)
