"""The replica freshness rule (edgestats_core.replicas): lag from primary WAL samples."""

from __future__ import annotations

import math
import time
from collections import deque

from edgestats_core import replicas
from edgestats_core.replicas import ReplicaMonitor, lsn_value, replay_lag


def test_lsn_values_order_like_postgresql():
    assert lsn_value("0/0") == 0
    assert lsn_value("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert lsn_value("1/0") > lsn_value("0/FFFFFFFF")


def test_lag_is_the_age_of_the_newest_sample_replayed():
    samples = deque([(10.0, 100), (10.2, 150), (10.4, 150), (10.6, 300)])
    assert replay_lag(samples, 300, 11.0) == 0.0          # everything seen is replayed
    assert replay_lag(samples, 400, 11.0) == 0.0
    assert math.isclose(replay_lag(samples, 150, 11.0), 0.6)  # 300 (reached at 10.6) missing
    assert math.isclose(replay_lag(samples, 120, 11.0), 1.0)
    assert replay_lag(samples, 50, 11.0) == math.inf       # nothing seen is replayed
    assert replay_lag(deque(), 50, 11.0) == 0.0


def test_pick_reads_only_fresh_recently_checked_standbys():
    a, b = object(), object()
    monitor = ReplicaMonitor(object(), [a, b])  # type: ignore[arg-type, list-item]
    assert monitor.pick() is None                          # never probed: the primary
    now = time.monotonic()
    monitor.lag, monitor.checked = [0.2, 0.0], [now, now]
    assert {monitor.pick() for _ in range(4)} == {a, b}    # in turn
    monitor.lag = [replicas.MAX_LAG_SECONDS + 0.1, 0.0]
    assert {monitor.pick() for _ in range(4)} == {b}
    monitor.checked = [now, now - replicas.STALE_SECONDS - 1]  # b's last probe is too old
    assert monitor.pick() is None
