"""Who is calling: the principal an API key or access token resolves to."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgestats_core.config import REGIONS

__all__ = ["REGIONS", "TIERS", "Principal"]
TIERS = ("lite", "advanced")


@dataclass(frozen=True)
class Principal:
    """A resolved caller. `kind` is customer, reseller, usage-ingest or usage-user; `limit`
    is the key's own (rate, burst) when it overrides its tier's."""

    key_id: str
    kind: str
    tier: str = "lite"
    customer_id: str | None = None
    region: str | None = None
    reseller_id: str | None = None
    customers: tuple[str, ...] = field(default_factory=tuple)
    # a reseller's customers' regions, in the order of `customers` (None: unknown customer)
    customer_regions: tuple[str | None, ...] = field(default_factory=tuple)
    user_id: str | None = None
    limit: tuple[float, float] | None = None

    @property
    def id(self) -> str:
        """Who calls, for logs and traces: `customer:c-1`, `reseller:r-1`, `usage-user:u-1`
        (`usage-ingest:<key id>`) — an id, never the key."""
        return f"{self.kind}:{self.customer_id or self.reseller_id or self.user_id or self.key_id}"

    def region_of(self, customer_id: str) -> str | None:
        """The region holding a customer's data, as far as this caller may know it."""
        if customer_id == self.customer_id:
            return self.region
        regions = dict(zip(self.customers, self.customer_regions, strict=False))
        return regions.get(customer_id) or self.region

    @property
    def is_advanced(self) -> bool:
        return self.tier == "advanced"

    @property
    def is_customer(self) -> bool:
        return self.kind == "customer"

    @property
    def is_usage_user(self) -> bool:
        return self.kind == "usage-user"
