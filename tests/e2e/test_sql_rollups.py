"""The SQL historical datasources read the rollups (issue #5, CONTRACT §4): the same query text
answers on every layer, over a range spanning rolled-up and not-yet-rolled hours, with no gap
and no double count; what rollup rows cannot answer falls back to raw beacons within their
retention and is refused beyond it; the reader role sees only the caller's rollup rows."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from metrics_service import rollups
from tests.builders import beacon, session_profile, wire

pytestmark = pytest.mark.e2e

PATH = "/analytics/v1/query/sql"
LAYERS = ["historical-hour", "historical-minute"]


class RollupWorld:
    def __init__(self, customer_id, key, beacons, start, end, rolled_to) -> None:
        self.customer_id, self.key, self.beacons = customer_id, key, beacons
        self.start, self.end, self.rolled_to = start, end, rolled_to

    def where(self, start: datetime | None = None, end: datetime | None = None) -> str:
        low, high = (start or self.start).isoformat(), (end or self.end).isoformat()
        return f"CustomerId = '{self.customer_id}' AND __time >= '{low}' AND __time < '{high}'"


def _beacons(customer_id: str, start: datetime, hours: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    profiles = [session_profile(i, ["ch-1", "ch-2", "ch three"], rng) for i in range(16)]
    made = []
    for profile in profiles:
        for _ in range(120):
            at = start + timedelta(seconds=5 * rng.randrange(hours * 720))
            made.append(beacon(customer_id, profile, at, rng))
    made = list({(b["SessionId"], b["__time"]): b for b in made}.values())
    for b in made:
        b["AsName"] = rng.choice(["AS-ONE", "AS-TWO", None])
        b["DownlinkSpeed"] = float(rng.randint(1000, 90000))
        b["VideoResolutionHeight"] = rng.choice([480, 720, 1080, None])
    return made


@pytest.fixture(scope="module")
def world(api, tenants, frozen_now: datetime, db_url: str) -> RollupWorld:
    """Six hours of beacons ending 40 hours ago (hours no other test rolls up): the first
    three rolled up, the last three not."""
    customer_id, key = tenants.customer("advanced", "emea")
    end = frozen_now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=40)
    start = end - timedelta(hours=6)
    beacons = _beacons(customer_id, start, 6, seed=55)
    for i in range(0, len(beacons), 5000):
        assert api.ingest(key, [wire(b) for b in beacons[i:i + 5000]]).status_code == 200
    rollups.re_roll_late_hours(db_url, before=datetime.now(UTC))
    rollups.roll_up_interval(db_url, start, start + timedelta(hours=3))
    return RollupWorld(customer_id, key, beacons, start, end, start + timedelta(hours=3))


def sql(api, key: str, query: str, path: str = PATH, **body):
    return api.http.post(path, json={"query": query, **body},
                         headers={"Authorization": f"Bearer {key}"})


def rows_of(api, key: str, query: str, **body) -> list:
    response = sql(api, key, query, **body)
    assert response.status_code == 200, (query, response.status_code, response.text)
    return response.json()


def close(historical: list[dict], realtime: list[dict], distinct: tuple[str, ...] = ()) -> None:
    """Equal, floats to 1e-9 relative, distinct counts within 2 % (HyperLogLog)."""
    assert len(historical) == len(realtime), (historical, realtime)
    for got, want in zip(historical, realtime, strict=True):
        assert got.keys() == want.keys()
        for name, value in want.items():
            if name in distinct:
                assert got[name] == pytest.approx(value, rel=0.02, abs=1), name
            elif isinstance(value, float) or isinstance(got[name], float):
                assert got[name] == pytest.approx(value, rel=1e-9), (name, got, want)
            else:
                assert got[name] == value, (name, got, want)


# (query over {ds} and {where}, the distinct-count columns)
SAME_ANSWER = [
    ("SELECT TIME_FLOOR(__time, 'PT1H') AS t, COUNT(*) AS n, COUNT(DISTINCT SessionId) AS d,"
     " SUM(TotalDownlinkThroughput) AS total, AVG(BufferHealth) AS bh, MIN(BufferHealth) AS lo,"
     " MAX(StartingTime) AS hi, COUNT(ViewingTime) AS vt_n FROM {ds} WHERE {where}"
     " GROUP BY 1 ORDER BY 1", ("d",)),
    ("SELECT COUNT(*) AS n, SUM(ViewingTime) AS vt, AVG(DroppedFrames) AS df,"
     " APPROX_COUNT_DISTINCT(SessionId) AS d FROM {ds} WHERE {where}", ("d",)),
    ("SELECT ChannelId, Source, SUM(ViewingTime) AS vt, COUNT(*) AS n FROM {ds} WHERE {where}"
     " GROUP BY 1, 2 ORDER BY 1, 2", ()),
    ("SELECT AsName, COUNT(DISTINCT SessionId) AS d, SUM(TotalDownlinkThroughput) * 125 AS bytes"
     " FROM {ds} WHERE {where} GROUP BY 1 ORDER BY 1 NULLS FIRST", ("d",)),
    ("SELECT ChannelId, SUM(TotalDownlinkThroughput) AS traffic, 100.0 *"
     " SUM(TotalDownlinkThroughput) / SUM(SUM(TotalDownlinkThroughput)) OVER () AS share"
     " FROM {ds} WHERE {where} GROUP BY 1 ORDER BY 2 DESC LIMIT 10", ()),
    ("SELECT SUM(CASE WHEN Source = 'p2p' THEN 1 ELSE 0 END) AS p2p,"
     " COUNT(*) FILTER (WHERE Source = 'cdn') AS cdn,"
     " SUM(ViewingTime) FILTER (WHERE Source = 'cdn') AS cdn_vt,"
     " AVG(BufferHealth) FILTER (WHERE ChannelId = 'ch-1') AS bh1,"
     " COUNT(NULLIF(Source, 'cdn')) AS not_cdn, AVG(CAST(Bitrate AS INT)) AS bitrate,"
     " AVG(VideoResolutionHeight) AS height, SUM(VideoResolutionHeight) AS heights,"
     " COUNT(DISTINCT ChannelId) AS channels, MAX(__time) AS last_bucket FROM {ds}"
     " WHERE {where}", ()),
    ("SELECT COUNT(DISTINCT CASE WHEN Source = 'p2p' THEN SessionId END) AS p2p_devices,"
     " COUNT(DISTINCT SessionId) FILTER (WHERE P2pCompatible = false) AS nc"
     " FROM {ds} WHERE {where}", ("p2p_devices", "nc")),
    ("SELECT OsName, COUNT(DISTINCT SessionId) AS d FROM {ds} WHERE {where}"
     " AND OsName IN ('LINUX', 'WINDOWS', 'ANDROID') GROUP BY 1 HAVING COUNT(*) > 10"
     " ORDER BY 1", ("d",)),
    ("SELECT SUM(BufferingTime) / SUM(PlayingTime) AS ratio, MAX(CdnResponseTime) AS rt"
     " FROM {ds} WHERE {where} AND Source = 'cdn'", ()),
    # not answerable from rollup rows: raw beacons, within their retention
    ("SELECT ChannelId, LATEST_BY(BufferHealth, __time) IS NOT NULL AS has,"
     " SUM(NVL(StartingTime, 0)) AS st FROM {ds} WHERE {where} GROUP BY 1 ORDER BY 1", ()),
    ("SELECT COUNT(*) AS n FROM {ds} WHERE {where} AND ViewingTime > 2", ()),
]


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("case", SAME_ANSWER, ids=[f"q{i}" for i in range(len(SAME_ANSWER))])
def test_rolled_and_unrolled_hours_answer_like_realtime(api, world: RollupWorld, layer, case):
    template, distinct = case
    realtime = rows_of(api, world.key, template.format(ds='"sdk-emea-realtime"',
                                                      where=world.where()))
    historical = rows_of(api, world.key, template.format(ds=f'"sdk-emea-{layer}"',
                                                        where=world.where()))
    assert realtime
    if "__time" in template and "last_bucket" in template:  # bucket starts differ by design
        for row in realtime + historical:
            row.pop("last_bucket")
    close(historical, realtime, distinct)


def test_minute_buckets_span_rolled_and_unrolled_hours(api, world: RollupWorld):
    query = ("SELECT TIME_FLOOR(__time, 'PT1M') AS t, COUNT(*) AS n, SUM(ViewingTime) AS vt"
             " FROM {ds} WHERE {where} GROUP BY 1 ORDER BY 1")
    around = world.where(world.rolled_to - timedelta(minutes=30),
                         world.rolled_to + timedelta(minutes=30))
    realtime = rows_of(api, world.key, query.format(ds='"sdk-emea-realtime"', where=around))
    minute = rows_of(api, world.key, query.format(ds='"sdk-emea-historical-minute"',
                                                  where=around))
    assert len(realtime) == 60
    close(minute, realtime)


def test_quantiles_read_the_digests(api, world: RollupWorld):
    query = ("SELECT APPROX_QUANTILE_DS(DownlinkSpeed, 0.5) AS median,"
             " APPROX_QUANTILE_DS(DownlinkSpeed, 0.9) AS p90 FROM {ds} WHERE {where}")
    values = sorted(b["DownlinkSpeed"] for b in world.beacons)
    for layer in LAYERS:
        [row] = rows_of(api, world.key, query.format(ds=f'"sdk-emea-{layer}"',
                                                     where=world.where()))
        for name, q in (("median", 0.5), ("p90", 0.9)):
            rank = sum(1 for v in values if v <= row[name]) / len(values)
            assert abs(rank - q) <= 0.02, (layer, name, rank)


def rolled_then_raw_deleted(api, tenants, db_url, start: datetime, hours: int, seed: int):
    """(key, beacons, where) of a fresh customer's beacons of `hours` from `start`, rolled up,
    then their raw beacons deleted: only the rollups can answer them."""
    customer_id, key = tenants.customer("advanced", "emea")
    beacons = _beacons(customer_id, start, hours, seed=seed)
    assert api.ingest(key, [wire(b) for b in beacons]).status_code == 200
    rollups.roll_up_interval(db_url, start, start + timedelta(hours=hours))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM beacons WHERE customer_id = %s", (customer_id,))
    where = (f"CustomerId = '{customer_id}' AND __time >= '{start.isoformat()}'"
             f" AND __time < '{(start + timedelta(hours=hours)).isoformat()}'")
    return key, beacons, where


def test_rollups_are_read_not_raw(api, tenants, frozen_now, db_url):
    """Raw beacons of a rolled-up hour deleted: the historical layers still answer them."""
    start = frozen_now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=50)
    key, beacons, where = rolled_then_raw_deleted(api, tenants, db_url, start, 1, seed=66)
    query = "SELECT COUNT(*) AS n, SUM(ViewingTime) AS vt FROM {ds} WHERE " + where
    expected = {"n": len(beacons),
                "vt": pytest.approx(sum(b["ViewingTime"] or 0 for b in beacons), rel=1e-9)}
    for layer in LAYERS:
        assert rows_of(api, key, query.format(ds=f'"sdk-emea-{layer}"')) == [expected]
    # realtime: what the minute totals answer comes from them too (plan_realtime); the rest
    # (here a measure in a condition) reads the raw beacons, which are gone
    assert rows_of(api, key, query.format(ds='"sdk-emea-realtime"')) == [expected]
    raw_only = query.format(ds='"sdk-emea-realtime"') + " AND ViewingTime >= 0"
    assert rows_of(api, key, raw_only) == [{"n": 0, "vt": None}]


def test_beyond_raw_retention(api, world: RollupWorld, frozen_now):
    since = (frozen_now - timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%S")
    where = f"CustomerId = '{world.customer_id}' AND __time >= '{since}'"
    ok = rows_of(api, world.key, "SELECT COUNT(*) AS n, APPROX_COUNT_DISTINCT(SessionId) AS d"
                 f' FROM "sdk-emea-historical-hour" WHERE {where}')
    assert ok[0]["n"] == len(world.beacons)
    for query in (
        f'SELECT LATEST(BufferHealth) FROM "sdk-emea-historical-hour" WHERE {where}',
        'SELECT COUNT(*) FROM "sdk-emea-historical-hour"'
        f" WHERE CustomerId = '{world.customer_id}' AND ViewingTime > 1",
    ):
        response = sql(api, world.key, query)
        assert response.status_code == 400, response.text
        assert "30 days" in response.text
    exact = sql(api, world.key, "SELECT COUNT(DISTINCT SessionId) AS d FROM"
                f' "sdk-emea-historical-hour" WHERE {where}',
                context={"useApproximateCountDistinct": False})
    assert exact.status_code == 400 and "exact COUNT(DISTINCT SessionId)" in exact.text
    recent = world.where().replace(world.start.isoformat(),
                                   (frozen_now - timedelta(days=3)).isoformat())
    exact = rows_of(api, world.key, "SELECT COUNT(DISTINCT SessionId) AS d FROM"
                    f' "sdk-emea-historical-hour" WHERE {recent}',
                    context={"useApproximateCountDistinct": False})
    assert exact == [{"d": len({b["SessionId"] for b in world.beacons})}]


def test_reader_role_sees_only_its_customers_rollup_rows(world: RollupWorld, db_url):
    with psycopg.connect(db_url) as conn:
        with conn.transaction():
            conn.execute("SET LOCAL ROLE edgestats_reader")
            conn.execute("SELECT set_config('edgestats.customers', 'someone-else', true)")
            for table in ("beacons_minute", "beacons_hour"):
                count = conn.execute(f"SELECT count(*) FROM {table} WHERE customer_id = %s",
                                     (world.customer_id,)).fetchone()[0]
                assert count == 0
            assert conn.execute("SELECT count(*) FROM rollup_runs").fetchone()[0] > 0
        with conn.transaction():
            conn.execute("SET LOCAL ROLE edgestats_reader")
            conn.execute("SELECT set_config('edgestats.customers', %s, true)",
                         (world.customer_id,))
            assert conn.execute("SELECT count(*) FROM beacons_hour WHERE customer_id = %s",
                                (world.customer_id,)).fetchone()[0] > 0


AUDIENCE = ["COUNT(DISTINCT (SessionId))", "COUNT(DISTINCT CAST(SessionId AS VARCHAR))",
            "APPROX_COUNT_DISTINCT((SessionId))", "COUNT(DISTINCT ((SessionId)))"]


def test_audience_panel_reads_the_session_sketches(api, tenants, frozen_now, db_url):
    """Issue #13: the dashboards' `COUNT(DISTINCT (SessionId))` on the historical layers is
    answered from the HLL sketches: right after the raw beacons are deleted, on both paths."""
    start = frozen_now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=53)
    key, beacons, where = rolled_then_raw_deleted(api, tenants, db_url, start, 2, seed=77)
    sessions = len({b["SessionId"] for b in beacons})  # 16: HyperLogLog is exact this small
    for layer, count, path in itertools.product(LAYERS, AUDIENCE, (PATH, "/druid/v2/sql/")):
        query = f'SELECT {count} AS audience FROM "sdk-emea-{layer}" WHERE {where}'
        assert rows_of(api, key, query, path=path) == [{"audience": sessions}], query
    hourly = {}
    for b in beacons:
        hourly.setdefault(b["__time"].replace(minute=0, second=0, microsecond=0), set()).add(
            b["SessionId"])
    query = ("SELECT TIME_FLOOR(__time, 'PT1H') AS t, COUNT(DISTINCT (SessionId)) AS audience"
             f' FROM "sdk-emea-historical-hour" WHERE {where} GROUP BY 1 ORDER BY 1')
    assert rows_of(api, key, query) == [
        {"t": hour.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "audience": len(ids)}
        for hour, ids in sorted(hourly.items())]


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("query", [
    "SELECT COUNT(DISTINCT CONCAT(SessionId, 'x')) AS n FROM {ds} WHERE {where}",
    "SELECT COUNT(*) AS n FROM {ds} WHERE {where} AND SessionId = 'x'",
    "SELECT COUNT(*) AS n FROM {ds} WHERE {where} AND (SessionId) IS NOT NULL",
    "SELECT COUNT(DISTINCT CAST(SessionId AS BIGINT)) AS n FROM {ds} WHERE {where}",
    "SELECT (SessionId) AS s, COUNT(*) AS n FROM {ds} WHERE {where} GROUP BY 1",
])
def test_session_ids_elsewhere_are_400_on_historical_layers(api, world: RollupWorld, layer,
                                                            query):
    for path in (PATH, "/druid/v2/sql/"):
        response = sql(api, world.key, query.format(ds=f'"sdk-emea-{layer}"',
                                                    where=world.where()), path=path)
        assert response.status_code == 400, response.text
        assert (f"Column SessionId is not available on sdk-emea-{layer} (per-session column):"
                " query sdk-emea-realtime") in response.text
