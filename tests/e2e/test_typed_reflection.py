"""Server reflection through the gateway describes every typed service, and no typed method
carries JSON in a box: no google.api.HttpBody, google.protobuf.Value/Struct/ListValue
anywhere in its request or response (nested messages included). The ingest services hold
both faces: their methods not named …Json are typed and checked alike."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from edgestats_core.server import DETAILED_SERVICES, TYPED_SERVICES
from edgestats_stack.services import SERVICES

pytestmark = pytest.mark.e2e

JSON_IN_A_BOX = {".google.api.HttpBody", ".google.protobuf.Value", ".google.protobuf.Struct",
                 ".google.protobuf.ListValue"}


@pytest.fixture(scope="module")
def channel(stack):
    with grpc.insecure_channel(stack.grpc_target) as ch:
        yield ch


def reflected_files(channel, symbol: str) -> list[descriptor_pb2.FileDescriptorProto]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    assert reply.WhichOneof("message_response") == "file_descriptor_response", (
        symbol, reply.error_response)
    return [descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in reply.file_descriptor_response.file_descriptor_proto]


def messages(files: list[descriptor_pb2.FileDescriptorProto]) -> dict[str, object]:
    """Every message of `files` by its fully qualified name (".pkg.Outer.Inner")."""
    found: dict[str, object] = {}

    def add(prefix: str, message) -> None:
        name = f"{prefix}.{message.name}"
        found[name] = message
        for nested in message.nested_type:
            add(name, nested)

    for file in files:
        for message in file.message_type:
            add(f".{file.package}", message)
    return found


def reachable(name: str, known: dict[str, object]) -> set[str]:
    """`name` and every message type its fields reach."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        message = known.get(current)
        if message is None:
            continue  # well-known types outside the reflected files are leaves here
        todo += [f.type_name for f in message.field
                 if f.type == descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE]
    return seen


def test_the_typed_services_are_routed_by_the_gateway():
    routed = {name for spec in SERVICES for name in spec.grpc_services}
    assert routed >= TYPED_SERVICES
    assert "edgestats.metrics.v1.MetricsService" in TYPED_SERVICES


def described(channel, service: str):
    """The reflected descriptor of `service` and every message its files define."""
    files = reflected_files(channel, service)
    package, _, name = service.rpartition(".")
    (found,) = [s for f in files if f.package == package for s in f.service if s.name == name]
    assert found.method, service
    return found, messages(files)


def assert_typed(service: str, method, known: dict[str, object]) -> None:
    for type_name in (method.input_type, method.output_type):
        assert type_name in known, (method.name, type_name)
        carried = reachable(type_name, known) & JSON_IN_A_BOX
        assert not carried, (service, method.name, type_name, carried)


@pytest.mark.parametrize("service", sorted(TYPED_SERVICES))
def test_a_typed_service_resolves_and_carries_no_json(channel, service):
    found, known = described(channel, service)
    for method in found.method:
        assert_typed(service, method, known)


def test_the_ingest_services_are_walked_below():
    assert {"edgestats.metrics.v1.BeaconIngestService",
            "edgestats.usage_billing.v1.UsageIngestService"} <= DETAILED_SERVICES


@pytest.mark.parametrize("service", sorted(DETAILED_SERVICES))
def test_the_typed_ingest_methods_carry_no_json(channel, service):
    found, known = described(channel, service)
    typed = [m for m in found.method if not m.name.endswith("Json")]
    boxed = [m for m in found.method if m.name.endswith("Json")]
    assert typed and boxed, service
    for method in typed:
        assert_typed(service, method, known)
    for method in boxed:  # the walk sees the box where it is
        assert ".google.api.HttpBody" in reachable(method.input_type, known), method.name


def test_the_check_sees_json_in_a_box_where_it_is(channel):
    """The JSON faces answer HttpBody and take Value fields: the walk above must see them."""
    service = "edgestats.metrics.v1.MetricsJsonService"
    files = reflected_files(channel, service)
    known = messages(files)
    (described,) = [s for f in files for s in f.service if s.name == "MetricsJsonService"]
    method = next(m for m in described.method if m.name == "GetAudience")
    assert reachable(method.output_type, known) & JSON_IN_A_BOX == {".google.api.HttpBody"}
    assert ".google.protobuf.Value" in reachable(method.input_type, known)
