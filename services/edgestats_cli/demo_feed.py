"""Keeps the demo data live: every 5 s, stores the demo customers' beacons of the window just ended.

`make run` starts it in the background (`python -m edgestats_cli.demo_feed`) so that
`time=live` answers with data; generation is deterministic per window, so it continues
exactly the history `edgestats demo-data` loaded.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

from edgestats_cli.demo_data import DEMO_CUSTOMERS, generate_beacons
from edgestats_cli.demo_loader import SEED, writers
from edgestats_core.errors import Unavailable
from edgestats_core.query.windows import floor_to
from metrics_service import beacon_store
from metrics_service.beacon_validation import validate


async def feed(db_url: str) -> None:
    dbs = writers(db_url)
    await dbs.open()
    last = floor_to(datetime.now(UTC), 5) - timedelta(minutes=1)
    while True:
        end = floor_to(datetime.now(UTC), 5)
        if end > last:
            try:
                for customer in DEMO_CUSTOMERS:
                    rows = [validate(b, customer.customer_id, end)
                            for b in generate_beacons(customer, last, end, seed=SEED)]
                    await beacon_store.store(
                        await dbs.primary(customer.region, customer.customer_id), rows)
                last = end
            except Unavailable:
                pass  # database restarting: retry the same windows next time
        await asyncio.sleep(1)


if __name__ == "__main__":
    asyncio.run(feed(os.environ["DATABASE_URL"]))
