"""Historical scans on the rollups (druid_sql/rollups.py): which queries fit rollup rows, how
their aggregates are rewritten, the __time range read, the raw fallback and its limit, and
the relation rendered once the rolled hours are known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edgestats_core.metrics.rollup_rows import Coverage
from edgestats_core.tenancy.principals import Principal
from sql_query_service.druid_sql import functions, parsing, pipeline
from sql_query_service.druid_sql.problems import SqlError

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
OPTIONS = functions.Options(NOW)
HOUR_DS = '"sdk-emea-historical-hour"'
RECENT = "CustomerId = 'c1' AND __time >= '2026-01-01T00:00:00Z' AND __time < '2026-01-02'"


def principal(tier: str = "advanced") -> Principal:
    return Principal("k1", "customer", tier, "c1", "emea")


def translate(query: str, options: functions.Options = OPTIONS, tier: str = "advanced"):
    return pipeline.translate(query, principal(tier), options)


FITS = [
    "SELECT COUNT(*), SUM(ViewingTime), MIN(BufferHealth), MAX(StartingTime), AVG(DroppedFrames)"
    " FROM {ds} WHERE {w}",
    "SELECT TIME_FLOOR(__time, 'PT1H'), COUNT(DISTINCT SessionId) FROM {ds} WHERE {w} GROUP BY 1",
    "SELECT ChannelId, APPROX_COUNT_DISTINCT(SessionId) FROM {ds} WHERE {w} GROUP BY 1",
    "SELECT SUM(CASE WHEN Source = 'p2p' THEN 1 ELSE 0 END), COUNT(NULLIF(Source, 'cdn'))"
    " FROM {ds} WHERE {w}",
    "SELECT COUNT(*) FILTER (WHERE Source = 'cdn'), COUNT(DISTINCT ChannelId) FROM {ds} WHERE {w}",
    "SELECT COUNT(DISTINCT CASE WHEN Source = 'p2p' THEN SessionId END) FROM {ds} WHERE {w}",
    "SELECT APPROX_QUANTILE_DS(DownlinkSpeed, 0.5) FROM {ds} WHERE {w}",
    "SELECT ChannelId, SUM(ViewingTime), SUM(SUM(ViewingTime)) OVER () FROM {ds} WHERE {w}"
    " GROUP BY 1",
    "SELECT ChannelId FROM {ds} WHERE {w} GROUP BY 1 HAVING SUM(ViewingTime) > 10",
]
RAW = [  # (query, why)
    ("SELECT LATEST(BufferHealth) FROM {ds} WHERE {w}", "LATEST"),
    ("SELECT COUNT(*) FROM {ds} WHERE {w} AND ViewingTime > 1", "ViewingTime"),
    ("SELECT SUM(NVL(StartingTime, 0)) FROM {ds} WHERE {w}", "measures"),
    ("SELECT ChannelId, ViewingTime FROM {ds} WHERE {w}", "not aggregated"),
    ("SELECT SUM(ViewingTime) OVER () FROM {ds} WHERE {w}", "not aggregated"),
    ("SELECT APPROX_QUANTILE_DS(BufferHealth, 0.5) FROM {ds} WHERE {w}", "sketch"),
    ("SELECT SUM(ViewingTime) FILTER (WHERE BufferHealth > 0) FROM {ds} WHERE {w}", "FILTER"),
]


@pytest.mark.parametrize("query", FITS)
def test_fits_the_rollups(query: str) -> None:
    translation = translate(query.format(ds=HOUR_DS, w=RECENT))
    assert len(translation.rollups) == 1
    sql = translation.render()
    assert "beacons_hour" not in sql  # nothing rolled up: the on-the-fly minute rows
    assert "FROM beacons" in sql and '"__beacons"' in sql
    rolled = translation.render(Coverage(frozenset({datetime(2026, 1, 1, 5, tzinfo=UTC)})))
    assert "beacons_hour" in rolled and "2026-01-01T05:00:00+00:00" in rolled


@pytest.mark.parametrize("count", [
    "COUNT(DISTINCT (SessionId))", "COUNT(DISTINCT CAST((SessionId) AS VARCHAR))",
    "APPROX_COUNT_DISTINCT((SessionId))",
    "COUNT(DISTINCT (CASE WHEN Source = 'p2p' THEN CAST(SessionId AS VARCHAR) END))",
])
def test_wrapped_session_counts_read_the_sketches(count: str) -> None:
    """Issue #13: no-op wrappers inside a distinct count still union the HLL sketches."""
    translation = translate(f"SELECT {count} AS d FROM {HOUR_DS} WHERE {RECENT}")
    assert len(translation.rollups) == 1
    assert translation.sql.startswith(
        'SELECT COALESCE(CAST(ROUND(HLL_CARDINALITY(HLL_UNION_AGG(')


@pytest.mark.parametrize("query,why", RAW)
def test_raw_within_retention_and_400_beyond(query: str, why: str) -> None:
    recent = translate(query.format(ds=HOUR_DS, w=RECENT))
    assert not recent.rollups and "DATE_BIN(INTERVAL '3600 SECONDS'" in recent.sql
    old = RECENT.replace("2026-01-01T00:00:00Z", "2025-10-01")
    with pytest.raises(SqlError, match="30 days") as error:
        translate(query.format(ds=HOUR_DS, w=old))
    assert why in str(error.value) or why == "not aggregated"


def test_exact_distinct_count_needs_raw() -> None:
    exact = functions.Options(NOW, approximate_count_distinct=False)
    query = f"SELECT COUNT(DISTINCT SessionId) FROM {HOUR_DS} WHERE {RECENT}"
    assert not translate(query, exact).rollups
    with pytest.raises(SqlError, match="exact COUNT"):
        translate(query.replace("2026-01-01T00:00:00Z", "2025-01-01"), exact)
    assert translate(query).rollups


def test_aggregates_are_rewritten_onto_rollup_columns() -> None:
    sql = translate(
        "SELECT COUNT(*) AS n, AVG(BufferHealth) AS bh, COUNT(DISTINCT SessionId) AS d,"
        " SUM(ViewingTime) FILTER (WHERE Source = 'p2p') AS vt,"
        f" AVG(VideoResolutionHeight) AS h FROM {HOUR_DS} WHERE {RECENT}").sql
    assert 'COALESCE(SUM("__beacons"), 0) AS "n"' in sql
    assert 'SUM("__sum_BufferHealth") / NULLIF(SUM("__count_BufferHealth"), 0) AS "bh"' in sql
    assert 'HLL_UNION_AGG("__sessions")' in sql
    assert """SUM(CASE WHEN "Source" = 'p2p' THEN "__sum_ViewingTime" END) AS "vt\"""" in sql
    assert 'SUM("VideoResolutionHeight" * "__beacons")' in sql


def test_totals_tables_when_no_dimension_but_source() -> None:
    by_time = translate(f"SELECT TIME_FLOOR(__time, 'P1D'), Source, SUM(ViewingTime) FROM"
                        f" {HOUR_DS} WHERE {RECENT} GROUP BY 1, 2")
    assert by_time.rollups[0].totals
    hour = datetime(2026, 1, 1, tzinfo=UTC)
    assert "beacons_hour_totals" in by_time.render(Coverage(frozenset({hour})))
    by_channel = translate(f"SELECT ChannelId, SUM(ViewingTime) FROM {HOUR_DS} WHERE {RECENT}"
                           " GROUP BY 1")
    assert not by_channel.rollups[0].totals


@pytest.mark.parametrize("where,start,end", [
    (RECENT, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, 1, tzinfo=UTC)),
    ("CustomerId = 'c1' AND __time >= CURRENT_TIMESTAMP - INTERVAL '30' DAY",
     datetime(2025, 12, 3, 3, tzinfo=UTC), datetime(2026, 1, 2, 4, tzinfo=UTC)),
    ("CustomerId = 'c1' AND __time BETWEEN TIMESTAMP '2026-01-01 10:30:00' AND"
     " TIME_SHIFT(TIMESTAMP '2026-01-01 10:30:00', 'PT1H', 2)",
     datetime(2026, 1, 1, 10, tzinfo=UTC), datetime(2026, 1, 1, 13, tzinfo=UTC)),
    ("CustomerId = 'c1' AND '2026-01-01' <= __time",
     datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, 4, tzinfo=UTC)),
    ("CustomerId = 'c1'", NOW.replace(minute=0, second=0) - timedelta(days=400),
     datetime(2026, 1, 2, 4, tzinfo=UTC)),
])
def test_hours_read(where: str, start: datetime, end: datetime) -> None:
    [source] = translate(f"SELECT COUNT(*) FROM {HOUR_DS} WHERE {where}").rollups
    assert (source.start, source.end) == (start, end)


def test_lite_relation_has_no_advanced_columns() -> None:
    translation = translate(f"SELECT ChannelId, COUNT(*) FROM {HOUR_DS} WHERE {RECENT}"
                            " GROUP BY 1", tier="lite")
    sql = translation.render()
    assert '"ChannelId"' in sql and '"OsName"' not in sql and "__sum_CdnResponseTime" not in sql


def test_rendering_keeps_percent_signs_and_quotes_customers() -> None:
    reseller = Principal("k1", "reseller", "advanced", None, "emea", customers=("c1", "o'k"))
    translation = pipeline.translate(
        f"SELECT COUNT(*) FROM {HOUR_DS} WHERE CustomerId IN ('c1', 'o''k')"
        " AND __time >= '2026-01-01' AND ChannelId LIKE 'ch-%'", reseller, OPTIONS)
    sql = translation.render()
    assert "LIKE 'ch-%'" in sql and "ARRAY['c1','o''k']::text[]" in sql and "%%" not in sql
    assert "%(" not in sql


def test_timestampdiff_keeps_the_column_case() -> None:
    tree = parsing.parse("SELECT TIMESTAMPDIFF(DAY, __time, CURRENT_TIMESTAMP), timestampadd("
                         "hour, 1, __time) FROM t")
    assert [e.name for e in tree.expressions] == ["TIMESTAMPDIFF", "TIMESTAMPADD"]
    assert tree.expressions[0].expressions[1].name == "__time"


@pytest.mark.parametrize("druid,postgres", [
    ("TIME_FLOOR(__time, 'P2M')", "EXTRACT(MONTH FROM"),
    ("TIME_FLOOR(__time, 'P1D', NULL, 'Europe/Paris')",
     "DATE_TRUNC('DAY', \"__time\", 'Europe/Paris')"),
    ("TIME_FLOOR(__time, 'PT1H', TIMESTAMP '2020-01-01 00:30:00')",
     "DATE_BIN(CAST('3600 seconds' AS INTERVAL), \"__time\", CAST(CAST('2020-01-01 00:30:00'"),
    ("REGEXP_EXTRACT(ChannelId, 'ch-(\\d+)', 1)",
     "REGEXP_SUBSTR(CAST(\"ChannelId\" AS TEXT), 'ch-(\\d+)', 1, 1, '', 1)"),
    ("TIMESTAMPADD(MONTH, -2, __time)", "\"__time\" + CAST(-2 AS BIGINT) * CAST('1 month'"),
    ("STRING_AGG(DISTINCT ChannelId, ',', 100)",
     "STRING_AGG(DISTINCT CAST(\"ChannelId\" AS TEXT), ',')"),
    ("ARRAY_AGG(ChannelId, 100)", "ARRAY_AGG(\"ChannelId\")"),
])
def test_new_functions(druid: str, postgres: str) -> None:
    sql = translate(f"SELECT {druid} AS x FROM \"sdk-emea-realtime\" WHERE CustomerId = 'c1'").sql
    assert postgres in sql, sql


@pytest.mark.parametrize("druid", [
    "TIME_FLOOR(__time, 'P1M', NULL, 'Nowhere/Land')", "TIME_FLOOR(__time, 'P1M2D')",
    "TIMESTAMPADD(DECADE, 1, __time)", "REGEXP_EXTRACT(ChannelId, ChannelId)",
    "TIME_FLOOR(__time, 'P1M', NULL, 'Europe/Paris'' --')",
])
def test_new_functions_refuse_bad_arguments(druid: str) -> None:
    with pytest.raises(SqlError):
        translate(f"SELECT {druid} AS x FROM \"sdk-emea-realtime\" WHERE CustomerId = 'c1'")


def test_hours_read_through_parentheses() -> None:
    [source] = translate(f"SELECT COUNT(*) FROM {HOUR_DS} WHERE CustomerId = 'c1' AND"
                         " (__time >= '2026-01-01' AND (__time < '2026-01-01T05:00:00Z'))").rollups
    assert (source.start, source.end) == (datetime(2026, 1, 1, tzinfo=UTC),
                                          datetime(2026, 1, 1, 6, tzinfo=UTC))


# --- realtime scans on the minute totals (rollups.plan_realtime) -------------------------

REALTIME_DS = '"sdk-emea-realtime"'
LAST_HOUR = "CustomerId = 'c1' AND __time >= CURRENT_TIMESTAMP - INTERVAL '1' HOUR"
REALTIME_FITS = [
    "SELECT COUNT(*), SUM(ViewingTime), COUNT(DISTINCT SessionId) FROM {ds} WHERE {w}",
    "SELECT TIME_FLOOR(__time, 'PT5M'), Source, SUM(TotalDownlinkThroughput) FROM {ds}"
    " WHERE {w} GROUP BY 1, 2",
    "SELECT AVG(BufferHealth) FILTER (WHERE Source = 'p2p') FROM {ds} WHERE {w}"
    " AND __time <= CURRENT_TIMESTAMP",
    "SELECT COUNT(DISTINCT Source) FROM {ds} WHERE {w}",  # no aggregate column read
]
REALTIME_RAW = [
    "SELECT MAX(__time), COUNT(*) FROM {ds} WHERE {w}",              # __time to the second
    "SELECT TIME_FLOOR(__time, 'PT30S'), COUNT(*) FROM {ds} WHERE {w} GROUP BY 1",
    "SELECT ChannelId, COUNT(*) FROM {ds} WHERE {w} GROUP BY 1",      # not in the totals
    "SELECT APPROX_QUANTILE_DS(StartingTime, 0.5) FROM {ds} WHERE {w}",  # join time
    "SELECT COUNT(*) FROM {ds} WHERE CustomerId = 'c1'",             # no lower bound
    "SELECT COUNT(*) FROM {ds} WHERE {w} AND (__time < CURRENT_TIMESTAMP OR Source = 'p2p')",
    "SELECT COUNT(*) FROM {ds} WHERE CustomerId = 'c1'"
    " AND __time >= CURRENT_TIMESTAMP - INTERVAL '40' DAY",          # past the raw retention
]


@pytest.mark.parametrize("query", REALTIME_FITS)
def test_realtime_scans_read_the_minute_totals_when_the_rollups_hold_them(query: str) -> None:
    translation = translate(query.format(ds=REALTIME_DS, w=LAST_HOUR))
    [source] = translation.rollups
    assert (source.layer, source.start) == ("realtime", NOW - timedelta(hours=1))
    hour = NOW.replace(minute=0, second=0, microsecond=0)
    held = Coverage(frozenset({hour - timedelta(hours=1)}),
                    frozenset({(hour, NOW.replace(second=0) - timedelta(minutes=1))}))
    sql = translation.render(held)
    assert "beacons_minute_totals" in sql and "greatest(date_trunc('minute'" in sql
    # nothing rolled up: the query as written, on raw beacons
    assert translation.render(Coverage()) == translation.fallback
    assert "beacons_minute_totals" not in translation.fallback
    assert '"__beacons"' not in translation.fallback  # its aggregates as written


@pytest.mark.parametrize("query", REALTIME_RAW)
def test_realtime_scans_the_totals_cannot_answer_read_raw(query: str) -> None:
    translation = translate(query.format(ds=REALTIME_DS, w=LAST_HOUR))
    assert translation.rollups == () and translation.fallback is None


def test_exact_distinct_counts_stay_on_raw() -> None:
    query = REALTIME_FITS[0].format(ds=REALTIME_DS, w=LAST_HOUR)
    exact = functions.Options(NOW, approximate_count_distinct=False)
    assert translate(query, exact).rollups == ()
