"""Comparison of API answers with oracle values: same keys and order, numbers to float precision."""

from __future__ import annotations

import math


def assert_same(actual: object, expected: object, path: str = "$") -> None:
    """Equal structure and key order; numbers equal within 1e-9 relative (summation order)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        assert list(actual) == list(expected), f"{path}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: {actual!r} is not an array"
        assert len(actual) == len(expected), f"{path}: {len(actual)} items != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{i}]")
    elif isinstance(expected, bool) or expected is None or isinstance(expected, str):
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"
    else:
        is_number = isinstance(actual, int | float) and not isinstance(actual, bool)
        assert is_number, f"{path}: {actual!r} is not a number"
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9), (
            f"{path}: {actual!r} != {expected!r}"
        )
