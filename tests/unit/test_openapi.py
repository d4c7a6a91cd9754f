"""The OpenAPI document generated from the repository's protos (no gen/ needed)."""

from __future__ import annotations

import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import google.api.annotations_pb2 as google_annotations
import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from edgestats_stack.openapi import build_openapi, main

REPO = Path(__file__).resolve().parents[2]
PROTOS = REPO / "protos"
POINT = "edgestats.metrics.v1.ThroughputPoint"
PUBLIC = {"/ping", "/ping/db", "/analytics/legacy/ping", "/analytics/legacy/ping/db", "/status",
          "/oauth/token"}


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The repository's protos compiled like scripts/gen_protos.sh does."""
    out = tmp_path_factory.mktemp("protos") / "edgestats.binpb"
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    googleapis = Path(google_annotations.__file__).parents[2]  # site-packages: google/api/*.proto
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    args = ["protoc", f"-I{PROTOS}", f"-I{well_known}", f"-I{googleapis}"]
    args += ["--include_imports", "--include_source_info", f"--descriptor_set_out={out}"]
    assert protoc.main([*args, *sources]) == 0, "protoc failed"
    return out.read_bytes()


@pytest.fixture(scope="module")
def doc(descriptor_set: bytes) -> dict:
    return build_openapi(descriptor_set)


def _declared_bindings(descriptor_set: bytes) -> set[tuple[str, str]]:
    """(verb, OpenAPI path) of every http binding, read independently of the generator."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file
    found = set()
    for file in files:
        if not file.package.startswith("edgestats."):
            continue
        for service in file.service:
            for method in service.method:
                options = descriptor_pb2.MethodOptions.FromString(
                    method.options.SerializeToString()
                )
                if not options.HasExtension(google_annotations.http):
                    continue  # a typed gRPC method: not on the HTTP surface
                rule = options.Extensions[google_annotations.http]
                for binding in [rule, *rule.additional_bindings]:
                    verb = binding.WhichOneof("pattern")
                    path = re.sub(r"\{([^}=]+)=[^}]*\}", r"{\1}", getattr(binding, verb))
                    found.add((verb, path))
    return found


def _operations(doc: dict) -> list[tuple[str, str, dict]]:
    return [(path, verb, op) for path, item in doc["paths"].items() for verb, op in item.items()]


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["$ref"]} if "$ref" in node else set()
        return own.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_every_binding_is_an_operation(doc: dict, descriptor_set: bytes) -> None:
    declared = _declared_bindings(descriptor_set)
    assert ("get", "/stats/throughput/agg") in declared
    assert ("post", "/analytics/v1/ingest/beacons:batch") in declared
    generated = {(verb, path) for path, verb, _ in _operations(doc)}
    assert generated == declared
    assert list(doc["paths"]) == sorted(doc["paths"])


def test_operation_ids_are_unique(doc: dict) -> None:
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids))
    assert doc["paths"]["/summary"]["get"]["operationId"] == (
        "LegacyStatsService_ListChannelSummaries"
    )
    assert doc["paths"]["/analytics/legacy/summary"]["get"]["operationId"] == (
        "LegacyStatsService_ListChannelSummaries_1"
    )


def test_summary_query_and_path_parameters(doc: dict) -> None:
    params = doc["paths"]["/analytics/legacy/summary"]["get"]["parameters"]
    time = next(p for p in params if p["name"] == "time")
    assert time["in"] == "query" and not time.get("required")
    assert time["schema"] == {"type": "string"} and "Time window" in time["description"]

    scoped = doc["paths"]["/channels/{channel_id}/streams/{stream_id}/summary"]["get"]
    path_params = {p["name"]: p for p in scoped["parameters"] if p["in"] == "path"}
    assert set(path_params) == {"channel_id", "stream_id"}
    assert all(p["required"] and p["schema"] == {"type": "string"} for p in path_params.values())
    assert "channel_id" not in {p["name"] for p in scoped["parameters"] if p["in"] == "query"}


def test_security(doc: dict) -> None:
    assert doc["security"] == [{"bearerAuth": []}]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, _, op in _operations(doc):
        assert op.get("security") == ([] if path in PUBLIC else None), path
    assert doc["paths"]["/ping"]["get"]["security"] == []


def test_throughput_agg_response(doc: dict) -> None:
    ok = doc["paths"]["/stats/throughput/agg"]["get"]["responses"]["200"]
    schema = ok["content"]["application/json"]["schema"]
    assert schema == {"type": "array", "items": {"$ref": f"#/components/schemas/{POINT}"}}
    point = doc["components"]["schemas"][POINT]["properties"]
    assert point["agg_throughput_cdn"]["nullable"] is True
    assert point["agg_throughput_cdn"]["type"] == "number"


def test_response_shapes(doc: dict) -> None:
    ping = doc["paths"]["/ping"]["get"]["responses"]["200"]["content"]
    assert ping == {"text/plain": {"schema": {"type": "string"}}}
    summary = doc["paths"]["/summary"]["get"]["responses"]["200"]["content"]["application/json"]
    shapes = summary["schema"]["anyOf"]
    assert shapes[1]["items"] == {"$ref": "#/components/schemas/edgestats.metrics.v1.SummaryPage"}
    os_point = doc["components"]["schemas"]["edgestats.metrics.v1.OperatingSystemsPoint"]
    assert os_point["properties"]["operating_systems"]["type"] == "object"
    for path, _, op in _operations(doc):
        if path == "/oauth/token":  # RFC 6749 §5.2 bodies, a form request
            assert op["responses"]["401"] == {"$ref": "#/components/responses/OAuthError"}
            form = op["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
            assert form["properties"]["grant_type"]["enum"] == ["client_credentials"]
            continue
        assert {"200", "400", "401", "403", "404", "503"} <= set(op["responses"])


def test_ingest_request_bodies(doc: dict) -> None:
    json_body = doc["paths"]["/v1/ingest/beacons"]["post"]["requestBody"]["content"]
    assert set(json_body) == {"application/json", "application/x-ndjson"}
    typed = doc["paths"]["/analytics/v1/ingest/beacons:batch"]["post"]["requestBody"]
    ref = typed["content"]["application/json"]["schema"]["$ref"]
    beacon = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]["beacons"]
    assert beacon["items"] == {"$ref": "#/components/schemas/edgestats.metrics.v1.Beacon"}
    time = doc["components"]["schemas"]["edgestats.metrics.v1.Beacon"]["properties"]["time"]
    assert time["format"] == "date-time"


def test_every_ref_resolves(doc: dict) -> None:
    for ref in _refs(doc):
        _, section, name = ref.removeprefix("#/").split("/")
        assert name in doc["components"][section], ref


def test_cli_output_is_deterministic(descriptor_set: bytes, tmp_path: Path) -> None:
    binpb = tmp_path / "edgestats.binpb"
    binpb.write_bytes(descriptor_set)
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert main([str(binpb), str(first)]) == 0
    assert main([str(binpb), str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    assert json.loads(first.read_text())["info"] == {"title": "edgestats API", "version": "1.0.0"}


def test_document_is_valid_openapi(doc: dict) -> None:
    """openapi-spec-validator when installed, else schemathesis' own OpenAPI 3.0 check."""
    try:
        from openapi_spec_validator import validate
    except ImportError:
        schemathesis = pytest.importorskip("schemathesis")
        schemathesis.openapi.from_dict(doc).validate()
    else:
        validate(doc)
