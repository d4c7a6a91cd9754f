"""The typed SqlQueryService through Envoy's port, with the generated stubs: every query
answers the same columns and values as the JSON SQL endpoint for the same query — null where
JSON has null, the same timestamps — QueryStream the same rows as Query in batches, CancelQuery
stops a running query, and errors arrive in the rich error model."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from edgestats.sql_query.v1 import sql_query_service_pb2 as pb
from edgestats.sql_query.v1 import sql_query_service_pb2_grpc as rpc
from edgestats_core.tenancy import api_keys
from metrics_service import rollups
from tests.builders import scenario, wire
from tests.e2e.test_sql_hostile import running
from tests.e2e.typed_calls import assert_close, bearer, refused, rich, stamp, violations

pytestmark = pytest.mark.e2e

RT = '"sdk-emea-realtime"'
HOUR = '"sdk-emea-historical-hour"'
MINUTE = '"sdk-emea-historical-minute"'


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class World:
    def __init__(self, now: datetime) -> None:
        self.now = now
        self.tenants: dict[str, tuple[str, str]] = {}

    def me(self, who: str = "adv") -> str:
        return self.tenants[who][0]

    def key(self, who: str = "adv") -> str:
        return self.tenants[who][1]

    def where(self, who: str = "adv", minutes: int = 15) -> str:
        start = self.now - timedelta(minutes=minutes)
        return (f"CustomerId = '{self.me(who)}' AND __time >= '{start.isoformat()}'"
                f" AND __time < '{self.now.isoformat()}'")


@pytest.fixture(scope="module")
def world(api, tenants, frozen_now: datetime, data_urls: list[str]) -> World:
    made = World(frozen_now)
    # 48 sessions: several thousand beacons over the last 15 minutes, for QueryStream
    for who, tier, seed, sessions in (("adv", "advanced", 51, 48), ("lite", "lite", 52, 14),
                                      ("other", "advanced", 53, 14)):
        customer_id, key = tenants.customer(tier, "emea")
        beacons = [wire(b) for b in scenario(customer_id, frozen_now, seed=seed,
                                             sessions=sessions)]
        for start in range(0, len(beacons), 2000):
            response = api.ingest(key, beacons[start:start + 2000])
            assert response.status_code == 200, response.text
        made.tenants[who] = (customer_id, key)
    # rollup state is global: hours other tests rolled up now hold late beacons of ours
    for url in data_urls:
        rollups.re_roll_late_hours(url, before=datetime.now(UTC))
    return made


@pytest.fixture(scope="module")
def sql(stack):
    with grpc.insecure_channel(stack.grpc_target) as channel:
        yield rpc.SqlQueryServiceStub(channel)


def plain(value: pb.SqlValue) -> object:
    """A typed value as the JSON endpoint prints it."""
    kind = value.WhichOneof("kind")
    if kind == "null_value":
        return None
    if kind == "timestamp_value":
        return iso(value.timestamp_value.ToDatetime(tzinfo=UTC))
    if kind == "array_value":
        return [plain(v) for v in value.array_value.values]
    assert kind is not None, "a value always has a kind"
    return getattr(value, kind)


def table(columns, rows) -> list[list]:
    """Column names, then the rows as the JSON endpoint's `array` format prints them."""
    return [[c.name for c in columns], *[[plain(v) for v in row.values] for row in rows]]


def json_table(api, key: str, query: str, **body) -> list[list]:
    response = api.sql(key, query, resultFormat="array", header=True, **body)
    assert response.status_code == 200, (query, response.status_code, response.text)
    return response.json()


def typed_query(sql, key: str, query: str, parameters=(), **context) -> pb.SqlQueryResponse:
    request = pb.SqlQueryRequest(query=query, parameters=list(parameters),
                                 context=pb.QueryContext(**context))
    return sql.Query(request, metadata=bearer(key), timeout=60)


def types_of(response) -> dict[str, str]:
    return {c.name: pb.SqlType.Name(c.type).removeprefix("SQL_TYPE_") for c in response.columns}


def queries(w: World) -> list[tuple[str, str, dict]]:
    """(id, query, expected column types)."""
    days = w.now - timedelta(days=20)
    return [
        ("group-by-counts-sums",
         f"SELECT ChannelId, COUNT(*) AS n, COUNT(DISTINCT SessionId) AS sessions,"
         f" SUM(TotalDownlinkThroughput) AS total, SUM(DroppedFrames) AS dropped,"
         f" AVG(BufferHealth) AS avg_bh"
         f" FROM {RT} WHERE {w.where()} GROUP BY ChannelId ORDER BY ChannelId",
         {"ChannelId": "VARCHAR", "n": "BIGINT", "sessions": "BIGINT", "total": "DOUBLE"}),
        ("time-floor",
         f"SELECT TIME_FLOOR(__time, 'PT1M') AS \"timestamp\", COUNT(*) AS beacons,"
         f" SUM(TotalDownlinkThroughput) / 60 AS kbps FROM {RT} WHERE {w.where()}"
         " GROUP BY 1 ORDER BY 1",
         # (COUNT(*) is BIGINT from raw beacons, DOUBLE from the live layer: not asserted)
         {"timestamp": "TIMESTAMP"}),
        ("approx-count-distinct",
         f"SELECT APPROX_COUNT_DISTINCT(SessionId) AS approx, COUNT(DISTINCT SessionId) AS exact"
         f" FROM {RT} WHERE {w.where()}",
         {"approx": "BIGINT"}),
        ("nulls",
         f"SELECT __time, SessionId, Source, BufferHealth, P2pResponseTime, DroppedFrames,"
         f" P2pCompatible FROM {RT} WHERE {w.where()} ORDER BY __time, SessionId LIMIT 300",
         {"__time": "TIMESTAMP", "SessionId": "VARCHAR", "P2pCompatible": "BOOLEAN"}),
        ("historical-hour",
         f"SELECT TIME_FLOOR(__time, 'PT1H') AS t, COUNT(*) AS n,"
         f" SUM(TotalDownlinkThroughput) AS total FROM {HOUR}"
         f" WHERE CustomerId = '{w.me()}' AND __time >= '{days.strftime('%Y-%m-%dT%H:00:00')}'"
         " GROUP BY 1 ORDER BY 1",
         {"t": "TIMESTAMP"}),
        ("historical-minute-channels",
         f"SELECT ChannelId, SUM(TotalDownlinkThroughput) AS total, COUNT(*) AS n FROM {MINUTE}"
         f" WHERE {w.where(minutes=60)} GROUP BY 1 ORDER BY 1",
         {"ChannelId": "VARCHAR"}),
        ("literals",
         "SELECT 1 AS one, 'a' AS s, TRUE AS b, CAST(2.5 AS DOUBLE) AS d, NULL AS nothing,"
         " TIMESTAMP '2026-01-02 03:04:05.678' AS t, CAST(7 AS BIGINT) / 2 AS half",
         {"one": "INTEGER", "s": "VARCHAR", "b": "BOOLEAN", "d": "DOUBLE",
          "t": "TIMESTAMP"}),
    ]


QUERY_IDS = ["group-by-counts-sums", "time-floor", "approx-count-distinct", "nulls",
             "historical-hour", "historical-minute-channels", "literals"]


@pytest.mark.parametrize("index", range(len(QUERY_IDS)), ids=QUERY_IDS)
def test_query_answers_the_json_rows(api, sql, world, index):
    qid, query, types = queries(world)[index]
    assert qid == QUERY_IDS[index]
    typed = typed_query(sql, world.key(), query)
    expected = json_table(api, world.key(), query)
    assert_close(table(typed.columns, typed.rows), expected, qid)
    assert types.items() <= types_of(typed).items(), qid
    assert typed.query_id  # generated when not given
    if qid not in ("literals", "approx-count-distinct"):
        assert len(expected) > 2, (qid, "the query must find data")
    if qid == "nulls":
        nulls = [column for column, *values in zip(*expected, strict=True) if None in values]
        assert "P2pResponseTime" in nulls
        assert any(v.WhichOneof("kind") == "null_value" for r in typed.rows for v in r.values)


def test_parameters_of_several_types(api, sql, world):
    start = world.now - timedelta(minutes=10)
    query = (f"SELECT COUNT(*) AS n, SUM(BufferHealth) AS bh FROM {RT} WHERE CustomerId = ?"
             " AND __time >= ? AND BufferHealth >= ? AND P2pCompatible = ? AND Bitrate <> ?"
             " AND DroppedFrames < ? AND COALESCE(ChannelId, ?) <> 'none'")
    typed = typed_query(sql, world.key(), query, [
        pb.SqlParameter(string_value=world.me()),
        pb.SqlParameter(timestamp_value=stamp(start)),
        pb.SqlParameter(double_value=100.5),
        pb.SqlParameter(bool_value=True),
        pb.SqlParameter(type=pb.SQL_TYPE_VARCHAR, string_value="0"),
        pb.SqlParameter(type=pb.SQL_TYPE_BIGINT, long_value=5),
        pb.SqlParameter(null_value=0),
    ])
    expected = json_table(api, world.key(), query, parameters=[
        {"type": "VARCHAR", "value": world.me()},
        {"type": "TIMESTAMP", "value": start.strftime("%Y-%m-%d %H:%M:%S.%f")},
        {"type": "DOUBLE", "value": 100.5}, {"type": "BOOLEAN", "value": True},
        {"type": "VARCHAR", "value": "0"}, {"type": "BIGINT", "value": 5},
        {"type": "VARCHAR", "value": None},
    ])
    assert_close(table(typed.columns, typed.rows), expected)
    assert expected[1][0] > 0
    # a string value of a declared type is converted, as the JSON endpoint does
    converted = typed_query(sql, world.key(), f"SELECT COUNT(*) AS n FROM {RT}"
                            " WHERE CustomerId = ? AND DroppedFrames < ?",
                            [pb.SqlParameter(string_value=world.me()),
                             pb.SqlParameter(type=pb.SQL_TYPE_BIGINT, string_value="5")])
    assert converted.rows[0].values[0].long_value > 0


def test_context_is_honoured(api, sql, world):
    start = world.now.replace(second=0, microsecond=0) - timedelta(minutes=30)
    query = (f"SELECT TIME_FLOOR(__time, 'PT1M') AS t, COUNT(*) AS n FROM {RT}"
             f" WHERE CustomerId = '{world.me()}' AND __time >= '{start.isoformat()}'"
             f" AND __time < '{world.now.isoformat()}' GROUP BY 1")
    filled = typed_query(sql, world.key(), query, sql_query_id="typed-ctx-1",
                         timeout=duration_pb2.Duration(seconds=10))
    assert filled.query_id == "typed-ctx-1"
    skipped = typed_query(sql, world.key(), query, skip_empty_buckets=True)
    assert table(skipped.columns, skipped.rows) == json_table(
        api, world.key(), query, context={"skipEmptyBuckets": True})
    assert len(skipped.rows) < len(filled.rows) and len(filled.rows) >= 30
    exact = f"SELECT COUNT(DISTINCT SessionId) AS n FROM {RT} WHERE {world.where()}"
    typed = typed_query(sql, world.key(), exact, use_approximate_count_distinct=False)
    assert table(typed.columns, typed.rows) == json_table(
        api, world.key(), exact, context={"useApproximateCountDistinct": False})


def test_stream_answers_the_rows_of_query_in_batches(api, sql, world):
    query = (f"SELECT __time, SessionId, ChannelId, BufferHealth, TotalDownlinkThroughput"
             f" FROM {RT} WHERE CustomerId = '{world.me()}' ORDER BY __time, SessionId")
    request = pb.SqlQueryRequest(query=query, context=pb.QueryContext(sql_query_id="stream-1"))
    whole = sql.Query(request, metadata=bearer(world.key()), timeout=60)
    messages = list(sql.QueryStream(request, metadata=bearer(world.key()), timeout=60))
    first, rest = messages[0], messages[1:]
    assert first.query_id == "stream-1" and not first.rows
    assert list(first.columns) == list(whole.columns)
    assert all(not m.columns and not m.query_id and 0 < len(m.rows) <= 1000 for m in rest)
    streamed = [row for m in rest for row in m.rows]
    assert len(whole.rows) > 3000, "the result must need several messages"
    assert len(rest) == -(-len(whole.rows) // 1000)
    assert [len(m.rows) for m in rest[:-1]] == [1000] * (len(rest) - 1)
    assert streamed == list(whole.rows)
    assert table(first.columns, streamed) == json_table(api, world.key(), query)
    # an empty result: the columns only
    empty = list(sql.QueryStream(pb.SqlQueryRequest(query=query.replace(
        "ORDER BY", "AND ChannelId = 'none' ORDER BY")), metadata=bearer(world.key()),
        timeout=60))
    assert len(empty) == 1 and [c.name for c in empty[0].columns][:2] == ["__time", "SessionId"]


def early_and_slow(w: World, query_id: str) -> pb.SqlQueryRequest:
    """The caller's beacons, then a count that takes minutes."""
    query = (f"SELECT SessionId AS s FROM {RT} WHERE CustomerId = '{w.me()}' UNION ALL "
             + SLOW.format(ds=RT, me=w.me()).replace("COUNT(*) AS n", "CAST(COUNT(*) AS VARCHAR)"))
    return pb.SqlQueryRequest(query=query, context=pb.QueryContext(
        sql_query_id=query_id, timeout=duration_pb2.Duration(seconds=30)))


def test_stream_sends_rows_while_postgresql_still_runs_the_query(sql, world, servers):
    """The first batch arrives while the last row is yet to be produced; CancelQuery then
    ends the stream with the cancelled query's error."""
    request = early_and_slow(world, "typed-stream-early")
    messages = sql.QueryStream(request, metadata=bearer(world.key()), timeout=60)
    header, batch = next(messages), next(messages)
    assert [c.name for c in header.columns] == ["s"] and len(batch.rows) == 1000
    assert running(servers) == 1, "the query still runs in PostgreSQL"
    cancel = pb.CancelSqlQueryRequest(query_id="typed-stream-early")
    assert sql.CancelQuery(cancel, metadata=bearer(world.key()), timeout=30) == \
        pb.CancelSqlQueryResponse()
    with pytest.raises(grpc.RpcError) as caught:
        rows = [row for m in messages for row in m.rows]
        pytest.fail(f"the stream ended with OK after {len(rows)} more rows")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich(caught.value)[0].reason == "QUERY_CANCELLED"
    assert running(servers) == 0


def test_a_stream_the_caller_leaves_stops_its_query(sql, world, servers):
    messages = sql.QueryStream(early_and_slow(world, "typed-stream-left"),
                               metadata=bearer(world.key()), timeout=60)
    next(messages), next(messages)
    assert running(servers) == 1
    messages.cancel()
    deadline = time.monotonic() + 5
    while running(servers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running(servers) == 0, "the query runs on after its caller left"


def test_a_stream_past_the_row_cap_fails_as_query_does_after_the_cap(sql, world):
    query = (f"SELECT a.SessionId AS s FROM {RT} a, {RT} b WHERE a.CustomerId = '{world.me()}'"
             f" AND b.CustomerId = '{world.me()}'")
    request = pb.SqlQueryRequest(query=query)
    whole = refused(sql.Query, request, world.key())
    assert violations(whole) == [("query", "value_error.sql")]
    assert "more than 100,000 rows" in whole.details()
    received = []
    with pytest.raises(grpc.RpcError) as caught:
        for message in sql.QueryStream(request, metadata=bearer(world.key()), timeout=60):
            received.append(message)
    assert violations(caught.value) == violations(whole)
    assert caught.value.details() == whole.details()
    # the rows up to the cap were sent before PostgreSQL produced the one past it
    assert [len(m.rows) for m in received[1:]] == [1000] * 100


def test_list_datasources(api, sql, world):
    typed = sql.ListDatasources(pb.ListSqlDatasourcesRequest(), metadata=bearer(world.key()),
                                timeout=30)
    assert list(typed.datasources) == api.get_json("/druid/v2/datasources", world.key())


# --- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["Query", "QueryStream"])
def test_a_syntax_error_is_a_violation_on_query(api, sql, world, method):
    query = f"SELECT COUNT(* FROM {RT} WHERE CustomerId = '{world.me()}'"
    error = refused(getattr(sql, method), pb.SqlQueryRequest(query=query), world.key())
    assert [field for field, _ in violations(error)] == ["query"]
    detail = api.sql(world.key(), query).json()["detail"][0]
    assert error.details() == f"query: {detail['msg']}"


def test_a_missing_customer_filter_has_the_json_status(api, sql, world):
    query = f"SELECT COUNT(*) AS n FROM {RT}"
    error = refused(sql.Query, pb.SqlQueryRequest(query=query), world.key())
    response = api.sql(world.key(), query)
    assert response.status_code == 400 and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error) == [("query", response.json()["detail"][0]["type"])]
    assert error.details() == "query: " + response.json()["detail"][0]["msg"]


def test_tier_rules_are_tier_forbidden(api, sql, world):
    query = f"SELECT COUNT(ConnectionType) AS n FROM {RT} WHERE CustomerId = '{world.me('lite')}'"
    error = refused(sql.Query, pb.SqlQueryRequest(query=query), world.key("lite"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert rich(error)[0].reason == "TIER_FORBIDDEN"
    assert error.details() == api.sql(world.key("lite"), query).json()["title"]
    exact = pb.SqlQueryRequest(
        query=f"SELECT COUNT(DISTINCT SessionId) FROM {RT} WHERE CustomerId = '{world.me('lite')}'",
        context=pb.QueryContext(use_approximate_count_distinct=False))
    error = refused(sql.Query, exact, world.key("lite"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert rich(error)[0].reason == "TIER_FORBIDDEN"


def test_other_customers_and_no_key(sql, world):
    query = f"SELECT COUNT(*) AS n FROM {RT} WHERE CustomerId = '{world.me('other')}'"
    error = refused(sql.Query, pb.SqlQueryRequest(query=query), world.key())
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert rich(error)[0].reason == "CUSTOMER_FORBIDDEN"
    for key in (None, "not-a-key"):
        error = refused(sql.Query, pb.SqlQueryRequest(query="SELECT 1"), key)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert rich(error)[0].reason == "NOT_AUTHENTICATED"


def test_another_regions_datasource_is_region_forbidden(api, sql, world):
    query = f"SELECT COUNT(*) AS n FROM \"sdk-apac-realtime\" WHERE CustomerId = '{world.me()}'"
    for method in (sql.Query, sql.QueryStream):
        error = refused(method, pb.SqlQueryRequest(query=query), world.key())
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert rich(error)[0].reason == "REGION_FORBIDDEN"
    response = api.sql(world.key(), query)
    assert response.status_code == 403 and error.details() == response.json()["title"]


def test_a_key_past_its_rate_is_rate_limited_with_retry_info(sql, tenants, db_url):
    _, key = tenants.customer("advanced", "emea")
    with psycopg.connect(db_url) as conn:  # before its first call: no cached principal
        assert api_keys.set_rate_limit(conn, api_keys.key_id_of(key), 0.01, 1) == 1
    request = pb.SqlQueryRequest(query="SELECT 1 AS one")
    for _ in range(20):  # each worker process has its own bucket of the key
        try:
            sql.Query(request, metadata=bearer(key), timeout=30)
        except grpc.RpcError as error:
            limited = error
            break
    else:
        pytest.fail("never rate limited")
    assert limited.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, others = rich(limited)
    assert info.reason == "RATE_LIMITED"
    (retry,) = [d for d in others if isinstance(d, error_details_pb2.RetryInfo)]
    assert retry.retry_delay.seconds >= 1
    trailers = dict(limited.trailing_metadata())
    assert trailers["grpc-retry-pushback-ms"] == str(retry.retry_delay.seconds * 1000)


def test_request_fields_are_named_in_violations(sql, world):
    cases = [
        (pb.SqlQueryRequest(), [("query", "value_error.missing")]),
        (pb.SqlQueryRequest(query="SELECT 1", context=pb.QueryContext(sql_query_id="a b")),
         [("context.sql_query_id", "type_error")]),
        (pb.SqlQueryRequest(query="SELECT 1",
                            context=pb.QueryContext(timeout=duration_pb2.Duration())),
         [("context.timeout", "type_error")]),
    ]
    for request, expected in cases:
        assert violations(refused(sql.Query, request, world.key())) == expected
    error = refused(sql.Query, pb.SqlQueryRequest(
        query="SELECT ? AS a", parameters=[pb.SqlParameter(type=pb.SQL_TYPE_BIGINT,
                                                           string_value="x")]), world.key())
    assert [f for f, _ in violations(error)] == ["query"] and "Parameter 1" in error.details()


SLOW = ("SELECT COUNT(*) AS n FROM {ds} a, {ds} b, {ds} c WHERE a.CustomerId = '{me}'"
        " AND b.CustomerId = '{me}' AND c.CustomerId = '{me}'")


def test_a_slow_query_times_out(sql, world, servers):
    request = pb.SqlQueryRequest(query=SLOW.format(ds=RT, me=world.me()),
                                 context=pb.QueryContext(timeout=duration_pb2.Duration(seconds=1)))
    started = time.monotonic()
    error = refused(sql.Query, request, world.key())
    assert time.monotonic() - started < 10
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert rich(error)[0].reason == "QUERY_TIMEOUT"
    assert running(servers) == 0


def test_cancel_a_running_query(stack, sql, world, servers):
    request = pb.SqlQueryRequest(query=SLOW.format(ds=RT, me=world.me()), context=pb.QueryContext(
        sql_query_id="typed-slow-1", timeout=duration_pb2.Duration(seconds=20)))
    result: dict = {}

    def run() -> None:
        with grpc.insecure_channel(stack.grpc_target) as channel:
            try:
                rpc.SqlQueryServiceStub(channel).Query(request, metadata=bearer(world.key()),
                                                       timeout=30)
            except grpc.RpcError as error:
                result["error"] = error

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 5
    while running(servers) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    cancel = pb.CancelSqlQueryRequest(query_id="typed-slow-1")
    error = refused(sql.CancelQuery, cancel, world.key("other"))  # not theirs
    assert error.code() == grpc.StatusCode.NOT_FOUND and rich(error)[0].reason == "NOT_FOUND"
    assert sql.CancelQuery(cancel, metadata=bearer(world.key()), timeout=30) == \
        pb.CancelSqlQueryResponse()
    worker.join(10)
    assert not worker.is_alive()
    cancelled = result["error"]
    assert cancelled.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert cancelled.details() == "Query cancelled"
    assert rich(cancelled)[0].reason == "QUERY_CANCELLED"
    assert refused(sql.CancelQuery, cancel, world.key()).code() == grpc.StatusCode.NOT_FOUND
    assert running(servers) == 0
