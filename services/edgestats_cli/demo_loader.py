"""Loads the demo data set: the demo customers and their last hours of beacons."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import islice

from edgestats_cli.demo_data import DEMO_CUSTOMERS, DemoCustomer, generate_beacons
from edgestats_core.config import Settings
from edgestats_core.databases import Databases
from edgestats_core.query.windows import floor_to
from metrics_service import beacon_store
from metrics_service.beacon_validation import validate

__all__ = ["DEMO_CUSTOMERS", "first_channel", "load_demo"]

CHUNK = 10_000
SEED = 7  # demo_feed continues the same sessions


def writers(db_url: str) -> Databases:
    """Small pools on the home database and every region's primary (the region databases
    of EDGESTATS_REGION_DATABASES, if any): a customer's beacons go to its region's."""
    return Databases(Settings.from_env(database_url=db_url, pool_min=1, pool_max=2,
                                       replica_urls=()))


async def load_demo(db_url: str, hours: float = 3.0, now: datetime | None = None) -> int:
    """Upsert the demo customers and store their beacons of the last `hours` (idempotent)."""
    end = floor_to(now or datetime.now(UTC), 5)
    start = end - timedelta(hours=hours)
    dbs = writers(db_url)
    await dbs.open()
    total = 0
    try:
        for customer in DEMO_CUSTOMERS:
            await dbs.home.fetch(
                "INSERT INTO customers (customer_id, region, tier) VALUES (%s, %s, %s)"
                " ON CONFLICT (customer_id) DO NOTHING",
                (customer.customer_id, customer.region, customer.tier),
            )
            beacons = generate_beacons(customer, start, end, seed=SEED)
            while chunk := list(islice(beacons, CHUNK)):
                rows = [validate(b, customer.customer_id, end) for b in chunk]
                await beacon_store.store(
                    await dbs.primary(customer.region, customer.customer_id), rows)
                total += len(rows)
    finally:
        await dbs.close()
    return total


def first_channel(customer: DemoCustomer) -> str:
    """The customer's most watched demo channel, for the printed examples."""
    start = datetime(2026, 1, 1, 20, tzinfo=UTC)
    sample = generate_beacons(customer, start, start + timedelta(minutes=5))
    return Counter(b["ChannelId"] for b in sample).most_common(1)[0][0]
