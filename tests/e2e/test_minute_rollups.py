"""Hours rolled into the minute layer as they go (metrics_service.minute_rollups, issue #8):
through the gateway, a range mixing published hours, an hour rolled up to some minute and
raw hours answers like the raw beacons — v1 on every layer and the SQL historical
datasources — and a late beacon in a rolled minute counts at once, before the next roll."""

from __future__ import annotations

import random
from datetime import timedelta

import psycopg
import pytest

from edgestats_core.metrics.rollup_rows import COVERAGE_SQL, Coverage
from edgestats_core.query import planner
from metrics_service import minute_rollups, rollups
from tests import oracle_v1
from tests.builders import beacon, wire
from tests.compare import assert_same
from tests.e2e.test_sql_rollups import SAME_ANSWER, _beacons, close, rows_of
from tests.e2e.test_v1_layers import ask, iso

pytestmark = pytest.mark.e2e
HOUR = timedelta(hours=1)
PATHS = ["audience", "traffic", "viewing_time", "buffer_health", "audience/os"]


class World:
    def __init__(self, customer_id, key, beacons, start, partial, rolled_to, end) -> None:
        self.customer_id, self.key, self.beacons = customer_id, key, beacons
        self.start, self.partial, self.rolled_to, self.end = start, partial, rolled_to, end

    def where(self) -> str:
        return (f"CustomerId = '{self.customer_id}' AND __time >= '{self.start.isoformat()}'"
                f" AND __time < '{self.end.isoformat()}'")


def coverage(db_url: str, world: World) -> Coverage:
    with psycopg.connect(db_url) as conn:
        return Coverage.of(conn.execute(COVERAGE_SQL, {"start": world.start, "end": world.end}))


@pytest.fixture(scope="module")
def world(api, tenants, frozen_now, db_url) -> World:
    """Seven hours of beacons 12 days ago (hours no other test rolls up): five published by
    the hourly roll-up, the sixth rolled into the minute layer up to its 35th minute, the
    last raw."""
    customer_id, key = tenants.customer("advanced", "emea")
    end = frozen_now.replace(minute=0, second=0, microsecond=0) - timedelta(days=12)
    start = end - 7 * HOUR
    beacons = _beacons(customer_id, start, 7, seed=71)
    for i in range(0, len(beacons), 5000):
        assert api.ingest(key, [wire(b) for b in beacons[i:i + 5000]]).status_code == 200
    rollups.roll_up_interval(db_url, start, start + 5 * HOUR)
    partial, rolled_to = start + 5 * HOUR, start + 5 * HOUR + timedelta(minutes=35)
    with psycopg.connect(db_url, autocommit=True) as conn:
        minute_rollups.roll_up_minutes(conn, rolled_to)
    made = World(customer_id, key, beacons, start, partial, rolled_to, end)
    assert (partial, rolled_to) in coverage(db_url, made).minutes
    return made


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("layer", [None, "historical-hour", "historical-minute"])
def test_v1_answers_like_the_raw_beacons(api, world: World, path, layer):
    body = {"from_date": iso(world.start), "to_date": iso(world.end), "granularity": "hour"}
    if layer:
        body["data_layer"] = layer
    expected = oracle_v1.metric(path, world.beacons, [world.customer_id], world.start,
                                world.end, "hour")
    assert_same(ask(api, world.key, path, body), expected)


def test_minute_buckets_across_the_rolled_minute(api, world: World):
    start, end = world.partial, world.partial + HOUR
    body = {"from_date": iso(start), "to_date": iso(end), "granularity": "fifteen_minute"}
    realtime = ask(api, world.key, "traffic", {**body, "data_layer": "realtime"})
    assert_same(realtime, oracle_v1.metric("traffic", world.beacons, [world.customer_id],
                                           start, end, "fifteen_minute"))
    assert_same(ask(api, world.key, "traffic", {**body, "data_layer": "historical-minute"}),
                realtime)


@pytest.mark.parametrize("layer", ["historical-hour", "historical-minute"])
@pytest.mark.parametrize("case", SAME_ANSWER[:4], ids=[f"q{i}" for i in range(4)])
def test_sql_historical_answers_like_realtime(api, world: World, layer, case):
    text, distinct = case
    realtime = rows_of(api, world.key, text.format(ds='"sdk-emea-realtime"', where=world.where()))
    historical = rows_of(api, world.key,
                         text.format(ds=f'"sdk-emea-{layer}"', where=world.where()))
    if "TIME_FLOOR" in text:
        assert len(realtime) == 7
    close(historical, realtime, distinct)


def _realtime_expected(world: World, keep, by=None) -> list[dict]:
    """COUNT(*), SUM(ViewingTime), SUM(TotalDownlinkThroughput) and distinct sessions of the
    world's beacons that `keep` keeps, per `by` (None: one row), computed here."""
    groups: dict = {}
    for b in world.beacons:
        if keep(b["__time"]):
            groups.setdefault(by(b) if by else None, []).append(b)

    def total(rows, column):
        values = [r[column] for r in rows if r.get(column) is not None]
        return sum(values) if values else None

    return [{**({"k": key} if by else {}), "n": len(rows), "vt": total(rows, "ViewingTime"),
             "t": total(rows, "TotalDownlinkThroughput"),
             "d": len({r["SessionId"] for r in rows})}
            for key, rows in sorted(groups.items(), key=lambda kv: str(kv[0]))]


KPI = ("SELECT {by}COUNT(*) AS n, SUM(ViewingTime) AS vt, SUM(TotalDownlinkThroughput) AS t,"
       ' COUNT(DISTINCT SessionId) AS d FROM "sdk-emea-realtime" WHERE CustomerId = \'{c}\''
       " AND {bounds}{group}")


@pytest.mark.parametrize(("low", "op_low", "high", "op_high"), [
    # inside the minute-rolled hour, edges inside minutes: partial minutes come from raw
    (timedelta(minutes=7, seconds=13), ">=", timedelta(minutes=52, seconds=41), "<"),
    # edges on minute boundaries where beacons sit exactly: > and <= are kept exactly
    (timedelta(minutes=10), ">", timedelta(minutes=30), "<="),
    # from the published hours into the minute-rolled one
    (timedelta(hours=-3, minutes=-29, seconds=-35), ">=", timedelta(minutes=20), "<"),
])
def test_realtime_sql_on_the_minute_totals_answers_to_the_second(api, world: World, db_url, low,
                                                                   op_low, high, op_high):
    start, end = world.partial + low, world.partial + high
    held = coverage(db_url, world)  # enough of the range for the minute totals to answer
    assert planner.exact_totals_relation(start, end, held.hours, held.minutes) is not None
    compare = {">=": lambda t: t >= start, ">": lambda t: t > start,
               "<": lambda t: t < end, "<=": lambda t: t <= end}
    bounds = (f"__time {op_low} '{start.isoformat()}' AND __time {op_high} '{end.isoformat()}'")
    whole = KPI.format(by="", c=world.customer_id, bounds=bounds, group="")
    expected = _realtime_expected(world, lambda t: compare[op_low](t) and compare[op_high](t))
    close(rows_of(api, world.key, whole), expected, ("d",))
    by_source = KPI.format(by="TIME_FLOOR(__time, 'PT15M') AS b, Source AS k, ",
                           c=world.customer_id, bounds=bounds, group=" GROUP BY 1, 2 ORDER BY 1, 2")
    got = rows_of(api, world.key, by_source)
    assert sum(row["n"] for row in got) == expected[0]["n"]
    assert {row["k"] for row in got} == {b["Source"] for b in world.beacons
                                         if compare[op_low](b["__time"])
                                         and compare[op_high](b["__time"])}


def test_a_late_beacon_counts_before_the_next_roll(api, world: World, db_url):
    """Ingested into a rolled minute: its minute is marked late in the same transaction, so
    the rollup path reads from there on raw until the next roll recomputes it."""
    late_at = world.partial + timedelta(minutes=10, seconds=5)
    profile = {"SessionId": "late-minute-1", "ChannelId": "ch-1", "P2pCompatible": True}
    late = beacon(world.customer_id, profile, late_at, random.Random(3))
    assert api.ingest(world.key, [wire(late)]).status_code == 200
    world.beacons.append(late)
    assert (world.partial, world.partial + timedelta(minutes=10)) in coverage(db_url, world).minutes
    body = {"from_date": iso(world.start), "to_date": iso(world.end), "granularity": "hour",
            "data_layer": "historical-minute"}
    expected = oracle_v1.metric("traffic", world.beacons, [world.customer_id], world.start,
                                world.end, "hour")
    assert_same(ask(api, world.key, "traffic", body), expected)
    with psycopg.connect(db_url, autocommit=True) as conn:
        minute_rollups.roll_up_minutes(conn, world.rolled_to)
    assert (world.partial, world.rolled_to) in coverage(db_url, world).minutes
    assert_same(ask(api, world.key, "traffic", body), expected)
