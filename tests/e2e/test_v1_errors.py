"""Every documented error of the v1 metrics and Grafana helpers through Envoy (CONTRACT §6, §9):
exact status, content type and JSON body."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from tests.builders import v1_scenario, wire
from tests.e2e.test_v1_metrics import ADVANCED_PATHS, LITE_PATHS, PREFIXES, iso

pytestmark = pytest.mark.e2e

JSON = "application/json"
GRANULARITIES = ["second", "minute", "fifteen_minute", "thirty_minute", "hour", "day", "week",
                 "month", "quarter", "year"]
NOT_AUTHENTICATED = {"type": "not-authenticated", "title": "Not authenticated"}


def missing(name: str) -> dict:
    return {"loc": ["body", name], "msg": "field required", "type": "value_error.missing"}


def bad_enum(name: str, values: list[str], where: str = "body") -> dict:
    permitted = ", ".join(f"'{v}'" for v in values)
    return {"loc": [where, name],
            "msg": f"value is not a valid enumeration member; permitted: {permitted}",
            "type": "type_error.enum", "ctx": {"enum_values": values}}


def type_error(name: str, msg: str = "str type expected") -> dict:
    return {"loc": ["body", name], "msg": msg, "type": "type_error"}


def rule(name: str, msg: str) -> dict:
    return {"loc": ["body", name], "msg": msg, "type": "value_error"}


def forbidden(title: str) -> dict:
    return {"type": "forbidden", "title": title}


@pytest.fixture(scope="module")
def keys(api, tenants, frozen_now: datetime) -> dict[str, str]:
    advanced_id, advanced = tenants.customer("advanced")
    beacons = v1_scenario(advanced_id, frozen_now, seed=5, sessions=3)
    assert api.ingest(advanced, [wire(b) for b in beacons]).status_code == 200
    lite_id, lite = tenants.customer("lite")
    stranger_id, _ = tenants.customer("advanced")
    _, reseller = tenants.reseller([advanced_id, lite_id])
    _, lite_reseller = tenants.reseller([lite_id], tier="lite")
    return {"advanced": advanced, "lite": lite, "reseller": reseller,
            "lite_reseller": lite_reseller, "advanced_id": advanced_id, "lite_id": lite_id,
            "stranger_id": stranger_id}


def send(api, path: str, key: str | None, body: object, prefix: str = PREFIXES[0]):
    headers = api.auth(key) if key else {}
    content = body if isinstance(body, str) else json.dumps(body)
    return api.http.post(prefix + path, content=content, headers=headers)


def expect(response, status: int, body: object) -> None:
    assert response.status_code == status, (response.request.url, response.text)
    assert response.headers["content-type"] == JSON
    assert response.json() == body, response.text


def cases(now: datetime) -> list[tuple[str, dict, list[dict]]]:
    """(label, body, expected detail list) of the 400s of CONTRACT §6."""
    hour = {"from_date": iso(now - timedelta(hours=1)), "to_date": iso(now)}
    old = iso(now - timedelta(days=40))
    too_old = iso(now - timedelta(days=14 * 31))
    minute = now.replace(second=0)
    return [
        ("missing both", {}, [missing("from_date"), missing("to_date")]),
        ("missing to", {"from_date": hour["from_date"]}, [missing("to_date")]),
        ("null from", {**hour, "from_date": None}, [missing("from_date")]),
        ("unparsable date", {**hour, "from_date": "yesterday"},
         [rule("from_date", "invalid datetime format")]),
        ("bad month", {**hour, "to_date": "2026-13-01T00:00:00"},
         [rule("to_date", "invalid datetime format")]),
        ("bad granularity", {**hour, "granularity": "fortnight"},
         [bad_enum("granularity", GRANULARITIES)]),
        ("bad ISO period", {**hour, "granularity": "PT5M"},
         [bad_enum("granularity", GRANULARITIES)]),
        ("bad stream_state", {**hour, "stream_state": "paused"},
         [bad_enum("stream_state", ["live", "vod", "dvr", "unknown"])]),
        ("bad data_layer", {**hour, "data_layer": "historical-day"},
         [bad_enum("data_layer", ["realtime", "historical-minute", "historical-hour"])]),
        ("granularity number", {**hour, "granularity": 60}, [type_error("granularity")]),
        ("approximate maybe", {**hour, "approximate_count_distinct": "maybe"},
         [type_error("approximate_count_distinct", "value could not be parsed to a boolean")]),
        ("filter number", {**hour, "bitrate": 4000}, [type_error("bitrate")]),
        ("date number", {"from_date": 1700000000, "to_date": hour["to_date"]},
         [type_error("from_date")]),
        ("several", {"to_date": "x", "granularity": "daily", "channel_id": ["a"]},
         [missing("from_date"), rule("to_date", "invalid datetime format"),
          bad_enum("granularity", GRANULARITIES), type_error("channel_id")]),
        ("from equals to", {"from_date": hour["to_date"], "to_date": hour["to_date"]},
         [rule("to_date", "to_date must be later than from_date")]),
        ("from after to", {"from_date": hour["to_date"], "to_date": hour["from_date"]},
         [rule("to_date", "to_date must be later than from_date")]),
        ("too many buckets", {**hour, "from_date": iso(now - timedelta(hours=3))},
         [rule("granularity", "the range has 10800 buckets of second, more than 10000: "
                              "use a coarser granularity such as minute")]),
        ("too many minutes", {"from_date": iso(minute - timedelta(days=8)),
                              "to_date": iso(minute), "granularity": "minute"},
         [rule("granularity", "the range has 11520 buckets of minute, more than 10000: "
                              "use a coarser granularity such as fifteen_minute")]),
        ("realtime hour", {**hour, "granularity": "hour", "data_layer": "realtime"},
         [rule("granularity", "the realtime layer answers granularities up to thirty_minute")]),
        ("realtime 49h", {"from_date": iso(now - timedelta(hours=49)), "to_date": iso(now),
                          "granularity": "thirty_minute", "data_layer": "realtime"},
         [rule("to_date", "the realtime layer answers ranges of at most 48 hours")]),
        ("realtime old", {"from_date": old, "to_date": iso(now - timedelta(days=39)),
                          "granularity": "minute", "data_layer": "realtime"},
         [rule("from_date", "the realtime layer keeps 30 days: the range is older")]),
        ("historical-minute second", {**hour, "data_layer": "historical-minute"},
         [rule("granularity", "the finest granularity of historical-minute is minute")]),
        ("historical-hour minute", {**hour, "granularity": "minute",
                                    "data_layer": "historical-hour"},
         [rule("granularity", "the finest granularity of historical-hour is hour")]),
        ("older than 13 months", {"from_date": too_old, "to_date": iso(now), "granularity": "day"},
         [rule("from_date", "the range is older than the retention of 13 months")]),
        ("exact and old", {"from_date": old, "to_date": iso(now), "granularity": "day",
                           "approximate_count_distinct": False},
         [rule("approximate_count_distinct",
               "exact distinct counts need raw data, kept 30 days: the range is older")]),
    ]


LABELS = [c[0] for c in cases(datetime(2026, 1, 1))]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("label", LABELS)
def test_bad_bodies_get_the_documented_400(api, keys, frozen_now, label, prefix):
    (_, body, detail), = [c for c in cases(frozen_now) if c[0] == label]
    expect(send(api, "audience", keys["advanced"], body, prefix), 400, {"detail": detail})


@pytest.mark.parametrize("body", ["[1, 2]", '"x"', "null", "5"])
def test_a_body_that_is_not_an_object(api, keys, body):
    response = send(api, "traffic", keys["advanced"], body)
    assert response.status_code == 400
    assert response.headers["content-type"] == JSON
    (item,) = response.json()["detail"]
    assert item["loc"] == ["body"] and item["type"] == "value_error"


def test_malformed_json_is_a_400_detail_list(api, keys):
    response = send(api, "traffic", keys["advanced"], '{"from_date": ')
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["body"]


def test_lite_ignores_approximate_false_on_an_old_range(api, keys, frozen_now):
    body = {"from_date": iso(frozen_now - timedelta(days=40)), "to_date": iso(frozen_now),
            "granularity": "day", "approximate_count_distinct": False}
    assert send(api, "audience", keys["lite"], body).status_code == 200


def test_unknown_fields_are_ignored(api, keys, frozen_now):
    body = {"from_date": iso(frozen_now - timedelta(hours=1)), "to_date": iso(frozen_now),
            "granularity": "hour", "colour": "blue"}
    assert send(api, "audience", keys["advanced"], body).status_code == 200


@pytest.mark.parametrize("path", ADVANCED_PATHS)
def test_lite_keys_get_403_on_advanced_endpoints(api, keys, frozen_now, path):
    body = {"from_date": "nonsense"}  # tier is checked before the body
    for prefix in PREFIXES:
        expect(send(api, path, keys["lite"], body, prefix), 403,
               forbidden("This endpoint needs the Advanced tier"))
        expect(send(api, "reseller/" + path, keys["lite_reseller"], body, prefix), 403,
               forbidden("This endpoint needs the Advanced tier"))


@pytest.mark.parametrize("path", LITE_PATHS)
def test_lite_endpoints_answer_lite_keys(api, keys, frozen_now, path):
    body = {"from_date": iso(frozen_now - timedelta(hours=1)), "to_date": iso(frozen_now),
            "granularity": "hour"}
    assert send(api, path, keys["lite"], body).status_code == 200
    assert send(api, "reseller/" + path, keys["lite_reseller"], body).status_code == 200


def test_reseller_rules(api, keys, frozen_now):
    body = {"from_date": iso(frozen_now - timedelta(hours=1)), "to_date": iso(frozen_now),
            "granularity": "hour"}
    not_own = forbidden("The reseller may only query its own customers")
    expect(send(api, "reseller/audience", keys["advanced"], body), 403,
           forbidden("The reseller metrics need a reseller key"))
    expect(send(api, "audience", keys["reseller"], body), 400,
           {"detail": [missing("target_customer_id")]})
    expect(send(api, "audience", keys["reseller"], {**body, "target_customer_id": 5}), 400,
           {"detail": [type_error("target_customer_id")]})
    expect(send(api, "audience", keys["reseller"],
                {**body, "target_customer_id": keys["stranger_id"]}), 403, not_own)
    expect(send(api, "reseller/audience", keys["reseller"],
                {**body, "customer_ids": [keys["advanced_id"], keys["stranger_id"]]}), 403, not_own)
    expect(send(api, "reseller/audience", keys["reseller"], {**body, "customer_ids": "x"}), 400,
           {"detail": [type_error("customer_ids", "value is not a valid list of strings")]})
    expect(send(api, "reseller/audience", keys["reseller"], {**body, "region": "mars"}), 400,
           {"detail": [bad_enum("region", ["americas", "emea", "apac"])]})
    expect(send(api, "audience", keys["reseller"], {**body, "target_customer_id": ""}), 403,
           not_own)
    ok = send(api, "audience", keys["reseller"], {**body, "target_customer_id": keys["lite_id"]})
    assert ok.status_code == 200, ok.text


def test_no_key_is_401(api):
    for prefix in PREFIXES:
        expect(send(api, "audience", None, {}, prefix), 401, NOT_AUTHENTICATED)
        expect(api.http.get(prefix.replace("metrics", "grafana") + "granularity"), 401,
               NOT_AUTHENTICATED)


# --- Grafana helpers -------------------------------------------------------------------------

GRAFANA = ["/analytics/v1/grafana/", "/v1/grafana/"]
ALL_VALUES = ["T1S", "T1M", "T15M", "T30M", "T1H", "1D", "1W", "1M", "3M", "1Y"]


def option(value: str) -> dict:
    labels = dict(zip(ALL_VALUES, ["1 second", "1 minute", "15 minutes", "30 minutes", "1 hour",
                                   "1 day", "1 week", "1 month", "3 months", "1 year"],
                      strict=True))
    return {"label": labels[value], "value": value}


def epoch(t: datetime) -> int:
    return int(t.timestamp())


@pytest.mark.parametrize("prefix", GRAFANA)
def test_grafana_granularity(api, keys, frozen_now, prefix):
    key = keys["lite"]
    get = lambda **q: api.get(prefix + "granularity", key, **q)  # noqa: E731
    hour = get(from_date=epoch(frozen_now - timedelta(hours=1)), to_date=epoch(frozen_now))
    expect(hour, 200, [option(v) for v in ALL_VALUES])
    days = get(from_date=epoch(frozen_now - timedelta(days=3)), to_date=epoch(frozen_now))
    expect(days, 200, [option(v) for v in ALL_VALUES[1:]])  # T1S: realtime only, 48 h
    month = get(from_date=epoch(frozen_now - timedelta(days=60)), to_date=epoch(frozen_now))
    expect(month, 200, [option(v) for v in ALL_VALUES[2:]])  # T1M: 86,400 buckets
    expect(get(to_date="1"), 400, {"detail": [
        {"loc": ["query", "from_date"], "msg": "field required", "type": "value_error.missing"}]})
    expect(get(from_date="x", to_date="1"), 400, {"detail": [
        {"loc": ["query", "from_date"], "msg": "value is not a valid integer",
         "type": "type_error.integer"}]})
    expect(get(from_date="1", to_date=str(10**15)), 400, {"detail": [
        {"loc": ["query", "to_date"], "msg": "timestamp out of range", "type": "value_error"}]})
    expect(get(from_date="5", to_date="5"), 400, {"detail": [
        {"loc": ["query", "to_date"], "msg": "to_date must be later than from_date",
         "type": "value_error"}]})


@pytest.mark.parametrize("prefix", GRAFANA)
def test_grafana_data_layer(api, keys, frozen_now, prefix):
    key = keys["advanced"]
    recent = epoch(frozen_now - timedelta(hours=3))
    old = epoch(frozen_now - timedelta(days=5))
    expected = [(recent, "T1S", "realtime"), (old, "T1S", "realtime"),
                (recent, "T30M", "realtime"), (old, "T30M", "historical-minute"),
                (old, "T1M", "historical-minute"), (recent, "T1H", "historical-hour"),
                (old, "1M", "historical-hour"), (recent, "1D", "historical-hour")]
    for start, granularity, layer in expected:
        got = api.get(prefix + "data_layer", key, from_date=start, to_date=epoch(frozen_now),
                      granularity=granularity)
        expect(got, 200, {"layer": layer})
    expect(api.get(prefix + "data_layer", key, from_date=recent, granularity="T5M"), 400,
           {"detail": [bad_enum("granularity", ALL_VALUES, "query")]})
    expect(api.get(prefix + "data_layer", key, from_date=recent), 400, {"detail": [
        {"loc": ["query", "granularity"], "msg": "field required",
         "type": "value_error.missing"}]})
