"""The alert rules and the dashboard are well formed: every rule has its parts, every
expression parses as PromQL (the Python equivalent of `promtool check rules`)."""

from __future__ import annotations

import pytest

from tests.ops_config import alert_rules, dashboard_expressions, metric_names, parse


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_an_alert_rule_is_complete_and_parses(rule):
    assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}
    assert rule["labels"]["severity"] in ("page", "ticket")
    assert {"summary", "description"} <= set(rule["annotations"])
    assert rule["for"][-1] in "smh" and int(rule["for"][:-1]) > 0
    parse(rule["expr"])
    assert all(name.startswith("edgestats_") for name in metric_names(rule["expr"]))


def test_the_alerts_cover_the_three_kinds():
    names = {rule["alert"] for rule in alert_rules()}
    assert {"EdgestatsMinutesBehind", "EdgestatsErrorRate",
            "EdgestatsIngestRejectedRatio"} <= names


@pytest.mark.parametrize("expr", dashboard_expressions())
def test_a_dashboard_expression_parses(expr):
    assert metric_names(expr)


def test_a_syntax_error_is_caught():
    with pytest.raises(Exception):  # noqa: B017 - the binding raises its own error type
        parse("sum(rate(edgestats_rpc_requests_total[5m])")
