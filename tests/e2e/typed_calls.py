"""Helpers of the typed gRPC tests: the key as metadata, Timestamps, and a refused call's
rich error (google.rpc.Status details) read without JSON."""

from __future__ import annotations

from datetime import datetime

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.compare import assert_same


def bearer(key: str | None) -> list[tuple[str, str]]:
    """The call's metadata for `key` (none without a key)."""
    return [("authorization", f"Bearer {key}")] if key else []


def stamp(t: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(t)
    return out


def rich(error: grpc.RpcError) -> tuple[error_details_pb2.ErrorInfo, list]:
    """The ErrorInfo and the other details of a typed call's error."""
    status = rpc_status.from_call(error)
    assert status is not None, "no grpc-status-details-bin"
    assert status.code == error.code().value[0] and status.message == error.details()
    info, others = None, []
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                     error_details_pb2.RetryInfo):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                if kind is error_details_pb2.ErrorInfo:
                    info = message
                else:
                    others.append(message)
    assert info is not None and info.domain == "edgestats"
    return info, others


def refused(call, request, key: str | None) -> grpc.RpcError:
    """The error of a call that must fail (a server stream is read to its end)."""
    with pytest.raises(grpc.RpcError) as caught:
        result = call(request, metadata=bearer(key), timeout=30)
        if isinstance(result, grpc.Call) and hasattr(result, "__iter__"):
            list(result)
    return caught.value


def violations(error: grpc.RpcError) -> list[tuple[str, str]]:
    """(field, reason) of an INVALID_ARGUMENT error's BadRequest."""
    info, others = rich(error)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and info.reason == "INVALID_ARGUMENT"
    (bad,) = others
    return [(v.field, v.reason) for v in bad.field_violations]


def _key_sorted(value):
    if isinstance(value, dict):
        return {k: _key_sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_key_sorted(v) for v in value]
    return value


def assert_close(actual, expected, where: str = "$") -> None:
    """The typed answer equals the JSON one: same keys (in any order), same texts and nulls,
    numbers within 1e-9 relative (a second query may sum the same floats in another order)."""
    assert_same(_key_sorted(actual), _key_sorted(expected), where)
