"""When the metrics service stops, its rollup lag vanishes from the scrape (a live gauge)
but the newest rolled time stays, frozen, for the alerts' `time() - …` to keep growing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess

REPORT_AND_STOP = """
import os
from prometheus_client import multiprocess
from edgestats_core.prometheus_metrics import ROLLUP_LAG, ROLLUP_NEWEST
ROLLUP_NEWEST.labels("emea", "h:1/db", "minute").set(1_800_000_000)
ROLLUP_LAG.labels("emea", "h:1/db", "minute").set(12)
multiprocess.mark_process_dead(os.getpid())  # what a service does as it stops
"""


def test_the_newest_rolled_time_outlives_the_process(tmp_path: Path):
    services = Path(__file__).resolve().parents[2] / "services"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
           "PYTHONPATH": str(services)}
    subprocess.run([sys.executable, "-c", REPORT_AND_STOP], env=env, check=True)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
    samples = {s.name: s.value for family in registry.collect() for s in family.samples
               if s.name.startswith("edgestats_rollup_")}
    assert samples == {"edgestats_rollup_newest_seconds": 1_800_000_000}
