"""Region databases (issue #15): the settings that map regions to databases, the rollers of
the metrics process running on every region's database, and migrations on each."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from edgestats_core.config import Settings, data_databases, parse_region_urls
from edgestats_stack.stack import prepare_database
from metrics_service import live_reads, live_rollups, minute_rollups
from metrics_service.__main__ import rollers
from tests.db.test_minute_rollups import before, coverage_of
from tests.db.test_rollups import assert_rows_equal, expected_rows, make_beacons, minute_rows, store
from tests.fixtures.stack import local_cluster, migrated_database

pytestmark = pytest.mark.db
HOUR = timedelta(hours=1)


def test_region_urls_parse_and_group():
    pairs = parse_region_urls(" emea=postgresql://a/x\napac=postgresql://b/y ")
    assert pairs == (("emea", "postgresql://a/x"), ("apac", "postgresql://b/y"))
    assert data_databases("postgresql://home/z", pairs) == {
        "americas": "postgresql://home/z", "emea": "postgresql://a/x",
        "apac": "postgresql://b/y"}
    assert data_databases("h", ()) == {"americas+emea+apac": "h"}
    shared = (("emea", "u"), ("apac", "u"))
    settings = Settings("h", region_urls=shared)
    assert settings.data_urls() == ["h", "u"] and settings.all_urls() == ["h", "u"]
    assert settings.region_url("apac") == "u" and settings.region_url("americas") == "h"
    assert Settings("h").all_urls() == ["h"]
    for bad in ("emea", "europe=postgresql://x", "emea="):
        with pytest.raises(ValueError, match="region=URL"):
            parse_region_urls(bad)


@pytest.fixture
def regions() -> Iterator[tuple[str, dict[str, str]]]:
    """(home, {region: url}) of fresh databases; the rollers roll every customer's recent
    beacons, which must not change what other tests read."""
    admin = local_cluster("needs the local cluster to create databases")
    with ExitStack() as cleanup:
        home = cleanup.enter_context(migrated_database(admin, "edgestats_home"))
        urls = {r: cleanup.enter_context(migrated_database(admin, f"edgestats_{r}"))
                for r in ("emea", "apac")}
        yield home, urls


def test_prepare_database_migrates_every_region(regions):
    home, urls = regions
    # already migrated by the fixture: nothing left anywhere
    assert prepare_database(home, tuple(urls.items())) == []
    for url in [home, *urls.values()]:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regclass('beacons_live')").fetchone()[0]


def test_the_metrics_process_rolls_every_region(regions):
    """`rollers` (the metrics process's background work) brings the minute totals and the
    live layer of each region's database up to date, each from its own beacons."""
    home, urls = regions
    now = datetime.now(UTC)
    made = {}
    for seed, (region, url) in enumerate(urls.items(), start=41):
        customer_id = f"c-{uuid.uuid4().hex[:10]}"
        beacons = [b for b in make_beacons(customer_id, now - 10 * timedelta(minutes=1), 1,
                                           sessions=6, seed=seed) if b["__time"] < now]
        store(url, customer_id, beacons, now)
        made[region] = (customer_id, beacons)
    target = (now - minute_rollups.LAG).replace(second=0, microsecond=0)
    settings = Settings(home, region_urls=tuple(urls.items()), minute_rollup_seconds=0.05,
                        live_rollup_seconds=0.05)

    def caught_up(url: str) -> bool:
        with psycopg.connect(url) as conn:
            live = conn.execute(live_reads.COVERAGE_SQL).fetchone()
        minutes = coverage_of(url, target - HOUR).minutes | coverage_of(url, target).minutes
        return (any(to >= target for _, to in minutes)
                and live is not None and live[1] >= now - live_rollups.LAG)

    async def roll_until_done() -> None:
        loop = asyncio.create_task(rollers(settings))
        try:
            while not all(caught_up(url) for url in urls.values()):
                await asyncio.sleep(0.1)
        finally:
            loop.cancel()
        await asyncio.sleep(1)  # a roll already in its thread finishes

    asyncio.run(asyncio.wait_for(roll_until_done(), 60))
    for region, (customer_id, beacons) in made.items():
        url = urls[region]
        reached = max(to for _, to in coverage_of(url, target - HOUR).minutes
                      | coverage_of(url, target).minutes)
        assert_rows_equal(minute_rows(url, customer_id, "beacons_minute_totals"),
                          expected_rows(before(beacons, reached), 60))
        with psycopg.connect(urls[region]) as conn:
            upto = conn.execute(live_reads.COVERAGE_SQL).fetchone()[1]
            live = conn.execute("SELECT customer_id, sum(beacons)::int FROM beacons_live"
                                " WHERE level = 0 AND width = 5 AND \"time\" < %s GROUP BY 1",
                                (upto,)).fetchall()
        assert live == [(customer_id, len(before(beacons, upto)))]
    with psycopg.connect(home) as conn:  # no beacon, nothing rolled at home
        assert conn.execute("SELECT count(*) FROM beacons_live").fetchone()[0] == 0
