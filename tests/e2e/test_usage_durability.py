"""Usage ingestion when PostgreSQL fails (CONTRACT §9, §10): a stopped database is a 503 for
the whole batch, and accepted events are durable — PostgreSQL is SIGKILLed while a retrying
producer streams batches; afterwards the stored events are exactly the distinct events sent.

Reuses the outage cluster and stack of test_database_outage.py (its own PostgreSQL, which it
may kill) and its crash helper.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from edgestats_core.tenancy.api_keys import create_role_key
from edgestats_stack import postgres
from tests.e2e.test_database_outage import outage, send_through_a_crash  # noqa: F401
from usage_billing_service import accounts

pytestmark = pytest.mark.e2e

BATCHES, BATCH_SIZE = 40, 500


def _user_and_key(url: str, owner: str) -> tuple[str, str]:
    user_id = f"u-{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url) as conn:
        accounts.create_user(conn, user_id, datetime.now(UTC))
        return user_id, create_role_key(conn, owner, "usage-ingest")


def test_database_down_is_503_for_the_whole_batch(outage):  # noqa: F811
    api, _, run_dir, url = outage
    user_id, key = _user_and_key(url, "outage-producer")
    batch = [{"id": f"down-{user_id}-{i}", "type": "storage", "user_id": user_id, "bytes": i,
              "timestamp": int(time.time() * 1000) - 1000} for i in range(50)]
    assert api.http.post("/v1/usage/events", json=batch[:1], headers=api.auth(key)).json()[
        "accepted"] == 1  # the key is resolved (and cached) while the database is up
    postgres.stop_cluster(run_dir)
    try:
        started = time.monotonic()
        response = api.http.post("/v1/usage/events", json=batch, headers=api.auth(key))
        assert time.monotonic() - started < 2.5
        assert response.status_code == 503, response.text
        assert response.json() == {"detail": "Service Unavailable"}
    finally:
        postgres.ensure_cluster(run_dir, 0)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = api.http.post("/v1/usage/events", json=batch, headers=api.auth(key))
        if response.status_code == 200:
            break
        time.sleep(0.5)
    # nothing of the refused batch had been stored: only the first event is a duplicate
    assert response.json() == {"accepted": 50, "duplicates": 1, "rejected": []}


def test_sigkill_during_usage_ingest_loses_and_doubles_nothing(outage):  # noqa: F811
    api, _, run_dir, url = outage
    user_id, key = _user_and_key(url, "durability-producer")
    now_ms = int(time.time() * 1000) - 60_000
    batches = [
        [{"id": f"kill-{b}-{i}", "type": "bandwidth", "user_id": user_id, "bytes": 1000 + i,
          "timestamp": now_ms - i} for i in range(BATCH_SIZE)]
        for b in range(BATCHES)
    ]
    answers, failures = send_through_a_crash(api, key, "/v1/usage/events", batches, run_dir)
    assert len(answers) == BATCHES
    assert failures, "the crash was not noticed: nothing was retried"
    assert all(a["accepted"] == BATCH_SIZE and a["rejected"] == [] for a in answers), answers
    with psycopg.connect(url) as conn:
        stored, distinct, total = conn.execute(
            "SELECT count(*), count(DISTINCT event_id), sum(bytes) FROM usage_events"
            " WHERE user_id = %s", (user_id,)).fetchone()
        recorded = conn.execute(
            "SELECT count(*) FROM usage_event_ids WHERE event_id LIKE 'kill-%'").fetchone()[0]
    assert stored == distinct == recorded == BATCHES * BATCH_SIZE  # 0 lost, 0 doubled
    assert total == sum(e["bytes"] for b in batches for e in b)
