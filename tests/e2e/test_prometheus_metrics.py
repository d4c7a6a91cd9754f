"""The services' Prometheus scrape after known traffic: exactly those counts in the right
series, summed over both workers of each service (a stack of its own, so no other test's
calls are counted)."""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.parse
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgestats_stack.stack import start_stack
from metrics_service import rollups
from tests.builders import scenario, wire
from tests.e2e.api import Api
from tests.e2e.test_usage_ingest import PATH as USAGE
from tests.e2e.test_usage_ingest import UsageAccounts, event
from tests.ops_config import SCRAPE_SERIES, every_metric_name

pytestmark = pytest.mark.e2e

SQL = "/analytics/v1/query/sql"
SLOW = ("SELECT COUNT(*) AS n FROM \"sdk-emea-realtime\" a, \"sdk-emea-realtime\" b,"
        " \"sdk-emea-realtime\" c WHERE a.CustomerId = '{me}' AND b.CustomerId = '{me}'"
        " AND c.CustomerId = '{me}'")


@pytest.fixture(scope="module")
def observed(db_url, frozen_now, tmp_path_factory):
    """A stack of two workers per service whose advanced keys get a burst of 4 calls (2 per
    worker) and hardly any more."""
    env = {"EDGESTATS_FROZEN_NOW": frozen_now.isoformat(), "EDGESTATS_RESULT_CACHE_SECONDS": "30",
           "EDGESTATS_RATE_LIMIT_ADVANCED": "0.01", "EDGESTATS_RATE_BURST_ADVANCED": "4"}
    stack = start_stack(Path(tmp_path_factory.mktemp("observed")), db_url, env=env, workers=2)
    with Api(stack.http_url) as api:
        yield stack, api
    stack.stop()


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of the scrape by (name, labels)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def requests(samples: dict, service: str, method: str, **labels: str) -> float:
    return value(samples, "edgestats_rpc_requests_total",
                 service=f"edgestats.{service}", method=method, **labels)


def test_known_traffic_is_counted_exactly(observed, tenants, frozen_now):
    stack, api = observed
    lite_id, lite_key = tenants.customer("lite")
    adv_id, adv_key = tenants.customer("advanced")
    beacons = [wire(b) for b in scenario(lite_id, frozen_now, seed=71)][:30]
    assert len(beacons) == 30
    bad = [{**beacons[0], "SessionId": None}, {**beacons[1], "Source": "satellite"}]
    bad[0].pop("SessionId")

    first = api.ingest(lite_key, beacons).json()
    again = api.ingest(lite_key, beacons + bad).json()
    assert first == {"accepted": 30, "duplicates": 0, "rejected": []}
    assert again["duplicates"] == 30 and len(again["rejected"]) == 2

    body = {"from_date": (frozen_now - timedelta(hours=1)).isoformat(),
            "to_date": frozen_now.isoformat()}
    forbidden = api.http.post("/analytics/v1/metrics/audience/os", content=json.dumps(body),
                              headers=api.auth(lite_key))
    assert forbidden.status_code == 403
    # each of the two workers keeps half the burst: call until refused twice
    codes: list[int] = []
    while codes.count(429) < 2 and len(codes) < 20:
        codes.append(api.get("/summary/agg", adv_key, time="1h").status_code)
    answered, limited = codes.count(200), codes.count(429)
    assert limited == 2 and answered >= 1 and set(codes) == {200, 429}
    pings = [api.http.get("/ping").status_code for _ in range(20)]
    assert pings == [200] * 20

    sql_customer, sql_key = tenants.customer("advanced")
    sql_beacons = [wire(b) for b in scenario(sql_customer, frozen_now, seed=72)]
    loaded = api.ingest(sql_key, sql_beacons)
    assert loaded.json() == {"accepted": len(sql_beacons), "duplicates": 0, "rejected": []}
    slow = api.http.post(SQL, json={"query": SLOW.format(me=sql_customer),
                                    "context": {"timeout": 500}},
                         headers=api.auth(sql_key))
    assert slow.status_code == 504

    time.sleep(0.5)  # the exporter reads the workers' files at each scrape
    samples = scrape(stack.metrics_url)
    assert value(samples, "edgestats_ingested_items_total", kind="beacon",
                 outcome="accepted") == 30 + len(sql_beacons)
    assert value(samples, "edgestats_ingested_items_total", kind="beacon",
                 outcome="duplicate") == 30
    assert value(samples, "edgestats_ingested_items_total", kind="beacon",
                 outcome="rejected") == 2
    assert value(samples, "edgestats_rejected_items_total", kind="beacon",
                 reason="SessionId") == 1
    assert value(samples, "edgestats_rejected_items_total", kind="beacon", reason="Source") == 1
    assert requests(samples, "metrics.v1.BeaconIngestService", "IngestBeaconsJson",
                    grpc_code="OK", http_status="200", transport="http") == 3
    assert requests(samples, "metrics.v1.MetricsJsonService", "GetAudienceByOs",
                    grpc_code="PERMISSION_DENIED", http_status="403") == 1
    assert requests(samples, "metrics.v1.LegacyStatsJsonService", "GetSummaryAggregate",
                    grpc_code="OK") == answered
    assert requests(samples, "metrics.v1.LegacyStatsJsonService", "GetSummaryAggregate",
                    grpc_code="RESOURCE_EXHAUSTED", http_status="429") == limited
    assert value(samples, "edgestats_rate_limited_total", tier="advanced") == limited
    # the answered /summary/agg calls: one query per worker that got one, then the cache
    misses = value(samples, "edgestats_result_cache_requests_total", outcome="miss")
    assert misses in (1, 2)
    assert value(samples, "edgestats_result_cache_requests_total", outcome="hit") == (
        answered - misses)
    assert requests(samples, "metrics.v1.LegacyStatsJsonService", "Ping",
                    http_status="200") == 20
    assert requests(samples, "sql_query.v1.SqlQueryJsonService", "Query",
                    grpc_code="DEADLINE_EXCEEDED", http_status="504") == 1
    assert value(samples, "edgestats_statement_timeouts_total") == 1
    # the latency histogram counts every call once
    assert value(samples, "edgestats_rpc_duration_seconds_count",
                 service="edgestats.metrics.v1.LegacyStatsJsonService",
                 method="Ping") == 20
    # both workers answered the pings: the counts above are their sums
    assert served_by_each_worker(stack.admin_url, "metrics") >= 2
    # Envoy's own statistics, for the dashboard's gateway panels
    with urllib.request.urlopen(f"{stack.admin_url}/stats/prometheus", timeout=10) as answer:
        envoy = answer.read().decode()
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="metrics"}' in envoy


def test_usage_events_are_counted_by_outcome(observed, db_url, frozen_now):
    """Usage events: stored, duplicate and rejected by the field named."""
    stack, api = observed
    usage = UsageAccounts(db_url)
    user_id, key = usage.user("app-1"), usage.ingest_key()
    before = scrape(stack.metrics_url)
    prefix = f"ev-{uuid.uuid4().hex[:10]}"  # event ids are global
    events = [event(f"{prefix}-{n}", user_id, frozen_now) for n in range(5)]
    bad = [{**events[0], "id": f"{prefix}-bad", "bytes": "many"},
           {**events[0], "id": f"{prefix}-bad2", "type": "teleport"}]
    first = api.http.post(USAGE, json=events, headers=api.auth(key)).json()
    again = api.http.post(USAGE, json=events[:3] + bad, headers=api.auth(key)).json()
    assert first["accepted"] == 5 and first["duplicates"] == 0
    assert again["duplicates"] == 3 and len(again["rejected"]) == 2
    time.sleep(0.5)
    after = scrape(stack.metrics_url)

    def grown(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grown("edgestats_ingested_items_total", kind="usage_event", outcome="accepted") == 5
    assert grown("edgestats_ingested_items_total", kind="usage_event", outcome="duplicate") == 3
    assert grown("edgestats_ingested_items_total", kind="usage_event", outcome="rejected") == 2
    assert grown("edgestats_rejected_items_total", kind="usage_event", reason="bytes") == 1
    assert grown("edgestats_rejected_items_total", kind="usage_event", reason="type") == 1


def served_by_each_worker(admin_url: str, cluster: str) -> int:
    """How many of the cluster's hosts Envoy sent requests to."""
    with urllib.request.urlopen(f"{admin_url}/clusters?format=json", timeout=10) as response:
        clusters = json.load(response)["cluster_statuses"]
    (found,) = [c for c in clusters if c["name"] == cluster]
    served = 0
    for host in found["host_statuses"]:
        stats = {s["name"]: int(s.get("value", 0)) for s in host["stats"]}
        served += stats.get("rq_total", 0) > 0
    return served


def test_pools_and_rollup_lag_are_reported(observed, db_url, frozen_now):
    stack, _ = observed
    hour = frozen_now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    with psycopg.connect(db_url, autocommit=True) as conn:
        rollups.roll_up_hour(conn, hour)  # a published hour, whatever ran before
    time.sleep(11)  # the pools report every 5 s, the rollup lag every 10 s
    samples = scrape(stack.metrics_url)
    database = next(dict(labels)["database"] for (name, labels) in samples
                    if name == "edgestats_db_pool_connections")
    assert value(samples, "edgestats_db_pool_connections", database=database, state="max") > 0
    assert value(samples, "edgestats_db_pool_connections", database=database, state="size") > 0
    assert ("edgestats_db_pool_waiting", frozenset({("database", database)})) in samples
    lags = {dict(labels)["layer"]: v for (name, labels), v in samples.items()
            if name == "edgestats_rollup_lag_seconds" and dict(labels)["database"] == database}
    # the newest published hour ends at most two hours before now (this one: 1-2 h)
    assert 0 <= lags["hour"] < 7200
    assert 0 <= lags["minute"] <= lags["hour"]
    # the same ends as timestamps, what the alerts compare with Prometheus's clock
    newest = {dict(labels)["layer"]: v for (name, labels), v in samples.items()
              if name == "edgestats_rollup_newest_seconds"
              and dict(labels)["database"] == database}
    assert set(newest) == set(lags)
    assert newest["hour"] >= (hour + timedelta(hours=1)).timestamp()
    for layer, lag in lags.items():
        if lag > 0:  # (a lag is never negative: an end past the frozen now shows 0)
            assert newest[layer] + lag == pytest.approx(frozen_now.timestamp()), layer
    assert ("edgestats_rollup_stale_hours",
            frozenset({("region", "americas+emea+apac"), ("database", database)})) in samples


def test_the_alerts_and_dashboard_read_only_metrics_that_exist(observed, tenants, frozen_now):
    """Every metric the alert rules and the dashboard name is in a scrape (the services' or
    Envoy's) once there was traffic of each kind."""
    stack, api = observed
    customer_id, key = tenants.customer("lite")
    items = [wire(b) for b in scenario(customer_id, frozen_now, seed=73)][:3]
    api.ingest(key, [*items, {"__time": 0}])  # accepted and a rejected item
    api.get("/summary/agg", key, time="1h")
    exported = {name for name, _ in scrape(stack.metrics_url)}
    with urllib.request.urlopen(f"{stack.admin_url}/stats/prometheus", timeout=10) as answer:
        exported |= {line.split("{")[0].split(" ")[0]
                     for line in answer.read().decode().splitlines()
                     if line and not line.startswith("#")}
    # (Airflow's metrics are checked where a DAG runs: tests/db/test_dags.py; `up` is
    # Prometheus's own)
    missing = {n for n in every_metric_name() - SCRAPE_SERIES
               if not n.startswith("airflow_")} - exported
    assert not missing, missing


def listening_hosts(port: int) -> set[str]:
    """The addresses sockets listen on at `port` (Linux's /proc/net/tcp and tcp6)."""
    hosts = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:  # LISTEN
                raw = bytes.fromhex(address)
                # the kernel prints each 32-bit word in host (little-endian) order
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                hosts.add(str(ipaddress.ip_address(words)))
    return hosts


def test_the_scrape_is_local_and_not_on_the_public_port(observed):
    """The gateway's port answers /metrics like any unknown path; the exporter listens on
    127.0.0.1 only."""
    stack, api = observed
    for path in ("/metrics", "/metrics/"):
        response = api.http.get(path)
        assert response.status_code == 404, (path, response.text)
        assert response.json() == {"detail": "Not Found"}
        assert "edgestats_" not in response.text and "# TYPE" not in response.text
    exporter = urllib.parse.urlsplit(stack.metrics_url)
    assert exporter.hostname == "127.0.0.1"
    assert listening_hosts(exporter.port) == {"127.0.0.1"}
    assert "# TYPE edgestats_rpc_requests_total counter" in urllib.request.urlopen(
        stack.metrics_url, timeout=10).read().decode()
