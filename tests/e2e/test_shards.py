"""A region sharded by customer (issue #15) through the gateway: americas is a coordinator
over two shard clusters (postgres_fdw hash partitions by customer_id). A customer's beacons
land only on the shard the coordinator routes it to; the legacy, v1 and SQL answers equal the
oracle; a reseller whose customers are on both shards gets the merged answer; a shard down
answers 503 for its customers only, the other shard's keep answering, and nothing accepted is
lost once it is back.

The module runs two shard clusters and a coordinator cluster of its own; the home database is
a database of the test cluster."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from edgestats_core import sharding
from edgestats_core.tenancy.api_keys import create_customer_key, create_reseller_key
from edgestats_stack import postgres
from edgestats_stack.processes import free_ports
from edgestats_stack.stack import REPO, prepare_database, start_stack
from tests import oracle, oracle_v1
from tests.builders import v1_scenario, wire
from tests.compare import assert_same
from tests.e2e.api import Api
from tests.fixtures.stack import local_cluster

pytestmark = pytest.mark.e2e


@dataclass
class Region:
    run_dir: Path
    home: str
    coordinator: str
    shards: list[str]                 # shard database URLs, in server order
    ports: list[int]
    api: Api
    keys: dict[str, str]              # customer -> key
    shard_of: dict[str, int]          # customer -> shard index
    reseller_key: str
    beacons: dict[str, list[dict]]
    now: datetime

    def all_beacons(self) -> list[dict]:
        return [b for bs in self.beacons.values() for b in bs]


def routed(coordinator: str, count_per_shard: int, shards: int) -> dict[str, int]:
    """Customer ids the coordinator routes to each shard: customer -> shard index."""
    out: dict[str, int] = {}
    per = [0] * shards
    with psycopg.connect(coordinator) as conn:
        for i in range(500):
            customer = f"c-us-{i}"
            (row,) = conn.execute(sharding.ROUTE_SQL, (customer,)).fetchall()
            index = int(row[0].removeprefix(sharding.SERVER_PREFIX)) - 1
            if per[index] < count_per_shard:
                per[index] += 1
                out[customer] = index
            if min(per) == count_per_shard:
                return out
    raise AssertionError("a shard gets no customer")


@pytest.fixture(scope="module")
def region(frozen_now: datetime) -> Iterator[Region]:
    admin = local_cluster("needs local clusters of its own")
    run_dir = REPO / ".run" / f"shards-{uuid.uuid4().hex[:8]}"
    ports = free_ports(3)
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, run_dir, ignore_errors=True)
        admins = []
        for name, port in zip(("shard1", "shard2", "coordinator"), ports, strict=True):
            admins.append(postgres.ensure_cluster(run_dir, port, name, "shared_buffers = 64MB\n"))
            cleanup.callback(shutil.rmtree, postgres.cluster_dir(run_dir, name), True)
            cleanup.callback(postgres.stop_cluster, run_dir, name)
        shards = [postgres.create_database(a, "edgestats") for a in admins[:2]]
        # the coordinator in a cluster of its own, as in production: nothing but its tables
        coordinator = postgres.create_database(admins[2], "edgestats")
        name = f"edgestats_home_{uuid.uuid4().hex[:8]}"
        cleanup.callback(postgres.drop_database, admin, name)
        home = postgres.create_database(admin, name)
        for shard in shards:
            prepare_database(shard, ())
        sharding.create_coordinator(coordinator, shards)
        assert prepare_database(home, (("americas", coordinator),))  # home migrated, shards done
        env = {"EDGESTATS_FROZEN_NOW": frozen_now.isoformat(),
               "EDGESTATS_RESULT_CACHE_SECONDS": "0", "EDGESTATS_RATE_LIMIT": "1000000",
               "EDGESTATS_RATE_BURST": "1000000",
               "EDGESTATS_REGION_DATABASES": f"americas={coordinator}"}
        stack = start_stack(run_dir, home, workers=1, env=env)
        cleanup.callback(stack.stop)
        api = cleanup.enter_context(Api(stack.http_url))
        shard_of = routed(coordinator, 1, len(shards))
        keys, beacons = {}, {}
        with psycopg.connect(home) as conn:
            for seed, customer in enumerate(shard_of, start=71):
                keys[customer] = create_customer_key(conn, customer, "americas", "advanced")
                beacons[customer] = v1_scenario(customer, frozen_now, seed=seed)
            reseller_key = create_reseller_key(conn, "r-us", list(shard_of), "advanced", None)
        for customer, made in beacons.items():
            response = api.ingest(keys[customer], [wire(b) for b in made])
            assert response.json() == {"accepted": len(made), "duplicates": 0, "rejected": []}
        yield Region(run_dir, home, coordinator, shards, ports, api, keys, shard_of, reseller_key,
                     beacons, frozen_now)


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT customer_id, count(*)::int FROM beacons GROUP BY 1"))


def test_beacons_land_only_on_their_shard(region: Region):
    for index, shard in enumerate(region.shards):
        assert counts(shard) == {c: len(region.beacons[c])
                                 for c, i in region.shard_of.items() if i == index}
    # the coordinator stores nothing itself and reads both shards
    assert counts(region.coordinator) == {c: len(bs) for c, bs in region.beacons.items()}


def test_legacy_and_v1_answer_from_each_shard(region: Region):
    api, now = region.api, region.now
    for customer, key in region.keys.items():
        assert_same(api.get_json("/summary/agg", key, time="24h"),
                    oracle.summary_agg(region.beacons[customer], customer, now, "24h"))
    start = oracle_v1.bucket_start(now - timedelta(hours=1), "minute")
    body = {"from_date": start.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "to_date": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "granularity": "minute"}
    for path in ("audience", "traffic", "viewing_time"):
        response = api.http.post(f"/analytics/v1/metrics/reseller/{path}",
                                 content=json.dumps(body), headers=api.auth(region.reseller_key))
        assert response.status_code == 200, response.text
        assert_same(response.json(), oracle_v1.metric(path, region.all_beacons(),
                                                      list(region.keys), start, now, "minute",
                                                      reseller=True))


def test_sql_runs_on_the_shard_of_the_customers_it_names(region: Region):
    since = (region.now - timedelta(days=2)).isoformat()
    query = ('SELECT CustomerId, COUNT(*) AS n FROM "sdk-americas-realtime"'
             " WHERE CustomerId IN ({ids}) AND __time >= '{since}' GROUP BY CustomerId")
    for customer, key in region.keys.items():
        expected = sum(b["__time"] >= region.now - timedelta(days=2)
                       for b in region.beacons[customer])
        for who in (key, region.reseller_key):
            got = region.api.sql(who, query.format(ids=f"'{customer}'", since=since))
            assert got.status_code == 200, got.text
            assert got.json() == [{"CustomerId": customer, "n": expected}]
    for key in (*region.keys.values(), region.reseller_key):  # no datasource: still answered
        assert region.api.sql(key, "SELECT 1 AS one").json() == [{"one": 1}]
    both = ", ".join(f"'{c}'" for c in region.keys)
    refused = region.api.sql(region.reseller_key, query.format(ids=both, since=since))
    assert refused.status_code == 400, refused.text
    assert "different shards" in refused.json()["detail"][0]["msg"]


def test_a_customer_of_another_region_does_not_pick_the_shard(region: Region):
    """A reseller selling in two regions names an americas customer and an emea one in an
    americas query: the emea customer has no rows here, wherever its id would hash, so the
    query runs on the americas customer's shard (and counts only its rows)."""
    (customer, shard) = next(iter(region.shard_of.items()))
    with psycopg.connect(region.coordinator) as conn:
        elsewhere = next(c for c in (f"c-eu-{i}" for i in range(200))
                         if conn.execute(sharding.ROUTE_SQL, (c,)).fetchone()[0]
                         != f"{sharding.SERVER_PREFIX}{shard + 1}")
    with psycopg.connect(region.home) as conn:
        create_customer_key(conn, elsewhere, "emea", "advanced")
        key = create_reseller_key(conn, f"r-{uuid.uuid4().hex[:8]}", [customer, elsewhere],
                                  "advanced", None)
    query = ('SELECT CustomerId, COUNT(*) AS n FROM "sdk-americas-realtime"'
             f" WHERE CustomerId IN ('{customer}', '{elsewhere}') GROUP BY CustomerId")
    got = region.api.sql(key, query)
    assert got.status_code == 200, got.text
    assert got.json() == [{"CustomerId": customer, "n": len(region.beacons[customer])}]


def test_no_cross_tenant_read_on_a_shard(region: Region):
    """A customer's key cannot name another customer (403), and on the shard itself the
    reader role's row-level security shows a query only its customers' rows."""
    (first, second) = list(region.keys)
    query = f'SELECT COUNT(*) AS n FROM "sdk-americas-realtime" WHERE CustomerId = \'{second}\''
    assert region.api.sql(region.keys[first], query).status_code == 403
    for index, shard in enumerate(region.shards):
        mine = next(c for c, i in region.shard_of.items() if i == index)
        with psycopg.connect(shard) as conn, conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute("SET LOCAL ROLE edgestats_reader")
            conn.execute("SELECT set_config('edgestats.customers', 'c-nobody', true)")
            assert conn.execute("SELECT count(*) FROM beacons").fetchone() == (0,)
            conn.execute("SELECT set_config('edgestats.customers', %s, true)", (mine,))
            seen = conn.execute("SELECT DISTINCT customer_id FROM beacons").fetchall()
        assert seen == [(mine,)]


def test_a_shard_down_fails_only_its_customers_and_loses_nothing(region: Region):
    down = 1
    (victim,) = [c for c, i in region.shard_of.items() if i == down]
    (other,) = [c for c, i in region.shard_of.items() if i != down]
    api, now = region.api, region.now
    postgres.stop_cluster(region.run_dir, f"shard{down + 1}")
    try:
        assert api.get("/summary/agg", region.keys[victim], time="24h").status_code == 503
        late = dict(region.beacons[victim][0], SessionId="after-the-outage")
        refused = api.ingest(region.keys[victim], [wire(late)])
        assert refused.status_code == 503 and refused.json() == {"detail": "Service Unavailable"}
        assert_same(api.get_json("/summary/agg", region.keys[other], time="24h"),
                    oracle.summary_agg(region.beacons[other], other, now, "24h"))
        more = dict(region.beacons[other][0], SessionId="during-the-outage")
        accepted = api.ingest(region.keys[other], [wire(more)])
        assert accepted.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
        region.beacons[other].append(more)
        assert api.get("/ping/db").status_code == 200  # the coordinator and home answer
    finally:
        postgres.ensure_cluster(region.run_dir, region.ports[down], f"shard{down + 1}")
    for customer, key in region.keys.items():  # every beacon accepted is there
        assert counts(region.shards[region.shard_of[customer]])[customer] == len(
            region.beacons[customer])
        assert_same(api.get_json("/summary/agg", key, time="24h"),
                    oracle.summary_agg(region.beacons[customer], customer, now, "24h"))
