"""A statement's span is named by its leading keyword from a fixed list, never by its text."""

from __future__ import annotations

import pytest

from edgestats_core.traced_cursor import operation


@pytest.mark.parametrize(("statement", "expected"), [
    ("SELECT 1", "SELECT"),
    ("  \n with x AS (SELECT 1) SELECT * FROM x", "WITH"),
    ("-- a comment\n/* another */ INSERT INTO t VALUES (1)", "INSERT"),
    ("SET LOCAL ROLE edgestats_reader", "SET"),
    ("COPY beacons FROM STDIN", "COPY"),
    ("(SELECT 1)", "OTHER"),
    ("secret_value_42 SELECT", "OTHER"),
    ("'literal'", "OTHER"),
    ("", None),  # the pool's connection check: no span
    ("   ", None),
])
def test_operation(statement, expected):
    assert operation(statement) == expected
