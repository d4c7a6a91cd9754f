"""Per-key rate limits through Envoy (CONTRACT §9): headers on every answer, 429 past the burst."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from edgestats_core.tenancy import api_keys
from edgestats_stack.stack import start_stack
from tests.e2e.api import Api

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def limited_api(db_url, frozen_now, tmp_path_factory):
    env = {"EDGESTATS_FROZEN_NOW": frozen_now.isoformat(), "EDGESTATS_RATE_LIMIT": "0.2",
           "EDGESTATS_RATE_BURST": "4", "EDGESTATS_RATE_LIMIT_ADVANCED": "0.5",
           "EDGESTATS_RATE_BURST_ADVANCED": "6"}
    stack = start_stack(Path(tmp_path_factory.mktemp("limited")), db_url, env=env, workers=1)
    with Api(stack.http_url) as api:
        yield api
    stack.stop()


def test_a_burst_passes_then_429_with_retry_after(limited_api, tenants):
    _, key = tenants.customer("lite")
    answers = [limited_api.get("/summary/agg", key, time="1h") for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    assert [a.headers["x-ratelimit-limit"] for a in answers] == ["0.2"] * 5
    assert [int(a.headers["x-ratelimit-remaining"]) for a in answers] == [3, 2, 1, 0, 0]
    refused = answers[-1]
    assert refused.json() == {"detail": "Too Many Requests"}
    assert refused.headers["content-type"] == "application/json"
    assert 1 <= int(refused.headers["retry-after"]) <= 5


def test_errors_carry_the_headers_too(limited_api, tenants):
    _, key = tenants.customer("lite")
    bad = limited_api.get("/summary", key)  # no time: 400
    assert bad.status_code == 400 and bad.json()["detail"][0]["loc"] == ["query", "time"]
    assert bad.headers["x-ratelimit-remaining"] == "3"


def test_one_keys_burst_never_slows_another(limited_api, tenants):
    (_, first), (_, second) = tenants.customer("lite"), tenants.customer("lite")
    for _ in range(6):
        limited_api.get("/summary/agg", first, time="1h")
    assert limited_api.get("/summary/agg", first, time="1h").status_code == 429
    assert limited_api.get("/summary/agg", second, time="1h").status_code == 200


def test_tiers_have_their_own_limits(limited_api, tenants):
    _, key = tenants.customer("advanced")
    codes = [limited_api.get("/summary/agg", key, time="1h").status_code for _ in range(7)]
    assert codes == [200] * 6 + [429]


def test_a_key_can_have_its_own_limit(limited_api, tenants, db_url):
    _, key = tenants.customer("lite")
    with psycopg.connect(db_url) as conn:
        assert api_keys.set_rate_limit(conn, api_keys.key_id_of(key), 0.1, 2) == 1
    answers = [limited_api.get("/summary/agg", key, time="1h") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["x-ratelimit-limit"] == "0.1"


def test_public_and_unauthenticated_calls_are_not_limited(limited_api):
    assert all(limited_api.get("/ping").status_code == 200 for _ in range(10))
    assert limited_api.get("/summary", "nope", time="1h").status_code == 401
