"""Airflow's metrics into the same Prometheus scrape as the services'.

Airflow 3 reports its metrics through a StatsD client and lets a deployment name its own
(`[metrics] statsd_custom_client_path`). This one sends nothing over UDP: it records each
stat with prometheus_client, in the host's multiprocess directory when
PROMETHEUS_MULTIPROC_DIR is set (`make airflow` sets the stack's), so the metrics exporter
serves them with the services' metrics. With `statsd_influxdb_enabled`, Airflow appends
its tags to the stat (`ti.finish,dag_id=beacon_rollups,task_id=…,state=success`); they
become labels:

    ti.finish,dag_id=d,task_id=t,state=success   → airflow_ti_finish_total{dag_id, task_id, state}
    dagrun.duration.success,dag_id=d             → airflow_dagrun_duration_success_seconds{dag_id}
    dag_processing.import_errors (a gauge)       → airflow_dag_processing_import_errors

A metric keeps the label names it was first seen with (a later call's missing label is
empty, an extra one dropped); negative increments (StatsD's decrement) are dropped, as
Prometheus counters only grow.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta

from prometheus_client import Counter, Gauge, Histogram
from statsd import StatsClient

PREFIX = "airflow_"
# Airflow's timings: scheduler loops in milliseconds to DAG runs of minutes
SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def parse(stat: str) -> tuple[str, dict[str, str]]:
    """A StatsD stat with InfluxDB-style tags → (Prometheus-safe name, labels)."""
    name, *tags = stat.split(",")
    labels = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if sep and key:
            labels[_UNSAFE.sub("_", key)] = value
    return PREFIX + _UNSAFE.sub("_", name).strip("_"), labels


class PrometheusStatsClient(StatsClient):
    """A StatsD client for Airflow that records into prometheus_client (see the module)."""

    _lock = threading.Lock()
    _metrics: dict[str, tuple[object, tuple[str, ...]]] = {}
    _values: dict[tuple, float] = {}  # this process's gauges, for StatsD's deltas

    def __init__(self, host: str = "localhost", port: int = 8125, prefix: str | None = None,
                 maxudpsize: int = 512, ipv6: bool = False) -> None:
        self._prefix = prefix  # no socket: nothing is sent

    def close(self) -> None:
        pass

    def _send(self, data: str) -> None:  # pragma: no cover - never called: nothing is sent
        pass

    def _metric(self, kind: type, name: str, labels: dict[str, str]):
        with self._lock:
            known = self._metrics.get(name)
            if known is None:
                names = tuple(sorted(labels))
                options: dict = {}
                if kind is Histogram:
                    options["buckets"] = SECONDS_BUCKETS
                if kind is Gauge:
                    options["multiprocess_mode"] = "mostrecent"
                metric = kind(name, f"Airflow's {name[len(PREFIX):]}", names, **options)
                known = self._metrics[name] = (metric, names)
        metric, names = known
        return metric.labels(*(labels.get(n, "") for n in names)) if names else metric

    def incr(self, stat: str, count: float = 1, rate: float = 1) -> None:
        if count < 0:
            return
        name, labels = parse(stat)
        self._metric(Counter, name, labels).inc(count)

    def decr(self, stat: str, count: float = 1, rate: float = 1) -> None:
        """Dropped: a Prometheus counter only grows."""

    def gauge(self, stat: str, value: float, rate: float = 1, delta: bool = False) -> None:
        """The latest value (a `delta` moves this process's last one: the gauges keep the
        most recent value across processes, which cannot be incremented in place)."""
        name, labels = parse(stat)
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            current = (self._values.get(key, 0.0) + value) if delta else value
            self._values[key] = current
        self._metric(Gauge, name, labels).set(current)

    def timing(self, stat: str, delta: float | timedelta, rate: float = 1) -> None:
        """`delta` in milliseconds (or a timedelta), observed in seconds."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else delta / 1000
        name, labels = parse(stat)
        self._metric(Histogram, f"{name}_seconds", labels).observe(seconds)

    def set(self, stat: str, value, rate: float = 1) -> None:
        """StatsD sets (unique counts) have no Prometheus equivalent: dropped."""
