"""The services log one JSON line per event; a call's line names its method, principal, trace
id and the gateway's request id, which Envoy's access log line carries too. No key is ever
written down."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import pytest

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
