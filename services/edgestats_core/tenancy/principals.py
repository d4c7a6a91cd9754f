"""Who is calling: the principal an API key or access token resolves to."""

from __future__ import annotations

from dataclasses import dataclass, field

TIERS = ("lite", "advanced")
REGIONS = ("americas", "emea", "apac")


@dataclass(frozen=True)
class Principal:
    """A resolved caller. `kind` is customer, reseller or usage-ingest."""

    key_id: str
    kind: str
    tier: str = "lite"
    customer_id: str | None = None
    region: str | None = None
    reseller_id: str | None = None
    customers: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_advanced(self) -> bool:
        return self.tier == "advanced"

    @property
    def is_customer(self) -> bool:
        return self.kind == "customer"
