"""A region sharded by customer (edgestats_core.sharding): the coordinator routes each
customer to one shard, reads through it equal the shards' rows, and a customer's aggregate
runs on its shard — the remote SQL carries the GROUP BY and the sketch functions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from edgestats_core import sharding
from edgestats_stack import postgres
from tests.db.test_rollups import make_beacons, store
from tests.fixtures.stack import local_cluster, migrated_database

pytestmark = pytest.mark.db


@pytest.fixture(scope="module")
def region() -> Iterator[tuple[str, list[str]]]:
    """(coordinator, shards): two migrated shard databases and a coordinator over them."""
    admin = local_cluster("needs the local cluster to create databases")
    with ExitStack() as cleanup:
        shards = [cleanup.enter_context(migrated_database(admin, f"edgestats_shard{i}"))
                  for i in (1, 2)]
        name = f"edgestats_coordinator_{uuid.uuid4().hex[:8]}"
        coordinator = postgres.create_database(admin, name)
        cleanup.callback(postgres.drop_database, admin, name)
        sharding.create_coordinator(coordinator, shards)
        sharding.create_coordinator(coordinator, shards)  # idempotent
        yield coordinator, shards


def route(coordinator: str, customer_id: str) -> str:
    with psycopg.connect(coordinator) as conn:
        (row,) = conn.execute(sharding.ROUTE_SQL, (customer_id,)).fetchall()
    return sharding.shard_url(coordinator, row[1])


def customers_per_shard(coordinator: str, shards: list[str]) -> dict[str, str]:
    """A customer id routed to each shard: shard URL -> customer id."""
    found: dict[str, str] = {}
    for i in range(200):
        found.setdefault(route(coordinator, f"c-shard-{i}"), f"c-shard-{i}")
        if len(found) == len(shards):
            return found
    raise AssertionError("a shard gets no customer")


def test_the_coordinator_lists_and_routes_to_its_shards(region):
    coordinator, shards = region
    assert sharding.shard_urls(coordinator) == shards
    assert sharding.expand([coordinator, shards[0]]) == shards
    routed = customers_per_shard(coordinator, shards)
    assert set(routed) == set(shards)
    with psycopg.connect(coordinator) as conn:
        buckets = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'beacons'::regclass").fetchone()
    assert buckets == (sharding.BUCKETS,)


def test_reads_through_the_coordinator_equal_the_shards(region):
    coordinator, shards = region
    now = datetime.now(UTC).replace(microsecond=0)
    stored = {}
    for shard, customer in customers_per_shard(coordinator, shards).items():
        beacons = make_beacons(customer, now - timedelta(hours=2), 1, sessions=4, seed=len(shard))
        store(shard, customer, beacons, now)
        stored[customer] = len(beacons)
    with psycopg.connect(coordinator) as conn:
        got = dict(conn.execute("SELECT customer_id, count(*)::int FROM beacons"
                                " WHERE customer_id = ANY(%s) GROUP BY 1", (list(stored),)))
    assert got == stored


def test_every_bucket_is_read_once(region):
    """Customers in different buckets of one shard, and no customer filter at all: each row
    is counted once (a bucket's foreign partition sees only its own rows)."""
    coordinator, shards = region
    now = datetime.now(UTC).replace(microsecond=0)
    same_shard = [c for c in (f"c-bucket-{i}" for i in range(60))
                  if route(coordinator, c) == shards[0]][:3]
    for customer in same_shard:
        store(shards[0], customer, make_beacons(customer, now - timedelta(hours=2), 1,
                                                sessions=2, seed=7), now)
    truth = {}
    for shard in shards:
        with psycopg.connect(shard) as conn:
            truth |= dict(conn.execute(
                "SELECT customer_id, count(*)::int FROM beacons GROUP BY 1").fetchall())
    with psycopg.connect(coordinator) as conn:
        everyone = dict(conn.execute(
            "SELECT customer_id, count(*)::int FROM beacons GROUP BY 1").fetchall())
        chosen = dict(conn.execute(
            "SELECT customer_id, count(*)::int FROM beacons WHERE customer_id = ANY(%s)"
            " GROUP BY 1", (same_shard,)).fetchall())
        total = conn.execute("SELECT count(*) FROM beacons").fetchone()[0]
    assert everyone == truth and total == sum(truth.values())
    assert chosen == {c: truth[c] for c in same_shard}


def test_an_insert_through_the_coordinator_lands_on_the_shard(region):
    """Rows written through the coordinator (an operator's INSERT, columns left out get the
    shard's defaults) land on the customer's shard only, once."""
    coordinator, shards = region
    customer, shard = next((c, s) for s, c in customers_per_shard(coordinator, shards).items())
    row = {"customer_id": customer, "time": datetime.now(UTC), "session_id": "via-coordinator",
           "source": "cdn"}
    insert = ('INSERT INTO beacons (customer_id, "time", session_id, source) VALUES'
              " (%(customer_id)s, %(time)s, %(session_id)s, %(source)s) ON CONFLICT DO NOTHING")
    with psycopg.connect(coordinator) as conn:
        conn.execute(insert, row)
        conn.execute(insert, row)  # a retry: the shard's key drops it
    for url in shards:
        with psycopg.connect(url) as conn:
            found = conn.execute("SELECT count(*), bool_and(ingested_at IS NOT NULL) FROM"
                                 " beacons WHERE session_id = 'via-coordinator'").fetchone()
        assert found == ((1, True) if url == shard else (0, None))


def remote_sql(coordinator: str, query: str, params: tuple) -> str:
    with psycopg.connect(coordinator) as conn:
        plan = conn.execute("EXPLAIN (VERBOSE, COSTS OFF) " + query, params).fetchall()
    return "\n".join(line for (line,) in plan)


def test_a_customers_aggregate_runs_on_its_shard(region):
    coordinator, shards = region
    routed = customers_per_shard(coordinator, shards)
    one = next(iter(routed.values()))
    minute = ("SELECT customer_id, date_bin('1 minute', \"time\", '2000-01-01'::timestamptz) AS t,"
              " count(*), hll_cardinality(hll_add_agg(hll_hash_text(session_id)))"
              " FROM beacons WHERE customer_id = %s GROUP BY 1, 2")
    plan = remote_sql(coordinator, minute, (one,))
    assert "Foreign Scan" in plan and plan.count("Remote SQL") == 1, plan
    remote = plan.split("Remote SQL:")[1]
    assert "GROUP BY" in remote and "hll_add_agg" in remote, plan
    rollup = ("SELECT customer_id, hll_cardinality(hll_union_agg(sessions)),"
              " tdigest_percentile(join_time, 0.5) FROM beacons_minute"
              " WHERE customer_id = ANY(%s) GROUP BY 1")
    plan = remote_sql(coordinator, rollup, (list(routed.values()),))
    assert plan.count("Async Foreign Scan") == len(shards), plan
    for part in plan.split("Remote SQL:")[1:]:
        assert "GROUP BY" in part and "hll_union_agg" in part and "tdigest_percentile" in part
