"""The JSON rows of the v1 metrics from aggregated database rows (pure; CONTRACT §6)."""

from __future__ import annotations

from datetime import UTC, datetime

from edgestats_core.metrics.v1_definitions import V1Metric
from edgestats_core.query import buckets
from edgestats_core.query.v1_spec import V1Spec
from metrics_service.legacy_queries import number


def _values(metric: V1Metric, row: dict | None, seconds: float) -> dict:
    values = metric.finish(row, seconds)
    return {k: int(values[k]) if k in metric.counts else number(values[k]) for k in metric.keys}


def _utc(bucket: datetime) -> datetime:
    return bucket.replace(tzinfo=UTC) if bucket.tzinfo is None else bucket.astimezone(UTC)


def render(spec: V1Spec, metric: V1Metric, rows: list[dict]) -> list[dict]:
    """Ungrouped: a row per (customer, bucket), zero-filled. Grouped: rows with data.

    Sorted by customer (reseller paths), then time, then group (byte-wise).
    """
    customers = sorted(spec.customer_ids) if spec.reseller else list(spec.customer_ids)
    prefix = (lambda c: {"customer_id": c}) if spec.reseller else (lambda c: {})
    out: list[dict] = []
    if metric.group is None:
        found = {(r["customer_id"], _utc(r["bucket"])): r for r in rows}
        starts = buckets.bucket_starts(spec.start, spec.end, spec.granularity)
        for customer in customers:
            for start in starts:
                seconds = buckets.bucket_seconds(start, spec.granularity)
                out.append({**prefix(customer), "timestamp": buckets.format_timestamp(start),
                            **_values(metric, found.get((customer, start)), seconds)})
        return out
    key = metric.group[0]
    ordered = sorted(rows, key=lambda r: (r["customer_id"].encode(), _utc(r["bucket"]),
                                          r["grp"].encode()))
    for r in ordered:
        start = _utc(r["bucket"])
        seconds = buckets.bucket_seconds(start, spec.granularity)
        out.append({**prefix(r["customer_id"]), "timestamp": buckets.format_timestamp(start),
                    key: r["grp"], **_values(metric, r, seconds)})
    return out
