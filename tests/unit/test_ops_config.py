"""The alert rules and the dashboard are well formed: every rule has its parts, every
expression parses as PromQL (the Python equivalent of `promtool check rules`)."""

from __future__ import annotations

import pytest

from tests.ops_config import (
    SCRAPE_SERIES,
    alert_rules,
    dashboard_expressions,
    metric_names,
    parse,
    scrape_jobs,
)


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_an_alert_rule_is_complete_and_parses(rule):
    assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}
    assert rule["labels"]["severity"] in ("page", "ticket")
    assert {"summary", "description"} <= set(rule["annotations"])
    assert rule["for"][-1] in "smh" and int(rule["for"][:-1]) > 0
    parse(rule["expr"])
    assert all(name.startswith(("edgestats_", "envoy_")) or name in SCRAPE_SERIES
               for name in metric_names(rule["expr"]))


def test_the_alerts_cover_the_three_kinds():
    names = {rule["alert"] for rule in alert_rules()}
    assert {"EdgestatsMinutesBehind", "EdgestatsErrorRate",
            "EdgestatsIngestRejectedRatio"} <= names


def test_every_scrape_job_has_a_down_alert():
    downs = {rule["expr"] for rule in alert_rules() if metric_names(rule["expr"]) == {"up"}}
    assert downs == {f'up{{job="{job}"}} == 0' for job in scrape_jobs()}
    assert scrape_jobs() == {"edgestats", "envoy"}


def test_rollup_alerts_read_the_timestamps_against_prometheus_time():
    """A lag computed by the service freezes or vanishes when it stops; its newest rolled
    time, compared with Prometheus's clock, keeps growing older."""
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert "edgestats_rollup_lag_seconds" not in names, rule["alert"]
        if "edgestats_rollup_newest_seconds" in names:
            assert rule["expr"].startswith("time() - "), rule["alert"]


def test_envoy_errors_are_alerted_per_cluster():
    (rule,) = [r for r in alert_rules() if "envoy_cluster_upstream_rq_xx" in metric_names(
        r["expr"])]
    assert 'envoy_response_code_class="5"' in rule["expr"]
    assert rule["expr"].count("by (envoy_cluster_name)") == 2


@pytest.mark.parametrize("expr", dashboard_expressions())
def test_a_dashboard_expression_parses(expr):
    assert metric_names(expr)


def test_a_syntax_error_is_caught():
    with pytest.raises(Exception):  # noqa: B017 - the binding raises its own error type
        parse("sum(rate(edgestats_rpc_requests_total[5m])")
