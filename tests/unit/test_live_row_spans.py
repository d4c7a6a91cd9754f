"""live_reads.row_spans: the rows a live-layer reader takes for the whole 5-second buckets of
a window — every second once, each span whole buckets of its width or one edge row of a
5-minute block (a prefix or a suffix), the fewest rows."""

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
    """A block's suffix, a block, the next block's prefix."""
    assert row_spans(at(35), at(635)) == [(265, at(35), at(300)), (300, at(300), at(600)),
                                          (35, at(600), at(635))]
    assert row_spans(at(35), at(635), (5, 30)) == [
        (5, at(35), at(60)), (30, at(60), at(630)), (5, at(630), at(635))]


def test_inside_one_block_buckets_only():
    assert row_spans(at(35), at(275)) == [
        (5, at(35), at(60)), (30, at(60), at(270)), (5, at(270), at(275))]
    assert row_spans(at(0), at(35)) == [(35, at(0), at(35))]  # a prefix
    assert row_spans(at(270), at(300)) == [(30, at(270), at(300))]  # a suffix that is a bucket


def test_nothing_for_an_empty_range():
    assert row_spans(at(60), at(60)) == []


def _rows(widths: tuple[int, ...]):
    """Whether [t, t + w) is a row: a bucket of a width, or with 5-minute buckets an edge
    row of a block (starting or ending at the block's bounds, inside it)."""
    def row(t: int, w: int) -> bool:
        if w in widths and t % w == 0:
            return True
        inside = t // 300 == (t + w - 1) // 300
        return 300 in widths and inside and (t % 300 == 0 or (t + w) % 300 == 0)
    return row


def _fewest_rows(first: int, upto: int, widths: tuple[int, ...]) -> int:
    """The fewest rows covering [first, upto) exactly (dynamic programming)."""
    row = _rows(widths)
    best = {first: 0}
    for t in range(first, upto, 5):
        if t not in best:
            continue
        for w in range(5, min(300, upto - t) + 1, 5):
            if row(t, w):
                best[t + w] = min(best.get(t + w, 10**9), best[t] + 1)
    return best[upto]


@given(st.integers(0, 1500), st.integers(0, 900), st.sampled_from(WIDTH_SETS))
def test_spans_tile_the_range_with_the_fewest_rows(start, length, widths):
    first, upto = 5 * start, 5 * (start + length)  # seconds after T0 (a 5-minute boundary)
    spans = row_spans(at(first), at(upto), widths)
    row = _rows(widths)
    edges = [at(first)]
    rows = 0
    for width, low, high in spans:
        assert low == edges[-1] and low < high
        t, w = int((low - T0).total_seconds()), int((high - low).total_seconds())
        if width in widths:  # a run of whole buckets
            assert w % width == 0 and all(row(u, width) for u in range(t, t + w, width))
            rows += w // width
        else:  # one edge row
            assert width == w and row(t, w)
            rows += 1
        edges.append(high)
    assert edges[-1] == at(upto)
    assert rows == _fewest_rows(first, upto, widths)
