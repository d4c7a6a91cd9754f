"""Translation overhead of the SQL endpoint: parse + validate + rewrite per query (no I/O).

    PYTHONPATH=services:gen .venv/bin/python -m bench.sql_translation [--runs 500]

Issue #5 asks for under 5 ms per query; prints the median and p99 of seven
representative dashboard queries (two on the rollups; binding their relation to the
rolled hours at run time is timed by bench.sql_latency).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from edgestats_core.tenancy.principals import Principal
from sql_query_service.druid_sql import functions, pipeline

DS = '"sdk-emea-realtime"'
WHERE = "CustomerId = 'c1' AND __time >= '2026-01-01' AND __time < '2026-01-02'"
QUERIES = {
    "kpi": f"SELECT COUNT(DISTINCT SessionId) AS devices, SUM(TotalDownlinkThroughput) AS t"
           f" FROM {DS} WHERE {WHERE}",
    "time series": f"SELECT TIME_FLOOR(__time, 'PT1M') AS \"timestamp\", AVG(BufferHealth) AS bh,"
                   f" COUNT(DISTINCT SessionId) AS a FROM {DS} WHERE {WHERE} GROUP BY 1 ORDER BY 1",
    "window share": f"SELECT ChannelId, SUM(TotalDownlinkThroughput) AS traffic, 100.0 *"
                    f" SUM(TotalDownlinkThroughput) / SUM(SUM(TotalDownlinkThroughput)) OVER ()"
                    f" AS share FROM {DS} WHERE {WHERE} GROUP BY 1 ORDER BY 2 DESC LIMIT 10",
    "cte quantile": f"WITH s AS (SELECT SessionId, MAX(StartingTime) AS st FROM {DS} WHERE {WHERE}"
                    f" AND PlayerState = 'playing' GROUP BY 1)"
                    f" SELECT APPROX_QUANTILE_DS(st, 0.5) AS median FROM s",
    "select star": "SELECT * FROM \"sdk-emea-historical-hour\" WHERE CustomerId = 'c1' LIMIT 50",
    "rollup series": "SELECT TIME_FLOOR(__time, 'PT1H') AS t, COUNT(DISTINCT SessionId) AS a,"
                     " SUM(TotalDownlinkThroughput) / 3600 AS kbps FROM"
                     " \"sdk-emea-historical-hour\" WHERE CustomerId = 'c1'"
                     " AND __time >= CURRENT_TIMESTAMP - INTERVAL '30' DAY GROUP BY 1 ORDER BY 1",
    "rollup top 10": "SELECT ChannelId, SUM(ViewingTime) AS vt, COUNT(*) FILTER (WHERE Source ="
                     " 'p2p') AS p2p FROM \"sdk-emea-historical-hour\" WHERE CustomerId = 'c1'"
                     " AND __time >= CURRENT_TIMESTAMP - INTERVAL '7' DAY"
                     " GROUP BY 1 ORDER BY 2 DESC LIMIT 10",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    principal = Principal("k", "customer", "advanced", "c1", "emea")
    options = functions.Options(datetime.now(UTC))
    for name, query in QUERIES.items():
        for _ in range(20):
            pipeline.translate(query, principal, options)
        samples = []
        for _ in range(args.runs):
            started = time.perf_counter()
            pipeline.translate(query, principal, options)
            samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        p99 = samples[int(len(samples) * 0.99) - 1]
        print(f"{name:14s} median {statistics.median(samples):5.2f} ms   p99 {p99:5.2f} ms")


if __name__ == "__main__":
    main()
