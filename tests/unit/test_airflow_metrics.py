"""Airflow's StatsD calls become Prometheus metrics with its tags as labels."""

from __future__ import annotations

import uuid
from datetime import timedelta

from prometheus_client import REGISTRY

from edgestats_stack.airflow_metrics import PrometheusStatsClient, parse


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_tags_become_labels_and_names_are_safe():
    assert parse("ti.finish,dag_id=d,task_id=t.x,state=success") == (
        "airflow_ti_finish", {"dag_id": "d", "task_id": "t.x", "state": "success"})
    assert parse("operator_successes_PythonOperator") == (
        "airflow_operator_successes_PythonOperator", {})
    assert parse("pool.open-slots.default_pool,team-name=a")[1] == {"team_name": "a"}


def test_counters_gauges_and_timings():
    stat = f"t{uuid.uuid4().hex[:8]}"
    client = PrometheusStatsClient(prefix="airflow")
    client.incr(f"{stat}.runs,dag_id=d", 2)
    client.incr(f"{stat}.runs,dag_id=d")
    client.decr(f"{stat}.runs,dag_id=d")  # dropped: counters only grow
    client.incr(f"{stat}.runs,dag_id=d,extra=x")  # the first label names stay
    assert value(f"airflow_{stat}_runs_total", dag_id="d") == 4
    client.gauge(f"{stat}.slots", 5)
    client.gauge(f"{stat}.slots", -2, delta=True)
    assert value(f"airflow_{stat}_slots") == 3
    client.timing(f"{stat}.took,dag_id=d", 1500)  # milliseconds
    client.timing(f"{stat}.took,dag_id=d", timedelta(seconds=2))
    assert value(f"airflow_{stat}_took_seconds_sum", dag_id="d") == 3.5
    assert value(f"airflow_{stat}_took_seconds_count", dag_id="d") == 2
    with client.timer(f"{stat}.block"):
        pass
    assert value(f"airflow_{stat}_block_seconds_count") == 1
