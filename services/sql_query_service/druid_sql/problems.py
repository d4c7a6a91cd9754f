"""The errors a query can have: 400 naming the problem (with its position) or 403 for a rule."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from edgestats_core.errors import ApiError, Forbidden

MAX_MESSAGE = 300


@dataclass
class SqlError(ApiError):
    """400: the query cannot be run as written (syntax, unknown name, missing filter)."""

    msg: str = "Invalid query"
    line: int | None = None
    column: int | None = None
    kind: str = "value_error.sql"
    code = grpc.StatusCode.INVALID_ARGUMENT

    def body(self) -> dict:
        # messages quote the caller's names: bounded, since the body rides in a header
        msg = self.msg if len(self.msg) <= MAX_MESSAGE else self.msg[:MAX_MESSAGE] + "…"
        item: dict = {"loc": ["body", "query"], "msg": msg, "type": self.kind}
        if self.line is not None:
            item["ctx"] = {"line": self.line, "column": self.column}
        return {"detail": [item]}


def forbidden(rule: str, reason: str) -> Forbidden:
    """403 naming the rule or the column (CONTRACT §7); `reason` for typed callers."""
    return Forbidden(rule, reason)


def invalid(msg: str) -> SqlError:
    return SqlError(msg)
