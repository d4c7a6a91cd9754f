"""The SQL request body → QuerySpec: context flags, types and the lite tier's restriction."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from edgestats.sql_query.v1 import sql_query_json_service_pb2 as pb
from edgestats_core.errors import BadRequest, Forbidden
from edgestats_core.tenancy.principals import Principal
from sql_query_service import query_specs

LITE = Principal("k", "customer", "lite", "c1", "emea")
ADVANCED = Principal("k", "customer", "advanced", "c1", "emea")


def request(body: dict) -> pb.QueryRequest:
    return json_format.ParseDict(body, pb.QueryRequest())


def test_defaults() -> None:
    spec = query_specs.parse(request({"query": "SELECT 1"}), LITE)
    assert (spec.result_format, spec.header, spec.timeout_ms, spec.approximate_count_distinct,
            spec.skip_empty_buckets, spec.parameters) == ("object", False, 30_000, True, False, ())
    assert len(spec.query_id) == 36


def test_context_values() -> None:
    spec = query_specs.parse(request({
        "query": "SELECT 1", "resultFormat": "csv", "header": "true",
        "context": {"sqlQueryId": "q-1", "timeout": "600000", "useCache": False,
                    "useApproximateCountDistinct": "false", "skipEmptyBuckets": 1},
    }), ADVANCED)
    assert (spec.query_id, spec.timeout_ms, spec.approximate_count_distinct, spec.header,
            spec.skip_empty_buckets) == ("q-1", query_specs.MAX_TIMEOUT_MS, False, True, True)


@pytest.mark.parametrize("flag", [False, "false", 0, "0", "FALSE"])
def test_lite_cannot_turn_off_approximation(flag) -> None:
    body = {"query": "SELECT 1", "context": {"useApproximateCountDistinct": flag}}
    with pytest.raises(Forbidden):
        query_specs.parse(request(body), LITE)


@pytest.mark.parametrize("body,field", [
    ({}, "query"), ({"query": 1}, "query"), ({"query": "x", "context": []}, "context"),
    ({"query": "x", "resultFormat": "xml"}, "resultFormat"),
    ({"query": "x", "context": {"timeout": -1}}, "context"),
    ({"query": "x", "context": {"sqlQueryId": "a/b"}}, "context"),
    ({"query": "x", "header": "maybe"}, "header"),
    ({"query": "x", "parameters": "p"}, "parameters"),
])
def test_bad_fields(body: dict, field: str) -> None:
    with pytest.raises(BadRequest) as raised:
        query_specs.parse(request(body), ADVANCED)
    assert raised.value.errors[0].loc[-1] == field
