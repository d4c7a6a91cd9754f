"""Who is calling: the principal an API key or access token resolves to."""

from __future__ import annotations

from dataclasses import dataclass, field

TIERS = ("lite", "advanced")
REGIONS = ("americas", "emea", "apac")


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
    user_id: str | None = None
    limit: tuple[float, float] | None = None

    @property
    def is_advanced(self) -> bool:
        return self.tier == "advanced"

    @property
    def is_customer(self) -> bool:
        return self.kind == "customer"

    @property
    def is_usage_user(self) -> bool:
        return self.kind == "usage-user"
