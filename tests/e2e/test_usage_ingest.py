"""Usage event ingestion (CONTRACT §8, §10): JSON array, NDJSON and typed gRPC batches through
Envoy, with a usage-ingest key. What was stored is checked in usage_events directly."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import psycopg
import pytest

from edgestats.usage_billing.v1 import usage_ingest_service_pb2 as pb
from edgestats.usage_billing.v1 import usage_ingest_service_pb2_grpc as rpc
from edgestats_client import error_details
from edgestats_core.tenancy.api_keys import create_role_key, create_user_key
from tests.e2e import ingest_bodies
from tests.e2e.ingest_bodies import JSON, answer, as_array, as_ndjson
from usage_billing_service import accounts

pytestmark = pytest.mark.e2e

PATH = "/v1/usage/events"
NOT_AUTHENTICATED = {"type": "not-authenticated", "title": "Not authenticated"}


# --- helpers (also used by test_oauth.py and test_usage_durability.py) ------------------


class UsageAccounts:
    """Usage users (with random ids), their applications and keys, created in PostgreSQL."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def user(self, *applications: str, now: datetime | None = None) -> str:
        user_id = f"u-{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.db_url) as conn:
            accounts.create_user(conn, user_id, now or datetime.now(UTC))
            for app in applications:
                accounts.create_application(conn, user_id, app)
        return user_id

    def ingest_key(self) -> str:
        with psycopg.connect(self.db_url) as conn:
            return create_role_key(conn, f"producer-{uuid.uuid4().hex[:8]}", "usage-ingest")

    def user_key(self, user_id: str) -> str:
        with psycopg.connect(self.db_url) as conn:
            return create_user_key(conn, user_id)


def stored(db_url: str, user_id: str) -> list[tuple]:
    """(event_id, type, application_id, bytes, occurred_at, tag) of a user, by id."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT event_id, type, application_id, bytes, occurred_at, tag FROM usage_events"
            " WHERE user_id = %s ORDER BY event_id", (user_id,)).fetchall()
    return [(*r[:4], r[4].astimezone(UTC), r[5]) for r in rows]


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def event(event_id: str, user_id: str, when: datetime, **extra: object) -> dict:
    """A valid bandwidth event (wire form: timestamp in epoch ms)."""
    return {"id": event_id, "type": "bandwidth", "user_id": user_id, "bytes": 1000,
            "timestamp": ms(when), **extra}


def post(api, body: str | bytes, key: str | None, path: str = PATH,
         content_type: str | None = None) -> httpx.Response:
    return ingest_bodies.post(api, path, body, key, content_type)


@pytest.fixture(scope="session")
def usage(db_url) -> UsageAccounts:
    return UsageAccounts(db_url)


@pytest.fixture(scope="module")
def ingest_key(usage) -> str:
    return usage.ingest_key()


@pytest.fixture
def ids():
    """Event ids unique to the test (the dedup key is global)."""
    prefix = uuid.uuid4().hex[:10]
    return lambda n: f"ev-{prefix}-{n}"


# --- happy path ------------------------------------------------------------------------


@pytest.mark.parametrize("encode", [as_array, as_ndjson], ids=["array", "ndjson"])
def test_a_batch_is_stored(api, usage, ingest_key, ids, frozen_now, db_url, encode):
    user_id = usage.user("app-" + ids("a"))
    default = accounts.default_application_id(user_id)
    t = frozen_now - timedelta(hours=2)
    items = [
        event(ids(1), user_id, t, tag="User1"),
        event(ids(2), user_id, t, application_id="app-" + ids("a"), bytes=5),
        {"id": ids(3), "type": "conversion", "user_id": user_id, "bytes": 130520484,
         "timestamp": "2026-01-02T03:04:05.678Z"},
        {"id": ids(4), "type": "storage", "user_id": user_id, "bytes": 0,
         "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S+00:00"), "application_id": None},
    ]
    assert answer(post(api, encode(items), ingest_key)) == {
        "accepted": 4, "duplicates": 0, "rejected": []}
    assert stored(db_url, user_id) == [
        (ids(1), "bandwidth", default, 1000, t, "User1"),
        (ids(2), "bandwidth", "app-" + ids("a"), 5, t, None),
        (ids(3), "conversion", default, 130520484,
         datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), None),
        (ids(4), "storage", default, 0, t, None),
    ]


def test_unknown_fields_are_ignored_and_any_content_type_is_read(api, usage, ingest_key, ids,
                                                                 frozen_now, db_url):
    user_id = usage.user()
    items = [event(ids(i), user_id, frozen_now, extra={"a": [1, None]}, Tag="x")
             for i in range(3)]
    for content_type in ("application/x-ndjson", "text/plain"):
        body = answer(post(api, as_array(items), ingest_key, content_type=content_type))
        assert body["accepted"] == 3
    assert len(stored(db_url, user_id)) == 3


def test_an_empty_array_is_accepted(api, ingest_key):
    assert answer(post(api, "[]", ingest_key)) == {"accepted": 0, "duplicates": 0,
                                                   "rejected": []}


# --- duplicates --------------------------------------------------------------------------


def test_a_resent_batch_is_accepted_again_and_stored_once(api, usage, ingest_key, ids,
                                                          frozen_now, db_url):
    user_id = usage.user()
    items = [event(ids(i), user_id, frozen_now - timedelta(minutes=i)) for i in range(20)]
    assert answer(post(api, as_array(items), ingest_key)) == {
        "accepted": 20, "duplicates": 0, "rejected": []}
    assert answer(post(api, as_ndjson(items), ingest_key)) == {
        "accepted": 20, "duplicates": 20, "rejected": []}
    # same ids with other content: still the same events (the id is the identity)
    changed = [i | {"bytes": 7, "timestamp": ms(frozen_now)} for i in items[:5]]
    assert answer(post(api, as_array(changed), ingest_key)) == {
        "accepted": 5, "duplicates": 5, "rejected": []}
    rows = stored(db_url, user_id)
    assert len(rows) == 20 and {r[3] for r in rows} == {1000}


def test_duplicates_inside_one_batch_and_a_partly_resent_batch(api, usage, ingest_key, ids,
                                                               frozen_now, db_url):
    user_id = usage.user()
    items = [event(ids(i), user_id, frozen_now) for i in range(6)]
    batch = items[:4] + [items[0], items[0] | {"bytes": 5}, items[3]]
    assert answer(post(api, as_array(batch), ingest_key)) == {
        "accepted": 7, "duplicates": 3, "rejected": []}
    assert answer(post(api, as_array(items[2:]), ingest_key)) == {
        "accepted": 4, "duplicates": 2, "rejected": []}
    rows = stored(db_url, user_id)
    assert [r[0] for r in rows] == [ids(i) for i in range(6)]
    assert {r[3] for r in rows} == {1000}  # the first occurrence won


# --- per-item rejections ---------------------------------------------------------------


def _without(item: dict, name: str) -> dict:
    return {k: v for k, v in item.items() if k != name}


# name -> (make the invalid item from a valid one, the field its reason must name)
INVALID = {
    "missing id": (lambda i, c: _without(i, "id"), "id"),
    "empty id": (lambda i, c: i | {"id": ""}, "id"),
    "number id": (lambda i, c: i | {"id": 12}, "id"),
    "missing type": (lambda i, c: _without(i, "type"), "type"),
    "bad type": (lambda i, c: i | {"type": "transfer"}, "type"),
    "missing user_id": (lambda i, c: _without(i, "user_id"), "user_id"),
    "unknown user": (lambda i, c: i | {"user_id": "u-does-not-exist"}, "user_id"),
    "application of another user": (lambda i, c: i | {"application_id": c["other_app"]},
                                    "application_id"),
    "unknown application": (lambda i, c: i | {"application_id": "app-nope"},
                            "application_id"),
    "missing bytes": (lambda i, c: _without(i, "bytes"), "bytes"),
    "negative bytes": (lambda i, c: i | {"bytes": -5}, "bytes"),
    "fractional bytes": (lambda i, c: i | {"bytes": 2.5}, "bytes"),
    "string bytes": (lambda i, c: i | {"bytes": "100"}, "bytes"),
    "bool bytes": (lambda i, c: i | {"bytes": True}, "bytes"),
    "bigint overflow": (lambda i, c: i | {"bytes": 2**63}, "bytes"),
    "missing timestamp": (lambda i, c: _without(i, "timestamp"), "timestamp"),
    "unparsable timestamp": (lambda i, c: i | {"timestamp": "yesterday"}, "timestamp"),
    "impossible date": (lambda i, c: i | {"timestamp": "2024-13-45T00:00:00Z"}, "timestamp"),
    "timestamp ahead": (lambda i, c: i | {"timestamp": ms(c["now"] + timedelta(minutes=6))},
                        "timestamp"),
    "huge epoch": (lambda i, c: i | {"timestamp": 10**20}, "timestamp"),
    "tag on conversion": (lambda i, c: i | {"type": "conversion", "tag": "User1"}, "tag"),
    "NUL in id": (lambda i, c: i | {"id": "a\u0000b"}, "id"),
    "number": (lambda i, c: 5, ""),
    "string": (lambda i, c: "event", ""),
    "null": (lambda i, c: None, ""),
    "array": (lambda i, c: [i], ""),
}


@pytest.fixture(scope="module")
def other_app(usage) -> str:
    return accounts.default_application_id(usage.user())


@pytest.mark.parametrize("case", list(INVALID))
def test_an_invalid_event_is_rejected_alone(api, usage, ingest_key, ids, frozen_now, db_url,
                                            other_app, case):
    user_id = usage.user()
    make, field_name = INVALID[case]
    bad = make(event(ids("bad"), user_id, frozen_now), {"now": frozen_now, "other_app": other_app})
    batch = [event(ids(0), user_id, frozen_now), bad, event(ids(1), user_id, frozen_now)]
    body = answer(post(api, as_array(batch), ingest_key))
    assert body["accepted"] == 2 and body["duplicates"] == 0, body
    assert [r["index"] for r in body["rejected"]] == [1], body
    reason = body["rejected"][0]["reason"]
    assert reason and reason.startswith(field_name), reason
    assert [r[0] for r in stored(db_url, user_id)] == [ids(0), ids(1)]


def test_a_mixed_ndjson_batch_reports_every_rejected_index(api, usage, ingest_key, ids,
                                                           frozen_now, db_url, other_app):
    user_id = usage.user()
    ctx = {"now": frozen_now, "other_app": other_app}
    batch: list = []
    expected: list[int] = []
    for n, (make, _) in enumerate(INVALID.values()):
        batch.append(event(ids(n), user_id, frozen_now))
        expected.append(len(batch))
        batch.append(make(event(ids(f"bad-{n}"), user_id, frozen_now), ctx))
    body = answer(post(api, as_ndjson(batch), ingest_key))
    assert body["accepted"] == len(INVALID) and body["duplicates"] == 0
    assert [r["index"] for r in body["rejected"]] == expected
    assert len(stored(db_url, user_id)) == len(INVALID)


# --- bodies that do not parse, limits ----------------------------------------------------


def assert_detail_400(response: httpx.Response) -> None:
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.headers["content-type"] == JSON
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body"] and error["type"].startswith("value_error"), error


@pytest.mark.parametrize("garbage", ["not json", "[1, 2,", '{"id": ', "<xml/>", "", "\n \n",
                                     '{"id": "a"}\n{"id"'])
def test_a_body_that_is_not_json_is_400(api, ingest_key, garbage):
    assert_detail_400(post(api, garbage, ingest_key))


def test_a_body_that_is_not_utf8_is_400(api, ingest_key):
    assert_detail_400(post(api, b'[{"id": "\xe9"}]', ingest_key))


def _payload_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, (response.status_code, response.text[:200])
    assert response.headers["content-type"] == JSON
    assert response.json()["detail"].startswith("Payload Too Large")


@pytest.mark.parametrize("encode", [as_array, as_ndjson], ids=["array", "ndjson"])
def test_more_than_10000_events_is_413_and_nothing_is_stored(api, usage, ingest_key, ids,
                                                             frozen_now, db_url, encode):
    user_id = usage.user()
    items = [event(ids(i), user_id, frozen_now) for i in range(10_001)]
    _payload_too_large(post(api, encode(items), ingest_key))
    assert stored(db_url, user_id) == []


def test_10000_events_are_accepted(api, usage, ingest_key, ids, frozen_now, db_url):
    user_id = usage.user()
    items = [event(ids(i), user_id, frozen_now) for i in range(10_000)]
    assert answer(post(api, as_array(items), ingest_key)) == {
        "accepted": 10_000, "duplicates": 0, "rejected": []}
    assert len(stored(db_url, user_id)) == 10_000


def test_a_body_over_10_mb_is_413_and_nothing_is_stored(api, usage, ingest_key, ids,
                                                        frozen_now, db_url):
    user_id = usage.user()
    pad = "x" * (11 * 1024 * 1024 // 100)
    items = [event(ids(i), user_id, frozen_now, padding=pad) for i in range(100)]
    _payload_too_large(post(api, as_array(items), ingest_key))
    assert stored(db_url, user_id) == []


# --- who may ingest ----------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer es_not-a-real-key", "Bearer"])
def test_without_a_valid_key_it_is_401(api, usage, ids, frozen_now, db_url, authorization):
    user_id = usage.user()
    headers = {"Authorization": authorization} if authorization else {}
    for body in (as_array([event(ids(0), user_id, frozen_now)]), "not json"):
        response = api.http.post(PATH, content=body.encode(), headers=headers)
        assert response.status_code == 401, response.text
        assert response.json() == NOT_AUTHENTICATED
    assert stored(db_url, user_id) == []


@pytest.mark.parametrize("who", ["customer", "reseller", "usage user"])
def test_other_keys_are_forbidden(api, usage, tenants, ids, frozen_now, db_url, who):
    user_id = usage.user()
    if who == "customer":
        key = tenants.customer()[1]
    elif who == "reseller":
        key = tenants.reseller([tenants.customer()[0]])[1]
    else:
        key = usage.user_key(user_id)
    for body in (as_array([event(ids(0), user_id, frozen_now)]), "not json"):
        response = post(api, body, key)
        assert response.status_code == 403, response.text
        assert response.headers["content-type"] == JSON
        answer_ = response.json()
        assert list(answer_) == ["type", "title"] and answer_["type"] == "forbidden"
    assert stored(db_url, user_id) == []


# --- typed batches over gRPC -------------------------------------------------------------


@pytest.fixture(scope="module")
def stub(stack):
    with grpc.insecure_channel(stack.grpc_target) as channel:
        yield rpc.UsageIngestServiceStub(channel)


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def typed(event_id: str, user_id: str, when: datetime, **fields: object) -> pb.UsageEvent:
    message = pb.UsageEvent(**({"id": event_id, "type": "bandwidth", "user_id": user_id,
                                "bytes": 1000} | fields))
    message.timestamp.FromDatetime(when)
    return message


def test_a_grpc_batch_has_the_same_semantics(api, stub, usage, ingest_key, ids, frozen_now,
                                             db_url, other_app):
    user_id = usage.user("app-" + ids("g"))
    default = accounts.default_application_id(user_id)
    t = frozen_now - timedelta(minutes=30)
    good = [typed(ids(0), user_id, t, tag="T"),
            typed(ids(1), user_id, t, application_id="app-" + ids("g")),
            pb.UsageEvent(id=ids(2), type="storage", user_id=user_id,
                          timestamp=typed("", "", t).timestamp)]  # bytes 0
    bad = [pb.UsageEvent(id=ids(3), type="storage", user_id=user_id, bytes=1),  # no timestamp
           typed(ids(4), user_id, t, bytes=-1),
           typed(ids(5), "u-nobody", t),
           typed(ids(6), user_id, t, application_id=other_app),
           typed("", user_id, t),
           typed(ids(7), user_id, t, type="conversion", tag="T")]
    batch = [good[0], bad[0], good[1], *bad[1:], good[2], good[0]]
    request = pb.RecordUsageRequest(events=batch)
    reply = stub.RecordUsage(request, metadata=bearer(ingest_key), timeout=30)
    assert (reply.accepted, reply.duplicates) == (4, 1)
    assert [(r.index, r.reason.split(":")[0]) for r in reply.rejected] == [
        (1, "timestamp"), (3, "bytes"), (4, "user_id"), (5, "application_id"), (6, "id"),
        (7, "tag")]
    assert stored(db_url, user_id) == [
        (ids(0), "bandwidth", default, 1000, t, "T"),
        (ids(1), "bandwidth", "app-" + ids("g"), 1000, t, None),
        (ids(2), "storage", default, 0, t, None),
    ]
    # the same events over JSON are duplicates
    items = [event(ids(0), user_id, t, tag="T")]
    assert answer(post(api, as_array(items), ingest_key))["duplicates"] == 1


def test_grpc_keys_and_limits(stub, usage, tenants, ids, frozen_now, db_url):
    user_id = usage.user()
    request = pb.RecordUsageRequest(events=[typed(ids(0), user_id, frozen_now)])
    with pytest.raises(grpc.RpcError) as error:
        stub.RecordUsage(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as error:
        stub.RecordUsage(request, metadata=bearer(tenants.customer()[1]), timeout=30)
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert json.loads(error.value.details())["type"] == "forbidden"
    assert error_details(error.value).reason == "KEY_KIND_FORBIDDEN"
    too_many = pb.RecordUsageRequest(
        events=[typed(ids(i), user_id, frozen_now) for i in range(10_001)])
    with pytest.raises(grpc.RpcError) as error:
        stub.RecordUsage(too_many, metadata=bearer(usage.ingest_key()), timeout=60)
    assert json.loads(error.value.details())["detail"].startswith("Payload Too Large")
    assert stored(db_url, user_id) == []


def test_the_typed_batch_over_http(api, usage, ingest_key, ids, frozen_now, db_url):
    """RecordUsage is also bound to POST /v1/usage/events:batch (proto JSON)."""
    user_id = usage.user()
    when = frozen_now.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {"events": [
        {"id": ids(0), "type": "conversion", "user_id": user_id, "bytes": "42",
         "timestamp": when},
        {"id": ids(1), "type": "conversion", "user_id": user_id, "bytes": 1},
    ]}
    response = api.http.post(PATH + ":batch", json=body, headers=api.auth(ingest_key))
    assert response.status_code == 200, response.text
    got = response.json()
    assert (got["accepted"], got["duplicates"]) == (1, 0), got
    assert [r["index"] for r in got["rejected"]] == [1], got
    assert [(r[0], r[3]) for r in stored(db_url, user_id)] == [(ids(0), 42)]
