"""Druid functions added for issue #5, checked against Druid's semantics through Envoy:
TIME_FLOOR with an origin and a time zone and calendar multiples (PeriodGranularity),
TIMESTAMPADD / TIMESTAMPDIFF (Calcite), REGEXP_EXTRACT, STRING_AGG, ARRAY_AGG."""

from __future__ import annotations

import pytest

from tests.builders import scenario, wire

pytestmark = pytest.mark.e2e

PATH = "/analytics/v1/query/sql"


@pytest.fixture(scope="module")
def caller(api, tenants, frozen_now):
    customer_id, key = tenants.customer("advanced", "emea")
    beacons = scenario(customer_id, frozen_now, seed=71)
    assert api.ingest(key, [wire(b) for b in beacons]).status_code == 200
    return customer_id, key, beacons


def one(api, key: str, expression: str):
    response = api.http.post(PATH, json={"query": f"SELECT {expression} AS v"},
                             headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, (expression, response.text)
    return response.json()[0]["v"]


# (expression, Druid's answer): worked out from Druid's PeriodGranularity.truncate
# (multiples counted from the origin, default 1970-01-01 in the time zone; a single unit of
# 1 floors to the calendar unit of the time zone; Monday weeks)
TIME_FLOOR = [
    ("TIME_FLOOR(TIMESTAMP '2024-06-17 13:45:00', 'P2M')", "2024-05-01T00:00:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '2024-05-01 00:00:00', 'P2M')", "2024-05-01T00:00:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '2024-08-10 00:00:00', 'P6M')", "2024-07-01T00:00:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '2025-03-01 00:00:00', 'P2Y')", "2024-01-01T00:00:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '1969-12-15 00:00:00', 'P2M')", "1969-11-01T00:00:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '2024-03-10 00:00:00', 'P1M', TIMESTAMP '2024-01-15 00:00:00')",
     "2024-02-15T00:00:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '2024-03-20 00:00:00', 'P1M', TIMESTAMP '2024-01-15 00:00:00')",
     "2024-03-15T00:00:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '2024-05-17 13:45:00', 'PT1H', TIMESTAMP '2020-01-01 00:30:00')",
     "2024-05-17T13:30:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '2024-05-17 13:45:00', 'P1D', TIMESTAMP '2024-01-01 06:00:00')",
     "2024-05-17T06:00:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '2024-05-17 00:00:00', 'P2W')", "2024-05-09T00:00:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '2024-03-31 21:30:00', 'P1D', NULL, 'Europe/Paris')",
     "2024-03-30T23:00:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '2024-05-15 02:00:00', 'P1W', NULL, 'America/New_York')",
     "2024-05-13T04:00:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '2024-05-17 13:45:00', 'PT1H', NULL, 'Asia/Kolkata')",
     "2024-05-17T13:30:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '2024-05-17 13:45:00', 'P1M', NULL, 'Asia/Tokyo')",
     "2024-04-30T15:00:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '2024-05-17 13:45:00', 'PT1H30M')", "2024-05-17T13:30:00.000Z"),
    ("TIME_FLOOR(TIMESTAMP '2024-05-17 13:45:00', 'P1D', NULL, 'UTC')",
     "2024-05-17T00:00:00.000Z"),
]


@pytest.mark.parametrize("expression,expected", TIME_FLOOR, ids=[e for e, _ in TIME_FLOOR])
def test_time_floor_like_druid(api, caller, expression, expected):
    assert one(api, caller[1], expression) == expected


# Calcite: TIMESTAMPADD clamps to the month's last day; TIMESTAMPDIFF counts whole units,
# toward zero, months on the calendar
TIMESTAMP_ARITHMETIC = [
    ("TIMESTAMPADD(MONTH, 1, TIMESTAMP '2024-01-31 00:00:00')", "2024-02-29T00:00:00.000Z"),
    ("TIMESTAMPADD(HOUR, -3, TIMESTAMP '2024-01-01 01:00:00')", "2023-12-31T22:00:00.000Z"),
    ("TIMESTAMPADD(QUARTER, 2, TIMESTAMP '2024-01-15 00:00:00')", "2024-07-15T00:00:00.000Z"),
    ("TIMESTAMPADD(WEEK, 1, TIMESTAMP '2024-01-15 00:00:00')", "2024-01-22T00:00:00.000Z"),
    ("TIMESTAMPDIFF(HOUR, TIMESTAMP '2024-01-01 00:00:00', TIMESTAMP '2024-01-01 05:59:00')", 5),
    ("TIMESTAMPDIFF(HOUR, TIMESTAMP '2024-01-01 05:59:00', TIMESTAMP '2024-01-01 00:00:00')", -5),
    ("TIMESTAMPDIFF(DAY, TIMESTAMP '2024-01-31 00:00:00', TIMESTAMP '2024-02-29 00:00:00')", 29),
    ("TIMESTAMPDIFF(MONTH, TIMESTAMP '2024-01-31 00:00:00', TIMESTAMP '2024-02-29 00:00:00')", 0),
    ("TIMESTAMPDIFF(MONTH, TIMESTAMP '2024-01-15 00:00:00', TIMESTAMP '2024-03-15 00:00:00')", 2),
    ("TIMESTAMPDIFF(YEAR, TIMESTAMP '2020-06-01 00:00:00', TIMESTAMP '2024-05-31 00:00:00')", 3),
    ("TIMESTAMPDIFF(QUARTER, TIMESTAMP '2024-01-01 00:00:00', TIMESTAMP '2023-06-01 00:00:00')",
     -2),
    ("TIMESTAMPDIFF(SECOND, TIMESTAMP '2024-01-01 00:00:00', TIMESTAMP '2024-01-01 00:01:00')",
     60),
]


@pytest.mark.parametrize("expression,expected", TIMESTAMP_ARITHMETIC,
                         ids=[e for e, _ in TIMESTAMP_ARITHMETIC])
def test_timestampadd_and_timestampdiff(api, caller, expression, expected):
    assert one(api, caller[1], expression) == expected


REGEXP = [
    ("REGEXP_EXTRACT('foo123bar45', '(\\d+)')", "123"),
    ("REGEXP_EXTRACT('foo123bar45', '[a-z]+(\\d+)', 0)", "foo123"),
    ("REGEXP_EXTRACT('foo123', 'o(\\d)(\\d)', 2)", "2"),
    ("REGEXP_EXTRACT('foo', '\\d+')", None),
    ("REGEXP_EXTRACT(NULL, '\\d+')", None),
]


@pytest.mark.parametrize("expression,expected", REGEXP, ids=[e for e, _ in REGEXP])
def test_regexp_extract(api, caller, expression, expected):
    assert one(api, caller[1], expression) == expected


def test_regexp_extract_on_a_column_and_aggregates(api, caller):
    customer_id, key, beacons = caller
    query = ("SELECT REGEXP_EXTRACT(ChannelId, 'ch-(\\d+)', 1) AS n, COUNT(*) AS c,"
             " STRING_AGG(DISTINCT Source, ',') AS sources, ARRAY_AGG(DISTINCT StreamId, 1000)"
             " AS streams, STRING_AGG(CAST(NULL AS VARCHAR), ',') AS nothing"
             f" FROM \"sdk-emea-realtime\" WHERE CustomerId = '{customer_id}'"
             " GROUP BY 1 ORDER BY 1 NULLS FIRST")
    response = api.http.post(PATH, json={"query": query},
                             headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    rows = response.json()
    groups: dict = {}
    for b in beacons:
        name = b["ChannelId"]
        groups.setdefault(name.split("-")[1] if name.startswith("ch-") else None, []).append(b)
    assert [r["n"] for r in rows] == sorted(groups, key=lambda k: (k is not None, k or ""))
    for row in rows:
        group = groups[row["n"]]
        assert row["c"] == len(group)
        assert sorted(row["sources"].split(",")) == sorted({b["Source"] for b in group})
        assert sorted(row["streams"]) == sorted({b["StreamId"] for b in group})
        assert row["nothing"] is None


def test_array_agg_keeps_nulls(api, caller):
    response = api.http.post(PATH, json={"query": "SELECT ARRAY_AGG(x) AS v FROM"
                                                  " (SELECT 1 AS x UNION ALL SELECT NULL)"},
                             headers={"Authorization": f"Bearer {caller[1]}"})
    assert response.status_code == 200, response.text
    assert response.json()[0]["v"] in ([1, None], [None, 1])


@pytest.mark.parametrize("expression,message", [
    ("TIME_FLOOR(TIMESTAMP '2024-01-01 00:00:00', 'P1M', NULL, 'Mars/Olympus')", "time zone"),
    ("TIME_FLOOR(TIMESTAMP '2024-01-01 00:00:00', 'P1M1D')", "months"),
    ("TIMESTAMPADD(FORTNIGHT, 1, TIMESTAMP '2024-01-01 00:00:00')", "unit"),
    ("REGEXP_EXTRACT('a', 'a', -1)", "index"),
])
def test_bad_arguments_are_400(api, caller, expression, message):
    response = api.http.post(PATH, json={"query": f"SELECT {expression}"},
                             headers={"Authorization": f"Bearer {caller[1]}"})
    assert response.status_code == 400 and message in response.text, response.text
