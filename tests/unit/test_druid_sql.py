"""The Druid-SQL passes, table-driven from fixture files (input/expected pairs)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import sqlglot
from psycopg import errors as pg

from edgestats_core.errors import ApiError, Forbidden
from edgestats_core.tenancy.principals import Principal
from sql_query_service import execution, results
from sql_query_service.druid_sql import (
    columns,
    functions,
    parameters,
    parsing,
    pipeline,
    time_formats,
)
from sql_query_service.druid_sql.problems import SqlError

FIXTURES = Path(__file__).parent / "fixtures" / "druid_sql"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
OPTIONS = functions.Options(NOW)


def principal(tier: str = "lite") -> Principal:
    return Principal("k1", "customer", tier, "c1", "emea")


def function_pairs() -> list[tuple[str, str]]:
    lines = [x for x in (FIXTURES / "functions.sql").read_text().splitlines()
             if x and not x.startswith("--")]
    return list(zip(lines[::2], lines[1::2], strict=True))


@pytest.mark.parametrize("druid,postgres", function_pairs())
def test_function_rewrite(druid: str, postgres: str) -> None:
    query = f"SELECT {druid} AS x FROM \"sdk-emea-realtime\" WHERE CustomerId = 'c1'"
    sql = pipeline.translate(query, principal("advanced"), OPTIONS).sql
    assert sql.startswith(f'SELECT {postgres} AS "x" FROM (SELECT '), sql


def rule_cases() -> list[tuple[str, str, str]]:
    cases = []
    for block in (FIXTURES / "rules.sql").read_text().split("\n\n"):
        header, _, query = block.strip().partition("\n")
        if header.startswith("-- lite") or header.startswith("-- advanced"):
            tier, _, expected = header[3:].partition(" ")
            cases.append((tier, expected, query))
    return cases


@pytest.mark.parametrize("tier,expected,query", rule_cases())
def test_rules(tier: str, expected: str, query: str) -> None:
    if expected == "ok":
        assert pipeline.translate(query, principal(tier), OPTIONS).customers == ("c1",)
        return
    status, _, needle = expected.partition(": ")
    kind = Forbidden if status == "403" else SqlError
    with pytest.raises(kind) as raised:
        pipeline.translate(query, principal(tier), OPTIONS)
    assert needle in raised.value.message()


def test_syntax_error_has_line_and_column() -> None:
    with pytest.raises(SqlError) as raised:
        parsing.parse("SELECT a\nFROM b WHERE (")
    assert (raised.value.line, raised.value.column) == (2, 14)


def test_placeholders_bind_in_text_order() -> None:
    tree = parsing.parse("WITH c AS (SELECT ? AS a) SELECT '?', a FROM c LIMIT ?")
    parameters.bind(tree, [{"type": "VARCHAR", "value": "x"}, {"type": "INTEGER", "value": "3"}])
    assert tree.sql() == "WITH c AS (SELECT 'x' AS a) SELECT '?', a FROM c LIMIT 3"


@pytest.mark.parametrize("parameter", [{"type": "INTEGER", "value": "1.5"}, {"type": "INTEGER"},
                                       "x", {"type": "BLOB", "value": "1"}])
def test_bad_parameters(parameter) -> None:
    with pytest.raises(SqlError):
        parameters.bind(parsing.parse("SELECT ?"), [parameter])


@pytest.mark.parametrize("period,expected", [
    ("PT1S", ("seconds", 1)), ("PT30M", ("seconds", 1800)), ("P1D", ("seconds", 86400)),
    ("P1W", ("week", 1)), ("P1M", ("month", 1)), ("P3M", ("quarter", 1)), ("P1Y", ("year", 1)),
])
def test_periods(period: str, expected) -> None:
    assert time_formats.period(period) == expected


@pytest.mark.parametrize("period", ["PT0S", "P2M", "1H", "P", "PT1X"])
def test_bad_periods(period: str) -> None:
    with pytest.raises(SqlError):
        time_formats.period(period)


@pytest.mark.parametrize("item,expected", [
    (datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "2024-01-02T03:04:05.000Z"),
    (Decimal("3"), 3), (Decimal("2.5"), 2.5), (float("nan"), None), (None, None), (True, True),
])
def test_result_values(item, expected) -> None:
    assert results.value(item) == expected


@pytest.mark.parametrize("item,expected", [
    (Decimal(2**63 - 1), 2**63 - 1), (Decimal(2**63), float(2**63)), (Decimal("-1e300"), -1e300),
])
def test_numerics_beyond_a_long_are_doubles(item: Decimal, expected) -> None:
    assert results.value(item) == expected and type(results.value(item)) is type(expected)


def test_numerics_beyond_a_double_are_400() -> None:
    with pytest.raises(SqlError, match="numeric value out of range"):
        results.value(Decimal("1e309"))


def test_result_formats() -> None:
    names, rows = ["a", "b c"], [(1, "x"), (None, "y,z")]
    assert results.render(names, rows, "object", False).data == (
        b'[{"a":1,"b c":"x"},{"a":null,"b c":"y,z"}]')
    assert results.render(names, rows, "array", True).data == b'[["a","b c"],[1,"x"],[null,"y,z"]]'
    assert results.render(names, rows, "csv", True).data == b'a,b c\n1,x\n,"y,z"\n\n'
    assert results.render(names, rows, "arrayLines", False).data == b'[1,"x"]\n[null,"y,z"]\n\n'


def test_errors_are_api_errors() -> None:
    assert isinstance(SqlError("x"), ApiError)


# --- parse bounds (issue #13): refused before anything recursive sees the query ----------

DS = '"sdk-emea-historical-hour"'
WHERE = "CustomerId = 'c1' AND __time >= '2026-01-01'"


def chain(operator: str, operand: str, count: int) -> str:
    return f" {operator} ".join([operand] * count)


@pytest.mark.parametrize("query,needle", [
    ("SELECT " + chain("+", "1", 20_000), "more than 20,000 tokens"),
    (f"SELECT COUNT(*) FROM {DS} WHERE {WHERE}" + " AND (1=1 OR 1=1)" * 3000, "tokens"),
    (f"SELECT COUNT(*) FROM {DS} WHERE {WHERE}" + " AND (1=1 OR 1=1)" * 1500, "deeper than 300"),
    ("SELECT " + chain("+", "1", parsing.MAX_DEPTH + 1), "deeper than 300"),
    ("SELECT " + "(" * (parsing.MAX_NESTING + 1) + "1" + ")" * (parsing.MAX_NESTING + 1),
     "deeper than 64"),
    ("SELECT " + "CASE WHEN 1 = 1 THEN " * 100 + "1" + " END" * 100, "nest"),
    ("SELECT " + "NOT " * 900 + "TRUE", "nest"),
    ("SELECT 1 AS x" + ", 1" * 40_000, "longer than 100,000 characters"),
])
def test_size_bounds(query: str, needle: str) -> None:
    with pytest.raises(SqlError, match=needle):
        pipeline.translate(query, principal("advanced"), OPTIONS)


def _with_frames(frames: int, call):
    """`call()` with `frames` more frames on the stack (the gRPC server's own)."""
    return call() if frames == 0 else _with_frames(frames - 1, call)


@pytest.mark.parametrize("condition", [
    chain("AND", "(Source = 'p2p' OR 1 = 1)", parsing.MAX_DEPTH - 10),
    "(" + chain("OR", "ChannelId = 'x'", parsing.MAX_DEPTH - 10) + ")",
    chain("+", "ViewingTime", parsing.MAX_DEPTH - 10) + " > 0",
])
def test_just_within_the_depth_bound_translates(condition: str) -> None:
    """The bound leaves room: every pass and the generator finish below Python's limit."""
    for ds in (DS, '"sdk-emea-realtime"'):
        query = f"SELECT COUNT(*) AS n FROM {ds} WHERE {WHERE} AND {condition}"
        assert parsing.depth(parsing.parse(query)) <= parsing.MAX_DEPTH
        _with_frames(150, lambda q=query: pipeline.translate(q, principal("advanced"), OPTIONS))


def test_parentheses_in_strings_do_not_count() -> None:
    parsing.parse("SELECT '" + "(" * 100 + "' AS x")


def test_depth_is_iterative() -> None:
    assert parsing.depth(parsing.parse("SELECT 1")) == 2
    deep = sqlglot.parse_one("SELECT " + chain("+", "1", 5000))  # far past the recursion limit
    assert parsing.depth(deep, limit=10**6) == 5001
    assert parsing.depth(deep, limit=10) == 11  # stops once past the limit


@pytest.mark.parametrize("error", [RecursionError, OverflowError])
def test_python_limits_anywhere_in_the_pipeline_are_400(monkeypatch, error) -> None:
    def fail(*args) -> None:
        raise error()
    monkeypatch.setattr(columns, "check", fail)
    with pytest.raises(SqlError):
        pipeline.translate(f"SELECT COUNT(*) FROM {DS} WHERE {WHERE}", principal(), OPTIONS)


# --- PostgreSQL errors → documented errors (execution._translate_error) -------------------

SECRET = "ch-secret-row-value"


@pytest.mark.parametrize("sqlstate,needle", [
    ("22003", "numeric value out of range (SQLSTATE 22003)"),
    ("22008", "datetime field overflow (SQLSTATE 22008)"),
    ("22012", "division by zero (SQLSTATE 22012)"),
    ("22015", "interval field overflow (SQLSTATE 22015)"),
    ("2201B", "invalid regular expression (SQLSTATE 2201B)"),
    ("22P02", "invalid text representation (SQLSTATE 22P02)"),
    ("22007", "invalid datetime format (SQLSTATE 22007)"),
    ("22000", "data exception (SQLSTATE 22000)"),
    ("54001", "too complex: statement too complex (SQLSTATE 54001)"),
    ("54000", "too complex: program limit exceeded (SQLSTATE 54000)"),
])
def test_data_exceptions_and_limits_are_400_without_values(sqlstate: str, needle: str) -> None:
    error = pg.lookup(sqlstate)(f'invalid input syntax for type integer: "{SECRET}"')
    translated = execution._translate_error(error)
    assert isinstance(translated, SqlError) and needle in translated.message()
    assert SECRET not in translated.message()


def test_values_psycopg_cannot_load_are_400_without_values() -> None:
    error = psycopg.DataError("timestamp too large (after year 10K): '116099-06-16 15:00:00+00'")
    translated = execution._translate_error(error)
    assert isinstance(translated, SqlError) and "116099" not in translated.message()


def test_a_lost_connection_is_left_to_the_pool() -> None:
    assert execution._translate_error(psycopg.OperationalError("server closed")) is None
    assert execution._translate_error(pg.lookup("57P01")("terminating")) is None
