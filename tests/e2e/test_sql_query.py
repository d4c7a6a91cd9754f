"""The SQL endpoint through Envoy: dashboard queries checked against plain Python over the
test's own beacons, the result formats, and the query id / cancel / status endpoints."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from metrics_service import rollups
from tests.builders import scenario, wire

pytestmark = pytest.mark.e2e

PATH = "/analytics/v1/query/sql"


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def floor(t: datetime, seconds: int) -> datetime:
    epoch = int(t.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


class World:
    def __init__(self, now: datetime) -> None:
        self.now = now
        # a whole-minute window over the dense part of the scenario
        self.end = floor(now, 60)
        self.start = self.end - timedelta(minutes=12)
        self.tenants: dict[str, tuple[str, str, list[dict]]] = {}

    def window(self, who: str = "adv") -> list[dict]:
        beacons = self.tenants[who][2]
        return [b for b in beacons if self.start <= b["__time"] < self.end]

    def where(self, who: str = "adv", alias: str = "") -> str:
        prefix = f"{alias}." if alias else ""
        return (f"{prefix}CustomerId = '{self.tenants[who][0]}'"
                f" AND {prefix}__time >= '{self.start.isoformat()}'"
                f" AND {prefix}__time < '{self.end.strftime('%Y-%m-%dT%H:%M:%S')}'")

    def key(self, who: str = "adv") -> str:
        return self.tenants[who][1]


@pytest.fixture(scope="module")
def world(api, tenants, frozen_now: datetime, data_urls: list[str]) -> World:
    made = World(frozen_now)
    customers = (("adv", "advanced", 31), ("lite", "lite", 32), ("other", "advanced", 33))
    for who, tier, seed in customers:
        customer_id, key = tenants.customer(tier, "emea")
        beacons = scenario(customer_id, frozen_now, seed=seed)
        response = api.ingest(key, [wire(b) for b in beacons])
        assert response.status_code == 200, response.text
        made.tenants[who] = (customer_id, key, beacons)
    # rollup state is global: hours other tests rolled up now hold late beacons of ours
    for url in data_urls:
        rollups.re_roll_late_hours(url, before=datetime.now(UTC))
    return made


def sql(api, key: str, query: str, path: str = PATH, **body):
    return api.http.post(path, json={"query": query, **body},
                         headers={"Authorization": f"Bearer {key}"})


def rows_of(api, key: str, query: str, **body) -> list:
    response = sql(api, key, query, **body)
    assert response.status_code == 200, (query, response.status_code, response.text)
    return response.json()


def approx(rows: list[dict]) -> list[dict]:
    return [{k: pytest.approx(v, rel=1e-9) if isinstance(v, float) else v
             for k, v in row.items()} for row in rows]


def vals(beacons: list[dict], column: str) -> list:
    return [b[column] for b in beacons if b.get(column) is not None]


def mean(values: list) -> float | None:
    return sum(values) / len(values) if values else None


def percentile_cont(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def group(beacons: list[dict], key) -> dict:
    groups: dict = defaultdict(list)
    for b in beacons:
        groups[key(b)].append(b)
    return dict(groups)


def test_kpis(api, world: World) -> None:
    beacons = world.window()
    query = f"""SELECT COUNT(*) AS "beacons", COUNT(DISTINCT SessionId) AS "devices",
        APPROX_COUNT_DISTINCT(SessionId) AS approx_devices,
        SUM(CdnDownlinkThroughput) AS cdn, SUM(P2pDownlinkThroughput) AS p2p,
        SUM(TotalDownlinkThroughput) AS "total kbit", AVG(BufferHealth) AS avg_bh,
        MIN(BufferHealth) AS min_bh, MAX(BufferHealth) mx
        FROM "sdk-emea-realtime" WHERE {world.where()}"""
    sessions = {b["SessionId"] for b in beacons}
    assert rows_of(api, world.key(), query) == approx([{
        "beacons": len(beacons), "devices": len(sessions), "approx_devices": len(sessions),
        "cdn": sum(b["CdnDownlinkThroughput"] for b in beacons),
        "p2p": sum(b["P2pDownlinkThroughput"] for b in beacons),
        "total kbit": sum(b["TotalDownlinkThroughput"] for b in beacons),
        "avg_bh": mean(vals(beacons, "BufferHealth")),
        "min_bh": min(vals(beacons, "BufferHealth")), "mx": max(vals(beacons, "BufferHealth")),
    }])


@pytest.mark.parametrize("bucket", ["TIME_FLOOR(__time, 'PT1M')", "FLOOR(__time TO MINUTE)",
                                    "TIME_FLOOR(__time, 'PT5M')"])
def test_time_series(api, world: World, bucket: str) -> None:
    seconds = 300 if "PT5M" in bucket else 60
    query = f"""SELECT {bucket} AS "timestamp", COUNT(DISTINCT SessionId) AS audience,
        SUM(TotalDownlinkThroughput) / {seconds} AS throughput
        FROM "sdk-emea-realtime" WHERE {world.where()} GROUP BY 1 ORDER BY 1"""
    groups = group(world.window(), lambda b: floor(b["__time"], seconds))
    expected = [{"timestamp": iso(t), "audience": len({b["SessionId"] for b in bs}),
                 "throughput": sum(b["TotalDownlinkThroughput"] for b in bs) / seconds}
                for t, bs in sorted(groups.items())]
    assert rows_of(api, world.key(), query) == approx(expected)


def ch_where(world: World, who: str = "adv") -> str:
    return world.where(who)


def per_channel(world: World, fn) -> list[dict]:
    groups = group(world.window(), lambda b: b["ChannelId"])
    return [fn(channel, bs) for channel, bs in sorted(groups.items())]


def sessions(bs: list[dict]) -> int:
    return len({b["SessionId"] for b in bs})


# (id, SQL select list + clauses after WHERE, expected rows from (world, beacons))
DASHBOARD = [
    ("audience_by_channel",
     "SELECT ChannelId, COUNT(DISTINCT SessionId) AS audience FROM {ds} WHERE {where}"
     " GROUP BY ChannelId ORDER BY ChannelId",
     lambda w, bs: per_channel(w, lambda c, g: {"ChannelId": c, "audience": sessions(g)})),
    ("traffic_bytes_by_source",
     "SELECT Source AS \"source\", SUM(TotalDownlinkThroughput) * 125 AS traffic FROM {ds}"
     " WHERE {where} GROUP BY 1 ORDER BY 1",
     lambda w, bs: [{"source": s, "traffic": sum(b["TotalDownlinkThroughput"] for b in g) * 125}
                    for s, g in sorted(group(bs, lambda b: b["Source"]).items())]),
    ("offload_percentage",
     "SELECT 100.0 * SUM(P2pDownlinkThroughput) / SUM(TotalDownlinkThroughput) AS offload"
     " FROM {ds} WHERE {where}",
     lambda w, bs: [{"offload": 100.0 * sum(b["P2pDownlinkThroughput"] for b in bs)
                     / sum(b["TotalDownlinkThroughput"] for b in bs)}]),
    ("viewing_time_by_source",
     "SELECT Source, SUM(ViewingTime) AS vt FROM {ds} WHERE {where}"
     " GROUP BY Source ORDER BY vt DESC",
     lambda w, bs: sorted([{"Source": s, "vt": sum(vals(g, "ViewingTime"))}
                           for s, g in group(bs, lambda b: b["Source"]).items()],
                          key=lambda r: -r["vt"])),
    ("avg_buffer_health_by_source",
     "SELECT Source, AVG(BufferHealth) AS \"avg buffer health\" FROM {ds} WHERE {where}"
     " GROUP BY Source ORDER BY Source",
     lambda w, bs: [{"Source": s, "avg buffer health": mean(vals(g, "BufferHealth"))}
                    for s, g in sorted(group(bs, lambda b: b["Source"]).items())]),
    ("median_join_time",
     "SELECT APPROX_QUANTILE_DS(StartingTime, 0.5) AS median,"
     " APPROX_QUANTILE_DS(StartingTime, 0.95) AS p95 FROM {ds} WHERE {where}",
     lambda w, bs: [{"median": percentile_cont(vals(bs, "StartingTime"), 0.5),
                     "p95": percentile_cont(vals(bs, "StartingTime"), 0.95)}]),
    ("traffic_share_window",
     "SELECT ChannelId, SUM(TotalDownlinkThroughput) AS traffic,"
     " 100.0 * SUM(TotalDownlinkThroughput) / SUM(SUM(TotalDownlinkThroughput)) OVER () AS share"
     " FROM {ds} WHERE {where} GROUP BY ChannelId ORDER BY ChannelId",
     lambda w, bs: per_channel(w, lambda c, g: {
         "ChannelId": c, "traffic": sum(b["TotalDownlinkThroughput"] for b in g),
         "share": 100.0 * sum(b["TotalDownlinkThroughput"] for b in g)
         / sum(b["TotalDownlinkThroughput"] for b in bs)})),
    ("audience_share_window",
     "SELECT ChannelId, COUNT(DISTINCT SessionId) AS n,"
     " SUM(COUNT(DISTINCT SessionId)) OVER () AS total FROM {ds} WHERE {where}"
     " GROUP BY ChannelId ORDER BY ChannelId",
     lambda w, bs: per_channel(w, lambda c, g: {"ChannelId": c, "n": sessions(g),
                                                 "total": sum(sessions(x) for x in group(
                                                     bs, lambda b: b["ChannelId"]).values())})),
    ("nested_avg_beacons_per_session",
     "SELECT AVG(n) AS avg_beacons FROM (SELECT SessionId, COUNT(*) AS n FROM {ds}"
     " WHERE {where} GROUP BY SessionId)",
     lambda w, bs: [{"avg_beacons": len(bs) / sessions(bs)}]),
    ("cte_busiest_channel",
     "WITH per_channel AS (SELECT ChannelId, COUNT(*) AS n FROM {ds} WHERE {where}"
     " GROUP BY ChannelId) SELECT ChannelId, n FROM per_channel ORDER BY n DESC, ChannelId LIMIT 1",
     lambda w, bs: [min(({"ChannelId": c, "n": len(g)} for c, g in
                         group(bs, lambda b: b["ChannelId"]).items()),
                        key=lambda r: (-r["n"], r["ChannelId"]))]),
    ("union_all_sources",
     "SELECT 'cdn' AS kind, COUNT(*) AS n FROM {ds} WHERE {where} AND Source = 'cdn'"
     " UNION ALL SELECT 'p2p', COUNT(*) FROM {ds} WHERE {where} AND Source = 'p2p'",
     lambda w, bs: [{"kind": s, "n": sum(1 for b in bs if b["Source"] == s)}
                    for s in ("cdn", "p2p")]),
    ("case_counts",
     "SELECT SUM(CASE WHEN Source = 'p2p' THEN 1 ELSE 0 END) AS p2p_beacons,"
     " COUNT(*) FILTER (WHERE Source = 'cdn') AS cdn_beacons FROM {ds} WHERE {where}",
     lambda w, bs: [{"p2p_beacons": sum(1 for b in bs if b["Source"] == "p2p"),
                     "cdn_beacons": sum(1 for b in bs if b["Source"] == "cdn")}]),
    ("cast_bitrate",
     "SELECT AVG(CAST(Bitrate AS INT)) AS avg_bitrate, SUM(CAST('x' AS INT)) AS nothing"
     " FROM {ds} WHERE {where}",
     lambda w, bs: [{"avg_bitrate": mean([int(b["Bitrate"]) for b in bs]), "nothing": None}]),
    ("latest_buffer_per_session",
     "SELECT SessionId, LATEST_BY(BufferHealth, __time) AS last_bh FROM {ds} WHERE {where}"
     " GROUP BY SessionId ORDER BY SessionId",
     lambda w, bs: [{"SessionId": s, "last_bh": next(
         (b["BufferHealth"] for b in sorted(g, key=lambda b: b["__time"], reverse=True)
          if b.get("BufferHealth") is not None), None)}
         for s, g in sorted(group(bs, lambda b: b["SessionId"]).items())]),
    ("earliest_time_per_channel",
     "SELECT ChannelId, MIN(__time) AS first_seen, EARLIEST_BY(SessionId, __time) IS NOT NULL"
     " AS has FROM {ds} WHERE {where} GROUP BY 1 ORDER BY 1",
     lambda w, bs: per_channel(w, lambda c, g: {
         "ChannelId": c, "first_seen": iso(min(b["__time"] for b in g)), "has": True})),
    ("having_channels",
     "SELECT ChannelId AS \"Channel name\", COUNT(DISTINCT SessionId) AS devices FROM {ds}"
     " WHERE {where} GROUP BY 1 HAVING COUNT(DISTINCT SessionId) > 4 ORDER BY 1",
     lambda w, bs: [r for r in per_channel(w, lambda c, g: {"Channel name": c,
                                                            "devices": sessions(g)})
                    if r["devices"] > 4]),
    ("time_format_minutes",
     "SELECT TIME_FORMAT(TIME_FLOOR(__time, 'PT1M'), 'yyyy-MM-dd HH:mm') AS minute,"
     " COUNT(*) AS n FROM {ds} WHERE {where} GROUP BY 1 ORDER BY 1",
     lambda w, bs: [{"minute": t.strftime("%Y-%m-%d %H:%M"), "n": len(g)}
                    for t, g in sorted(group(bs, lambda b: floor(b["__time"], 60)).items())]),
    ("millis",
     "SELECT TIMESTAMP_TO_MILLIS(MAX(__time)) AS last_ms, MILLIS_TO_TIMESTAMP(0) AS epoch"
     " FROM {ds} WHERE {where}",
     lambda w, bs: [{"last_ms": int(max(b["__time"] for b in bs).timestamp() * 1000),
                     "epoch": "1970-01-01T00:00:00.000Z"}]),
    ("row_number_rank",
     "SELECT ChannelId, n, ROW_NUMBER() OVER (ORDER BY n DESC, ChannelId) AS rnk FROM"
     " (SELECT ChannelId, COUNT(*) AS n FROM {ds} WHERE {where} GROUP BY ChannelId) ORDER BY rnk",
     lambda w, bs: [{**r, "rnk": i + 1} for i, r in enumerate(sorted(
         ({"ChannelId": c, "n": len(g)} for c, g in group(bs, lambda b: b["ChannelId"]).items()),
         key=lambda r: (-r["n"], r["ChannelId"])))]),
    ("nvl_coalesce_nullif",
     "SELECT SUM(NVL(StartingTime, 0)) AS st, COUNT(NULLIF(Source, 'cdn')) AS p2p,"
     " SUM(COALESCE(BufferHealth, 0)) AS bh FROM {ds} WHERE {where}",
     lambda w, bs: [{"st": sum(vals(bs, "StartingTime")),
                     "p2p": sum(1 for b in bs if b["Source"] != "cdn"),
                     "bh": sum(vals(bs, "BufferHealth"))}]),
    ("like_and_in",
     "SELECT COUNT(*) AS n FROM {ds} WHERE {where} AND ChannelId LIKE 'ch-%'"
     " AND Source IN ('cdn', 'p2p')",
     lambda w, bs: [{"n": sum(1 for b in bs if b["ChannelId"].startswith("ch-"))}]),
    ("distinct_channels",
     "SELECT DISTINCT ChannelId FROM {ds} WHERE {where} ORDER BY ChannelId",
     lambda w, bs: [{"ChannelId": c} for c in sorted({b["ChannelId"] for b in bs})]),
    ("limit_offset",
     "SELECT ChannelId FROM {ds} WHERE {where} GROUP BY 1 ORDER BY 1 LIMIT 1 OFFSET 1",
     lambda w, bs: [{"ChannelId": sorted({b["ChannelId"] for b in bs})[1]}]),
    ("math_functions",
     "SELECT ROUND(AVG(TotalDownlinkThroughput), 2) AS r, ABS(-2) AS a, POWER(2, 10) AS p,"
     " MOD(7, 3) AS m, FLOOR(2.7) AS f, CEIL(2.1) AS c, LOG10(1000) AS l FROM {ds} WHERE {where}",
     lambda w, bs: [{"r": round(mean([b["TotalDownlinkThroughput"] for b in bs]), 2), "a": 2,
                     "p": 1024, "m": 1, "f": 2, "c": 3, "l": 3}]),
    ("concat_expr_names",
     "SELECT CONCAT(ChannelId, '/', Source), COUNT(*) FROM {ds} WHERE {where}"
     " GROUP BY 1 ORDER BY 1",
     lambda w, bs: [{"EXPR$0": k, "EXPR$1": len(g)} for k, g in sorted(
         group(bs, lambda b: f"{b['ChannelId']}/{b['Source']}").items())]),
    ("time_shift_current_timestamp",
     "SELECT COUNT(*) AS n FROM {ds} WHERE CustomerId = '{cid}'"
     " AND __time >= TIME_SHIFT(CURRENT_TIMESTAMP, 'PT1M', -5)",
     lambda w, bs: [{"n": sum(1 for b in w.tenants["adv"][2]
                              if b["__time"] >= w.now - timedelta(minutes=5))}]),
    ("advanced_os_breakdown",
     "SELECT OsName, COUNT(DISTINCT SessionId) AS audience FROM {ds} WHERE {where}"
     " AND OsName IS NOT NULL AND OsName <> '' GROUP BY OsName ORDER BY OsName",
     lambda w, bs: [{"OsName": o, "audience": sessions(g)} for o, g in sorted(
         group([b for b in bs if b.get("OsName")], lambda b: b["OsName"]).items())]),
    ("rebuffering_ratio",
     "SELECT SUM(BufferingTime) / SUM(PlayingTime) AS ratio FROM {ds} WHERE {where}",
     lambda w, bs: [{"ratio": sum(vals(bs, "BufferingTime")) / sum(vals(bs, "PlayingTime"))}]),
    ("join_of_subqueries",
     "SELECT a.ChannelId, a.n, b.devices FROM (SELECT ChannelId, COUNT(*) AS n FROM {ds}"
     " WHERE {where} GROUP BY 1) a JOIN (SELECT ChannelId, COUNT(DISTINCT SessionId) AS devices"
     " FROM {ds} WHERE {where} GROUP BY 1) b ON a.ChannelId = b.ChannelId ORDER BY 1",
     lambda w, bs: per_channel(w, lambda c, g: {"ChannelId": c, "n": len(g),
                                                 "devices": sessions(g)})),
    ("p2p_compatible_boolean",
     "SELECT COUNT(DISTINCT SessionId) AS incompatible FROM {ds} WHERE {where}"
     " AND P2pCompatible = false",
     lambda w, bs: [{"incompatible": sessions(
         [b for b in bs if b.get("P2pCompatible") is False])}]),
    ("throughput_per_stream",
     "SELECT StreamId, SUM(TotalDownlinkThroughput) / 720 AS kbps FROM {ds} WHERE {where}"
     " GROUP BY StreamId ORDER BY StreamId",
     lambda w, bs: [{"StreamId": k, "kbps": sum(b["TotalDownlinkThroughput"] for b in g) / 720}
                    for k, g in sorted(group(bs, lambda b: b["StreamId"]).items())]),
    ("p2p_devices_case_distinct",
     "SELECT COUNT(DISTINCT CASE WHEN Source = 'p2p' THEN SessionId END) AS p2p_devices,"
     " 100.0 * COUNT(DISTINCT CASE WHEN Source = 'p2p' THEN SessionId END)"
     " / COUNT(DISTINCT SessionId) AS pct FROM {ds} WHERE {where}",
     lambda w, bs: [{"p2p_devices": sessions([b for b in bs if b["Source"] == "p2p"]),
                     "pct": 100.0 * sessions([b for b in bs if b["Source"] == "p2p"])
                     / sessions(bs)}]),
    ("not_compatible_devices_filter",
     "SELECT COUNT(DISTINCT SessionId) FILTER (WHERE P2pCompatible = false) AS nc"
     " FROM {ds} WHERE {where}",
     lambda w, bs: [{"nc": sessions([b for b in bs if b.get("P2pCompatible") is False])}]),
    ("dropped_frames_by_source",
     "SELECT Source, AVG(DroppedFrames) AS df FROM {ds} WHERE {where} GROUP BY 1 ORDER BY 1",
     lambda w, bs: [{"Source": k, "df": mean(vals(g, "DroppedFrames"))}
                    for k, g in sorted(group(bs, lambda b: b["Source"]).items())]),
    ("response_times",
     "SELECT AVG(CdnResponseTime) AS cdn_rt, AVG(P2pResponseTime) AS p2p_rt"
     " FROM {ds} WHERE {where}",
     lambda w, bs: [{"cdn_rt": mean(vals(bs, "CdnResponseTime")),
                     "p2p_rt": mean(vals(bs, "P2pResponseTime"))}]),
    ("browsers_with_nulls_first",
     "SELECT BrowserName, COUNT(DISTINCT SessionId) AS devices FROM {ds} WHERE {where}"
     " GROUP BY BrowserName ORDER BY BrowserName",
     lambda w, bs: [{"BrowserName": k, "devices": sessions(g)} for k, g in sorted(
         group(bs, lambda b: b.get("BrowserName")).items(),
         key=lambda kv: (kv[0] is not None, kv[0] or ""))]),
    ("connection_types",
     "SELECT ConnectionType AS connection_type, COUNT(DISTINCT SessionId) AS audience FROM {ds}"
     " WHERE {where} AND ConnectionType IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1",
     lambda w, bs: sorted([{"connection_type": k, "audience": sessions(g)} for k, g in group(
         [b for b in bs if b.get("ConnectionType")], lambda b: b["ConnectionType"]).items()],
         key=lambda r: (-r["audience"], r["connection_type"]))),
    ("bitrates_numeric_order",
     "SELECT Bitrate, COUNT(*) AS n FROM {ds} WHERE {where} GROUP BY Bitrate"
     " ORDER BY CAST(Bitrate AS INT) DESC",
     lambda w, bs: [{"Bitrate": k, "n": len(g)} for k, g in sorted(
         group(bs, lambda b: b["Bitrate"]).items(), key=lambda kv: -int(kv[0]))]),
    ("renditions_viewing_time",
     "SELECT RepresentationId, SUM(ViewingTime) / 60 AS minutes FROM {ds} WHERE {where}"
     " GROUP BY 1 ORDER BY 1",
     lambda w, bs: [{"RepresentationId": k, "minutes": sum(vals(g, "ViewingTime")) / 60}
                    for k, g in sorted(group(bs, lambda b: b["RepresentationId"]).items())]),
    ("player_states",
     "SELECT PlayerState, COUNT(*) AS beacons FROM {ds} WHERE {where} GROUP BY 1 ORDER BY 1",
     lambda w, bs: [{"PlayerState": k, "beacons": len(g)}
                    for k, g in sorted(group(bs, lambda b: b["PlayerState"]).items())]),
    ("join_time_quantiles",
     "WITH s AS (SELECT SessionId, MAX(StartingTime) AS st FROM {ds} WHERE {where}"
     " AND PlayerState = 'playing' GROUP BY SessionId) SELECT APPROX_QUANTILE_DS(st, 0.25) AS p25,"
     " APPROX_QUANTILE_DS(st, 0.5) AS median, APPROX_QUANTILE_DS(st, 0.75) AS p75 FROM s",
     lambda w, bs: (lambda st: [{"p25": percentile_cont(st, 0.25),
                                 "median": percentile_cont(st, 0.5),
                                 "p75": percentile_cont(st, 0.75)}])(
         [max(v) for g in group([b for b in bs if b["PlayerState"] == "playing"],
                                lambda b: b["SessionId"]).values()
          if (v := vals(g, "StartingTime"))])),
    ("top3_channels_viewing",
     "SELECT ChannelId, SUM(ViewingTime) AS vt FROM {ds} WHERE {where} GROUP BY 1"
     " ORDER BY 2 DESC LIMIT 3",
     lambda w, bs: sorted([{"ChannelId": k, "vt": sum(vals(g, "ViewingTime"))}
                           for k, g in group(bs, lambda b: b["ChannelId"]).items()],
                          key=lambda r: -r["vt"])[:3]),
    ("running_total",
     "SELECT TIME_FLOOR(__time, 'PT1M') AS t, COUNT(*) AS n,"
     " SUM(COUNT(*)) OVER (ORDER BY TIME_FLOOR(__time, 'PT1M')) AS cumulative FROM {ds}"
     " WHERE {where} GROUP BY 1 ORDER BY 1",
     lambda w, bs: (lambda rows: [{**r, "cumulative": sum(x["n"] for x in rows[:i + 1])}
                                  for i, r in enumerate(rows)])(
         [{"t": iso(k), "n": len(g)}
          for k, g in sorted(group(bs, lambda b: floor(b["__time"], 60)).items())])),
    ("lag_delta",
     "SELECT t, n, n - LAG(n) OVER (ORDER BY t) AS delta FROM (SELECT TIME_FLOOR(__time, 'PT1M')"
     " AS t, COUNT(*) AS n FROM {ds} WHERE {where} GROUP BY 1) ORDER BY t",
     lambda w, bs: (lambda rows: [{**r, "delta": None if i == 0 else r["n"] - rows[i - 1]["n"]}
                                  for i, r in enumerate(rows)])(
         [{"t": iso(k), "n": len(g)}
          for k, g in sorted(group(bs, lambda b: floor(b["__time"], 60)).items())])),
    ("channel_stream_breakdown",
     "SELECT ChannelId, StreamId, COUNT(DISTINCT SessionId) AS devices FROM {ds}"
     " WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2",
     lambda w, bs: [{"ChannelId": k[0], "StreamId": k[1], "devices": sessions(g)} for k, g in
                    sorted(group(bs, lambda b: (b["ChannelId"], b["StreamId"])).items())]),
    ("between_filter",
     "SELECT COUNT(*) AS n FROM {ds} WHERE CustomerId = '{cid}' AND __time BETWEEN '{start}'"
     " AND '{last}'",
     lambda w, bs: [{"n": len(bs)}]),
    ("time_extract_minute",
     "SELECT TIME_EXTRACT(__time, 'MINUTE') AS minute, COUNT(*) AS n FROM {ds} WHERE {where}"
     " GROUP BY 1 ORDER BY 1",
     lambda w, bs: [{"minute": k, "n": len(g)}
                    for k, g in sorted(group(bs, lambda b: b["__time"].minute).items())]),
    ("greatest_least",
     "SELECT MAX(GREATEST(CdnDownlinkThroughput, P2pDownlinkThroughput)) AS g,"
     " MIN(LEAST(CdnDownlinkThroughput, P2pDownlinkThroughput)) AS l FROM {ds} WHERE {where}",
     lambda w, bs: [{"g": max(max(b["CdnDownlinkThroughput"], b["P2pDownlinkThroughput"])
                              for b in bs),
                     "l": min(min(b["CdnDownlinkThroughput"], b["P2pDownlinkThroughput"])
                              for b in bs)}]),
    ("upper_source",
     "SELECT UPPER(Source) AS src, COUNT(*) AS n FROM {ds} WHERE {where} GROUP BY 1 ORDER BY 1",
     lambda w, bs: [{"src": k.upper(), "n": len(g)}
                    for k, g in sorted(group(bs, lambda b: b["Source"]).items())]),
    ("sessions_in_subquery",
     "SELECT COUNT(*) AS n FROM {ds} WHERE {where} AND SessionId IN (SELECT SessionId FROM {ds}"
     " WHERE {where} GROUP BY SessionId HAVING COUNT(*) > 50)",
     lambda w, bs: [{"n": sum(len(g) for g in group(bs, lambda b: b["SessionId"]).values()
                              if len(g) > 50)}]),
    ("two_level_nesting",
     "SELECT MAX(total) AS biggest FROM (SELECT ChannelId, SUM(n) AS total FROM (SELECT ChannelId,"
     " SessionId, COUNT(*) AS n FROM {ds} WHERE {where} GROUP BY 1, 2) GROUP BY 1)",
     lambda w, bs: [{"biggest": max(len(g) for g in
                                    group(bs, lambda b: b["ChannelId"]).values())}]),
    ("rebuffering_by_channel",
     "SELECT ChannelId, SUM(BufferingTime) / SUM(PlayingTime) AS ratio FROM {ds} WHERE {where}"
     " GROUP BY 1 ORDER BY 1",
     lambda w, bs: per_channel(w, lambda c, g: {
         "ChannelId": c, "ratio": sum(vals(g, "BufferingTime")) / sum(vals(g, "PlayingTime"))})),
    ("buffer_filling_rate",
     "SELECT AVG(AggregateBufferFillingRate) AS bfr FROM {ds} WHERE {where} AND Source = 'p2p'",
     lambda w, bs: [{"bfr": mean(vals([b for b in bs if b["Source"] == "p2p"],
                                      "AggregateBufferFillingRate"))}]),
    ("os_share_of_devices",
     "SELECT OsName, COUNT(DISTINCT SessionId) AS d, 100.0 * COUNT(DISTINCT SessionId)"
     " / SUM(COUNT(DISTINCT SessionId)) OVER () AS pct FROM {ds} WHERE {where}"
     " AND OsName IN ('LINUX', 'WINDOWS', 'MAC_OS', 'ANDROID') GROUP BY 1 ORDER BY 1",
     lambda w, bs: (lambda rows: [{**r, "pct": 100.0 * r["d"] / sum(x["d"] for x in rows)}
                                  for r in rows])(
         [{"OsName": k, "d": sessions(g)} for k, g in sorted(group(
             [b for b in bs if b.get("OsName") in ("LINUX", "WINDOWS", "MAC_OS", "ANDROID")],
             lambda b: b["OsName"]).items())])),
    ("count_distinct_two_columns",
     "SELECT COUNT(DISTINCT SessionId) AS devices, COUNT(DISTINCT ChannelId) AS channels"
     " FROM {ds} WHERE {where}",
     lambda w, bs: [{"devices": sessions(bs), "channels": len({b["ChannelId"] for b in bs})}]),
]


@pytest.mark.parametrize("case", DASHBOARD, ids=[c[0] for c in DASHBOARD])
def test_dashboard_query(api, world: World, case) -> None:
    _, template, expected = case
    query = template.format(ds='"sdk-emea-realtime"', where=world.where(),
                            cid=world.tenants["adv"][0], start=world.start.isoformat(),
                            last=(world.end - timedelta(seconds=1)).isoformat())
    assert rows_of(api, world.key(), query) == approx(expected(world, world.window()))


LAYER_QUERIES = [
    "SELECT TIME_FLOOR(__time, '{period}') AS t, COUNT(DISTINCT SessionId) AS audience,"
    " SUM(TotalDownlinkThroughput) AS total, AVG(BufferHealth) AS bh, COUNT(*) AS n,"
    " MAX(StartingTime) AS mx FROM \"sdk-emea-{layer}\" WHERE {where} GROUP BY 1 ORDER BY 1",
    "SELECT ChannelId, Source, SUM(ViewingTime) AS vt FROM \"sdk-emea-{layer}\" WHERE {where}"
    " GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT APPROX_COUNT_DISTINCT(SessionId) AS devices FROM \"sdk-emea-{layer}\" WHERE {where}",
]


@pytest.mark.parametrize("layer,period", [("historical-minute", "PT1M"),
                                          ("historical-hour", "PT1H")])
@pytest.mark.parametrize("template", LAYER_QUERIES)
def test_same_answer_on_every_layer(api, world: World, layer: str, period: str, template) -> None:
    """Bucket-aligned queries agree between realtime and the historical layers."""
    start = floor(world.start, 3600)
    end = floor(world.end, 3600) + timedelta(hours=1)
    where = (f"CustomerId = '{world.tenants['adv'][0]}' AND __time >= '{start.isoformat()}'"
             f" AND __time < '{end.isoformat()}'")
    realtime = rows_of(api, world.key(), template.format(period=period, layer="realtime",
                                                         where=where))
    historical = rows_of(api, world.key(), template.format(period=period, layer=layer,
                                                           where=where))
    assert realtime and historical == approx(realtime)


def test_historical_refuses_per_session_columns(api, world: World) -> None:
    response = sql(api, world.key(), "SELECT SessionId, COUNT(*) FROM"
                   f" \"sdk-emea-historical-hour\" WHERE {world.where()} GROUP BY 1")
    assert response.status_code == 400
    msg = response.json()["detail"][0]["msg"]
    assert "SessionId" in msg and "sdk-emea-realtime" in msg


def test_select_star_has_the_tier_columns(api, world: World) -> None:
    query = f'SELECT * FROM "sdk-emea-realtime" WHERE {world.where("lite")} LIMIT 3'
    rows = rows_of(api, world.key("lite"), query)
    assert len(rows) == 3 and "BufferHealth" in rows[0] and "ConnectionType" not in rows[0]
    advanced = rows_of(api, world.key(), query.replace(world.where("lite"), world.where()))
    assert "ConnectionType" in advanced[0] and advanced[0]["__time"].endswith(".000Z")
    hourly = rows_of(api, world.key(), f'SELECT * FROM "sdk-emea-historical-hour"'
                     f" WHERE CustomerId = '{world.tenants['adv'][0]}' LIMIT 2")
    assert "SessionId" not in hourly[0] and hourly[0]["__time"].endswith(":00:00.000Z")


def test_parameters_and_result_formats(api, world: World) -> None:
    customer_id = world.tenants["adv"][0]
    query = ("SELECT ChannelId, COUNT(*) AS n FROM \"sdk-emea-realtime\" WHERE CustomerId = ?"
             " AND __time >= ? AND __time < ? GROUP BY 1 ORDER BY 1 LIMIT ?")
    params = [{"type": "VARCHAR", "value": customer_id},
              {"type": "TIMESTAMP", "value": world.start.strftime("%Y-%m-%d %H:%M:%S")},
              {"type": "VARCHAR", "value": world.end.isoformat()},
              {"type": "INTEGER", "value": "10"}]
    expected = per_channel(world, lambda c, g: {"ChannelId": c, "n": len(g)})
    assert rows_of(api, world.key(), query, parameters=params) == expected
    arrays = rows_of(api, world.key(), query, parameters=params, resultFormat="array", header=True)
    assert arrays == [["ChannelId", "n"], *[[r["ChannelId"], r["n"]] for r in expected]]
    response = sql(api, world.key(), query, parameters=params, resultFormat="csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.splitlines()[0] == f"{expected[0]['ChannelId']},{expected[0]['n']}"
    lines = sql(api, world.key(), query, parameters=params, resultFormat="objectLines").text
    assert lines.endswith("\n\n") and len(lines.strip().splitlines()) == len(expected)


def test_query_id_header_and_druid_paths(api, world: World) -> None:
    query = f'SELECT COUNT(*) AS n FROM "sdk-emea-realtime" WHERE {world.where()}'
    for path in (PATH, "/v1/query/sql", "/druid/v2/sql", "/druid/v2/sql/"):
        response = sql(api, world.key(), query, path=path, context={"sqlQueryId": "dash-1"})
        assert response.status_code == 200, (path, response.text)
        assert response.headers["x-druid-sql-query-id"] == "dash-1"
        assert response.json() == [{"n": len(world.window())}]
    generated = sql(api, world.key(), query)
    assert len(generated.headers["x-druid-sql-query-id"]) == 36
    druid_error = sql(api, world.key(), "SELECT nope FROM \"sdk-emea-realtime\"",
                      path="/druid/v2/sql/")
    assert druid_error.status_code == 400
    assert {"error", "errorMessage", "errorClass", "host"} <= set(druid_error.json())
    assert "nope" in druid_error.json()["errorMessage"]


def test_status_and_datasources(api, world: World) -> None:
    status = api.http.get("/status")
    assert status.status_code == 200 and "version" in status.json()
    listed = api.get_json("/druid/v2/datasources", world.key())
    assert listed == ["sdk-emea-realtime", "sdk-emea-historical-minute", "sdk-emea-historical-hour"]
    assert api.http.get("/druid/v2/datasources").status_code == 401


def test_reseller_reads_its_customers_with_in(api, tenants, world: World) -> None:
    adv, other = world.tenants["adv"][0], world.tenants["other"][0]
    _, key = tenants.reseller([adv, other])
    where = world.where().replace(f"CustomerId = '{adv}'", f"CustomerId IN ('{adv}', '{other}')")
    rows = rows_of(api, key, "SELECT CustomerId, COUNT(*) AS n FROM \"sdk-emea-realtime\""
                   f" WHERE {where} GROUP BY 1 ORDER BY 1")
    assert rows == sorted([{"CustomerId": adv, "n": len(world.window())},
                           {"CustomerId": other, "n": len(world.window("other"))}],
                          key=lambda r: r["CustomerId"])
    denied = sql(api, key, "SELECT COUNT(*) FROM \"sdk-emea-realtime\""
                 f" WHERE CustomerId = '{world.tenants['lite'][0]}'")
    assert denied.status_code == 403


def test_information_schema_lists_only_the_callers_datasources_and_tier(api, world: World) -> None:
    tables = rows_of(api, world.key("lite"), "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES"
                     " WHERE TABLE_SCHEMA = 'druid' ORDER BY 1")
    assert tables == [{"TABLE_NAME": f"sdk-emea-{layer}"}
                      for layer in ("historical-hour", "historical-minute", "realtime")]
    query = ("SELECT COLUMN_NAME, DATA_TYPE, JDBC_TYPE, IS_NULLABLE FROM INFORMATION_SCHEMA.COLUMNS"
             " WHERE TABLE_NAME = 'sdk-emea-realtime' ORDER BY ORDINAL_POSITION")
    lite = rows_of(api, world.key("lite"), query)
    assert lite[0] == {"COLUMN_NAME": "__time", "DATA_TYPE": "TIMESTAMP", "JDBC_TYPE": 93,
                       "IS_NULLABLE": "NO"}
    names = {r["COLUMN_NAME"] for r in lite}
    assert "BufferHealth" in names and "ConnectionType" not in names
    assert "ConnectionType" in {r["COLUMN_NAME"] for r in rows_of(api, world.key(), query)}
    schemata = rows_of(api, world.key(), "SELECT SCHEMA_NAME FROM INFORMATION_SCHEMA.SCHEMATA")
    assert {r["SCHEMA_NAME"] for r in schemata} == {"druid", "INFORMATION_SCHEMA"}


def test_select_without_datasource(api, world: World) -> None:
    assert rows_of(api, world.key(), "SELECT 1") == [{"EXPR$0": 1}]
    assert rows_of(api, world.key(), "SELECT 1 + 1 AS two, 'a b' AS \"x y\"") == [
        {"two": 2, "x y": "a b"}]


@pytest.mark.parametrize("skip", [False, True])
def test_time_series_fills_empty_buckets(api, world: World, skip: bool) -> None:
    """Druid's timeseries: every bucket of the bounded range, counts 0 and averages null."""
    customer_id, key, beacons = world.tenants["adv"]
    end = floor(world.now, 3600) - timedelta(hours=1)
    start = end - timedelta(hours=48)
    query = ("SELECT TIME_FLOOR(__time, 'PT1H') AS \"timestamp\", COUNT(*) AS n,"
             " COUNT(DISTINCT SessionId) AS devices, AVG(BufferHealth) AS bh"
             " FROM \"sdk-emea-realtime\" WHERE CustomerId = ?"
             " AND __time >= ? AND __time < ? GROUP BY 1 ORDER BY 1")
    params = [{"type": "VARCHAR", "value": customer_id},
              {"type": "VARCHAR", "value": start.isoformat()},
              {"type": "VARCHAR", "value": end.isoformat()}]
    rows = rows_of(api, key, query, parameters=params, context={"skipEmptyBuckets": skip})
    inside = group([b for b in beacons if start <= b["__time"] < end],
                   lambda b: floor(b["__time"], 3600))
    hours = [start + timedelta(hours=i) for i in range(48)]
    expected = [{"timestamp": iso(h), "n": len(inside.get(h, [])),
                 "devices": sessions(inside.get(h, [])),
                 "bh": mean(vals(inside.get(h, []), "BufferHealth"))}
                for h in hours if not skip or h in inside]
    assert rows == approx(expected)
    assert len(rows) == (len(inside) if skip else 48)


def test_grpc_callers_get_the_same_bytes(api, stack, world: World) -> None:
    import grpc
    from google.protobuf import struct_pb2

    from edgestats.sql_query.v1 import sql_query_json_service_pb2 as pb
    from edgestats.sql_query.v1 import sql_query_json_service_pb2_grpc as rpc

    query = f'SELECT ChannelId, COUNT(*) AS n FROM "sdk-emea-realtime" WHERE {world.where()}' \
            " GROUP BY 1 ORDER BY 1"
    http = sql(api, world.key(), query)
    with grpc.insecure_channel(stack.grpc_target) as channel:
        answer, call = rpc.SqlQueryJsonServiceStub(channel).Query.with_call(
            pb.QueryRequest(query=struct_pb2.Value(string_value=query)),
            metadata=(("authorization", f"Bearer {world.key()}"),))
    assert answer.data == http.content
    assert dict(call.initial_metadata())["x-druid-sql-query-id"]


def test_long_names_in_errors_are_bounded(api, world: World) -> None:
    name = "x" * 50_000
    response = sql(api, world.key(), f'SELECT "{name}" FROM "sdk-emea-realtime"'
                   f" WHERE {world.where()}")
    assert response.status_code == 400 and len(response.text) < 1000
