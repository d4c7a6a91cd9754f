"""The one database seam: an async psycopg pool, queries with parameters, transactions."""

from __future__ import annotations

import select
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from edgestats_core import prometheus_metrics, traced_cursor, tracing
from edgestats_core.errors import GatewayTimeout, Unavailable

# How long a request waits for a pooled connection before answering 503.
CONNECT_TIMEOUT_SECONDS = 2.0
# Every statement's time budget: past it PostgreSQL cancels the query (answered 504), so a
# query over budget never keeps running after its caller gave up. Below Envoy's route timeout.
STATEMENT_TIMEOUT_MS = 30_000
# A pooled connection idle longer than this is checked with a round trip before a request
# gets it, so that one broken by a database restart is replaced, not handed out. One
# returned more recently gets the round trip only if its socket holds something (an idle
# connection is sent nothing unless the server is closing it, e.g. a restart's "terminating
# connection"), so a busy pool saves a round trip per checkout.
CHECK_IDLE_SECONDS = 1.0


class Database:
    """A pooled PostgreSQL connection source for one service process."""

    def __init__(
        self, url: str, min_size: int = 2, max_size: int = 10,
        statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
    ) -> None:
        self.label = prometheus_metrics.database_label(url)  # host:port/dbname, no secrets
        # a span per statement when tracing is on (psycopg's own cursor otherwise)
        traced = ({"cursor_factory": traced_cursor.cursor_class(self.label.rsplit("/", 1)[-1])}
                  if tracing.ENABLED else {})
        self.pool = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=CONNECT_TIMEOUT_SECONDS,
            kwargs={
                "autocommit": True,
                "connect_timeout": 2,
                # JIT compiles for seconds on the wide rollup queries and saves nothing at this
                # size; without parallel workers, sums run in one order: the same question
                # gets the same bits over HTTP and gRPC (and two cores serve two clients)
                "options": f"-c statement_timeout={statement_timeout_ms} -c jit=off"
                " -c max_parallel_workers_per_gather=0",
                **traced,
            },
            check=self._check_if_idle,
            reset=self._returned,
        )
        self._returned_at: weakref.WeakKeyDictionary[psycopg.AsyncConnection, float] = (
            weakref.WeakKeyDictionary())

    async def _returned(self, conn: psycopg.AsyncConnection) -> None:
        self._returned_at[conn] = time.monotonic()

    async def _check_if_idle(self, conn: psycopg.AsyncConnection) -> None:
        """The pool's check: a round trip if `conn` has been idle over CHECK_IDLE_SECONDS or
        its socket holds something (a zero-timeout poll); raises if it is broken."""
        recent = time.monotonic() - self._returned_at.get(conn, 0.0) <= CHECK_IDLE_SECONDS
        if not recent or select.select([conn.fileno()], [], [], 0)[0]:
            await AsyncConnectionPool.check_connection(conn)

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection; database outages become Unavailable (503)."""
        try:
            async with self.pool.connection() as conn:
                yield conn
        except psycopg.errors.QueryCanceled as exc:  # statement_timeout (an OperationalError)
            prometheus_metrics.STATEMENT_TIMEOUTS.inc()
            raise GatewayTimeout() from exc
        except (psycopg.OperationalError, psycopg.errors.AdminShutdown) as exc:
            raise Unavailable() from exc
        except TimeoutError as exc:  # psycopg_pool.PoolTimeout subclasses OperationalError too
            raise Unavailable() from exc

    async def fetch(self, query: Any, params: Sequence | dict | None = None) -> list[dict]:
        """Run one statement and return its rows as dicts."""
        async with self.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall() if cur.description else []

    def report_stats(self) -> None:
        """Set the pool's Prometheus gauges and add its waits since the last report."""
        stats = self.pool.pop_stats()
        for state, key in (("size", "pool_size"), ("idle", "pool_available"),
                           ("max", "pool_max")):
            prometheus_metrics.POOL.labels(self.label, state).set(stats.get(key, 0))
        prometheus_metrics.POOL_WAITING.labels(self.label).set(stats.get("requests_waiting", 0))
        prometheus_metrics.POOL_WAITS.labels(self.label).inc(stats.get("requests_queued", 0))
        prometheus_metrics.POOL_WAIT_SECONDS.labels(self.label).inc(
            stats.get("requests_wait_ms", 0) / 1000)

    async def ping(self) -> None:
        """Raise Unavailable unless PostgreSQL answers."""
        await self.fetch("SELECT 1")
