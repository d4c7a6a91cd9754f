"""Hour rows kept in step by the minute roller (issue #14): publishing an hour it completed
writes no hour row, yet every hour group equals the beacons it holds (computed here) and a
from-raw recomputation of the hour, also after late beacons re-rolled merged minutes; the
partial hour rows of an unpublished hour are never read; merged digests stay within 2 %."""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from edgestats_core.beacon_columns import DIMENSIONS
from edgestats_core.metrics.rollup_rows import DIMS
from metrics_service import hour_rows, rollups
from tests.db.test_minute_rollups import coverage_of, fresh_hour, roll
from tests.db.test_rollups import (
    assert_hour_join_time_within_two_percent,
    join_time_beacons,
    make_beacons,
    store,
)

pytestmark = pytest.mark.db
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
QUANTILES = [0.1, 0.5, 0.9]


def groups(url: str, customer_id: str, hour: datetime) -> dict[tuple, tuple]:
    """Every hour row of the customer's hour by its dimension values: beacons, a sum, a
    count, a minimum, a maximum, distinct sessions, join-time and downlink quantiles."""
    sql = f"""SELECT {DIMS}, beacons, sum_cdn_downlink_throughput, count_buffer_health,
                     min_buffer_health, max_dropped_frames, hll_cardinality(sessions),
                     hll_cardinality(viewport_sessions),
                     (SELECT tdigest_percentile(d, %(q)s::float8[]) FROM (SELECT join_time) s(d)),
                     (SELECT tdigest_percentile(d, %(q)s::float8[])
                      FROM (SELECT downlink_speed) s(d))
              FROM beacons_hour WHERE customer_id = %(c)s AND "time" = %(h)s"""
    width = len(DIMENSIONS)
    with psycopg.connect(url) as conn:
        rows = conn.execute(sql, {"q": QUANTILES, "c": customer_id, "h": hour}).fetchall()
    out = {row[:width]: row[width:] for row in rows}
    assert len(out) == len(rows), "one hour row per hour group"
    return out


def expected_groups(beacons: list[dict]) -> dict[tuple, tuple]:
    """beacons, sum of CDN throughput and distinct sessions per hour group, from the beacons."""
    by_group = defaultdict(list)
    for b in beacons:
        by_group[tuple(b.get(c.druid) for c in DIMENSIONS)].append(b)
    return {key: (len(group), sum(b["CdnDownlinkThroughput"] for b in group),
                  len({b["SessionId"] for b in group})) for key, group in by_group.items()}


def assert_groups_hold(actual: dict[tuple, tuple], beacons: list[dict]) -> None:
    expected = expected_groups(beacons)
    assert set(actual) == set(expected)
    for key, (count, cdn, sessions) in expected.items():
        got = actual[key]
        assert got[0] == count and math.isclose(got[1], cdn, rel_tol=1e-9), key
        assert got[5] == sessions, key  # explicit HLL: exact for a few sessions


def assert_same_groups(actual: dict[tuple, tuple], expected: dict[tuple, tuple]) -> None:
    """Sums within float rounding, the rest equal; quantiles within 2 % (t-digest merges in
    another order)."""
    assert set(actual) == set(expected)
    for key, want in expected.items():
        got = actual[key]
        assert got[0] == want[0] and got[2:7] == want[2:7], key
        assert math.isclose(got[1], want[1], rel_tol=1e-9), key
        for g, w in zip(got[7:], want[7:], strict=True):
            assert (g is None) == (w is None), key
            for gq, wq in zip(g or [], w or [], strict=True):
                assert math.isclose(gq, wq, rel_tol=0.02), (key, g, w)


def roll_minute_by_minute(url: str, hour: datetime, first: int, last: int) -> None:
    for minute in range(first, last + 1):
        roll(url, hour + minute * MINUTE)


def merged_to(url: str, hour: datetime) -> datetime | None:
    with psycopg.connect(url) as conn:
        return hour_rows.hour_rows_to(conn, hour)


def test_an_hour_rolled_minute_by_minute_is_published_without_a_merge(db_url):
    hour = fresh_hour(17)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = make_beacons(customer_id, hour, 1, sessions=12, seed=41)
    store(db_url, customer_id, beacons, datetime.now(UTC))
    roll_minute_by_minute(db_url, hour, 1, 30)
    assert merged_to(db_url, hour) == hour + 30 * MINUTE
    # partial hour rows exist, but readers take the unpublished hour from its minute rows
    assert groups(db_url, customer_id, hour)
    assert coverage_of(db_url, hour).hours == frozenset()
    roll_minute_by_minute(db_url, hour, 31, 60)
    with psycopg.connect(db_url, autocommit=True) as conn:
        published = rollups.roll_up_hour(conn, hour, verify=True)
        assert published.from_minutes is None
        assert (published.minute_rows, published.hour_rows) == (0, 0)
        incremental = groups(db_url, customer_id, hour)
        assert_groups_hold(incremental, beacons)
        assert rollups.roll_up_hour(conn, hour, from_raw=True).hour_rows == len(incremental)
    assert_same_groups(incremental, groups(db_url, customer_id, hour))


def test_late_beacons_of_merged_minutes_re_merge_their_hour_groups(db_url):
    hour = fresh_hour(18)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = make_beacons(customer_id, hour, 1, sessions=12, seed=42)
    store(db_url, customer_id, beacons, datetime.now(UTC))
    roll_minute_by_minute(db_url, hour, 1, 40)
    # late: a new session in minutes 10-14, and beacons of existing sessions a second after
    # theirs in minutes 20-24 (their hour groups change, and others appear)
    fresh = [dict(b, SessionId=b["SessionId"] + "-late")
             for b in make_beacons(customer_id, hour, 1, sessions=6, seed=43)
             if hour + 10 * MINUTE <= b["__time"] < hour + 15 * MINUTE]
    echoes = [dict(b, __time=b["__time"] + timedelta(seconds=1), StartingTime=9999.0)
              for b in beacons if hour + 20 * MINUTE <= b["__time"] < hour + 25 * MINUTE]
    assert fresh and echoes
    store(db_url, customer_id, fresh + echoes, datetime.now(UTC))
    roll(db_url, hour + 45 * MINUTE)  # re-rolls minutes 10-45
    assert merged_to(db_url, hour) == hour + 45 * MINUTE
    roll_minute_by_minute(db_url, hour, 46, 60)
    everything = beacons + fresh + echoes
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert rollups.roll_up_hour(conn, hour).hour_rows == 0
        kept = groups(db_url, customer_id, hour)
        assert_groups_hold(kept, everything)
        rollups.roll_up_hour(conn, hour, from_raw=True)
    assert_same_groups(kept, groups(db_url, customer_id, hour))
    # a late beacon of the published hour: the re-roll re-merges its groups only
    late = [dict(b, SessionId="after-publish") for b in beacons[:3]]
    store(db_url, customer_id, late, datetime.now(UTC))
    with psycopg.connect(db_url, autocommit=True) as conn:
        redone = rollups.roll_up_hour(conn, hour)
        assert redone.from_minutes == min(b["__time"] for b in late).replace(second=0)
        assert 0 < redone.hour_rows < len(kept)
        kept = groups(db_url, customer_id, hour)
        assert_groups_hold(kept, everything + late)
        rollups.roll_up_hour(conn, hour, from_raw=True)
    assert_same_groups(kept, groups(db_url, customer_id, hour))


def test_an_unknown_merge_state_rebuilds_every_hour_row(db_url):
    hour = fresh_hour(19)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = make_beacons(customer_id, hour, 1, sessions=6, seed=44)
    store(db_url, customer_id, beacons, datetime.now(UTC))
    roll_minute_by_minute(db_url, hour, 1, 60)
    with psycopg.connect(db_url, autocommit=True) as conn:  # rolled before migration 009
        conn.execute("UPDATE rollup_progress SET hour_rows_to = NULL WHERE hour = %s", (hour,))
        conn.execute("DELETE FROM beacons_hour WHERE customer_id = %s", (customer_id,))
        assert rollups.roll_up_hour(conn, hour).hour_rows > 0
    assert_groups_hold(groups(db_url, customer_id, hour), beacons)
    assert merged_to(db_url, hour) == hour + HOUR


def test_join_time_of_an_hour_merged_minute_by_minute_within_two_percent(db_url):
    """20,000 sessions: 60 successive merges keep the hour's t-digest within 2 % rank."""
    hour = fresh_hour(20)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = join_time_beacons(customer_id, hour, seed=45)
    store(db_url, customer_id, beacons, datetime.now(UTC))
    roll_minute_by_minute(db_url, hour, 1, 60)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert rollups.roll_up_hour(conn, hour).hour_rows == 0
        assert_hour_join_time_within_two_percent(conn, customer_id, beacons)


def minute_rows(url: str, customer_id: str, hour: datetime) -> list[tuple]:
    """The customer's minute rows and minute totals of the hour, sketches as text, sorted."""
    sketches = ("sum_cdn_downlink_throughput, sessions::text, viewport_sessions::text,"
                " optimal_sessions::text, join_time::text, downlink_speed::text")
    out = []
    with psycopg.connect(url) as conn:
        for table, columns in (("beacons_minute", f'"time", {DIMS}'),
                               ("beacons_minute_totals", '"time", source')):
            rows = conn.execute(
                f"SELECT {columns}, beacons, {sketches} FROM {table}"
                ' WHERE customer_id = %s AND "time" >= %s AND "time" < %s',
                (customer_id, hour, hour + HOUR)).fetchall()
            out += [(table, *(str(value) for value in row)) for row in rows]
    return sorted(out)


def test_a_backfill_on_helper_connections_writes_what_one_connection_writes(db_url):
    """Three helpers aggregate the minutes at once (staged, copied in the roll's transaction):
    the same minute rows and minute totals as the same hour read on one connection, the same
    hour rows (their digests merged in another order: within 2 %),
    the hour rows equal to the beacons, and no staged row left behind."""
    hour = fresh_hour(27)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = make_beacons(customer_id, hour, 1, sessions=30, seed=43)
    store(db_url, customer_id, beacons, datetime.now(UTC))
    with psycopg.connect(db_url, autocommit=True) as conn:
        alone = rollups.roll_up_hour(conn, hour, from_raw=True)
    serial_minutes, serial_hours = minute_rows(db_url, customer_id, hour), groups(
        db_url, customer_id, hour)
    with psycopg.connect(db_url, autocommit=True) as conn:
        helped = rollups.roll_up_hour(conn, hour, from_raw=True,
                                      helpers=hour_rows.Helpers(db_url, 3))
        staged = conn.execute("SELECT (SELECT count(*) FROM beacons_minute_staged)"
                              " + (SELECT count(*) FROM beacons_minute_totals_staged)"
                              ).fetchone()[0]
    assert (helped.minute_rows, helped.hour_rows) == (alone.minute_rows, alone.hour_rows)
    assert helped.minute_rows > 60 and helped.raw_beacons == len(beacons)
    assert minute_rows(db_url, customer_id, hour) == serial_minutes
    # the same minute rows merged in another order: digests within 2 %
    assert_same_groups(groups(db_url, customer_id, hour), serial_hours)
    assert_groups_hold(serial_hours, beacons)
    assert staged == 0


def test_a_failing_helper_fails_the_roll_and_keeps_the_rows_before_it(db_url):
    """Helpers that cannot connect: the roll raises, the hour's rows stay as they were, the
    hour is marked pending again (the roller retries it) and nothing stays staged."""
    hour = fresh_hour(28)
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    beacons = make_beacons(customer_id, hour, 1, sessions=10, seed=44)
    store(db_url, customer_id, beacons, datetime.now(UTC))
    with psycopg.connect(db_url, autocommit=True) as conn:
        rollups.roll_up_hour(conn, hour, from_raw=True)
    before = minute_rows(db_url, customer_id, hour), groups(db_url, customer_id, hour)
    broken = hour_rows.Helpers(make_conninfo(db_url, dbname="edgestats_no_such_db"), 2)
    with psycopg.connect(db_url, autocommit=True) as conn:
        with pytest.raises(psycopg.OperationalError):
            rollups.roll_up_hour(conn, hour, from_raw=True, helpers=broken)
        pending = conn.execute("SELECT count(*) FROM rollup_pending WHERE hour = %s",
                               (hour,)).fetchone()[0]
        staged = conn.execute("SELECT count(*) FROM beacons_minute_staged").fetchone()[0]
    assert (minute_rows(db_url, customer_id, hour), groups(db_url, customer_id, hour)) == before
    assert pending == 1 and staged == 0
