"""The `hll_union_cardinality` aggregate (metrics schema 010) answers what
`hll_cardinality(hll_union_agg(...))` answers — per group, under FILTER, over no row — and
both estimate the distinct values counted here within HyperLogLog's bound."""

from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.db

# groups of sketches: group g holds sketches of values [k * 100, k * 100 + size) for k < g + 1
SKETCHES = """
SELECT g, k, hll_add_agg(hll_hash_integer(k * 100 + i), 14) AS s
FROM generate_series(0, 5) g, generate_series(0, g) k, generate_series(0, 40 * g + 3) i
GROUP BY g, k
"""


def test_equals_the_cardinality_of_the_packed_union(db_url):
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(f"""
            SELECT g, hll_union_cardinality(s), hll_cardinality(hll_union_agg(s)),
                   hll_union_cardinality(s) FILTER (WHERE k > 100),
                   hll_cardinality(hll_union_agg(s) FILTER (WHERE k > 100))
            FROM ({SKETCHES}) sketches GROUP BY g ORDER BY g""").fetchall()
    assert [r[0] for r in rows] == list(range(6))
    for g, card, packed, none, packed_none in rows:
        assert card == packed
        assert none is None and packed_none is None
        # the distinct values of group g: overlapping runs [k*100, k*100 + 40g + 4), k <= g
        values = {k * 100 + i for k in range(g + 1) for i in range(40 * g + 4)}
        assert abs(card - len(values)) <= 0.02 * len(values)
