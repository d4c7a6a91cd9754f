"""A client span per statement: the cursor class a pool's connections get when tracing is on.

OpenTelemetry's psycopg instrumentation records each statement's text (`db.statement`),
which for the SQL service carries the caller's literals, and cannot be told not to. These
spans carry `db.system`, `db.operation` (the statement's leading keyword, from a fixed list)
and `db.name`, never the text or its parameters.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncCopy, AsyncCursor
from psycopg.sql import Composable

from edgestats_core import tracing

# The leading keywords named as they are; any other statement is OTHER.
OPERATIONS = frozenset((
    "ALTER", "ANALYZE", "BEGIN", "CALL", "COMMIT", "COPY", "CREATE", "DELETE", "DISCARD", "DO",
    "DROP", "EXECUTE", "EXPLAIN", "INSERT", "LOCK", "MERGE", "NOTIFY", "REFRESH", "RELEASE",
    "RESET", "ROLLBACK", "SAVEPOINT", "SELECT", "SET", "SHOW", "TABLE", "TRUNCATE", "UPDATE",
    "VACUUM", "VALUES", "WITH"))
_LEADING = re.compile(r"(?:\s+|--[^\n]*\n?|/\*.*?\*/)*([A-Za-z]*)", re.DOTALL)


def operation(statement: str) -> str | None:
    """The statement's leading keyword if listed, else OTHER; None for an empty statement
    (the pool's connection check)."""
    word = _LEADING.match(statement).group(1).upper()  # type: ignore[union-attr]
    if word:
        return word if word in OPERATIONS else "OTHER"
    return None if not statement.strip() else "OTHER"


def cursor_class(database: str) -> type[AsyncCursor]:
    """An AsyncCursor whose statements (execute, executemany, copy) are spans on
    `database` (its name)."""

    class TracedCursor(AsyncCursor):
        def _span(self, query: Any):
            if isinstance(query, Composable):
                query = query.as_string(self)
            elif isinstance(query, bytes):
                query = query.decode(errors="replace")
            verb = operation(query if isinstance(query, str) else "")
            return tracing.statement_span(database, verb) if verb else tracing.OFF

        async def execute(self, query: Any, *args: Any, **kwargs: Any):
            with self._span(query):
                return await super().execute(query, *args, **kwargs)

        async def executemany(self, query: Any, *args: Any, **kwargs: Any) -> None:
            with self._span(query):
                await super().executemany(query, *args, **kwargs)

        @asynccontextmanager
        async def copy(self, statement: Any, *args: Any, **kwargs: Any
                       ) -> AsyncIterator[AsyncCopy]:
            with self._span(statement):
                async with super().copy(statement, *args, **kwargs) as copy:
                    yield copy

    return TracedCursor
