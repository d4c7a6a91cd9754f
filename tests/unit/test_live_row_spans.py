"""live_reads.row_spans: the rows a live-layer reader takes for the whole 5-second buckets of
a window — every second once, each span whole rows of its width, the fewest rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from metrics_service.live_reads import row_spans

T0 = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
WIDTH_SETS = [(5,), (5, 30), (5, 30, 300)]


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_ten_minute_window_off_the_five_minute_grid():
    spans = row_spans(at(35), at(635))
    assert spans == [(5, at(35), at(60)), (30, at(60), at(300)), (300, at(300), at(600)),
                     (30, at(600), at(630)), (5, at(630), at(635))]


def test_nothing_for_an_empty_range():
    assert row_spans(at(60), at(60)) == []


def _fewest_rows(first: int, upto: int, widths: tuple[int, ...]) -> int:
    """The fewest aligned rows covering [first, upto) exactly (dynamic programming)."""
    best = {first: 0}
    for t in range(first, upto, 5):
        if t not in best:
            continue
        for w in widths:
            if t % w == 0 and t + w <= upto:
                best[t + w] = min(best.get(t + w, 10**9), best[t] + 1)
    return best[upto]


@given(st.integers(0, 1500), st.integers(0, 900), st.sampled_from(WIDTH_SETS))
def test_spans_tile_the_range_with_the_fewest_whole_rows(start, length, widths):
    first, upto = 5 * start, 5 * (start + length)  # seconds after T0 (a 5-minute boundary)
    spans = row_spans(at(first), at(upto), widths)
    edges = [at(first)]
    rows = 0
    for width, low, high in spans:
        assert width in widths and low == edges[-1] and low < high
        assert (low - T0).total_seconds() % width == 0 == (high - T0).total_seconds() % width
        rows += (high - low).total_seconds() // width
        edges.append(high)
    assert edges[-1] == at(upto)
    assert rows == _fewest_rows(first, upto, widths)
