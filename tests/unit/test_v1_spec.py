"""Validation of v1 metrics bodies, the range rules and the planner (CONTRACT §6), no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edgestats_core.errors import BadRequest, Forbidden
from edgestats_core.metrics.v1_definitions import V1_METRICS
from edgestats_core.query import layers, planner, v1_spec
from edgestats_core.tenancy.principals import Principal

NOW = datetime(2026, 11, 25, 10, 7, 15, tzinfo=UTC)
ADVANCED = Principal("k1", "customer", "advanced", customer_id="acme")
LITE = Principal("k2", "customer", "lite", customer_id="tiny")
RESELLER = Principal("k3", "reseller", "advanced", reseller_id="r", customers=("acme", "b"))
HOUR = {"from_date": "2026-11-25T09:00:00.000Z", "to_date": "2026-11-25T10:00:00"}


def parse(body, principal=ADVANCED, tier="lite", reseller=False):
    return v1_spec.parse_body(body, principal, tier=tier, reseller=reseller)


def errors_of(body, **kw) -> list[dict]:
    with pytest.raises(BadRequest) as error:
        spec = parse(body, **kw)
        v1_spec.check_range(spec, NOW)
    return error.value.body()["detail"]


def test_defaults_and_filters():
    spec = parse({**HOUR, "channel_id": "ch", "source": "-1", "stream_state": "live",
                  "stream_uri": "u", "other": 1})
    assert spec.customer_ids == ("acme",)
    assert spec.granularity == "second"
    assert spec.filters == (("channel_id", "ch"), ("masked_stream_uri", "u"),
                            ("stream_state", "live"))
    assert (spec.data_layer, spec.exact_distinct, spec.reseller) == (None, False, False)


def test_lite_keeps_approximate_counts():
    assert parse({**HOUR, "approximate_count_distinct": False}, LITE).exact_distinct is False
    assert parse({**HOUR, "approximate_count_distinct": False}).exact_distinct is True


def test_customer_target_is_ignored_and_reseller_target_is_used():
    assert parse({**HOUR, "target_customer_id": "b"}).customer_ids == ("acme",)
    assert parse({**HOUR, "target_customer_id": "b"}, RESELLER).customer_ids == ("b",)
    assert errors_of(HOUR, principal=RESELLER)[0]["loc"] == ["body", "target_customer_id"]


def test_reseller_paths():
    assert parse(HOUR, RESELLER, reseller=True).customer_ids == ("acme", "b")
    assert parse({**HOUR, "customer_ids": ["b"]}, RESELLER, reseller=True).customer_ids == ("b",)
    with pytest.raises(Forbidden):
        parse({**HOUR, "customer_ids": ["zzz"]}, RESELLER, reseller=True)
    with pytest.raises(Forbidden):
        parse(HOUR, ADVANCED, reseller=True)


def test_tier_is_checked_before_the_body():
    with pytest.raises(Forbidden):
        parse({}, LITE, tier="advanced")


@pytest.mark.parametrize(("body", "loc", "type_"), [
    ({}, ["body", "from_date"], "value_error.missing"),
    ({**HOUR, "granularity": "PT2H"}, ["body", "granularity"], "type_error.enum"),
    ({**HOUR, "granularity": 1}, ["body", "granularity"], "type_error"),
    ({**HOUR, "approximate_count_distinct": "true"}, ["body", "approximate_count_distinct"],
     "type_error"),
    ({**HOUR, "from_date": "2026-11-25T09:00:00+25:00"}, ["body", "from_date"], "value_error"),
    ({**HOUR, "channel_id": "a\x00b"}, ["body", "channel_id"], "value_error"),
    ({**HOUR, "data_layer": "raw"}, ["body", "data_layer"], "type_error.enum"),
])
def test_field_errors(body, loc, type_):
    (first, *_) = errors_of(body)
    assert (first["loc"], first["type"]) == (loc, type_)


@pytest.mark.parametrize(("extra", "field"), [
    ({"from_date": "2026-11-25T10:00:00Z"}, "to_date"),
    ({"granularity": "hour", "data_layer": "realtime"}, "granularity"),
    ({"from_date": "2026-11-23T09:00:00Z", "granularity": "minute", "data_layer": "realtime"},
     "to_date"),
    ({"from_date": "2026-10-01T09:00:00Z", "to_date": "2026-10-01T10:00:00Z",
      "data_layer": "realtime", "granularity": "minute"}, "from_date"),
    ({"data_layer": "historical-minute"}, "granularity"),
    ({"granularity": "thirty_minute", "data_layer": "historical-hour"}, "granularity"),
    ({"from_date": "2025-10-25T10:07:14Z", "granularity": "day"}, "from_date"),
    ({"from_date": "2026-10-01T00:00:00Z", "granularity": "day",
      "approximate_count_distinct": False}, "approximate_count_distinct"),
    ({"from_date": "2026-11-25T07:00:00Z"}, "granularity"),
])
def test_range_rules(extra, field):
    (error,) = errors_of({**HOUR, **extra})
    assert (error["loc"], error["type"]) == (["body", field], "value_error")


def test_range_rules_accept_the_limits():
    for extra in ({"from_date": "2026-11-23T10:00:00Z", "granularity": "thirty_minute",
                   "data_layer": "realtime"},
                  {"from_date": "2025-10-25T10:07:15Z", "granularity": "day"},
                  {"from_date": "2026-11-25T07:13:20Z"}):  # exactly 10,000 seconds
        v1_spec.check_range(parse({**HOUR, **extra}), NOW)


def test_plan_reads_raw_beacons_with_the_tenant_first():
    # exact distinct counts always come from raw beacons, whatever the granularity
    spec = parse({**HOUR, "granularity": "week", "channel_id": "ch",
                  "approximate_count_distinct": False})
    plan = planner.plan(spec, V1_METRICS["qoe/join_time"], NOW)
    assert plan.layer == "realtime"
    assert "FROM beacons WHERE customer_id = ANY(%(customers)s)" in plan.sql
    assert "date_trunc('week'" in plan.sql and "percentile_cont" in plan.sql
    assert plan.params["customers"] == ["acme"] and plan.params["f0"] == "ch"
    grouped = planner.plan(spec, V1_METRICS["traffic/asn/percentage"], NOW)
    assert "OVER (PARTITION BY bucket, customer_id)" in grouped.sql
    assert grouped.sql.endswith("WHERE grp IS NOT NULL")


def test_grafana_layers():
    recent = datetime(2026, 11, 25, 9, tzinfo=UTC)
    old = datetime(2026, 11, 1, tzinfo=UTC)
    assert layers.dashboard_layer(old, "second", NOW) == "realtime"
    assert layers.dashboard_layer(recent, "thirty_minute", NOW) == "realtime"
    assert layers.dashboard_layer(old, "thirty_minute", NOW) == "historical-minute"
    assert layers.dashboard_layer(recent, "hour", NOW) == "historical-hour"
    values = [o["value"] for o in layers.granularity_options(old, NOW, NOW)]
    assert values == ["T15M", "T30M", "T1H", "1D", "1W", "1M", "3M", "1Y"]


@pytest.mark.parametrize(("extra", "layer"), [
    ({"granularity": "minute"}, "realtime"),
    ({"granularity": "thirty_minute", "from_date": "2026-11-23T10:07:15Z"}, "realtime"),
    ({"granularity": "minute", "from_date": "2026-11-20T00:00:00Z"}, "historical-minute"),
    ({"granularity": "hour"}, "historical-hour"),
    ({"granularity": "month", "from_date": "2026-01-01T00:00:00Z"}, "historical-hour"),
    ({"granularity": "minute", "data_layer": "historical-hour"}, "historical-hour"),
    ({"granularity": "hour", "approximate_count_distinct": False}, "realtime"),
])
def test_the_cheapest_layer_that_can_answer(extra, layer):
    assert planner.choose_layer(parse({**HOUR, **extra}), NOW) == layer


def test_historical_plans_read_rolled_hours_and_the_raw_rest():
    spec = parse({**HOUR, "from_date": "2026-11-25T07:30:00Z", "granularity": "hour"})
    rolled = frozenset({datetime(2026, 11, 25, 8, tzinfo=UTC)})
    plan = planner.plan(spec, V1_METRICS["audience"], NOW, rolled)
    assert plan.layer == "historical-hour"
    assert "FROM beacons_hour" in plan.sql and "hll_union_cardinality(sessions)" in plan.sql
    # the raw part reads only the hours not rolled up, as ranges PostgreSQL can prune by
    assert (plan.params["raw_from_0"], plan.params["raw_to_0"]) == (
        datetime(2026, 11, 25, 7, tzinfo=UTC), datetime(2026, 11, 25, 8, tzinfo=UTC))
    assert plan.params["raw_from_1"] == datetime(2026, 11, 25, 9, tzinfo=UTC)
    # the rolled part reads its hours as ranges too
    assert (plan.params["rolled_from_0"], plan.params["rolled_to_0"]) == (
        datetime(2026, 11, 25, 8, tzinfo=UTC), datetime(2026, 11, 25, 9, tzinfo=UTC))
    assert plan.params["start"] == datetime(2026, 11, 25, 7, tzinfo=UTC)  # the hour's start
    nothing_rolled = planner.plan(spec, V1_METRICS["audience"], NOW)
    assert "FROM beacons_hour" not in nothing_rolled.sql


DAY = {"from_date": "2026-11-24T10:00:00.000Z", "to_date": "2026-11-25T10:00:00Z",
       "granularity": "fifteen_minute"}


@pytest.mark.parametrize(("body", "path", "layer"), [
    # unfiltered headline series over hours: the dimensionless totals answer
    (DAY, "audience", "historical-minute"),
    ({**DAY, "granularity": "hour"}, "traffic", "historical-hour"),
    ({**DAY, "source": "p2p"}, "viewing_time", "historical-minute"),  # totals keep source
    # a dimension the totals dropped, a short range, exact counts or a named layer: as before
    ({**DAY, "channel_id": "ch"}, "audience", "realtime"),
    (DAY, "audience/os", "realtime"),
    ({**DAY, "from_date": "2026-11-25T05:00:00Z"}, "audience", "realtime"),
    ({**DAY, "approximate_count_distinct": False}, "audience", "realtime"),
    ({**DAY, "data_layer": "realtime"}, "audience", "realtime"),
])
def test_totals_answer_unfiltered_series(body, path, layer):
    spec = parse(body)
    everything = _hours(spec)
    assert planner.choose_layer(spec, NOW, V1_METRICS[path], everything) == layer


def _hours(spec) -> frozenset[datetime]:
    """Every hour of the spec's range, as if all were rolled up."""
    hour, out = spec.start.replace(minute=0, second=0, microsecond=0), set()
    while hour < spec.end:
        out.add(hour)
        hour += timedelta(hours=1)
    return frozenset(out)


def test_totals_wait_until_the_range_is_mostly_rolled_up():
    spec = parse(DAY)
    metric = V1_METRICS["audience"]
    assert planner.choose_layer(spec, NOW, metric, frozenset()) == "realtime"
    assert planner.choose_layer(spec, NOW, metric) == "realtime"  # rolled hours unknown
    recent = sorted(_hours(spec))[-3:]  # the three latest hours not rolled up: still cheaper
    assert planner.choose_layer(spec, NOW, metric, _hours(spec) - set(recent)) == (
        "historical-minute")
    assert planner.choose_layer(spec, NOW, metric, _hours(spec) - set(sorted(_hours(spec))[-4:])
                                ) == "realtime"


def test_totals_plans_read_the_totals_tables_and_the_raw_rest():
    spec = parse({**DAY, "granularity": "hour"})
    rolled = frozenset({datetime(2026, 11, 25, 8, tzinfo=UTC)})
    plan = planner.plan(spec, V1_METRICS["traffic"], NOW, rolled)
    assert "FROM beacons_hour_totals" in plan.sql and "FROM beacons_hour " not in plan.sql
    # unrolled hours: one flat pass over raw beacons, hourly (no join time needed)
    assert "date_trunc('hour', \"time\") AS \"time\", source" in plan.sql
    grouped = planner.plan(spec, V1_METRICS["audience/os"], NOW, rolled)
    assert "FROM beacons_hour " in grouped.sql and "_totals" not in grouped.sql


def test_minute_rolled_hours_read_minute_rows_then_raw():
    """An hour the minute roller has rolled up to :35 (rollup_rows.Coverage.minutes): its
    minute rows to there, raw beacons after, whatever the layer; it counts as rolled."""
    spec = parse({**DAY, "granularity": "hour"})
    hours = _hours(spec)
    current, previous = sorted(hours)[-1], sorted(hours)[-2]
    minutes = frozenset({(current, current + timedelta(minutes=35))})
    rolled = hours - {current, previous}
    plan = planner.plan(spec, V1_METRICS["traffic"], NOW, rolled, minutes)
    assert plan.layer == "historical-hour"
    assert "FROM beacons_minute_totals" in plan.sql and "FROM beacons_hour_totals" in plan.sql
    assert (plan.params["minutes_from_0"], plan.params["minutes_to_0"]) == (
        current, current + timedelta(minutes=35))
    # the raw part: the previous hour, and the current one from :35
    assert (plan.params["raw_from_0"], plan.params["raw_to_0"]) == (previous, current)
    assert (plan.params["raw_from_1"], plan.params["raw_to_1"]) == (
        current + timedelta(minutes=35), current + timedelta(hours=1))
    grouped = planner.plan(spec, V1_METRICS["audience/os"], NOW, rolled, minutes)
    assert "FROM beacons_minute " in grouped.sql and "_totals" not in grouped.sql


def test_minute_rolled_hours_count_toward_mostly_rolled():
    spec = parse(DAY)
    hours = sorted(_hours(spec))
    rolled = frozenset(hours[:-4])  # four hours left: too many for the rollups
    assert not planner.mostly_rolled(spec.start, spec.end, rolled)
    minutes = frozenset((hour, hour + timedelta(minutes=50)) for hour in hours[-4:])
    assert planner.mostly_rolled(spec.start, spec.end, rolled, minutes)  # 40 raw minutes
    assert planner.choose_layer(spec, NOW, V1_METRICS["audience"], rolled, minutes) == (
        "historical-minute")


def test_minute_rows_stop_at_the_last_whole_minute_of_the_range():
    start = datetime(2026, 11, 25, 9, tzinfo=UTC)
    end = start + timedelta(minutes=20, seconds=30)
    minutes = frozenset({(start, start + timedelta(minutes=40))})
    assert planner.minute_ranges(start, end, frozenset(), minutes) == [
        (start, start + timedelta(minutes=20))]
    assert planner.unrolled_ranges(start, end, frozenset(), frozenset(
        planner.minute_ranges(start, end, frozenset(), minutes))) == [
        (start + timedelta(minutes=20), start + timedelta(hours=1))]


def test_a_short_range_reads_the_totals_once_the_minute_roller_holds_most_of_it():
    spec = parse({"from_date": "2026-11-25T09:00:00Z", "to_date": "2026-11-25T10:00:00Z",
                  "granularity": "minute"})
    hour = datetime(2026, 11, 25, 9, tzinfo=UTC)
    traffic = V1_METRICS["traffic"]
    assert planner.choose_layer(spec, NOW, traffic, frozenset()) == "realtime"
    rolled_to_40 = frozenset({(hour, hour + timedelta(minutes=40))})
    assert planner.choose_layer(spec, NOW, traffic, frozenset(), rolled_to_40) == (
        "historical-minute")
    rolled_to_20 = frozenset({(hour, hour + timedelta(minutes=20))})  # 40 raw minutes of 60
    assert planner.choose_layer(spec, NOW, traffic, frozenset(), rolled_to_20) == "realtime"
    filtered = parse({"from_date": "2026-11-25T09:00:00Z", "to_date": "2026-11-25T10:00:00Z",
                      "granularity": "minute", "channel_id": "ch"})
    assert planner.choose_layer(filtered, NOW, traffic, frozenset(), rolled_to_40) == "realtime"


@pytest.mark.parametrize(("body", "layer"), [
    # buckets coarser than a minute over a range the realtime layer scans: one value per
    # session and bucket, from raw beacons, however much is rolled up (issue #13)
    ({**DAY, "granularity": "hour"}, "realtime"),
    ({**DAY, "granularity": "day", "from_date": "2026-11-23T10:00:00Z"}, "realtime"),
    # longer than the realtime layer scans (48 h): the rollups, once per session and minute
    ({**DAY, "granularity": "day", "from_date": "2026-10-30T00:00:00Z"}, "historical-hour"),
    ({**DAY, "granularity": "fifteen_minute"}, "realtime"),
    # minute buckets: the minute sketches hold one value per session and minute (exact)
    ({**DAY, "granularity": "minute"}, "historical-minute"),
    # older than the raw retention, or a layer named: the rollups
    ({"from_date": "2026-09-01T00:00:00Z", "to_date": "2026-11-25T00:00:00Z",
      "granularity": "day"}, "historical-hour"),
    ({**DAY, "granularity": "hour", "data_layer": "historical-hour"}, "historical-hour"),
])
def test_join_time_coarser_than_a_minute_reads_raw_beacons(body, layer):
    spec = parse(body)
    assert planner.reads_session_maxima(V1_METRICS["qoe/join_time"])
    assert not planner.reads_session_maxima(V1_METRICS["audience"])
    assert planner.choose_layer(spec, NOW, V1_METRICS["qoe/join_time"], _hours(spec)) == layer
