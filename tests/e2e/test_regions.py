"""A database per region (issue #15) through the gateway: a customer's beacons land only in
its region's database; the legacy, v1 and SQL answers read them there (equal to the oracle
over the test's beacons); a reseller whose customers span two regions gets the merged
answer; a SQL query names one region's datasources; the home database keeps tenancy only.

The module has four databases of its own (home, americas, emea, apac) and a stack
configured with EDGESTATS_REGION_DATABASES, as a deployment with a PostgreSQL per region."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from edgestats_core.config import REGIONS
from edgestats_core.tenancy.api_keys import create_customer_key, create_reseller_key
from edgestats_stack.stack import start_stack
from tests import oracle, oracle_v1
from tests.builders import v1_scenario, wire
from tests.compare import assert_same
from tests.e2e.api import Api
from tests.e2e.test_v1_metrics import assert_join_time_sketch
from tests.fixtures.stack import local_cluster, migrated_database

pytestmark = pytest.mark.e2e
# customer id -> (region, seed)
CUSTOMERS = {"c-eu": ("emea", 31), "c-asia": ("apac", 32), "c-us": ("americas", 33)}


@dataclass
class World:
    home: str
    urls: dict[str, str]            # region -> its database
    api: Api
    keys: dict[str, str]            # customer id -> key
    reseller_key: str               # of c-eu and c-asia, no region of its own
    beacons: dict[str, list[dict]]  # customer id -> its beacons
    now: datetime

    def all_beacons(self) -> list[dict]:
        return [b for bs in self.beacons.values() for b in bs]


@pytest.fixture(scope="module")
def world(frozen_now: datetime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    admin = local_cluster("needs the local cluster to create databases")
    with ExitStack() as cleanup:
        home = cleanup.enter_context(migrated_database(admin, "edgestats_home"))
        urls = {r: cleanup.enter_context(migrated_database(admin, f"edgestats_{r}"))
                for r in REGIONS}
        env = {"EDGESTATS_FROZEN_NOW": frozen_now.isoformat(),
               "EDGESTATS_RESULT_CACHE_SECONDS": "0", "EDGESTATS_RATE_LIMIT": "1000000",
               "EDGESTATS_RATE_BURST": "1000000",
               "EDGESTATS_REGION_DATABASES": " ".join(f"{r}={u}" for r, u in urls.items())}
        stack = start_stack(Path(tmp_path_factory.mktemp("regions-stack")), home, env=env)
        cleanup.callback(stack.stop)
        api = cleanup.enter_context(Api(stack.http_url))
        keys, beacons = {}, {}
        with psycopg.connect(home) as conn:
            for customer, (region, seed) in CUSTOMERS.items():
                keys[customer] = create_customer_key(conn, customer, region, "advanced")
                beacons[customer] = v1_scenario(customer, frozen_now, seed=seed)
            reseller_key = create_reseller_key(conn, "r-global", ["c-eu", "c-asia"],
                                               "advanced", None)
        for customer, made in beacons.items():
            response = api.ingest(keys[customer], [wire(b) for b in made])
            assert response.json() == {"accepted": len(made), "duplicates": 0, "rejected": []}
        yield World(home, urls, api, keys, reseller_key, beacons, frozen_now)


def counts(url: str, table: str = "beacons") -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute(f"SELECT customer_id, count(*)::int FROM {table} GROUP BY 1"))


def test_beacons_land_only_in_their_region(world: World):
    for region, url in world.urls.items():
        expected = {c: len(world.beacons[c]) for c, (r, _) in CUSTOMERS.items() if r == region}
        assert counts(url) == expected, region
    assert counts(world.home) == {}  # tenancy only
    with psycopg.connect(world.home) as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone()[0] == len(CUSTOMERS)


@pytest.mark.parametrize("customer", list(CUSTOMERS))
@pytest.mark.parametrize("time", ["10m", "24h"])
def test_legacy_reads_the_customers_region(world: World, customer: str, time: str):
    key, beacons = world.keys[customer], world.beacons[customer]
    assert_same(world.api.get_json("/summary/agg", key, time=time),
                oracle.summary_agg(beacons, customer, world.now, time))
    assert_same(world.api.get_json("/summary", key, time=time),
                oracle.summary(beacons, customer, world.now, time, "channel"))


def v1(world: World, path: str, key: str, body: dict) -> list:
    response = world.api.http.post(f"/analytics/v1/metrics/{path}", content=json.dumps(body),
                                   headers=world.api.auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


HOUR = timedelta(hours=1)
RANGES = [(timedelta(hours=1), "minute"), (timedelta(days=1), "hour"),
          (timedelta(days=29), "day")]


@pytest.mark.parametrize("path", ["audience", "traffic", "viewing_time", "qoe/join_time",
                                  "audience/os"])
@pytest.mark.parametrize(("span", "granularity"), RANGES)
def test_reseller_spanning_regions_gets_the_merged_answer(world, path, span, granularity):
    # whole buckets: a historical layer's range starts at its first bucket's start
    start, end = oracle_v1.bucket_start(world.now - span, granularity), world.now
    body = {"from_date": iso(start), "to_date": iso(end), "granularity": granularity}
    # historical join times merge per-minute t-digests (documented): checked as a sketch
    same = assert_join_time_sketch if path == "qoe/join_time" and span > HOUR else assert_same
    expected = oracle_v1.metric(path, world.all_beacons(), ["c-eu", "c-asia"], start, end,
                                granularity, reseller=True)
    got = v1(world, "reseller/" + path, world.reseller_key, body)
    assert [r["customer_id"] for r in got] == [r["customer_id"] for r in expected]
    same(got, expected)
    one = oracle_v1.metric(path, world.all_beacons(), ["c-asia"], start, end, granularity)
    same(v1(world, path, world.keys["c-asia"], body), one)


def test_sql_reads_the_datasources_region(world: World):
    since = (world.now - timedelta(days=2)).isoformat()
    query = ('SELECT CustomerId, COUNT(*) AS n FROM "sdk-{region}-realtime"'
             " WHERE CustomerId IN ({ids}) AND __time >= '{since}'"
             " GROUP BY CustomerId ORDER BY CustomerId")
    recent = {c: sum(b["__time"] >= world.now - timedelta(days=2) for b in bs)
              for c, bs in world.beacons.items()}
    mine = world.api.sql(world.keys["c-asia"],
               query.format(region="apac", ids="'c-asia'", since=since))
    assert mine.status_code == 200, mine.text
    assert mine.json() == [{"CustomerId": "c-asia", "n": recent["c-asia"]}]
    # a reseller without a region reads each region's datasource: only that region's data
    for region, customer in (("emea", "c-eu"), ("apac", "c-asia")):
        got = world.api.sql(world.reseller_key,
                  query.format(region=region, ids="'c-eu', 'c-asia'",
                               since=since))
        assert got.status_code == 200, got.text
        assert got.json() == [{"CustomerId": customer, "n": recent[customer]}]


def test_sql_naming_two_regions_is_refused(world: World):
    query = ('SELECT COUNT(*) AS n FROM "sdk-emea-realtime" WHERE CustomerId = \'c-eu\''
             ' UNION ALL SELECT COUNT(*) FROM "sdk-apac-realtime" WHERE CustomerId = \'c-asia\'')
    got = world.api.sql(world.reseller_key, query)
    assert got.status_code == 400, got.text
    (problem,) = got.json()["detail"]
    assert problem["loc"] == ["body", "query"] and "one region" in problem["msg"], problem
    # and the region's own key still cannot name another region (403, as before)
    other = world.api.sql(world.keys["c-eu"],
                'SELECT COUNT(*) FROM "sdk-apac-realtime" WHERE CustomerId = \'c-eu\'')
    assert other.status_code == 403, other.text
