"""Hostile input to the SQL endpoint: injection, rule evasion, catalogue access, huge and
deep queries, long-running queries. Each gets its documented 4xx/5xx body, never a stack
trace or PostgreSQL text, and the service keeps answering."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import psycopg
import pytest

from tests.builders import scenario, wire

pytestmark = pytest.mark.e2e

PATH = "/analytics/v1/query/sql"
DS = '"sdk-emea-realtime"'
LEAKS = ("Traceback", "psycopg", "pg_", "public.", "beacons", "customer_id", "syntax error at",
         "relation", "ERROR:", "session_id")


@pytest.fixture(scope="module")
def hostile(api, tenants, frozen_now: datetime) -> dict:
    made = {}
    for who, tier in (("me", "advanced"), ("lite", "lite"), ("victim", "advanced")):
        customer_id, key = tenants.customer(tier, "emea")
        response = api.ingest(key, [wire(b) for b in scenario(customer_id, frozen_now, seed=41)])
        assert response.status_code == 200
        made[who] = (customer_id, key)
    return made


def post(api, key: str, query: str, **body):
    return api.http.post(PATH, json={"query": query, **body},
                         headers={"Authorization": f"Bearer {key}"})


def refused(response, status: int, *needles: str, query: str = "") -> str:
    """The status, a JSON body naming `needles`, and no internals the query did not contain."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    text = response.text
    for leak in LEAKS:
        assert leak in query or leak not in text, (leak, text)
    for needle in needles:
        assert needle in text, (needle, text)
    return text


def me(h: dict, alias: str = "") -> str:
    return f"{alias + '.' if alias else ''}CustomerId = '{h['me'][0]}'"


CASES_400 = [
    ("syntax", "SELECT COUNT(* FROM {ds} WHERE {me}", ["line"]),
    ("two_statements", "SELECT 1; SELECT 2", ["one statement"]),
    ("stacked_delete", "SELECT 1; DELETE FROM {ds}", ["one statement"]),
    ("not_select", "DELETE FROM {ds} WHERE {me}", ["SELECT"]),
    ("drop", "DROP TABLE {ds}", []),
    ("select_into", "SELECT * INTO stolen FROM {ds} WHERE {me} LIMIT 1", []),
    ("for_update", "SELECT ChannelId FROM {ds} WHERE {me} FOR UPDATE", []),
    ("unknown_column", "SELECT Nope FROM {ds} WHERE {me}", ["Nope"]),
    ("column_casing", "SELECT channelid FROM {ds} WHERE {me}", ["channelid"]),
    ("internal_column_name", "SELECT session_id FROM {ds} WHERE {me}", []),
    ("system_column", "SELECT ctid FROM {ds} WHERE {me}", ["ctid"]),
    ("unknown_datasource", "SELECT 1 FROM \"sdk-emea-rollups\" WHERE {me}", ["sdk-emea-rollups"]),
    ("datasource_casing", "SELECT 1 FROM \"SDK-EMEA-REALTIME\" WHERE {me}", []),
    ("raw_table", "SELECT * FROM beacons LIMIT 1", []),
    ("api_keys", "SELECT key_hash FROM api_keys", []),
    ("api_keys_subquery", "SELECT (SELECT COUNT(*) FROM api_keys) FROM {ds} WHERE {me}", []),
    ("pg_catalog", "SELECT relname FROM pg_catalog.pg_class", []),
    ("pg_tables", "SELECT * FROM pg_tables LIMIT 1", []),
    ("information_schema_pg", "SELECT * FROM information_schema.role_table_grants", []),
    ("pg_sleep", "SELECT pg_sleep(10) FROM {ds} WHERE {me}", ["pg_sleep"]),
    ("pg_sleep_from", "SELECT 1 FROM pg_sleep(10)", []),
    ("qualified_function", "SELECT pg_catalog.pg_sleep(1)", []),
    ("current_setting", "SELECT current_setting('edgestats.customers')", ["current_setting"]),
    ("set_config", "SELECT set_config('edgestats.customers', 'x', true)", []),
    ("pg_read_file", "SELECT pg_read_file('/etc/passwd')", []),
    ("regclass_cast", "SELECT CAST('beacons' AS regclass)", []),
    ("version", "SELECT version()", []),
    ("no_customer_filter", "SELECT COUNT(*) FROM {ds}", ["CustomerId"]),
    ("or_evasion", "SELECT COUNT(*) FROM {ds} WHERE {me} OR 1 = 1", ["CustomerId"]),
    ("not_evasion", "SELECT COUNT(*) FROM {ds} WHERE NOT ({me})", ["CustomerId"]),
    ("filter_only_outside",
     "SELECT COUNT(*) FROM (SELECT * FROM {ds} LIMIT 5) t WHERE t.{me}", ["CustomerId"]),
    ("cte_unfiltered",
     "WITH x AS (SELECT ChannelId FROM {ds}) SELECT * FROM x, {ds} y WHERE y.{me}", []),
    ("union_unfiltered",
     "SELECT COUNT(*) FROM {ds} WHERE {me} UNION ALL SELECT COUNT(*) FROM {ds}", ["CustomerId"]),
    ("join_unfiltered",
     "SELECT COUNT(*) FROM {ds} a JOIN {ds} b ON a.SessionId = b.SessionId WHERE a.{me}", []),
    ("in_subquery_filter",
     "SELECT COUNT(*) FROM {ds} WHERE CustomerId IN (SELECT CustomerId FROM {ds} WHERE {me})", []),
    ("computed_customer", "SELECT COUNT(*) FROM {ds} WHERE CustomerId = CONCAT('c', '-x')", []),
    ("comment_hides_filter", "SELECT COUNT(*) FROM {ds} -- WHERE {me}\n", ["CustomerId"]),
    ("block_comment", "SELECT COUNT(*) FROM {ds} /* WHERE {me} */", ["CustomerId"]),
    ("cte_named_like_datasource",
     "WITH \"sdk-emea-realtime\" AS (SELECT 1 AS x) SELECT * FROM \"sdk-emea-realtime\"", []),
    ("cte_scope_escape",
     "SELECT * FROM (WITH api_keys AS (SELECT 1 AS a) SELECT a FROM api_keys) x, api_keys", []),
    ("star_without_limit", "SELECT * FROM {ds} WHERE {me}", ["LIMIT"]),
    ("star_limit_too_big", "SELECT * FROM {ds} WHERE {me} LIMIT 10001", ["10,000"]),
    ("star_in_subquery", "SELECT COUNT(*) FROM (SELECT * FROM {ds} WHERE {me}) t", ["LIMIT"]),
    ("empty", "   ", []),
    ("deep_nesting", "SELECT " + "(" * 200 + "1" + ")" * 200, ["nest"]),
    ("huge", "SELECT 1 AS x" + ", 1" * 60_000, ["longer"]),
    ("bad_timestamp", "SELECT COUNT(*) FROM {ds} WHERE {me} AND __time >= 'not a date'", []),
    ("bad_period", "SELECT TIME_FLOOR(__time, 'PT1X') FROM {ds} WHERE {me}", ["PT1X"]),
    ("type_mismatch", "SELECT COUNT(*) FROM {ds} WHERE {me} AND __time = 5", []),
    ("grouping", "SELECT ChannelId, COUNT(*) FROM {ds} WHERE {me}", ["GROUP BY"]),
    ("division_by_zero", "SELECT 1 / 0 FROM {ds} WHERE {me}", []),
    ("lateral", "SELECT * FROM {ds} a, LATERAL (SELECT 1) b WHERE a.{me} LIMIT 1", []),
]


@pytest.mark.parametrize("case", CASES_400, ids=[c[0] for c in CASES_400])
def test_refused_with_400(api, hostile, case) -> None:
    _, template, needles = case
    query = template.replace("{ds}", DS).replace("{me}", me(hostile))
    refused(post(api, hostile["me"][1], query), 400, *needles, query=query)


CASES_403 = [
    ("other_customer", "SELECT COUNT(*) FROM {ds} WHERE CustomerId = '{victim}'", "{victim}"),
    ("other_customer_in", "SELECT COUNT(*) FROM {ds} WHERE CustomerId IN ('{me}', '{victim}')",
     "{victim}"),
    ("victim_in_subquery", "SELECT COUNT(*) FROM (SELECT ChannelId FROM {ds} WHERE"
     " CustomerId = '{victim}') t", "{victim}"),
    ("victim_in_cte", "WITH v AS (SELECT ChannelId FROM {ds} WHERE CustomerId = '{victim}')"
     " SELECT COUNT(*) FROM v", "{victim}"),
    ("victim_in_union", "SELECT 1 FROM {ds} WHERE CustomerId = '{me}' UNION ALL"
     " SELECT 1 FROM {ds} WHERE CustomerId = '{victim}'", "{victim}"),
    ("both_filters", "SELECT 1 FROM {ds} WHERE CustomerId = '{me}' AND CustomerId = '{victim}'",
     "{victim}"),
    ("other_region", "SELECT COUNT(*) FROM \"sdk-apac-realtime\" WHERE CustomerId = '{me}'",
     "sdk-apac-realtime"),
    ("other_region_in_cte", "WITH x AS (SELECT 1 AS a FROM \"sdk-americas-historical-hour\""
     " WHERE CustomerId = '{me}') SELECT * FROM x", "sdk-americas-historical-hour"),
]


@pytest.mark.parametrize("case", CASES_403, ids=[c[0] for c in CASES_403])
def test_refused_with_403(api, hostile, case) -> None:
    _, template, needle = case
    values = {"ds": DS, "me": hostile["me"][0], "victim": hostile["victim"][0]}
    query = template.format(**values)
    assert refused(post(api, hostile["me"][1], query), 403, needle.format(**values))


LITE_403 = [
    "SELECT TIME_FLOOR(__time, 'PT1M') AS \"timestamp\", AVG(BufferHealth) as \"avg_buffer_health\""
    " FROM {ds} WHERE CustomerId = '{me}' AND ConnectionType = 'ETHERNET'"
    " AND __time >= '2022-12-30' AND __time < '2022-12-31' GROUP BY 1",
    "SELECT \"ConnectionType\" FROM {ds} WHERE CustomerId = '{me}'",
    "SELECT x FROM (SELECT ConnectionType AS x FROM {ds} WHERE CustomerId = '{me}') t",
    "WITH c AS (SELECT ConnectionType FROM {ds} WHERE CustomerId = '{me}') SELECT * FROM c",
    "SELECT 1 FROM {ds} WHERE CustomerId = '{me}' UNION ALL"
    " SELECT COUNT(ConnectionType) FROM {ds} WHERE CustomerId = '{me}'",
    "SELECT COUNT(*) FROM {ds} WHERE CustomerId = '{me}' /* x */ AND \"ConnectionType\" IS NULL",
]


@pytest.mark.parametrize("template", LITE_403)
def test_lite_cannot_name_advanced_columns(api, hostile, template) -> None:
    query = template.format(ds=DS, me=hostile["lite"][0])
    body = refused(post(api, hostile["lite"][1], query), 403, "ConnectionType")
    assert '"type":"forbidden"' in body


@pytest.mark.parametrize("flag", [False, "false", 0, "0"])
def test_lite_cannot_disable_approximate_count_distinct(api, hostile, flag) -> None:
    query = f"SELECT COUNT(DISTINCT SessionId) FROM {DS} WHERE CustomerId = '{hostile['lite'][0]}'"
    context = {"useApproximateCountDistinct": flag}
    refused(post(api, hostile["lite"][1], query, context=context), 403,
            "useApproximateCountDistinct")
    ok = post(api, hostile["lite"][1], query, context={"useApproximateCountDistinct": True})
    assert ok.status_code == 200
    exact = post(api, hostile["me"][1], query.replace(hostile["lite"][0], hostile["me"][0]),
                 context=context)
    assert exact.status_code == 200


def test_lite_star_limit(api, hostile) -> None:
    query = f"SELECT * FROM {DS} WHERE CustomerId = '{hostile['lite'][0]}' LIMIT 1001"
    refused(post(api, hostile["lite"][1], query), 400, "1,000")


def test_injection_through_parameters_and_literals(api, hostile) -> None:
    key, customer = hostile["me"][1], hostile["me"][0]
    query = f"SELECT COUNT(*) AS n FROM {DS} WHERE CustomerId = '{customer}' AND ChannelId = ?"
    for value in ("x' OR '1'='1", "'; DROP TABLE beacons; --", "\\'; SELECT 1"):
        response = post(api, key, query, parameters=[{"type": "VARCHAR", "value": value}])
        assert response.status_code == 200 and response.json() == [{"n": 0}]
    quoted = post(api, key, f"SELECT COUNT(*) AS n FROM {DS} WHERE CustomerId = '{customer}'"
                  " AND ChannelId = 'a'' OR ''1''=''1'")
    assert quoted.json() == [{"n": 0}]
    refused(post(api, key, f"SELECT 1 FROM {DS} WHERE CustomerId = ?",
                 parameters=[{"type": "VARCHAR", "value": hostile["victim"][0]}]), 403)


@pytest.mark.parametrize("body", [
    {"query": 5}, {"query": "SELECT 1", "context": "x"},
    {"query": "SELECT 1", "resultFormat": "xml"},
    {"query": "SELECT 1", "parameters": {"a": 1}}, {},
    {"query": "SELECT 1", "context": {"timeout": "soon"}},
    {"query": "SELECT 1", "context": {"sqlQueryId": "a b"}},
])
def test_bad_request_bodies(api, hostile, body) -> None:
    headers = {"Authorization": f"Bearer {hostile['me'][1]}"}
    response = api.http.post(PATH, json=body, headers=headers)
    refused(response, 400, '"loc":["body"')


def test_pathological_regex_is_answered_or_refused(api, hostile) -> None:
    query = (f"SELECT COUNT(*) AS n FROM {DS} WHERE CustomerId = '{hostile['me'][0]}'"
             " AND REGEXP_LIKE(ChannelId, '^(a+)+$')")
    response = post(api, hostile["me"][1], query, context={"timeout": 2000})
    assert response.status_code in (200, 504), response.text


SLOW = ("SELECT COUNT(*) AS n FROM {ds} a, {ds} b, {ds} c WHERE a.CustomerId = '{me}'"
        " AND b.CustomerId = '{me}' AND c.CustomerId = '{me}'")


def running_on(url: str) -> int:
    """SQL queries of the SQL service running now on the server of `url`."""
    with psycopg.connect(url, connect_timeout=2) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'esq:%'"
            " AND state = 'active'").fetchone()[0]


def running(servers: list[str]) -> int:
    """SQL queries running now on any server (a region's standby included)."""
    return sum(running_on(url) for url in servers)


def test_long_query_times_out_with_504_and_is_cancelled(api, hostile, servers) -> None:
    query = SLOW.format(ds=DS, me=hostile["me"][0])
    started = time.monotonic()
    response = post(api, hostile["me"][1], query, context={"timeout": 1000})
    refused(response, 504, "Gateway Timeout")
    assert time.monotonic() - started < 10
    assert "x-druid-sql-query-id" not in response.headers
    assert running(servers) == 0
    assert post(api, hostile["me"][1], "SELECT 1 AS one").json() == [{"one": 1}]


def test_cancel_a_running_query(api, hostile, servers) -> None:
    key = hostile["me"][1]
    query = SLOW.format(ds=DS, me=hostile["me"][0])
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(response=post(
        api.__class__(api.base_url), key, query,
        context={"sqlQueryId": "slow-1", "timeout": 20000})))
    worker.start()
    deadline = time.monotonic() + 5
    while running(servers) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    headers = {"Authorization": f"Bearer {hostile['victim'][1]}"}
    assert api.http.delete(f"{PATH}/slow-1", headers=headers).status_code == 404  # not theirs
    response = api.http.delete(f"{PATH}/slow-1", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 202, response.text
    worker.join(10)
    assert result["response"].status_code == 400
    assert result["response"].json() == {"detail": "Query cancelled"}
    assert api.http.delete("/v1/query/sql/slow-1",
                           headers={"Authorization": f"Bearer {key}"}).status_code == 404


def test_row_level_security_is_a_second_wall(region_url, hostile) -> None:
    """Even SQL that reached PostgreSQL unchecked sees only the caller's rows."""
    mine, victim = hostile["me"][0], hostile["victim"][0]
    with psycopg.connect(region_url("emea")) as conn, conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("SET LOCAL ROLE edgestats_reader")
        conn.execute("SELECT set_config('edgestats.customers', %s, true)", (mine,))
        seen = conn.execute("SELECT DISTINCT customer_id FROM beacons"
                            " WHERE customer_id IN (%s, %s)", (mine, victim)).fetchall()
        assert seen == [(mine,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM api_keys")


def test_service_still_up_after_everything(api, hostile) -> None:
    assert api.http.get("/status").status_code == 200
    query = f"SELECT COUNT(*) AS n FROM {DS} WHERE CustomerId = '{hostile['me'][0]}'"
    assert post(api, hostile["me"][1], query).json()[0]["n"] > 0




# --- issue #13: data exceptions, pathological sizes, a string as a table: 400, never a 5xx ----

DRUID_PATH = "/druid/v2/sql/"


def chain(operator: str, operand: str, count: int) -> str:
    return f" {operator} ".join([operand] * count)


# (id, query, the whole message or a needle of it): messages name the condition, never a value
ISSUE_13 = [
    ("ceil_overflow", "SELECT CEIL(1e308 * 10) AS x",
     "Invalid value: numeric value out of range (SQLSTATE 22003): a result exceeds a double"),
    ("time_shift_overflow",
     "SELECT TIME_SHIFT(__time, 'PT1H', 999999999) AS t FROM {ds} WHERE {me} LIMIT 1",
     "Invalid value: a result is out of the range the API can represent"
     " (timestamps are years 1 to 9999)"),
    ("bigint_overflow_of_rows",
     "SELECT MAX(TIMESTAMP_TO_MILLIS(__time) * 1000000000000) AS x FROM {ds} WHERE {me}",
     "Invalid value: numeric value out of range (SQLSTATE 22003)"),
    ("text_representation_of_rows", "SELECT CAST(ChannelId AS BOOLEAN) AS b FROM {ds} WHERE {me}",
     "Invalid value: invalid text representation (SQLSTATE 22P02)"),
    ("invalid_regex", "SELECT COUNT(*) AS n FROM {ds} WHERE {me} AND REGEXP_LIKE(ChannelId, '(')",
     "Invalid value: invalid regular expression (SQLSTATE 2201B)"),
    ("division_by_zero_of_rows",
     "SELECT SUM(ViewingTime) / (COUNT(*) - COUNT(*)) AS x FROM {ds} WHERE {me}",
     "Invalid value: division by zero (SQLSTATE 22012)"),
    ("and_or_3000", "SELECT COUNT(*) AS n FROM {ds} WHERE {me}" + " AND (1=1 OR 1=1)" * 3000,
     "The query has more than 20,000 tokens"),
    ("plus_20000", "SELECT " + chain("+", "1", 20_000), "The query has more than 20,000 tokens"),
    ("and_or_1500", "SELECT COUNT(*) AS n FROM {ds} WHERE {me}" + " AND (1=1 OR 1=1)" * 1500,
     "The query nests deeper than 300 levels"),
    # once PostgreSQL's stack depth limit (54001), which the pool took for an outage: 503
    ("plus_6000", "SELECT " + chain("+", "1", 6000), "The query nests deeper than 300 levels"),
    ("nested_case", "SELECT " + "CASE WHEN 1 = 1 THEN " * 200 + "1" + " END" * 200,
     "The query is too deeply nested"),
    ("string_as_table", "SELECT COUNT(*) AS n FROM 'sdk-emea-realtime' WHERE {me}",
     "Syntax error: a string literal where a table name belongs"),
]


def answers_at_once(api, hostile) -> None:
    """/ping and a normal query answer, each within a second: the worker is up and free."""
    started = time.monotonic()
    assert api.http.get("/ping").status_code == 200
    response = post(api, hostile["me"][1], f"SELECT COUNT(*) AS n FROM {DS} WHERE {me(hostile)}")
    assert response.status_code == 200 and response.json()[0]["n"] > 0, response.text
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("path", [PATH, DRUID_PATH])
@pytest.mark.parametrize("case", ISSUE_13, ids=[c[0] for c in ISSUE_13])
def test_hostile_values_and_sizes_are_400(api, hostile, frozen_now, case, path) -> None:
    _, template, message = case
    query = template.replace("{ds}", DS).replace("{me}", me(hostile))
    started = time.monotonic()
    response = api.http.post(path, json={"query": query},
                             headers={"Authorization": f"Bearer {hostile['me'][1]}"})
    assert time.monotonic() - started < 5
    refused(response, 400, query=query)
    body = response.json()
    [item] = body["detail"]
    assert item["loc"] == ["body", "query"] and item["type"] == "value_error.sql"
    assert item["msg"].startswith(message), item["msg"]
    row_values = {b["ChannelId"] for b in scenario(hostile["me"][0], frozen_now, seed=41)}
    assert not any(value in response.text for value in row_values)
    if path == DRUID_PATH:
        assert body["error"] == "Plan validation failed" and body["errorClass"] == "SqlError"
        assert body["errorMessage"] == item["msg"] and body["host"] is None
    answers_at_once(api, hostile)
