"""Every documented error of the Legacy Stats API through Envoy (CONTRACT §2, §5, §9; seed 001
"Client Errors"): exact status, content type and JSON body, at both path prefixes."""

from __future__ import annotations

import socket
import urllib.parse
from dataclasses import dataclass
from datetime import datetime

import httpx
import psycopg
import pytest

from edgestats_core.tenancy.api_keys import create_customer_key, hash_key, revoke_key
from tests import oracle
from tests.builders import scenario, wire
from tests.compare import assert_same

pytestmark = pytest.mark.e2e

PREFIXES = ["", "/analytics/legacy"]
JSON = "application/json"
TIME_VALUES = ["live", "10m", "1h", "24h", "1w", "1M", "2M", "CM", "LM"]

NOT_AUTHENTICATED = {"type": "not-authenticated", "title": "Not authenticated"}
NOT_FOUND = {"detail": "Not Found"}
# seed 001, "Client Errors", verbatim
MISSING_TIME = {
    "detail": [{"loc": ["query", "time"], "msg": "field required", "type": "value_error.missing"}]
}
BAD_SOURCE = {
    "detail": [{
        "loc": ["query", "source"],
        "msg": "value is not a valid enumeration member; permitted: 'cdn', 'p2p'",
        "type": "type_error.enum",
        "ctx": {"enum_values": ["cdn", "p2p"]},
    }]
}

# /stats stems by source rule (CONTRACT §5) and tier
REQUIRED_SOURCE = [
    "throughput/agg", "buffer_health/avg", "content_request_response_times/avg",
    "content_request_response_time/avg", "buffer_filling_rate/avg", "dropped_frames/avg",
]
ADVANCED = [
    "os", "platforms", "connection_types", "content_request_response_times/avg",
    "content_request_response_time/avg", "buffer_filling_rate/avg", "dropped_frames/avg",
    "rebuffering/ratio",
]
LITE = ["throughput/agg", "buffer_health/avg"]


def missing(name: str) -> dict:
    return {"loc": ["query", name], "msg": "field required", "type": "value_error.missing"}


def bad_enum(name: str, values: list[str]) -> dict:
    permitted = ", ".join(f"'{v}'" for v in values)
    return {
        "loc": ["query", name],
        "msg": f"value is not a valid enumeration member; permitted: {permitted}",
        "type": "type_error.enum",
        "ctx": {"enum_values": values},
    }


def expect(response: httpx.Response, status: int, body: object) -> None:
    """Exact status, `content-type: application/json` and exact JSON body."""
    assert response.status_code == status, (response.request.url, response.text)
    assert response.headers["content-type"] == JSON, response.headers
    assert response.json() == body, response.request.url


def expect_forbidden(response: httpx.Response) -> None:
    assert response.status_code == 403, (response.request.url, response.text)
    assert response.headers["content-type"] == JSON
    body = response.json()
    assert list(body) == ["type", "title"], body
    assert body["type"] == "forbidden"
    assert isinstance(body["title"], str) and body["title"], body


def q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def get(api, url: str, key: str | None = None, bearer: bool = True) -> httpx.Response:
    """GET a raw URL (path and query exactly as written: the test controls the encoding)."""
    return api.http.get(url, headers=api.auth(key, bearer))


@dataclass
class World:
    customer_id: str
    key: str
    beacons: list[dict]
    lite_customer_id: str
    lite_key: str
    lite_beacons: list[dict]
    reseller_key: str
    # a second key of `customer_id`, revoked before its first use
    revoked_key: str


@pytest.fixture(scope="module")
def world(api, tenants, frozen_now: datetime, db_url: str) -> World:
    customer_id, key = tenants.customer("advanced")
    beacons = scenario(customer_id, frozen_now, seed=21)
    lite_customer_id, lite_key = tenants.customer("lite")
    lite_beacons = scenario(lite_customer_id, frozen_now, seed=22)
    for k, made in ((key, beacons), (lite_key, lite_beacons)):
        response = api.ingest(k, [wire(b) for b in made])
        assert response.json() == {"accepted": len(made), "duplicates": 0, "rejected": []}
    _, reseller_key = tenants.reseller([customer_id])
    with psycopg.connect(db_url) as conn:
        revoked = create_customer_key(conn, customer_id, "emea", "advanced")
        (key_id,) = conn.execute(
            "SELECT key_id FROM api_keys WHERE key_hash = %s", (hash_key(revoked),)
        ).fetchone()
        assert revoke_key(conn, key_id) == 1
    return World(customer_id, key, beacons, lite_customer_id, lite_key, lite_beacons,
                 reseller_key, revoked)


# --- 401 -------------------------------------------------------------------------------

AUTH_PATHS = [
    "/summary?time=1h",
    "/channels/ch-1/summary/agg?time=1h",
    "/stats/throughput/agg?time=1h&source=cdn",
    "/stats/os/last_point?time=1h",
]
BAD_AUTH = {
    "missing header": None,
    "invalid bearer key": "Bearer es_not-a-real-key",
    "invalid bare key": "es_not-a-real-key",
    "bearer without key": "Bearer",
    "other scheme": "Basic dXNlcjpwYXNzd29yZA==",
    "revoked bearer key": "revoked-bearer",
    "revoked bare key": "revoked-bare",
}


@pytest.mark.parametrize("case", list(BAD_AUTH))
@pytest.mark.parametrize("path", AUTH_PATHS)
@pytest.mark.parametrize("prefix", PREFIXES)
def test_missing_or_invalid_key_is_401(api, world, prefix, path, case):
    value = BAD_AUTH[case]
    if value == "revoked-bearer":
        value = f"Bearer {world.revoked_key}"
    elif value == "revoked-bare":
        value = world.revoked_key
    headers = {} if value is None else {"Authorization": value}
    expect(api.http.get(prefix + path, headers=headers), 401, NOT_AUTHENTICATED)


def test_the_revoked_keys_customer_still_answers_with_its_other_key(api, world):
    """The 401 above comes from the revocation, not from the customer."""
    assert get(api, "/summary?time=1h", world.key).status_code == 200
    expect(get(api, "/summary?time=1h", world.revoked_key), 401, NOT_AUTHENTICATED)


def _raw_get(http_url: str, path: str, authorization: bytes) -> tuple[int, dict, bytes]:
    """A hand-written HTTP/1.1 request: httpx refuses a header value with trailing space."""
    url = urllib.parse.urlsplit(http_url)
    request = (f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\n".encode()
               + b"Authorization: " + authorization + b"\r\nConnection: close\r\n\r\n")
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        decoded = b""
        while body:
            size, _, rest = body.partition(b"\r\n")
            length = int(size, 16)
            if not length:
                break
            decoded += rest[:length]
            body = rest[length + 2:]
        body = decoded
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("authorization", [b"Bearer ", b"Bearer    ", b""])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_bearer_with_an_empty_key_is_401(stack, prefix, authorization):
    status, headers, body = _raw_get(stack.http_url, f"{prefix}/summary?time=1h", authorization)
    assert status == 401
    assert headers["content-type"] == JSON
    assert httpx.Response(200, content=body).json() == NOT_AUTHENTICATED


@pytest.mark.parametrize("prefix", PREFIXES)
def test_authentication_comes_before_parameter_validation(api, prefix):
    expect(get(api, f"{prefix}/summary"), 401, NOT_AUTHENTICATED)
    expect(get(api, f"{prefix}/stats/throughput/agg?time=5y&source=xx"), 401, NOT_AUTHENTICATED)


@pytest.mark.parametrize("path", ["/ping", "/ping/db", "/analytics/legacy/ping",
                                  "/analytics/legacy/ping/db"])
def test_pings_answer_pong_without_a_key(api, path):
    response = get(api, path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain"
    assert response.text == "pong"


# --- 400 -------------------------------------------------------------------------------

MISSING_TIME_PATHS = [
    "/summary",
    "/summary/agg",
    "/channels/ch-1/summary",
    "/channels/ch-1/summary/agg",
    "/channels/ch-1/streams/ch-1-stream-0/summary",
    "/channels/ch-1/streams/ch-1-stream-0/summary/agg",
    "/summary?per_page=5&page=0",
    "/stats/throughput/agg?source=cdn",
    "/stats/buffer_health/avg/last_point?source=p2p",
    "/channels/ch-1/stats/dropped_frames/avg?source=cdn",
    "/stats/rebuffering/ratio",
    "/stats/os",
    "/channels/ch-1/streams/ch-1-stream-0/stats/connection_types/last_point",
]


@pytest.mark.parametrize("path", MISSING_TIME_PATHS)
@pytest.mark.parametrize("prefix", PREFIXES)
def test_missing_time_is_the_seed_400(api, world, prefix, path):
    expect(get(api, prefix + path, world.key), 400, MISSING_TIME)


@pytest.mark.parametrize("value", ["5y", "LIVE", "1H", "", "%201h", "1h%00", "%E2%82%AC"])
@pytest.mark.parametrize("path", ["/summary?time=", "/summary/agg?time=",
                                  "/stats/os?time=", "/stats/throughput/agg?source=cdn&time="])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_bad_time_lists_the_nine_values(api, world, prefix, path, value):
    expect(get(api, prefix + path + value, world.key), 400,
           {"detail": [bad_enum("time", TIME_VALUES)]})


@pytest.mark.parametrize("value", ["xx", "CDN", "", "cdn,p2p", "%00"])
@pytest.mark.parametrize("stem", [*REQUIRED_SOURCE, "rebuffering/ratio"])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_bad_source_is_the_seed_400(api, world, prefix, stem, value):
    expect(get(api, f"{prefix}/stats/{stem}?time=1h&source={value}", world.key), 400, BAD_SOURCE)
    expect(get(api, f"{prefix}/channels/ch-1/stats/{stem}/last_point?time=10m&source={value}",
               world.key), 400, BAD_SOURCE)


@pytest.mark.parametrize("stem", REQUIRED_SOURCE)
@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_missing_source_is_400(api, world, prefix, stem):
    body = {"detail": [missing("source")]}
    expect(get(api, f"{prefix}/stats/{stem}?time=1h", world.key), 400, body)
    expect(get(api, f"{prefix}/channels/ch-1/streams/s/stats/{stem}/last_point?time=live",
               world.key), 400, body)


@pytest.mark.parametrize("stem", ["rebuffering/ratio", "os", "platforms", "connection_types"])
def test_source_is_optional_or_absent_elsewhere(api, world, stem):
    assert get(api, f"/stats/{stem}?time=1h", world.key).status_code == 200


NOT_AN_INTEGER = ["abc", "1.5", "", "1e3", "0x10", "%00"]


@pytest.mark.parametrize(("name", "value"), [
    *[("per_page", v) for v in NOT_AN_INTEGER],
    *[("page", v) for v in NOT_AN_INTEGER],
])
@pytest.mark.parametrize("path", ["/summary", "/channels/ch-1/summary",
                                  "/channels/ch-1/streams/ch-1-stream-0/summary"])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_non_integer_pagination_is_400(api, world, prefix, path, name, value):
    expect(get(api, f"{prefix}{path}?time=1h&{name}={value}", world.key), 400, {"detail": [
        {"loc": ["query", name], "msg": "value is not a valid integer",
         "type": "type_error.integer"},
    ]})


@pytest.mark.parametrize(("name", "value"), [
    ("per_page", "0"), ("per_page", "-1"), ("per_page", "-100"), ("page", "-1"),
])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_out_of_range_pagination_is_400(api, world, prefix, name, value):
    response = get(api, f"{prefix}/summary?time=24h&{name}={value}", world.key)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == JSON
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", name]
    assert error["type"].startswith("value_error.number"), error
    assert isinstance(error["msg"], str) and error["msg"]


def _locs(response: httpx.Response) -> list[tuple[str, ...]]:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == JSON
    return sorted(tuple(e["loc"]) for e in response.json()["detail"])


@pytest.mark.parametrize("prefix", PREFIXES)
def test_several_errors_are_all_listed(api, world, prefix):
    both = get(api, f"{prefix}/stats/throughput/agg?time=5y&source=xx", world.key)
    assert sorted(both.json()["detail"], key=lambda e: e["loc"]) == sorted(
        [bad_enum("time", TIME_VALUES), *BAD_SOURCE["detail"]], key=lambda e: e["loc"])
    assert _locs(both) == [("query", "source"), ("query", "time")]
    nothing = get(api, f"{prefix}/stats/buffer_health/avg", world.key)
    assert sorted(nothing.json()["detail"], key=lambda e: e["loc"]) == [
        missing("source"), missing("time")]
    three = get(api, f"{prefix}/summary?per_page=x&page=-1", world.key)
    assert _locs(three) == [("query", "page"), ("query", "per_page"), ("query", "time")]
    four = get(api, f"{prefix}/channels/c/summary?time=&per_page=0&page=z", world.key)
    assert _locs(four) == [("query", "page"), ("query", "per_page"), ("query", "time")]


# --- 403 -------------------------------------------------------------------------------


@pytest.mark.parametrize("last", ["", "/last_point"])
@pytest.mark.parametrize("stem", ADVANCED)
@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_lite_key_is_forbidden_on_advanced_endpoints(api, world, prefix, stem, last):
    for scope in ("", "/channels/ch-1", "/channels/ch-1/streams/ch-1-stream-0"):
        expect_forbidden(get(api, f"{prefix}{scope}/stats/{stem}{last}?time=1h&source=cdn",
                             world.lite_key))


@pytest.mark.parametrize("last", ["", "/last_point"])
@pytest.mark.parametrize("stem", LITE)
@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_lite_key_may_use_lite_endpoints(api, world, frozen_now, prefix, stem, last):
    metric = {"throughput/agg": "throughput", "buffer_health/avg": "buffer_health"}[stem]
    for source in ("cdn", "p2p"):
        expected = oracle.stats(world.lite_beacons, world.lite_customer_id, frozen_now, "1h",
                                metric, source=source)
        assert expected
        response = get(api, f"{prefix}/stats/{stem}{last}?time=1h&source={source}",
                       world.lite_key)
        assert response.status_code == 200, response.text
        assert_same(response.json(), oracle.last_point(expected) if last else expected)
    agg = get(api, f"{prefix}/summary/agg?time=1h", world.lite_key)
    assert_same(agg.json(), oracle.summary_agg(world.lite_beacons, world.lite_customer_id,
                                               frozen_now, "1h"))


@pytest.mark.parametrize("path", [
    "/summary?time=1h", "/summary/agg?time=1h", "/channels/ch-1/summary?time=1h",
    "/stats/throughput/agg?time=1h&source=cdn", "/stats/os/last_point?time=1h",
])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_reseller_key_is_forbidden_on_the_legacy_api(api, world, prefix, path):
    expect_forbidden(get(api, prefix + path, world.reseller_key))
    expect_forbidden(get(api, prefix + path, world.reseller_key, bearer=False))


# --- 404 -------------------------------------------------------------------------------

UNKNOWN = [
    ("GET", "/nope"),
    ("GET", "/stats/unknown?time=1h"),
    ("GET", "/stats/unknown/last_point?time=1h"),
    ("GET", "/analytics/legacy/nope"),
    ("GET", "/analytics/legacy/stats/unknown?time=1h"),
    ("GET", "/channels/ch-1?time=1h"),
    ("GET", "/summary/agg/more?time=1h"),
    ("GET", "/analytics/legacy"),
    ("POST", "/summary?time=1h"),
    ("POST", "/analytics/legacy/summary?time=1h"),
    ("POST", "/stats/throughput/agg?time=1h&source=cdn"),
    ("PUT", "/summary/agg?time=1h"),
    ("DELETE", "/summary?time=1h"),
    ("POST", "/ping"),
    ("GET", "/v1/ingest/beacons"),
    ("POST", "/edgestats.metrics.v1.LegacyStatsJsonService/Ping"),
    ("POST", "/edgestats.metrics.v1.LegacyStatsJsonService/GetSummaryAggregate"),
]


@pytest.mark.parametrize("with_key", [True, False])
@pytest.mark.parametrize(("method", "path"), UNKNOWN)
def test_unknown_paths_are_404(api, world, method, path, with_key):
    headers = api.auth(world.key if with_key else None)
    expect(api.http.request(method, path, headers=headers), 404, NOT_FOUND)
    if method == "POST":  # a plain-HTTP JSON call of a gRPC path is not an RPC either
        response = api.http.request(method, path, json={"time": "1h"}, headers=headers)
        expect(response, 404, NOT_FOUND)


# --- query strings ---------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/summary?time=1h", "/summary/agg?time=24h", "/channels/ch-1/summary?time=1h&page=0",
    "/stats/throughput/agg?time=1h&source=p2p", "/stats/os?time=1h",
    "/stats/rebuffering/ratio/last_point?time=10m",
])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_unknown_query_parameters_are_ignored(api, world, prefix, path):
    plain = get(api, prefix + path, world.key)
    assert plain.status_code == 200 and plain.json(), plain.text
    for extra in ("foo=bar", "utm_source=grafana&utm_medium=x", "Time=5y", "SOURCE=xx",
                  "foo=", "foo", "%zz=1", "a%00b=c"):
        noisy = get(api, f"{prefix}{path}&{extra}", world.key)
        assert noisy.status_code == 200, (extra, noisy.text)
        assert noisy.json() == plain.json(), extra


@pytest.mark.parametrize("prefix", PREFIXES)
def test_parameters_of_other_endpoints_are_ignored(api, world, prefix):
    """`per_page`/`page` on /summary/agg and `source` where it is not a parameter."""
    for path, extra in [("/summary/agg?time=1h", "per_page=abc&page=-3"),
                        ("/summary?time=1h", "source=xx"),
                        ("/stats/os?time=1h", "source=xx"),
                        ("/stats/platforms/last_point?time=1h", "source=")]:
        plain = get(api, prefix + path, world.key)
        noisy = get(api, f"{prefix}{path}&{extra}", world.key)
        assert plain.status_code == noisy.status_code == 200, (path, noisy.text)
        assert noisy.json() == plain.json(), path


@pytest.mark.parametrize("prefix", PREFIXES)
def test_path_parameter_names_in_the_query_are_ignored(api, world, prefix):
    plain = get(api, f"{prefix}/summary/agg?time=1h", world.key).json()
    for extra in ("channel_id=ch-1", "stream_id=ch-1-stream-0", "channel_id=nope"):
        noisy = get(api, f"{prefix}/summary/agg?time=1h&{extra}", world.key)
        assert noisy.status_code == 200 and noisy.json() == plain, (extra, noisy.text)
    scoped = get(api, f"{prefix}/channels/ch-1/summary/agg?time=1h", world.key).json()
    noisy = get(api, f"{prefix}/channels/ch-1/summary/agg?time=1h&channel_id=ch-2", world.key)
    assert noisy.status_code == 200 and noisy.json() == scoped, noisy.text


def _stream_of(world: World) -> tuple[str, str]:
    """A (channel, stream) with beacons of both renditions in the last hour."""
    b = next(b for b in world.beacons if b["ChannelId"] == "ch three")
    return b["ChannelId"], b["StreamId"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_plus_and_percent20_both_decode_to_a_space(api, world, frozen_now, prefix):
    channel, stream = _stream_of(world)
    scope = f"{prefix}/channels/{q(channel)}/streams/{q(stream)}"
    assert "%20" in scope  # the channel id itself has a space: %20 in a path is a space
    expected = oracle.summary(world.beacons, world.customer_id, frozen_now, "1h",
                              "representation", channel_id=channel, stream_id=stream,
                              representation_id="2 of 2")
    unfiltered = oracle.summary(world.beacons, world.customer_id, frozen_now, "1h",
                                "representation", channel_id=channel, stream_id=stream)
    assert expected and expected != unfiltered
    answers = []
    for spelling in ("2+of+2", "2%20of%202", "2%20of+2", "%32+of%202"):
        response = get(api, f"{scope}/summary?time=1h&representation_id={spelling}", world.key)
        assert f"representation_id={spelling}".encode() in response.request.url.raw_path
        assert response.status_code == 200, response.text
        assert_same(response.json(), expected)
        answers.append(response.json())
    assert all(a == answers[0] for a in answers)
    series = oracle.stats(world.beacons, world.customer_id, frozen_now, "1h", "throughput",
                          source="cdn", channel_id=channel, stream_id=stream,
                          representation_id="2 of 2")
    assert series
    for spelling in ("2+of+2", "2%20of%202"):
        response = get(api, f"{scope}/stats/throughput/agg?time=1h&source=cdn"
                            f"&representation_id={spelling}", world.key)
        assert response.status_code == 200, response.text
        assert_same(response.json(), series)
    # a literal plus is %2B
    none = get(api, f"{scope}/summary?time=1h&representation_id=2%2Bof%2B2", world.key)
    assert none.status_code == 200 and none.json() == []


# --- bad input never gives 5xx ---------------------------------------------------------

NO_5XX = [
    "/summary?time=1h&per_page=99999999999999999999999",
    "/summary?time=1h&per_page=1000&page=1000000000",
    "/summary?time=1h&page=-99999999999999999999",
    "/summary?time=1h&per_page=%20%201%20",
    "/summary?=&&&time=1h",
    "/summary?time=1h&time=1h",
    "/summary?time=1h&time=xx",
    "/summary?time=" + "x" * 2000,
    "/channels/a%2Fb/summary?time=1h",
    "/channels/%2e%2e/summary?time=1h",
    "/channels/" + "a" * 3000 + "/summary/agg?time=1h",
    "/channels/%E2%82%AC%F0%9F%98%80/streams/%27%3B--/summary?time=1h",
    "/channels/x/streams/y/summary?time=1h&representation_id=%27%20OR%201%3D1--",
    "/channels/x/streams/y/stats/os?time=1h&bitrate=%25",
    "/stats/throughput/agg?time=1h&source=%E2%82%AC",
    "/summary?time=%FF%FE",
    "/channels/%00/summary?time=1h",
    "/channels/x%00y/stats/throughput/agg?time=1h&source=cdn",
    "/channels/%FF/summary?time=1h",
    "/channels/x/streams/y/summary?time=1h&representation_id=%FF",
    "/channels/x/streams/y/summary?time=1h&bitrate=%00",
    "/channels/x/streams/y/stats/throughput/agg?time=1h&source=cdn&representation_id=a%00",
]


@pytest.mark.parametrize("url", NO_5XX)
@pytest.mark.parametrize("prefix", PREFIXES)
def test_bad_input_never_gives_5xx(api, world, prefix, url):
    response = get(api, prefix + url, world.key)
    assert response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"] == JSON
    response.json()


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_very_long_query_string_gets_a_documented_4xx(api, world, prefix):
    response = get(api, f"{prefix}/channels/x/streams/y/summary?time=1h&representation_id="
                        + "a" * 20000, world.key)
    assert response.status_code in (200, 400, 414, 431), (response.status_code, response.text)
    assert response.headers["content-type"] == JSON
    assert response.json() != {"detail": "Internal Server Error"}
