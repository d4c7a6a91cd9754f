"""The result cache through Envoy: shared only within a tenant, and fresh again after its TTL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgestats_stack.stack import start_stack
from tests import oracle
from tests.builders import scenario, wire
from tests.compare import assert_same
from tests.e2e.api import Api

pytestmark = pytest.mark.e2e
TTL = 1.5


@pytest.fixture(scope="module")
def cached_api(db_url, frozen_now, tmp_path_factory):
    env = {"EDGESTATS_FROZEN_NOW": frozen_now.isoformat(),
           "EDGESTATS_RESULT_CACHE_SECONDS": str(TTL)}
    # one worker: each process has its own cache, and Envoy alternates between workers
    stack = start_stack(Path(tmp_path_factory.mktemp("cached")), db_url, env=env, workers=1)
    with Api(stack.http_url) as api:
        yield api
    stack.stop()


def test_cached_answers_stay_per_tenant_and_expire(cached_api, tenants, frozen_now):
    (a, key_a), (b, key_b) = tenants.customer(), tenants.customer()
    beacons_a = scenario(a, frozen_now, seed=21)
    beacons_b = scenario(b, frozen_now, seed=22)
    first_half, second_half = beacons_a[::2], beacons_a[1::2]
    assert cached_api.ingest(key_a, [wire(x) for x in first_half]).status_code == 200
    assert cached_api.ingest(key_b, [wire(x) for x in beacons_b]).status_code == 200

    before = cached_api.get_json("/summary/agg", key_a, time="1h")
    assert_same(before, oracle.summary_agg(first_half, a, frozen_now, "1h"))
    # the same query by another tenant is never answered from A's entry
    assert_same(cached_api.get_json("/summary/agg", key_b, time="1h"),
                oracle.summary_agg(beacons_b, b, frozen_now, "1h"))

    started = time.monotonic()
    assert cached_api.ingest(key_a, [wire(x) for x in second_half]).status_code == 200
    again = cached_api.get_json("/summary/agg", key_a, time="1h")
    if time.monotonic() - started < TTL * 0.8:  # still inside the TTL: the cached answer
        assert again == before
    time.sleep(TTL + 0.2)
    after = cached_api.get_json("/summary/agg", key_a, time="1h")
    assert_same(after, oracle.summary_agg(beacons_a, a, frozen_now, "1h"))
    assert after != before
