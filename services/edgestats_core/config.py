"""Settings read once from the environment, shared by every service."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

REGIONS = ("americas", "emea", "apac")


def parse_region_urls(text: str) -> tuple[tuple[str, str], ...]:
    """`region=URL` pairs separated by whitespace; ValueError names a bad pair or region."""
    pairs = []
    for item in text.split():
        region, sep, url = item.partition("=")
        if not sep or not url or region not in REGIONS:
            raise ValueError(f"expected region=URL with a region of {', '.join(REGIONS)}:"
                             f" {item.split('=')[0]!r}")
        pairs.append((region, url))
    return tuple(pairs)


def data_databases(home_url: str, region_urls: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Every distinct database holding beacons, by the regions it holds ("emea",
    "americas+apac"; all three in one database without region databases)."""
    urls = dict(region_urls)
    by_url: dict[str, list[str]] = {}
    for region in REGIONS:
        by_url.setdefault(urls.get(region, home_url), []).append(region)
    return {"+".join(regions): url for url, regions in by_url.items()}


@dataclass(frozen=True)
class Settings:
    """What a service process needs to know; every field has an EDGESTATS_* variable."""

    database_url: str
    host: str = "127.0.0.1"
    port: int = 0
    pool_min: int = 2
    pool_max: int = 10
    # Answer "now" with a fixed instant (tests and reproducible demos); None = the real clock.
    frozen_now: datetime | None = None
    # How long a resolved API key stays cached: a revoked key stops working within this.
    key_cache_seconds: float = 10.0
    # How long an identical query's answer is reused (0 disables; realtime freshness is 5 s).
    result_cache_seconds: float = 1.0
    # The same for windows of 6 h and more (0 result cache: off too); the newest seconds of
    # a day-long chart weigh nothing, and recomputing its raw tail per second costs a lot.
    long_result_cache_seconds: float = 5.0
    # Per key (CONTRACT §9): sustained requests/s and burst; per tier with *_LITE/*_ADVANCED.
    rate_limit: float = 20.0
    rate_burst: float = 100.0
    rate_limits_by_tier: tuple[tuple[str, float, float], ...] = ()
    # Time budget of every statement; past it PostgreSQL cancels it and the answer is 504.
    statement_timeout_ms: int = 30_000
    # RPCs one process serves at once (grpc.aio's maximum_concurrent_rpcs); the gateway
    # admits at most this many per process and answers the excess 503 at once (issue #8).
    max_concurrent_rpcs: int = 16
    # Lifetime of an OAuth access token (POST /oauth/token).
    token_ttl_seconds: int = 3600
    # How often the metrics service rolls the current hour's closed minutes into the minute
    # layer (metrics_service.minute_rollups); 0 = never (only the hourly roll-up).
    minute_rollup_seconds: float = 5.0
    # How often it rolls the newest closed 5-second buckets into the live layer
    # (metrics_service.live_rollups); 0 = never (the legacy live windows then read raw).
    live_rollup_seconds: float = 0.5
    # Processes of this service behind the gateway (they split each key's limit).
    workers: int = 1
    # The database of each region's beacons and everything derived from them, as
    # (region, URL) pairs (EDGESTATS_REGION_DATABASES="emea=postgresql://… apac=…"); a region
    # not listed keeps its data in DATABASE_URL, the home database of tenancy and usage.
    region_urls: tuple[tuple[str, str], ...] = ()
    # Streaming standbys that may answer a region's reads (EDGESTATS_REGION_REPLICAS, the
    # same form, a region may repeat); see edgestats_core.replicas for when one is used.
    replica_urls: tuple[tuple[str, str], ...] = ()
    # Where the other processes serve their gRPC services, as (service, host:port) pairs
    # (EDGESTATS_PEERS="edgestats.sql_query.v1.SqlQueryJsonService=10.0.0.5:7001 …"): health
    # checks of those names are answered by asking them (edgestats_core.peer_health).
    peers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build from DATABASE_URL and EDGESTATS_* variables, then apply overrides."""
        env = os.environ
        frozen = env.get("EDGESTATS_FROZEN_NOW")
        values: dict[str, object] = {
            "database_url": env.get("DATABASE_URL", ""),
            "host": env.get("EDGESTATS_HOST", "127.0.0.1"),
            "port": int(env.get("EDGESTATS_PORT", "0")),
            "pool_min": int(env.get("EDGESTATS_POOL_MIN", "2")),
            "pool_max": int(env.get("EDGESTATS_POOL_MAX", "10")),
            "frozen_now": datetime.fromisoformat(frozen).astimezone(UTC) if frozen else None,
            "key_cache_seconds": float(env.get("EDGESTATS_KEY_CACHE_SECONDS", "10")),
            "result_cache_seconds": float(env.get("EDGESTATS_RESULT_CACHE_SECONDS", "1")),
            "long_result_cache_seconds": float(
                env.get("EDGESTATS_LONG_RESULT_CACHE_SECONDS", "5")),
            "rate_limit": float(env.get("EDGESTATS_RATE_LIMIT", "20")),
            "rate_burst": float(env.get("EDGESTATS_RATE_BURST", "100")),
            "rate_limits_by_tier": tuple(
                (tier, float(env[f"EDGESTATS_RATE_LIMIT_{tier.upper()}"]),
                 float(env.get(f"EDGESTATS_RATE_BURST_{tier.upper()}", "100")))
                for tier in ("lite", "advanced") if f"EDGESTATS_RATE_LIMIT_{tier.upper()}" in env
            ),
            "workers": int(env.get("EDGESTATS_WORKERS", "1")),
            "token_ttl_seconds": int(env.get("EDGESTATS_TOKEN_TTL_SECONDS", "3600")),
            "max_concurrent_rpcs": int(env.get("EDGESTATS_MAX_CONCURRENT_RPCS", "16")),
            "minute_rollup_seconds": float(env.get("EDGESTATS_MINUTE_ROLLUP_SECONDS", "5")),
            "live_rollup_seconds": float(env.get("EDGESTATS_LIVE_ROLLUP_SECONDS", "0.5")),
            "statement_timeout_ms": int(env.get("EDGESTATS_STATEMENT_TIMEOUT_MS", "30000")),
            "region_urls": parse_region_urls(env.get("EDGESTATS_REGION_DATABASES", "")),
            "replica_urls": parse_region_urls(env.get("EDGESTATS_REGION_REPLICAS", "")),
            "peers": tuple(tuple(item.split("=", 1))  # type: ignore[misc]
                           for item in env.get("EDGESTATS_PEERS", "").split() if "=" in item),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def region_url(self, region: str | None) -> str:
        """The primary database of a region's data (the home database when not configured)."""
        return dict(self.region_urls).get(region or "", self.database_url)

    def data_urls(self) -> list[str]:
        """Every distinct database holding beacons: what the rollers run on (the home
        database alone without region databases)."""
        return list(data_databases(self.database_url, self.region_urls).values())

    def all_urls(self) -> list[str]:
        """The home database and every region database: what migrations and partition
        maintenance run on."""
        return list(dict.fromkeys([self.database_url, *self.data_urls()]))

    def now(self) -> datetime:
        """The current instant in UTC (or the frozen one)."""
        return self.frozen_now or datetime.now(UTC)
