"""The `hll_merge` and `tdigest_merge` aggregates (metrics schema 015) build the hour rows
from minute rows: the same sketches as postgresql-hll's `hll_union_agg` and the t-digest
extension's `tdigest(tdigest)` — per group, over NULLs, over no row — and the
estimates they give hold against the values counted here."""

from __future__ import annotations

import random

import psycopg
import pytest

pytestmark = pytest.mark.db

# group g: sketches k <= g of values [k * 100, k * 100 + 40g + 4) (overlapping runs), one
# NULL sketch per group, and values k * 100 + i for the t-digests
SKETCHES = """
SELECT g, k, hll_add_agg(hll_hash_integer(k * 100 + i), 14) AS s,
       tdigest((k * 100 + i)::float8, 500) AS d
FROM generate_series(0, 5) g, generate_series(0, g) k, generate_series(0, 40 * g + 3) i
GROUP BY g, k
UNION ALL SELECT g, -1, NULL::hll, NULL::tdigest FROM generate_series(0, 5) g
"""


def test_hll_merge_equals_the_union_aggregate(db_url):
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(f"""
            SELECT g, hll_merge(s)::text = hll_union_agg(s)::text, hll_cardinality(hll_merge(s)),
                   hll_merge(s) FILTER (WHERE k > 100) IS NULL
            FROM ({SKETCHES}) sketches GROUP BY g ORDER BY g""").fetchall()
    assert [r[0] for r in rows] == list(range(6))
    for g, same, card, none in rows:
        assert same and none
        values = {k * 100 + i for k in range(g + 1) for i in range(40 * g + 4)}
        assert abs(card - len(values)) <= 0.02 * len(values)


def test_tdigest_merge_keeps_every_value_and_its_quantiles(db_url):
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(f"""
            SELECT g, tdigest_count(merged), q.*, none
            FROM (SELECT g, tdigest_merge(d) AS merged, tdigest(d) AS library,
                         tdigest_merge(d) FILTER (WHERE k > 100) AS none
                  FROM ({SKETCHES}) sketches GROUP BY g) merges,
                 LATERAL (SELECT tdigest_percentile(x, 0.5),
                                 tdigest_percentile(y, 0.5)
                          FROM (VALUES (merged, library)) AS t(x, y)) q
            ORDER BY g""").fetchall()
    for g, count, median, library_median, none in rows:
        values = sorted(k * 100 + i for k in range(g + 1) for i in range(40 * g + 4))
        assert count == len(values) and none is None
        # within 2 % of the values' rank of the true median, as the library's own merge
        for estimate in (median, library_median):
            rank = sum(v <= estimate for v in values) / len(values)
            assert abs(rank - 0.5) <= 0.02


def test_tdigest_merge_of_many_digests_stays_within_the_bound(db_url):
    """An hour group of 60 minute digests of random values: the merged quantiles' ranks."""
    rng = random.Random(5)
    minutes = [[rng.lognormvariate(8, 1) for _ in range(rng.randint(1, 300))] for _ in range(60)]
    with psycopg.connect(db_url) as conn:
        quantiles = conn.execute("""
            SELECT tdigest_percentile(merged, ARRAY[0.1, 0.5, 0.9, 0.99])
            FROM (SELECT tdigest_merge(d) AS merged
                  FROM (SELECT m, tdigest(v, 500) AS d
                        FROM unnest(%s::int[], %s::float8[]) AS t(m, v) GROUP BY m) digests
                 ) hour
            """, ([i for i, m in enumerate(minutes) for _ in m],
                  [v for m in minutes for v in m])).fetchone()[0]
    values = sorted(v for m in minutes for v in m)
    for q, estimate in zip((0.1, 0.5, 0.9, 0.99), quantiles, strict=True):
        rank = sum(v <= estimate for v in values) / len(values)
        assert abs(rank - q) <= 0.02
