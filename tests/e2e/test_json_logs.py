"""The services log one JSON line per event; a call's line names its method, principal, trace
id and the gateway's request id, which Envoy's access log line carries too. No key, token or
SQL value is ever written down."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import psycopg
import pytest

from edgestats_core.tenancy import oauth
from tests.e2e.test_usage_ingest import UsageAccounts

pytestmark = pytest.mark.e2e


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()
            if line.startswith("{")]


def wait_for(find, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while (found := find()) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_a_call_is_one_json_line_joined_to_the_access_log(api, stack, tenants):
    customer_id, key = tenants.customer("advanced")
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    response = api.http.get("/summary/agg", params={"time": "1h"},
                            headers={**api.auth(key), "traceparent": traceparent})
    assert response.status_code == 200
    logs = stack.access_log.parent

    def answered() -> dict | None:
        for path in logs.glob("metrics_service-*.log"):
            for line in lines(path):
                if line.get("trace_id") == trace_id and line["event"] == "answered":
                    return line
        return None

    line = wait_for(answered)
    assert line is not None, "no JSON line of the call"
    assert line["level"] == "info" and line["service"] == "edgestats-metrics"
    assert line["method"] == "edgestats.metrics.v1.LegacyStatsJsonService/GetSummaryAggregate"
    assert line["principal"] == f"customer:{customer_id}"
    assert line["grpc_code"] == "OK" and line["transport"] == "http"
    assert line["timestamp"].endswith("Z") and line["ms"] >= 0
    request_id = line["request_id"]

    def in_access_log() -> dict | None:
        return next((entry for entry in lines(stack.access_log)
                     if entry.get("request_id") == request_id), None)

    entry = wait_for(in_access_log)
    assert entry is not None and str(entry["status"]) == "200"
    # every service line is JSON, and no key is in any log
    for path in logs.glob("*.log"):
        text = path.read_text()
        assert key not in text, path
        if path.name.startswith(("metrics_service-", "sql_query_service-",
                                 "usage_billing_service-")):
            for raw in text.splitlines():
                if raw.startswith("port="):
                    continue  # the launcher's handshake on stdout
                assert json.loads(raw)["service"].startswith("edgestats-"), raw


def test_no_sql_value_or_token_is_logged(api, stack, tenants, db_url):
    """An SQL query's literal, also one PostgreSQL refuses with a syntax error quoting it, and
    an OAuth token used for usage statistics are in no log; the refusal is logged by its
    SQLSTATE and condition."""
    _, key = tenants.customer("advanced")
    literal = f"zq-{secrets.token_hex(8)}"
    answered = api.sql(key, f"SELECT '{literal}' AS v")
    assert answered.status_code == 200 and answered.json() == [{"v": literal}]
    refused = api.sql(key, f"SELECT 1 IS '{literal}'")  # syntax error at or near the literal
    assert refused.status_code == 400, refused.text
    usage = UsageAccounts(db_url)
    user_id = usage.user()
    with psycopg.connect(db_url) as conn:
        client_id, secret = oauth.create_client(conn, user_id)
    issued = api.http.post("/oauth/token", data={"grant_type": "client_credentials",
                                                 "client_id": client_id,
                                                 "client_secret": secret})
    token = issued.json()["access_token"]
    assert api.get("/v1/stats/storage", token).status_code == 200
    logs = stack.access_log.parent

    def logged(prefix: str, wanted) -> dict | None:
        return next((line for path in logs.glob(f"{prefix}-*.log") for line in lines(path)
                     if wanted(line)), None)

    refusal = wait_for(lambda: logged("sql_query_service", lambda line: line["event"] == (
        "query refused by PostgreSQL: SQLSTATE 42601 (syntax error)")))
    assert refusal is not None and refusal["level"] == "warning"
    assert wait_for(lambda: logged("usage_billing_service", lambda line: line.get(
        "principal") == f"usage-user:{user_id}" and line["event"] == "answered"))
    for path in logs.glob("*.log"):
        text = path.read_text()
        assert literal not in text and token not in text and secret not in text, path
