"""Tests for MemoryCache and CachePolicy (the CacheBackend contract is in test_cache_contract)."""

from __future__ import annotations

import gc
import math
import random
import threading
import tracemalloc

import pytest
from _fakes import MOBILE_NO
from test_cache_contract import PLAIN, PORTED

from smsroute import codec
from smsroute.cache import DAY, CachePolicy, MemoryCache
from smsroute.testing import FakeClock


def numbers(n: int, start: int = 0) -> list[str]:
    """Return ``n`` distinct valid mobile numbers."""
    return [f"139{i:08d}" for i in range(start, start + n)]


def test_default_policy_matches_the_docs():
    """Defaults: a week fresh, an hour for negatives, thirty days stale."""
    policy = MemoryCache().policy
    assert (policy.ttl, policy.negative_ttl, policy.stale_ttl) == (7 * DAY, 3600.0, 30 * DAY)


def test_keyword_overrides_apply_on_top_of_a_policy():
    """ttl=/negative_ttl=/stale_ttl= change only what they name on the given policy."""
    base = CachePolicy(ttl=50.0, negative_ttl=5.0, stale_ttl=500.0)
    cache = MemoryCache(policy=base, negative_ttl=1.0)
    assert cache.policy == CachePolicy(ttl=50.0, negative_ttl=1.0, stale_ttl=500.0)
    assert MemoryCache(policy=base).policy is base


def test_policy_copy_and_ttls():
    """CachePolicy.copy() changes fields; ttl_for/keep_for tell negatives from answers."""
    policy = CachePolicy().copy(ttl=10.0, stale_ttl=20.0, negative_ttl=3.0)
    assert policy.ttl_for(PORTED) == 10.0
    assert policy.keep_for(PORTED) == 30.0
    assert policy.ttl_for(codec.NOT_FOUND) == 3.0
    assert policy.keep_for(codec.NOT_FOUND) == 3.0


@pytest.mark.parametrize("field", ["ttl", "negative_ttl", "stale_ttl"])
def test_negative_durations_are_refused(field):
    """A negative duration is a ValueError, in a policy or as a keyword."""
    with pytest.raises(ValueError, match=field):
        CachePolicy(**{field: -1.0})
    with pytest.raises(ValueError, match=field):
        MemoryCache(**{field: -1.0})


@pytest.mark.parametrize("value", [math.inf, math.nan])
@pytest.mark.parametrize("field", ["ttl", "negative_ttl", "stale_ttl"])
def test_non_finite_durations_are_refused(field, value):
    """An infinite or NaN duration is refused up front, not met later by a set() that fails."""
    with pytest.raises(ValueError, match=field):
        CachePolicy(**{field: value})
    with pytest.raises(ValueError, match=field):
        MemoryCache(**{field: value})


def test_maxsize_must_be_positive():
    """maxsize=0 is refused rather than evicting every entry on arrival."""
    with pytest.raises(ValueError, match="maxsize"):
        MemoryCache(maxsize=0)


def test_len_contains_clear_repr():
    """len(), in, clear() and repr() see the stored numbers."""
    cache = MemoryCache(maxsize=10)
    cache.set(MOBILE_NO, PORTED)
    assert len(cache) == 1
    assert MOBILE_NO in cache
    assert "1/10" in repr(cache)
    cache.clear()
    assert len(cache) == 0
    assert MOBILE_NO not in cache


def test_expired_entries_are_dropped_on_read():
    """Reading an entry past its stale window removes it, so dead numbers free their memory."""
    clock = FakeClock()
    cache = MemoryCache(timer=clock, ttl=10.0, stale_ttl=10.0)
    cache.set(MOBILE_NO, PORTED)
    clock.advance(30.0)
    assert cache.get(MOBILE_NO) is None
    assert MOBILE_NO not in cache


def test_evicts_at_maxsize_in_insertion_order_without_use():
    """Without reads the cache keeps exactly the newest maxsize numbers."""
    cache = MemoryCache(maxsize=10)
    nums = numbers(100)
    for n in nums:
        cache.set(n, PORTED)
    assert len(cache) == 10
    assert [n for n in nums if n in cache] == nums[-10:]


def test_overwrite_at_maxsize_evicts_nothing():
    """Storing a number already cached does not push another one out."""
    cache = MemoryCache(maxsize=3)
    a, b, c = numbers(3)
    for n in (a, b, c):
        cache.set(n, PORTED)
    cache.set(a, PLAIN)
    assert all(n in cache for n in (a, b, c))


def test_recently_used_survives_eviction_second_chance():
    """A number read since the last eviction round survives it; the oldest unread goes."""
    cache = MemoryCache(maxsize=3)
    a, b, c, d, e, f, g = numbers(7)
    for n in (a, b, c):
        cache.set(n, PORTED)
    assert cache.get(a) == (PORTED, True)
    cache.set(d, PORTED)
    assert a in cache
    assert b not in cache
    # a used up its second chance: without another read it ages out like the rest.
    for n in (e, f, g):
        cache.set(n, PORTED)
    assert a not in cache
    assert {n for n in (c, d, e, f, g) if n in cache} == {e, f, g}


def test_hot_number_survives_a_stream_of_new_ones():
    """A number read between inserts is never evicted by a stream of one-off numbers."""
    cache = MemoryCache(maxsize=50)
    hot = MOBILE_NO
    cache.set(hot, PORTED)
    for n in numbers(1000, start=10_000_000):
        cache.set(n, PLAIN)
        assert cache.get(hot) == (PORTED, True)
    assert len(cache) == 50


def test_thread_safety_smoke():
    """Many threads setting, reading, deleting and evicting at once raise nothing."""
    clock = FakeClock()
    cache = MemoryCache(maxsize=64, ttl=5.0, stale_ttl=5.0, negative_ttl=1.0, timer=clock)
    keys = numbers(200)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for _ in range(3000):
                key = rng.choice(keys)
                op = rng.random()
                if op < 0.5:
                    got = cache.get(key)
                    assert got is None or got[0] in (PORTED, PLAIN, codec.NOT_FOUND)
                elif op < 0.85:
                    cache.set(key, rng.choice((PORTED, PLAIN, codec.NOT_FOUND)))
                elif op < 0.97:
                    cache.delete(key)
                else:
                    clock.advance(0.5)
        except BaseException as exc:  # collected: a thread's exception must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(cache) <= 64


def test_memory_per_number_at_100k():
    """100k cached numbers cost at most 200 bytes each, key included (tracemalloc)."""
    # A clock a year into uptime: the packed expiry is as large as in production.
    clock = FakeClock(start=3.2e7)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cache = MemoryCache(maxsize=100_000, timer=clock)
        for i in range(100_000):
            cache.set(f"139{i:08d}", PORTED if i % 10 else PLAIN)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(cache) == 100_000
    assert (after - before) / 100_000 <= 200


def test_set_with_a_ttl_of_its_own():
    """set(..., ttl=) keeps that one entry fresh for ``ttl`` instead of the policy's TTL."""
    clock = FakeClock()
    cache = MemoryCache(clock=clock, ttl=10.0, stale_ttl=0.0)
    cache.set(MOBILE_NO, PORTED, ttl=100.0)
    cache.set("13900000002", PLAIN)
    clock.advance(50.0)
    assert cache.get(MOBILE_NO) == (PORTED, True)
    assert cache.get("13900000002") is None
