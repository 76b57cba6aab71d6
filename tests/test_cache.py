"""Tests for the answer caches: a contract suite for every CacheBackend, then MemoryCache itself."""

from __future__ import annotations

import gc
import math
import random
import threading
import tracemalloc
from typing import Any

import pytest
from _fakes import MOBILE_NO, TELECOM_NO, FakeClient, api_error, gateways, info

from smsroute import codec
from smsroute.cache import DAY, CachePolicy, MemoryCache
from smsroute.carrier import Carrier
from smsroute.models import CarrierInfo
from smsroute.routing import Router
from smsroute.testing import FakeClock
from smsroute.types import CacheBackend

PORTED = codec.encode(CarrierInfo(MOBILE_NO, 1, "湖北-宜昌", Carrier.MOBILE, Carrier.TELECOM))
PLAIN = codec.encode(CarrierInfo(MOBILE_NO, 0, "北京-北京", Carrier.MOBILE, Carrier.MOBILE))
VIRTUAL = codec.encode(CarrierInfo(MOBILE_NO, 4, "新疆-伊犁", Carrier.UNICOM, Carrier.BROADNET))
NO_AREA = codec.encode(CarrierInfo(MOBILE_NO, 3, "", None, Carrier.TELECOM))

TTL, NEGATIVE_TTL, STALE_TTL = 100.0, 10.0, 1000.0


class CacheContract:
    """What every CacheBackend must do; subclass it and define ``make_cache``.

    ``make_cache(clock, **policy)`` returns an empty backend whose time is
    ``clock`` (a FakeClock) and whose policy takes ``ttl``, ``negative_ttl``
    and ``stale_ttl`` in seconds. A backend may keep expiry times rounded up
    to ``granularity`` seconds (MemoryCache keeps whole seconds); set it on
    the subclass. Nothing here sleeps, so a backend must read the given clock.
    """

    granularity: float = 1.0

    def make_cache(self, clock: FakeClock, **policy: float) -> CacheBackend:
        """Return an empty backend on ``clock`` with the given policy."""
        raise NotImplementedError

    @pytest.fixture
    def clock(self) -> FakeClock:
        """Return the fake time the backend runs on."""
        return FakeClock()

    @pytest.fixture
    def cache(self, clock: FakeClock) -> Any:
        """Return an empty backend with the suite's policy."""
        return self.make_cache(clock, ttl=TTL, negative_ttl=NEGATIVE_TTL, stale_ttl=STALE_TTL)

    def past(self, seconds: float) -> float:
        """Return a time step surely past ``seconds`` given the backend's rounding."""
        return seconds + self.granularity + 0.001

    def test_is_a_cache_backend(self, cache):
        """The backend satisfies the CacheBackend protocol the router is written against."""
        assert isinstance(cache, CacheBackend)

    def test_missing_number_is_none(self, cache):
        """A number never stored reads as None."""
        assert cache.get(MOBILE_NO) is None

    def test_set_then_get_is_fresh(self, cache):
        """A stored answer comes back unchanged and fresh."""
        cache.set(MOBILE_NO, PORTED)
        assert cache.get(MOBILE_NO) == (PORTED, True)

    @pytest.mark.parametrize("answer", [PORTED, PLAIN, VIRTUAL, NO_AREA, codec.NOT_FOUND])
    def test_values_round_trip(self, cache, answer):
        """Any answer code the codec makes is stored exactly."""
        cache.set(MOBILE_NO, answer)
        assert cache.get(MOBILE_NO) == (answer, True)

    def test_numbers_are_independent(self, cache):
        """Each number keeps its own answer."""
        cache.set(MOBILE_NO, PORTED)
        cache.set(TELECOM_NO, PLAIN)
        assert cache.get(MOBILE_NO) == (PORTED, True)
        assert cache.get(TELECOM_NO) == (PLAIN, True)

    def test_fresh_until_ttl(self, cache, clock):
        """An answer stays fresh for its whole TTL."""
        cache.set(MOBILE_NO, PORTED)
        clock.advance(TTL - 0.01)
        assert cache.get(MOBILE_NO) == (PORTED, True)

    def test_stale_after_ttl(self, cache, clock):
        """Past its TTL an answer is still returned, marked not fresh."""
        cache.set(MOBILE_NO, PORTED)
        clock.advance(self.past(TTL))
        assert cache.get(MOBILE_NO) == (PORTED, False)

    def test_stale_until_stale_ttl(self, cache, clock):
        """A stale answer is kept for stale_ttl after the TTL."""
        cache.set(MOBILE_NO, PORTED)
        clock.advance(TTL + STALE_TTL - 0.01)
        assert cache.get(MOBILE_NO) == (PORTED, False)

    def test_gone_after_stale_window(self, cache, clock):
        """After TTL plus stale_ttl the answer is gone."""
        cache.set(MOBILE_NO, PORTED)
        clock.advance(self.past(TTL + STALE_TTL))
        assert cache.get(MOBILE_NO) is None

    def test_no_stale_window(self, clock):
        """With stale_ttl=0 an answer is gone as soon as its TTL ends."""
        cache = self.make_cache(clock, ttl=TTL, negative_ttl=NEGATIVE_TTL, stale_ttl=0.0)
        cache.set(MOBILE_NO, PORTED)
        clock.advance(self.past(TTL))
        assert cache.get(MOBILE_NO) is None

    def test_negative_lives_negative_ttl(self, cache, clock):
        """NOT_FOUND is fresh for negative_ttl, not for the answer TTL."""
        cache.set(MOBILE_NO, codec.NOT_FOUND)
        clock.advance(NEGATIVE_TTL - 0.01)
        assert cache.get(MOBILE_NO) == (codec.NOT_FOUND, True)
        clock.advance(self.past(NEGATIVE_TTL) - (NEGATIVE_TTL - 0.01))
        assert cache.get(MOBILE_NO) is None

    def test_negative_is_never_stale(self, cache, clock):
        """An expired NOT_FOUND is not kept as a stale answer (it is no answer)."""
        cache.set(MOBILE_NO, codec.NOT_FOUND)
        clock.advance(self.past(NEGATIVE_TTL))
        assert cache.get(MOBILE_NO) is None

    def test_set_replaces_and_restarts_ttl(self, cache, clock):
        """Storing again replaces the answer and makes it fresh for a whole TTL."""
        cache.set(MOBILE_NO, PORTED)
        clock.advance(self.past(TTL))
        cache.set(MOBILE_NO, PLAIN)
        clock.advance(TTL - 0.01)
        assert cache.get(MOBILE_NO) == (PLAIN, True)

    def test_answer_replaces_negative(self, cache):
        """A real answer overwrites a cached NOT_FOUND."""
        cache.set(MOBILE_NO, codec.NOT_FOUND)
        cache.set(MOBILE_NO, PORTED)
        assert cache.get(MOBILE_NO) == (PORTED, True)

    def test_delete(self, cache):
        """delete() forgets one number and leaves the others."""
        cache.set(MOBILE_NO, PORTED)
        cache.set(TELECOM_NO, PLAIN)
        cache.delete(MOBILE_NO)
        assert cache.get(MOBILE_NO) is None
        assert cache.get(TELECOM_NO) == (PLAIN, True)

    def test_delete_missing_is_a_no_op(self, cache):
        """Deleting a number never stored does not raise."""
        cache.delete(MOBILE_NO)
        assert cache.get(MOBILE_NO) is None

    # -- through a Router ------------------------------------------------------

    def router(self, cache: Any, clock: FakeClock, client: FakeClient) -> Router:
        """Return a router over ``cache`` with one gateway per operator."""
        return Router(client, gateways(), cache=cache, clock=clock)

    def test_router_hits_the_backend(self, cache, clock):
        """The second route() of a number is answered by the backend, not the upstream."""
        client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
        router = self.router(cache, clock, client)
        assert router.route(MOBILE_NO).source == "upstream"
        hit = router.route(MOBILE_NO)
        assert (hit.source, hit.carrier) == ("cache", Carrier.TELECOM)
        assert client.calls == [MOBILE_NO]

    def test_router_serves_stale_when_upstream_fails(self, cache, clock):
        """An expired answer is served as "stale" when the upstream fails, and only then."""
        client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
        router = self.router(cache, clock, client)
        router.route(MOBILE_NO)
        clock.advance(self.past(TTL))
        client.script.append(api_error(-8))
        stale = router.route(MOBILE_NO)
        assert (stale.source, stale.carrier) == ("stale", Carrier.TELECOM)
        assert router.route(MOBILE_NO).source == "upstream"

    def test_router_never_caches_errors(self, cache, clock):
        """A failed lookup stores nothing: the next route() asks the upstream again."""
        client = FakeClient(script=[api_error(-8)])
        router = self.router(cache, clock, client)
        assert router.route(MOBILE_NO).source == "fallback"
        assert cache.get(MOBILE_NO) is None
        assert router.route(MOBILE_NO).source == "upstream"
        assert len(client.calls) == 2

    def test_router_caches_not_found_briefly(self, cache, clock):
        """NumberNotFound is cached for negative_ttl: no second paid query until it ends."""
        client = FakeClient(script=[api_error(-4)])
        router = self.router(cache, clock, client)
        assert router.route(MOBILE_NO).source == "fallback"
        assert router.route(MOBILE_NO).reason == "number not found (cached)"
        assert len(client.calls) == 1
        clock.advance(self.past(NEGATIVE_TTL))
        assert router.route(MOBILE_NO).source == "upstream"
        assert len(client.calls) == 2


class TestMemoryCache(CacheContract):
    """The contract on the default in-process backend."""

    def make_cache(self, clock: FakeClock, **policy: float) -> CacheBackend:
        """Return a MemoryCache on ``clock``."""
        return MemoryCache(timer=clock, **policy)


# -- MemoryCache only ------------------------------------------------------------


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
