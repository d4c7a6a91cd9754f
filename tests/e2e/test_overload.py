"""Overload is refused fast (issue #8, CONTRACT §9): past a process's concurrent-RPC limit the
answer is an immediate 503 with the documented body, and the service keeps answering."""

from __future__ import annotations

import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edgestats_stack.stack import start_stack
from tests.builders import scenario, wire
from tests.e2e.api import Api

pytestmark = pytest.mark.e2e
DS = '"sdk-emea-realtime"'
# a cross join of the customer's beacons: runs until its 3 s budget (or finishes)
SLOW = ("SELECT COUNT(*) AS n FROM {ds} a, {ds} b, {ds} c WHERE a.CustomerId = '{me}'"
        " AND b.CustomerId = '{me}' AND c.CustomerId = '{me}'")


@pytest.fixture(scope="module")
def narrow(db_url, frozen_now, tmp_path_factory):
    """One process per service, each serving at most 2 RPCs at once: (stack, api)."""
    env = {"EDGESTATS_FROZEN_NOW": frozen_now.isoformat(), "EDGESTATS_MAX_CONCURRENT_RPCS": "2",
           "EDGESTATS_RATE_LIMIT": "1000000", "EDGESTATS_RATE_BURST": "1000000"}
    stack = start_stack(Path(tmp_path_factory.mktemp("narrow")), db_url, env=env, workers=1)
    with Api(stack.http_url) as api:
        yield stack, api
    stack.stop()


def overflows(admin_url: str, cluster: str) -> dict[str, int]:
    """Envoy's counts of the cluster's requests refused by its circuit breakers: `active`
    past max_requests (the admission limit: HTTP/2 upstreams), `pending` past
    max_pending_requests."""
    with urllib.request.urlopen(f"{admin_url}/stats/prometheus", timeout=10) as response:
        text = response.read().decode()
    counts = {}
    for kind in ("active", "pending"):
        series = (f"envoy_cluster_upstream_rq_{kind}_overflow"
                  f'{{envoy_cluster_name="{cluster}"}} ')
        (line,) = [line for line in text.splitlines() if line.startswith(series)]
        counts[kind] = int(line.split()[-1])
    return counts


def test_the_excess_gets_503_at_once_and_service_resumes(narrow, tenants, frozen_now):
    stack, narrow_api = narrow
    customer_id, key = tenants.customer("advanced", "emea")
    assert narrow_api.ingest(key, [wire(b) for b in scenario(customer_id, frozen_now)]
                             ).status_code == 200
    body = {"query": SLOW.format(ds=DS, me=customer_id), "context": {"timeout": 3000}}

    def ask(_: int) -> tuple[int, float, dict, dict]:
        with Api(narrow_api.base_url) as client:
            started = time.monotonic()
            response = client.http.post("/analytics/v1/query/sql", json=body,
                                        headers=client.auth(key))
            return (response.status_code, time.monotonic() - started, dict(response.headers),
                    response.json())

    before = overflows(stack.admin_url, "sql")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    statuses = [a[0] for a in answers]
    assert set(statuses) <= {200, 503, 504}, answers
    refused = [a for a in answers if a[0] == 503]
    assert len(refused) >= 4, statuses  # at most 2 run, a few more may slip in as slots free
    for _, seconds, headers, payload in refused:
        assert payload == {"detail": "Service Unavailable"}
        assert headers["retry-after"] == "1" and seconds < 1.5
    # each was Envoy's admission refusal, counted where the dashboard reads it
    after = overflows(stack.admin_url, "sql")
    assert after["active"] - before["active"] == len(refused), (before, after)
    assert after["pending"] == before["pending"]
    # nothing is stuck: once the slow ones are done, calls are served again
    assert narrow_api.get("/summary/agg", key, time="1h").status_code == 200


def test_envoy_past_its_heap_budget_refuses_with_the_documented_503(db_url, frozen_now,
                                                                     tmp_path_factory):
    """The overload manager bounds Envoy's memory: with a budget its heap already exceeds,
    every request is refused at once, 503 with the documented body and Retry-After."""
    env = {"EDGESTATS_FROZEN_NOW": frozen_now.isoformat(), "EDGESTATS_GATEWAY_MAX_HEAP_MB": "1"}
    stack = start_stack(Path(tmp_path_factory.mktemp("tight")), db_url, env=env, workers=1)
    try:
        with Api(stack.http_url) as api:
            time.sleep(0.5)  # the overload manager samples the heap every 0.25 s
            response = api.http.get("/ping")
            assert response.status_code == 503
            assert response.json() == {"detail": "Service Unavailable"}
            assert response.headers["retry-after"] == "1"
    finally:
        stack.stop()
