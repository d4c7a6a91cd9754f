"""Runs a translated query on PostgreSQL as the read-only role, and cancels one by id.

Each query is one read-only transaction on a pooled connection:
`SET LOCAL ROLE edgestats_reader` (row-level security on the beacons),
`edgestats.customers` (the caller's customers), `statement_timeout`
(context.timeout, capped) and an `application_name` derived from the principal
and the query id, by which CancelQuery finds the backend from any worker process.
PostgreSQL errors become documented bodies; their text never reaches the caller nor the
log (a data error's text quotes row values, a syntax error's the token it stopped at: the
SQLSTATE and its condition are named instead).
`stream` runs the same statement in the same transaction and reads its rows in
chunks as PostgreSQL sends them (QueryStream), instead of all at once.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass

import grpc
import psycopg
from psycopg import errors as pg

from edgestats_core import prometheus_metrics
from edgestats_core.db import Database
from edgestats_core.errors import ApiError, GatewayTimeout
from edgestats_core.metrics import live_rows, rollup_rows
from edgestats_core.tenancy.principals import Principal
from sql_query_service.druid_sql.pipeline import ROW_CAP, Translation
from sql_query_service.druid_sql.problems import SqlError
from sql_query_service.query_specs import QuerySpec

log = logging.getLogger(__name__)
READER_ROLE = "edgestats_reader"
# libpq hands rows over in chunks from version 17 (psycopg[binary] bundles one); before, one
# row at a time
CHUNKED = psycopg.pq.version() >= 170000


class QueryCancelled(ApiError):
    """400 {"detail": "Query cancelled"} (CONTRACT §7)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    reason = "QUERY_CANCELLED"

    def body(self) -> dict:
        return {"detail": "Query cancelled"}


@dataclass(frozen=True)
class Result:
    """A query's answer: its column names and PostgreSQL type oids, and its rows."""

    names: list[str]
    type_oids: list[int]
    rows: list[tuple]


def application_name(principal: Principal, query_id: str) -> str:
    """`esq:` + a digest of (principal, query id): fits PostgreSQL's 63-byte limit."""
    owner = f"{principal.kind}:{principal.customer_id or principal.reseller_id or principal.key_id}"
    return "esq:" + hashlib.sha256(f"{owner}\0{query_id}".encode()).hexdigest()[:40]


_QUOTED = re.compile(r'"([^"]{1,200})"')


def condition(error: psycopg.Error) -> str:
    """PostgreSQL's condition name, from the class psycopg names after it (never the text,
    which quotes values): `NumericValueOutOfRange` → "numeric value out of range"."""
    name = type(error).__name__.rstrip("_")  # psycopg's InternalError_, RaiseException_ …
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).lower()


def _translate_error(error: psycopg.Error) -> ApiError | None:
    """The documented error for a PostgreSQL error, or None for a lost connection (503)."""
    primary = (error.diag.message_primary or "") if error.diag else ""
    state = error.sqlstate or ""
    if isinstance(error, pg.QueryCanceled):
        if "timeout" in primary:
            prometheus_metrics.STATEMENT_TIMEOUTS.inc()
            return GatewayTimeout()
        prometheus_metrics.SQL_CANCELLED.inc()
        return QueryCancelled()
    if isinstance(error, pg.UndefinedColumn):
        named = _QUOTED.search(primary)
        return SqlError(f"Unknown column '{named.group(1)}'" if named else "Unknown column")
    if isinstance(error, pg.GroupingError):
        return SqlError("Every selected column must be aggregated or listed in GROUP BY")
    if isinstance(error, pg.UndefinedFunction):
        return SqlError("An operator or function does not accept these argument types")
    if isinstance(error, pg.AmbiguousColumn):
        return SqlError("A column reference is ambiguous: qualify it with its table")
    if isinstance(error, pg.DatatypeMismatch | pg.CannotCoerce):
        return SqlError("A value has the wrong type for where it is used")
    if state.startswith("22"):  # data exception: overflow, division by zero, bad input …
        return SqlError(f"Invalid value: {condition(error)} (SQLSTATE {state})")
    if isinstance(error, psycopg.DataError):  # psycopg cannot load a value (a year > 9999)
        return SqlError("Invalid value: a result is out of the range the API can represent"
                        " (timestamps are years 1 to 9999)")
    if state.startswith("54"):  # program limit exceeded: stack depth, too many columns …
        return SqlError(f"The query is too complex: {condition(error)} (SQLSTATE {state})")
    if state.startswith(("42", "0A")):
        # SQLSTATE and condition only: the text quotes the token it failed at (a literal)
        log.warning("query refused by PostgreSQL: SQLSTATE %s (%s)", state, condition(error))
        return SqlError("The query cannot be run")
    if isinstance(error, psycopg.OperationalError):
        return None
    log.error("query failed in PostgreSQL: SQLSTATE %s (%s)", state, condition(error))
    return ApiError()


@asynccontextmanager
async def _reading(
    db: Database, translation: Translation, spec: QuerySpec, principal: Principal
) -> AsyncIterator[tuple[psycopg.AsyncCursor, str]]:
    """A cursor in the query's read-only transaction, set up as the reader role with its
    customers, timeout and cancel name, and the SQL to run on it. PostgreSQL errors of the
    body become the documented errors."""
    async with db.connection() as conn:
        try:
            async with conn.transaction(), conn.cursor() as cur:
                # one snapshot: the rolled hours read first and the rollup rows agree
                await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                await cur.execute(f"SET LOCAL ROLE {READER_ROLE}")
                await cur.execute(
                    "SELECT set_config('edgestats.customers', %s, true),"
                    " set_config('statement_timeout', %s, true),"
                    " set_config('TimeZone', 'UTC', true),"
                    " set_config('application_name', %s, true)",
                    (",".join(translation.customers), str(spec.timeout_ms),
                     application_name(principal, spec.query_id)),
                )
                sql = translation.sql
                hours = translation.hours()
                if hours is not None:  # what the rollups hold, in this snapshot
                    start, end = hours
                    await cur.execute(rollup_rows.COVERAGE_SQL, {"start": start, "end": end})
                    rolled = rollup_rows.Coverage.of(await cur.fetchall())
                    await cur.execute(live_rows.COVERAGE_SQL)
                    live = await cur.fetchone()
                    sql = translation.render(rolled, tuple(live) if live else None)
                yield cur, sql
        except psycopg.Error as error:
            translated = _translate_error(error)
            if translated is None:  # the connection, not the query: db.connection answers 503
                raise
            raise translated from None


def _over_cap() -> SqlError:
    return SqlError(f"The result has more than {ROW_CAP:,} rows: add a LIMIT or aggregate")


def _columns(cur: psycopg.AsyncCursor) -> tuple[list[str], list[int]]:
    columns = cur.description or []
    return [c.name for c in columns], [c.type_code for c in columns]


async def run(
    db: Database, translation: Translation, spec: QuerySpec, principal: Principal
) -> Result:
    """The columns and rows of the query, run read-only as the reader role."""
    async with _reading(db, translation, spec, principal) as (cur, sql):
        await cur.execute(sql)
        names, oids = _columns(cur)
        rows = await cur.fetchall()
    if len(rows) > ROW_CAP:
        raise _over_cap()
    return Result(names, oids, rows)


async def stream(
    db: Database, translation: Translation, spec: QuerySpec, principal: Principal, size: int
) -> AsyncIterator[Result]:
    """The answer of `run` in parts of at most `size` rows, each sent on as PostgreSQL
    produces it: one statement in the same transaction, under the same timeout and cancel
    name. Every part has the columns; an empty answer is one part without rows. Past
    ROW_CAP rows, or on an error of a later row, it fails after the parts already given."""
    async with _reading(db, translation, spec, principal) as (cur, sql):
        names: list[str] | None = None
        oids: list[int] = []
        rows: list[tuple] = []
        count = 0
        # closed before the transaction ends: an unfinished stream is cancelled in PostgreSQL
        async with aclosing(cur.stream(sql, size=size if CHUNKED else 1)) as produced:
            async for row in produced:
                if names is None:
                    names, oids = _columns(cur)
                count += 1
                if count > ROW_CAP:
                    raise _over_cap()
                rows.append(row)
                if len(rows) == size:
                    yield Result(names, oids, rows)
                    rows = []
        if names is None:  # no row: the stream saw no description, PostgreSQL gives it here
            await cur.execute(f"SELECT * FROM (\n{sql}\n) AS described LIMIT 0")
            names, oids = _columns(cur)
        if rows or count == 0:
            yield Result(names, oids, rows)


async def cancel(db: Database, principal: Principal, query_id: str) -> bool:
    """Cancel the caller's running query with this id; False when there is none."""
    rows = await db.fetch(
        "SELECT pg_cancel_backend(pid) AS cancelled FROM pg_stat_activity"
        " WHERE application_name = %s AND state = 'active' AND pid <> pg_backend_pid()",
        (application_name(principal, query_id),),
    )
    return any(r["cancelled"] for r in rows)
