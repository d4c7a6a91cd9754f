"""Token buckets: bursts pass, the sustained rate holds, keys are independent."""

from edgestats_core.tenancy.rate_limits import Limit, RateLimiter


def test_a_burst_passes_then_the_rate_holds():
    limiter = RateLimiter(Limit(rate=20, burst=100))
    decisions = [limiter.take("k", "lite", now=0.0) for _ in range(101)]
    assert all(d.allowed for d in decisions[:100])
    assert not decisions[100].allowed and decisions[100].retry_after == 1
    assert decisions[99].remaining == 0 and decisions[0].remaining == 99
    # one second later 20 more tokens
    later = [limiter.take("k", "lite", now=1.0) for _ in range(21)]
    assert sum(d.allowed for d in later) == 20


def test_keys_do_not_share_buckets():
    limiter = RateLimiter(Limit(rate=1, burst=2))
    assert [limiter.take("a", "lite", now=0).allowed for _ in range(3)] == [True, True, False]
    assert limiter.take("b", "lite", now=0).allowed


def test_tiers_have_their_own_limits():
    limiter = RateLimiter(Limit(20, 100), {"advanced": Limit(50, 200)})
    assert limiter.take("k", "advanced", now=0).limit == 50
    assert limiter.take("j", "lite", now=0).limit == 20


def test_workers_share_the_limit():
    limiter = RateLimiter(Limit(rate=20, burst=100), workers=2)
    allowed = sum(limiter.take("k", "lite", now=0).allowed for _ in range(100))
    assert allowed == 50  # the other worker takes the other half of the key's calls


def test_a_keys_own_limit_wins_over_its_tier():
    limiter = RateLimiter(Limit(20, 100), {"advanced": Limit(50, 200)})
    decisions = [limiter.take("k", "advanced", (1, 3), now=0) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert decisions[0].limit == 1
