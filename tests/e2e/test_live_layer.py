"""The live layer (metrics_service.live_rollups, issue #14): through the gateway, the legacy
live / 10m / 1h summaries and series answer like the raw beacons (the oracle over the test's
own beacons) whether the layer is rolled up to some instant inside the window, to its end,
or holds buckets that got late beacons; and, once rolled, it answers without raw beacons.

The module has a database and a stack of its own: rolling the live layer rolls every
customer's last 90 minutes, which must not change what other tests read."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from edgestats_core.tenancy.api_keys import create_customer_key
from edgestats_stack.stack import start_stack
from metrics_service import live_reads, live_rollups
from tests import oracle, oracle_v1
from tests.builders import beacon, session_profile, wire
from tests.compare import assert_same
from tests.e2e.api import Api
from tests.e2e.test_sql_rollups import close, rows_of
from tests.e2e.test_v1_layers import ask, iso
from tests.fixtures.stack import local_cluster, migrated_database

pytestmark = pytest.mark.e2e
TIMES = ["live", "10m", "1h"]
CHANNELS = ["ch-1", "ch two"]
STATS = [  # (path stem, oracle metric, sources asked)
    ("throughput/agg", "throughput", ["cdn", "p2p"]),
    ("buffer_health/avg", "buffer_health", ["cdn", "p2p"]),
    ("rebuffering/ratio", "rebuffering", [None, "p2p"]),
    ("content_request_response_times/avg", "content_request_response_times", ["cdn", "p2p"]),
    ("buffer_filling_rate/avg", "buffer_filling_rate", ["p2p"]),
    ("dropped_frames/avg", "dropped_frames", ["cdn"]),
    ("os", "os", [None]),
    ("platforms", "platforms", [None]),
    ("connection_types", "connection_types", [None]),
]


class World:
    def __init__(self, db_url: str, api: Api, now: datetime) -> None:
        self.db_url, self.api, self.now = db_url, api, now
        with psycopg.connect(db_url) as conn:
            self.key = create_customer_key(conn, "c-live", "emea", "advanced")
        self.customer_id = "c-live"
        self.rng = random.Random(141)
        self.profiles = [session_profile(i, CHANNELS, self.rng) for i in range(24)]
        self.beacons: list[dict] = []
        self.used: set[tuple[int, int]] = set()  # (profile, 5 s slot) with a beacon

    def add(self, start: datetime, end: datetime, count: int) -> list[dict]:
        """About `count` beacons in [start, end) (start on a 5 s boundary), ingested: as a
        player sends them, at most one per session and 5 seconds, at any millisecond."""
        slots = int((end - start).total_seconds()) // 5
        first = int(start.timestamp()) // 5
        picked = {(self.rng.randrange(len(self.profiles)), first + self.rng.randrange(slots))
                  for _ in range(count)} - self.used
        self.used |= picked
        made = [beacon(self.customer_id, self.profiles[p],
                       datetime.fromtimestamp(5 * slot, UTC)
                       + timedelta(milliseconds=self.rng.randrange(5000)), self.rng)
                for p, slot in sorted(picked)]
        for i in range(0, len(made), 5000):
            response = self.api.ingest(self.key, [wire(b) for b in made[i:i + 5000]])
            assert response.status_code == 200, response.text
        self.beacons += made
        return made

    def roll(self, upto: datetime) -> None:
        """Roll the live layer as a roller cycle at `upto` + LAG would (up to `upto`)."""
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            live_rollups.catch_up(conn, upto + live_rollups.LAG)

    def upto(self) -> datetime | None:
        with psycopg.connect(self.db_url) as conn:
            row = conn.execute(live_reads.COVERAGE_SQL).fetchone()
        return row[1] if row else None


@pytest.fixture(scope="module")
def world(frozen_now: datetime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """70 minutes of beacons of 24 sessions before the frozen now, on a database of its own."""
    admin = local_cluster("needs the local cluster to create a database")
    env = {"EDGESTATS_FROZEN_NOW": frozen_now.isoformat(), "EDGESTATS_RESULT_CACHE_SECONDS": "0",
           "EDGESTATS_RATE_LIMIT": "1000000", "EDGESTATS_RATE_BURST": "1000000",
           "EDGESTATS_MINUTE_ROLLUP_SECONDS": "0"}
    with migrated_database(admin, "edgestats_live") as url:
        stack = start_stack(Path(tmp_path_factory.mktemp("live-stack")), url, env=env)
        try:
            with Api(stack.http_url) as api:
                made = World(url, api, frozen_now)
                made.add(frozen_now - timedelta(minutes=70), frozen_now, 6000)
                yield made
        finally:
            stack.stop()


def assert_answers_like_raw(world: World) -> None:
    """Every legacy summary level and stats series of the live windows, at customer scope
    and in a channel, equals the oracle over the world's beacons."""
    api, key, beacons, now, customer = world.api, world.key, world.beacons, world.now, "c-live"
    stream = "ch two-stream-1"
    for time in TIMES:
        assert_same(api.get_json("/summary", key, time=time),
                    oracle.summary(beacons, customer, now, time, "channel"))
        assert_same(api.get_json("/summary/agg", key, time=time),
                    oracle.summary_agg(beacons, customer, now, time))
        assert_same(api.get_json("/channels/ch%20two/summary", key, time=time),
                    oracle.summary(beacons, customer, now, time, "stream", channel_id="ch two"))
        assert_same(api.get_json(f"/channels/ch%20two/streams/{stream}/summary", key,
                                 time=time),
                    oracle.summary(beacons, customer, now, time, "representation",
                                   channel_id="ch two", stream_id=stream))
        assert_same(api.get_json("/channels/ch-1/summary/agg", key, time=time),
                    oracle.summary_agg(beacons, customer, now, time, channel_id="ch-1"))
        for stem, metric, sources in STATS:
            for source in sources:
                params = {"time": time} | ({"source": source} if source else {})
                for path, scope in [("", {}), ("/channels/ch-1", {"channel_id": "ch-1"})]:
                    expected = oracle.stats(beacons, customer, now, time, metric,
                                            source=source, **scope)
                    assert_same(api.get_json(f"{path}/stats/{stem}", key, **params),
                                expected)
                    assert_same(api.get_json(f"{path}/stats/{stem}/last_point", key, **params),
                                oracle.last_point(expected))
    assert_v1_like_raw(world)
    assert_sql_like_raw(world)


V1_PATHS = ["audience", "traffic", "viewing_time", "buffer_health", "qoe/rebuffering/ratio"]


# unfiltered; in a channel (audience: the whole-audience device rows of that level); by
# source (audience: beacons_live, whose rows split by it)
V1_FILTERS = [{}, {"channel_id": "ch-1"}, {"source": "p2p"}]


def assert_v1_like_raw(world: World) -> None:
    """v1 metrics the live layer keeps, over the last hour at minute and fifteen-minute
    buckets (ranges starting and ending inside a 5-second bucket), unfiltered and filtered,
    equal the v1 oracle."""
    ranges = [(world.now - timedelta(hours=1) + timedelta(seconds=3), world.now),
              (world.now - timedelta(minutes=17, seconds=2), world.now - timedelta(seconds=1))]
    cases = [(start, end, granularity) for start, end in ranges
             for granularity in ("minute", "fifteen_minute")]
    # the not-yet-rolled tail of the historical totals (no rollup in this database)
    cases.append((world.now - timedelta(hours=6), world.now - timedelta(seconds=3), "hour"))
    for (start, end, granularity), filters in itertools.product(cases, V1_FILTERS):
        body = {"from_date": iso(start), "to_date": iso(end), "granularity": granularity,
                **filters}
        for path in V1_PATHS:
            assert_same(ask(world.api, world.key, path, body),
                        oracle_v1.metric(path, world.beacons, ["c-live"], start, end,
                                         granularity, **filters))


KPI = ("SELECT {by}COUNT(*) AS n, SUM(ViewingTime) AS vt, SUM(TotalDownlinkThroughput) AS t,"
       ' COUNT(DISTINCT SessionId) AS d FROM "sdk-emea-realtime" WHERE CustomerId = \'c-live\''
       " AND __time >= '{low}' AND __time < '{high}'{group}")


def assert_sql_like_raw(world: World) -> None:
    """Realtime SQL KPIs over the last hour (edges inside 5-second buckets), whole and per
    minute, equal sums and distinct sessions computed here."""
    low, high = world.now - timedelta(minutes=59, seconds=58), world.now - timedelta(seconds=2)
    kept = [b for b in world.beacons if low <= b["__time"] < high]
    for by, group, key in [("", "", None),
                           ("TIME_FLOOR(__time, 'PT1M') AS m, ", " GROUP BY 1 ORDER BY 1",
                            lambda b: b["__time"].replace(second=0, microsecond=0))]:
        groups: dict = {}
        for b in kept:
            groups.setdefault(key(b) if key else None, []).append(b)
        expected = [{**({"m": k.strftime("%Y-%m-%dT%H:%M:%S.000Z")} if key else {}),
                     "n": len(rows), "vt": sum(r["ViewingTime"] or 0 for r in rows),
                     "t": sum(r["TotalDownlinkThroughput"] for r in rows),
                     "d": len({r["SessionId"] for r in rows})}
                    for k, rows in sorted(groups.items(), key=lambda kv: str(kv[0]))]
        query = KPI.format(by=by, group=group, low=low.isoformat(), high=high.isoformat())
        close(rows_of(world.api, world.key, query), expected)


def test_raw_only_before_any_roll(world: World):
    assert world.upto() is None
    assert_answers_like_raw(world)


def test_rolled_to_inside_the_windows(world: World):
    """Rolled to 7 min 15 s before now: inside 10m and 1h (not at a 30 s boundary), so
    the answers mix 5-minute, 30-second and 5-second rows and raw beacons."""
    upto = world.now - timedelta(minutes=7, seconds=15)
    world.roll(upto)
    assert world.upto() == upto
    assert_answers_like_raw(world)


def test_rolled_to_the_end(world: World):
    world.roll(world.now)
    assert world.upto() == world.now
    assert_answers_like_raw(world)


def test_late_beacons_count_at_once_and_after_the_next_roll(world: World):
    """Beacons ingested after their buckets were rolled (new sessions' too) mark them late:
    the answers include them before the next roll, and after it."""
    world.profiles += [session_profile(100 + i, CHANNELS, world.rng) for i in range(4)]
    late = world.add(world.now - timedelta(minutes=30), world.now - timedelta(minutes=3), 400)
    first_late = min(b["__time"] for b in late)
    assert world.upto() <= first_late
    assert_answers_like_raw(world)
    world.roll(world.now)
    assert world.upto() == world.now
    assert_answers_like_raw(world)


def test_rolled_windows_are_read_from_the_live_layer(world: World):
    """Deleting the raw beacons the layer holds changes no answer. Runs last: it removes the
    module's raw data."""
    paths = ["/summary", "/summary/agg", "/stats/os", "/channels/ch-1/stats/platforms"]
    before = {(p, t): world.api.get_json(p, world.key, time=t) for p in paths for t in TIMES}
    hour = {"from_date": iso(world.now - timedelta(hours=1)), "to_date": iso(world.now),
            "granularity": "minute"}
    v1 = {path: ask(world.api, world.key, path, hour) for path in V1_PATHS}
    kpi = KPI.format(by="", group="", low=(world.now - timedelta(minutes=55)).isoformat(),
                     high=world.now.isoformat())
    sql = rows_of(world.api, world.key, kpi)
    with psycopg.connect(world.db_url, autocommit=True) as conn:
        assert conn.execute("DELETE FROM beacons WHERE customer_id = 'c-live'").rowcount > 0
    for (path, time), answer in before.items():
        assert world.api.get_json(path, world.key, time=time) == answer
    for path, answer in v1.items():
        assert ask(world.api, world.key, path, hour) == answer
    assert rows_of(world.api, world.key, kpi) == sql and sql[0]["n"] > 0
