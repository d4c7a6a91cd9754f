"""The result cache shares one computation between concurrent callers and forgets errors."""

import asyncio

import pytest

from edgestats_core.query.result_cache import ResultCache


def test_concurrent_callers_share_one_computation():
    calls = 0

    async def compute():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return calls

    async def main():
        cache = ResultCache(ttl_seconds=60)
        results = await asyncio.gather(*(cache.get("k", compute) for _ in range(20)))
        assert results == [1] * 20
        assert await cache.get("other", compute) == 2

    asyncio.run(main())


def test_entries_expire():
    async def main():
        cache = ResultCache(ttl_seconds=0.01)
        values = iter(range(10))

        async def compute():
            return next(values)

        first = await cache.get("k", compute)
        await asyncio.sleep(0.02)
        assert await cache.get("k", compute) == first + 1

    asyncio.run(main())


def test_expired_answers_are_dropped_without_waiting_for_a_full_cache(monkeypatch):
    """Windows move with the clock: keys asked once must not pile up until max_entries."""
    clock = [1000.0]
    monkeypatch.setattr("edgestats_core.query.result_cache.time.monotonic", lambda: clock[0])

    async def compute():
        return "rows"

    async def main():
        cache = ResultCache(ttl_seconds=1.0, max_entries=10_000)
        for second in range(300):  # a new window every second, for 5 minutes
            clock[0] = 1000.0 + second
            await cache.get(("tenant", "10m", second), compute)
        # the answers of the last second or so; the rest expired and were dropped
        assert len(cache) <= 3

    asyncio.run(main())


def test_a_full_cache_drops_its_older_half():
    async def compute():
        return 1

    async def main():
        cache = ResultCache(ttl_seconds=3600, max_entries=10)
        for key in range(10):
            await cache.get(key, compute)
        assert len(cache) == 10
        await cache.get("one more", compute)
        assert len(cache) == 6  # 5 dropped, then the new one

    asyncio.run(main())


def test_errors_are_not_cached():
    attempts = []

    async def compute():
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("database down")
        return "ok"

    async def main():
        cache = ResultCache(ttl_seconds=60)
        with pytest.raises(RuntimeError):
            await cache.get("k", compute)
        assert await cache.get("k", compute) == "ok"

    asyncio.run(main())


def test_a_zero_ttl_disables_the_cache():
    async def main():
        cache = ResultCache(ttl_seconds=0)
        values = iter(range(10))

        async def compute():
            return next(values)

        assert [await cache.get("k", compute) for _ in range(3)] == [0, 1, 2]

    asyncio.run(main())


def test_ttl_counts_from_completion_and_callers_may_lengthen_it():
    async def main():
        cache = ResultCache(ttl_seconds=0.05)
        values = iter(range(10))

        async def slow():
            await asyncio.sleep(0.08)  # longer than the ttl: still reused afterwards
            return next(values)

        assert await cache.get("k", slow) == 0
        assert await cache.get("k", slow) == 0
        assert await cache.get("long", slow, ttl=0.3) == 1
        await asyncio.sleep(0.1)
        assert await cache.get("long", slow, ttl=0.3) == 1  # default ttl would have expired
        assert await cache.get("k", slow) == 2

    asyncio.run(main())
