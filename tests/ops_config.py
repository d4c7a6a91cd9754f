"""The operations files (ops/): alert rules and the Grafana dashboard, their PromQL
expressions and the metric names those read."""

from __future__ import annotations

import json
from pathlib import Path

import promql_parser
import yaml

OPS = Path(__file__).resolve().parents[1] / "ops"
ALERTS = OPS / "prometheus" / "alerts.yml"
PROMETHEUS = OPS / "prometheus" / "prometheus.yml"
DASHBOARD = OPS / "grafana" / "edgestats-operations.json"
# Series Prometheus writes itself for each target (no exporter has them)
SCRAPE_SERIES = frozenset({"up"})
# Grafana's interval variable, a range to Prometheus
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m"}


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"]
            for rule in group["rules"]]


def scrape_jobs() -> set[str]:
    """The job names the example prometheus.yml scrapes."""
    return {job["job_name"] for job in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]}


def dashboard_expressions() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def parse(expr: str):
    """The PromQL syntax tree of `expr` (Grafana's variables replaced); raises on an error."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return promql_parser.parse(expr)


def metric_names(expr: str) -> set[str]:
    """Every metric an expression reads."""
    found: set[str] = set()

    def walk(node) -> None:
        if type(node).__name__ == "VectorSelector":
            found.add(node.name)
            return
        for attr in ("lhs", "rhs", "expr", "args", "param", "vector_selector"):
            child = getattr(node, attr, None)
            for each in child if isinstance(child, list) else [child]:
                if each is not None:
                    walk(each)

    walk(parse(expr))
    return found


def every_metric_name() -> set[str]:
    """The metrics the alert rules and the dashboard read (SCRAPE_SERIES among them)."""
    exprs = [rule["expr"] for rule in alert_rules()] + dashboard_expressions()
    return set().union(*(metric_names(e) for e in exprs))
