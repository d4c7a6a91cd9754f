"""Statistics answers: fact bounds, aggregation, top tags, billing periods, JSON and XML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta

import pytest

from usage_billing_service import rendering, stats_answers
from usage_billing_service.billing_periods import add_months, current_period_bounds
from usage_billing_service.stats_answers import Row, Span, TagTotal
from usage_billing_service.stats_params import Rendering

NOW = datetime(2015, 7, 8, 10, 21, 3, 827000, tzinfo=UTC)  # seed 004's example 2
BASE = "https://api.xvid.com"


def day(d: date, nbytes: int, app: str | None = None) -> Span:
    return Span(app, d, d, nbytes)


def test_seed_example_2_bounds():
    rows = [day(date(2015, 7, 2), 730774413), day(date(2015, 7, 8), 798134295)]
    facts = stats_answers.daily_facts(rows, "storage", "552b", BASE, NOW)
    assert facts == [
        {"user": {"id": "552b", "href": f"{BASE}/v1/users/552b"},
         "from_date": 1435795200001, "to_date": 1435881600000, "storage_data": 730774413},
        {"user": {"id": "552b", "href": f"{BASE}/v1/users/552b"},
         "from_date": 1436313600000, "to_date": 1436350863827, "storage_data": 798134295},
    ]


def test_aggregate_spans_first_to_last_fact():
    span = Span(None, date(2015, 6, 22), date(2015, 7, 8), 130520484)  # seed example 3
    (fact,) = stats_answers.daily_facts([span], "conversion", "u", BASE, NOW)
    assert (fact["from_date"], fact["to_date"], fact["conversion_data"]) == (
        1434931200001, 1436350863827, 130520484)
    span = Span(None, date(2015, 6, 22), date(2015, 7, 7), 1)  # ends with a complete day
    (fact,) = stats_answers.daily_facts([span], "conversion", "u", BASE, NOW)
    assert fact["to_date"] == 1436313600000


def test_application_view():
    rows = [day(date(2015, 7, 1), 1, "b"), day(date(2015, 7, 2), 2, "a")]
    facts = stats_answers.daily_facts(rows, "bandwidth", "u", BASE, NOW)
    assert [f["application"] for f in facts] == [{"id": "b"}, {"id": "a"}]
    assert set(facts[0]) == {"application", "from_date", "to_date", "bandwidth_data"}
    assert stats_answers.daily_facts([], "bandwidth", "u", BASE, NOW) == []


def test_a_day_ending_exactly_now_is_complete():
    assert stats_answers.day_bounds(date(2015, 7, 7), datetime(2015, 7, 8, tzinfo=UTC)) == (
        1436227200001, 1436313600000)


def test_tag_facts_span_the_hour():
    hour = datetime(2020, 9, 10, 13, tzinfo=UTC)
    (fact,) = stats_answers.tag_facts([Row("app", hour, 4100040407)], "User1", BASE, False)
    assert fact == {"tag": "User1", "application": {"id": "app",
                                                    "href": f"{BASE}/v1/applications/app"},
                    "from_date": 1599742800000, "to_date": 1599746400000,
                    "bandwidth_data": 4100040407}


def test_top_tags_keeps_ten_by_bytes_then_tag():
    hour = datetime(2020, 9, 10, 13, tzinfo=UTC)
    totals = [TagTotal("app", f"t{i:02}", 100 - i // 2, hour, hour + timedelta(hours=i % 3))
              for i in range(14)]
    (fact,) = stats_answers.top_tags(totals, BASE)
    assert [t["tag"] for t in fact["top_tags"]] == [f"t{i:02}" for i in range(10)]
    assert (fact["from_date"], fact["to_date"]) == (1599742800000, 1599742800000 + 3 * 3_600_000)


def test_json_compact_and_human():
    stats = [{"user": {"id": "u"}, "from_date": 1, "bandwidth_data": 2}]
    body = rendering.render(stats, Rendering("json", False))
    assert body.content_type == "application/json"
    assert body.data == b'{"stats":[{"user":{"id":"u"},"from_date":1,"bandwidth_data":2}]}'
    human = rendering.render(stats, Rendering("json", True))
    assert json.loads(human.data) == {"stats": stats} and b'\n  "stats"' in human.data


def test_xml_mirrors_json_and_escapes():
    stats = [{"top_tags": [{"tag": "a<&>\"'", "bandwidth_data": 1}],
              "application": {"id": "x", "href": "http://h/v1/applications/x?a=1&b=2"},
              "from_date": 5, "to_date": 6}]
    body = rendering.render(stats, Rendering("xml", False))
    assert body.content_type == "application/xml"
    root = ET.fromstring(body.data)
    assert root.tag == "stats" and [f.tag for f in root] == ["fact"]
    fact = root[0]
    assert [c.tag for c in fact] == ["top_tags", "application", "from_date", "to_date"]
    assert fact.find("top_tags/top_tag/tag").text == "a<&>\"'"
    assert fact.find("application/href").text.endswith("?a=1&b=2")
    assert fact.find("from_date").text == "5"
    assert b"\n" not in body.data.split(b"\n", 1)[1]
    human = rendering.render(stats, Rendering("xml", True)).data
    assert b"\n  <fact>\n    <top_tags>" in human


def test_xml_replaces_characters_xml_cannot_hold():
    stats = [{"tag": "a\x01b\x1fc\td", "bandwidth_data": 1}]
    root = ET.fromstring(rendering.render(stats, Rendering("xml", False)).data)
    assert root.find("fact/tag").text == "a\ufffdb\ufffdc\td"
    body = rendering.render(stats, Rendering("json", False)).data
    assert json.loads(body)["stats"][0]["tag"] == "a\x01b\x1fc\td"  # JSON keeps them


def test_empty_answers():
    assert rendering.render([], Rendering("json", False)).data == b'{"stats":[]}'
    assert ET.fromstring(rendering.render([], Rendering("xml", False)).data).tag == "stats"


@pytest.mark.parametrize("start,months,at,expected", [
    (datetime(2026, 1, 31), 1, datetime(2026, 2, 28, 12), (datetime(2026, 2, 28),
                                                            datetime(2026, 3, 31))),
    (datetime(2026, 1, 31), 1, datetime(2026, 2, 27), (datetime(2026, 1, 31),
                                                       datetime(2026, 2, 28))),
    (datetime(2026, 1, 15, 7), 1, datetime(2026, 3, 15, 6), (datetime(2026, 2, 15, 7),
                                                             datetime(2026, 3, 15, 7))),
    (datetime(2026, 1, 15, 7), 1, datetime(2026, 3, 15, 7), (datetime(2026, 3, 15, 7),
                                                             datetime(2026, 4, 15, 7))),
    (datetime(2025, 11, 1), 3, datetime(2026, 5, 2), (datetime(2026, 5, 1),
                                                      datetime(2026, 8, 1))),
    (datetime(2025, 11, 1), 12, datetime(2025, 11, 1), (datetime(2025, 11, 1),
                                                        datetime(2026, 11, 1))),
])
def test_billing_periods(start, months, at, expected):
    assert current_period_bounds(start, months, at) == expected


def test_add_months_counts_from_the_start():
    start = datetime(2026, 1, 31)
    assert [add_months(start, k).day for k in range(4)] == [31, 28, 31, 30]
