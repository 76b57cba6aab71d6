"""The CacheBackend contract, run on every backend: MemoryCache, SqliteCache, RedisCache, async.

:class:`CacheContract` is what every backend must do (cachetools'
``CacheTestMixin``): verdicts at the exact boundaries on a FakeClock, delete,
and the router's view of it. :class:`TwoTierContract` adds what a backend
with a near tier in front of a store that can fail must do: never be
fresher than the store, never raise on a broken store, and never pay more
than a MemoryCache when the store fails. AsyncRedisCache runs the same
suite through :class:`SyncOverAsync`, which drives its coroutines on a loop
of the test's own.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from _fakes import MOBILE_NO, TELECOM_NO, FakeClient, api_error, gateways, info
from redis_server import INSTALL_HINT, RedisServer, find_redis_server, free_port, skip_requested

from smsroute import codec
from smsroute.aio.redis_cache import AsyncRedisCache
from smsroute.aio.types import AsyncCacheBackend, AsyncSharedFlight, is_async
from smsroute.cache import MemoryCache
from smsroute.carrier import Carrier
from smsroute.core.freshness import fresh_until
from smsroute.models import CarrierInfo
from smsroute.redis_cache import UNLOCKED, RedisCache
from smsroute.routing import Router
from smsroute.sqlite_cache import SqliteCache
from smsroute.testing import FakeClock
from smsroute.types import CacheBackend, SharedFlight

T = TypeVar("T")

PORTED = codec.encode(CarrierInfo(MOBILE_NO, 1, "湖北-宜昌", Carrier.MOBILE, Carrier.TELECOM))
PLAIN = codec.encode(CarrierInfo(MOBILE_NO, 0, "北京-北京", Carrier.MOBILE, Carrier.MOBILE))
VIRTUAL = codec.encode(CarrierInfo(MOBILE_NO, 4, "新疆-伊犁", Carrier.UNICOM, Carrier.BROADNET))
NO_AREA = codec.encode(CarrierInfo(MOBILE_NO, 3, "", None, Carrier.TELECOM))

TTL, NEGATIVE_TTL, STALE_TTL = 100.0, 10.0, 1000.0
EPS = 0.001


def redis_binary() -> str:
    """Return the redis-server binary, or skip/fail the test as the environment asks."""
    exe = find_redis_server()
    if exe is None:
        if skip_requested():
            pytest.skip(INSTALL_HINT)
        pytest.fail(INSTALL_HINT)
    return exe


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """Yield one redis-server for this module."""
    with RedisServer(redis_binary()) as server:
        yield server


class CacheContract:
    """What every CacheBackend must do; subclass it and define ``make_cache``.

    ``make_cache(clock, **policy)`` returns an empty backend whose wall and
    monotonic time are both ``clock`` (a FakeClock), and whose policy takes
    ``ttl``, ``negative_ttl`` and ``stale_ttl``. Nothing here sleeps, so a
    backend must read the given clock. Every backend stores whole-second
    fresh-until times rounded up (``core.freshness.fresh_until``), so the
    boundaries are exact.
    """

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

    @staticmethod
    def until(clock: FakeClock, ttl: float = TTL) -> float:
        """Return the fresh-until of an answer stored now."""
        return float(fresh_until(clock(), ttl))

    @staticmethod
    def at(clock: FakeClock, when: float) -> None:
        """Move ``clock`` forward to ``when``."""
        clock.advance(when - clock())

    @staticmethod
    def from_store(cache: Any) -> None:
        """Forget a two-tier backend's near tier, so the next read asks the store."""
        clear = getattr(cache, "clear_near", None)
        if clear is not None:
            clear()

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

    @pytest.mark.parametrize("answer", [0, PORTED, PLAIN, VIRTUAL, NO_AREA, codec.NOT_FOUND])
    def test_values_round_trip(self, cache, answer):
        """Every answer code a lookup can produce comes back exactly, from the store too."""
        cache.set(MOBILE_NO, answer)
        assert cache.get(MOBILE_NO) == (answer, True)
        self.from_store(cache)
        assert cache.get(MOBILE_NO) == (answer, True)

    def test_numbers_are_independent(self, cache):
        """Each number keeps its own answer."""
        cache.set(MOBILE_NO, PORTED)
        cache.set(TELECOM_NO, PLAIN)
        assert cache.get(MOBILE_NO) == (PORTED, True)
        assert cache.get(TELECOM_NO) == (PLAIN, True)

    def test_fresh_to_the_last_instant(self, cache, clock):
        """An answer is fresh until its rounded-up fresh-until, exclusive."""
        until = self.until(clock)
        cache.set(MOBILE_NO, PORTED)
        self.at(clock, until - EPS)
        assert cache.get(MOBILE_NO) == (PORTED, True)

    def test_stale_from_fresh_until(self, cache, clock):
        """At fresh-until exactly the answer turns stale: returned, marked not fresh."""
        until = self.until(clock)
        cache.set(MOBILE_NO, PORTED)
        self.at(clock, until)
        assert cache.get(MOBILE_NO) == (PORTED, False)

    def test_stale_to_the_end_of_the_stale_window(self, cache, clock):
        """A stale answer is kept until fresh-until + stale_ttl, exclusive."""
        until = self.until(clock)
        cache.set(MOBILE_NO, PORTED)
        self.at(clock, until + STALE_TTL - EPS)
        assert cache.get(MOBILE_NO) == (PORTED, False)

    def test_gone_at_the_end_of_the_stale_window(self, cache, clock):
        """At fresh-until + stale_ttl the answer is a miss."""
        until = self.until(clock)
        cache.set(MOBILE_NO, PORTED)
        self.at(clock, until + STALE_TTL)
        assert cache.get(MOBILE_NO) is None

    def test_no_stale_window(self, clock):
        """With stale_ttl=0 an answer is gone as soon as it turns stale."""
        cache = self.make_cache(clock, ttl=TTL, negative_ttl=NEGATIVE_TTL, stale_ttl=0.0)
        until = self.until(clock)
        cache.set(MOBILE_NO, PORTED)
        self.at(clock, until)
        assert cache.get(MOBILE_NO) is None

    def test_negative_is_fresh_for_negative_ttl_only(self, cache, clock):
        """NOT_FOUND is fresh until its own fresh-until, then a miss: never stale."""
        until = self.until(clock, NEGATIVE_TTL)
        cache.set(MOBILE_NO, codec.NOT_FOUND)
        self.at(clock, until - EPS)
        assert cache.get(MOBILE_NO) == (codec.NOT_FOUND, True)
        self.at(clock, until)
        assert cache.get(MOBILE_NO) is None

    def test_set_replaces_and_restarts_ttl(self, cache, clock):
        """Storing again replaces the answer and makes it fresh for a whole TTL."""
        cache.set(MOBILE_NO, PORTED)
        clock.advance(TTL + 5)
        until = self.until(clock)
        cache.set(MOBILE_NO, PLAIN)
        self.at(clock, until - EPS)
        assert cache.get(MOBILE_NO) == (PLAIN, True)

    def test_answer_replaces_negative(self, cache):
        """A real answer overwrites a cached NOT_FOUND."""
        cache.set(MOBILE_NO, codec.NOT_FOUND)
        cache.set(MOBILE_NO, PORTED)
        assert cache.get(MOBILE_NO) == (PORTED, True)

    def test_delete(self, cache):
        """delete() forgets one number (in every tier) and leaves the others."""
        cache.set(MOBILE_NO, PORTED)
        cache.set(TELECOM_NO, PLAIN)
        cache.delete(MOBILE_NO)
        assert cache.get(MOBILE_NO) is None
        self.from_store(cache)
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
        clock.advance(TTL + 2)
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
        clock.advance(NEGATIVE_TTL + 2)
        assert router.route(MOBILE_NO).source == "upstream"
        assert len(client.calls) == 2


class TwoTierContract(CacheContract):
    """What a backend with a near tier in front of a store that can fail must also do.

    ``make_peer(clock)`` returns a second backend on the same store (another
    worker); ``make_broken(clock)`` one whose store fails every operation.
    """

    near_ttl: float = 60.0

    def make_peer(self, clock: FakeClock, **policy: float) -> Any:
        """Return another backend on the same store as the last ``make_cache``."""
        raise NotImplementedError

    def make_broken(self, clock: FakeClock) -> Any:
        """Return a backend whose store fails every operation."""
        raise NotImplementedError

    def test_has_a_near_tier(self, cache):
        """The near tier is a MemoryCache the router's hot path can read without a call."""
        assert isinstance(cache.near, MemoryCache)

    def test_near_copy_is_never_fresher_than_the_store(self, cache, clock):
        """A near copy learned late in an answer's life turns stale with the store's, not after."""
        peer = self.make_peer(clock, ttl=TTL, negative_ttl=NEGATIVE_TTL, stale_ttl=STALE_TTL)
        until = self.until(clock)
        peer.set(MOBILE_NO, PORTED)
        # Exactly the near tier's TTL of freshness left: a near copy would
        # outlive the store's by the rounding of its own fresh-until.
        self.at(clock, until - min(self.near_ttl, TTL))
        assert cache.get(MOBILE_NO) == (PORTED, self.near_ttl > 0)
        self.at(clock, until)
        assert cache.get(MOBILE_NO) == (PORTED, False)

    def test_another_workers_answer_is_seen_after_near_ttl(self, cache, clock):
        """A peer's new answer reaches this worker once its near copy ages out."""
        peer = self.make_peer(clock, ttl=TTL, negative_ttl=NEGATIVE_TTL, stale_ttl=STALE_TTL)
        near = min(self.near_ttl, TTL)
        start = clock()
        peer.set(MOBILE_NO, PORTED)
        assert cache.get(MOBILE_NO) == (PORTED, True)
        clock.advance(near / 2)
        peer.set(MOBILE_NO, PLAIN)
        assert cache.get(MOBILE_NO) == ((PORTED if near else PLAIN), True)
        self.at(clock, fresh_until(start, near))
        assert cache.get(MOBILE_NO) == (PLAIN, True)

    def test_another_workers_delete_is_seen_after_near_ttl(self, cache, clock):
        """A number a peer deleted (a gateway refused it) is gone here once the near copy ages."""
        peer = self.make_peer(clock, ttl=TTL, negative_ttl=NEGATIVE_TTL, stale_ttl=STALE_TTL)
        start = clock()
        peer.set(MOBILE_NO, PORTED)
        assert cache.get(MOBILE_NO) == (PORTED, True)
        peer.delete(MOBILE_NO)
        self.at(clock, fresh_until(start, min(self.near_ttl, TTL)))
        assert cache.get(MOBILE_NO) is None
        assert len(cache.near) == 0

    def test_broken_store_never_raises(self, clock):
        """On a store that fails everything, every call returns, and the failures are counted."""
        cache = self.make_broken(clock)
        assert cache.get(MOBILE_NO) is None
        cache.set(MOBILE_NO, PORTED)
        assert cache.get(MOBILE_NO) == (PORTED, True)  # held in the near tier
        cache.delete(MOBILE_NO)
        assert cache.get(MOBILE_NO) is None
        assert cache.errors >= 3
        assert cache.stats()["errors"] == cache.errors

    def test_broken_store_holds_answers_for_their_ttl(self, clock):
        """An answer the store could not take stays fresh in-process for its whole TTL."""
        cache = self.make_broken(clock)
        until = float(fresh_until(clock(), cache.policy.ttl))
        cache.set(MOBILE_NO, PORTED)
        self.at(clock, until - EPS)
        assert cache.get(MOBILE_NO) == (PORTED, True)

    def test_broken_store_pays_no_more_than_a_memory_cache(self, clock):
        """One number sent 50 times over a broken store is paid once, as with a MemoryCache."""
        client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
        router = Router(client, gateways(), cache=self.make_broken(clock), clock=clock)
        decisions = [router.route(MOBILE_NO) for _ in range(50)]
        assert len(client.calls) == 1
        assert {d.carrier for d in decisions} == {Carrier.TELECOM}


# -- the implementations ---------------------------------------------------------------


class TestMemoryCache(CacheContract):
    """The contract on the default in-process backend."""

    def make_cache(self, clock: FakeClock, **policy: float) -> CacheBackend:
        """Return a MemoryCache on ``clock``."""
        return MemoryCache(clock=clock, **policy)


class TestSqliteCache(TwoTierContract):
    """The contract on SqliteCache with its near tier."""

    @pytest.fixture(autouse=True)
    def _files(self, tmp_path: Path) -> Iterator[None]:
        """Give the backends a directory, and close what they opened."""
        self.dir = tmp_path
        self.path = tmp_path / "answers.sqlite3"
        self.made: list[SqliteCache] = []
        yield
        for cache in self.made:
            cache.close()

    def _open(self, path: Path, clock: FakeClock, **policy: float) -> SqliteCache:
        cache = SqliteCache(path, clock=clock, monotonic=clock, near_ttl=self.near_ttl, **policy)
        self.made.append(cache)
        return cache

    def make_cache(self, clock: FakeClock, **policy: float) -> CacheBackend:
        """Return a SqliteCache on a new file."""
        self.path = self.dir / f"{uuid.uuid4().hex}.sqlite3"
        return self._open(self.path, clock, **policy)

    def make_peer(self, clock: FakeClock, **policy: float) -> Any:
        """Return a second SqliteCache on the same file (another process of the host)."""
        return self._open(self.path, clock, **policy)

    def make_broken(self, clock: FakeClock) -> Any:
        """Return a SqliteCache whose table another connection dropped."""
        cache = self._open(self.dir / "broken.sqlite3", clock)
        other = sqlite3.connect(self.dir / "broken.sqlite3", isolation_level=None)
        other.execute("DROP TABLE answers")
        other.close()
        return cache


class TestSqliteCacheFileOnly(TestSqliteCache):
    """The same contract with the near tier off (near_ttl=0): every read goes to the file."""

    near_ttl = 0.0


class TestRedisCache(TwoTierContract):
    """The contract on RedisCache with its near tier (near_ttl below the TTL)."""

    @pytest.fixture(autouse=True)
    def _redis(self, redis_server: RedisServer) -> Iterator[None]:
        """Give the backends the module's server and a per-test prefix; close them after."""
        self.url = redis_server.url
        self.prefix = f"t{uuid.uuid4().hex[:10]}:"
        self.made: list[Any] = []
        yield
        for cache in self.made:
            self.close(cache)

    def close(self, cache: Any) -> None:
        """Close one backend."""
        cache.close()

    def build(self, url: str, clock: FakeClock, **kwargs: Any) -> Any:
        """Return a backend on ``url``."""
        return RedisCache(url, clock=clock, monotonic=clock, sleep=clock.sleep, **kwargs)

    def _make(self, url: str, clock: FakeClock, **kwargs: Any) -> Any:
        cache = self.build(url, clock, **kwargs)
        self.made.append(cache)
        return cache

    def make_cache(self, clock: FakeClock, **policy: float) -> Any:
        """Return a backend under this test's prefix."""
        return self._make(self.url, clock, prefix=self.prefix, near_ttl=self.near_ttl, **policy)

    make_peer = make_cache

    def make_broken(self, clock: FakeClock) -> Any:
        """Return a backend on a port nothing listens on, with no back-off."""
        return self._make(f"redis://127.0.0.1:{free_port()}/0", clock, backoff=0)

    # -- SharedFlight: claim, wait, release ---------------------------------------

    def test_is_shared_flight(self, cache):
        """The backend also offers fleet-wide single-flight to the router."""
        assert isinstance(cache, SharedFlight)

    def test_claim_is_exclusive_and_released_by_token(self, cache, clock):
        """One worker holds a claim at a time; only its own token releases it."""
        peer = self.make_peer(clock)
        token = cache.claim(MOBILE_NO, 5.0)
        assert token not in (None, UNLOCKED)
        assert peer.claim(MOBILE_NO, 5.0) is None
        peer.release(MOBILE_NO, "not-the-token")
        assert peer.claim(MOBILE_NO, 5.0) is None
        cache.release(MOBILE_NO, token)
        theirs = peer.claim(MOBILE_NO, 5.0)
        assert theirs not in (None, UNLOCKED, token)
        peer.release(MOBILE_NO, theirs)

    def test_one_worker_holds_many_claims(self, cache):
        """Claims on different numbers are independent, each with its own token."""
        tokens = [cache.claim(f"1390000{i:04d}", 5.0) for i in range(10)]
        assert None not in tokens
        assert len(set(tokens)) == 10
        for i, token in enumerate(tokens):
            cache.release(f"1390000{i:04d}", token)
        assert cache.claim("13900000000", 5.0) is not None

    def test_claim_refused_while_a_fresh_answer_is_stored(self, cache, clock):
        """A fresh answer in the store means nothing to claim; a stale one is worth a query."""
        peer = self.make_peer(clock, ttl=TTL, negative_ttl=NEGATIVE_TTL, stale_ttl=STALE_TTL)
        until = self.until(clock)
        peer.set(MOBILE_NO, PORTED)
        assert cache.claim(MOBILE_NO, 5.0) is None
        assert cache.wait(MOBILE_NO, 5.0) == (PORTED, True)
        self.at(clock, until)
        token = cache.claim(MOBILE_NO, 5.0)
        assert token is not None
        cache.release(MOBILE_NO, token)

    def test_wait_returns_the_holders_answer(self, cache, clock):
        """A waiter gets the fresh answer the holder stored."""
        peer = self.make_peer(clock)
        token = peer.claim(MOBILE_NO, 5.0)
        assert cache.claim(MOBILE_NO, 5.0) is None
        peer.set(MOBILE_NO, PLAIN)
        peer.release(MOBILE_NO, token)
        assert cache.wait(MOBILE_NO, 5.0) == (PLAIN, True)
        assert cache.get(MOBILE_NO) == (PLAIN, True)

    def test_wait_ends_when_the_holder_lets_go(self, cache, clock):
        """A lock released without an answer ends the wait at once: None."""
        peer = self.make_peer(clock)
        token = peer.claim(MOBILE_NO, 5.0)
        peer.release(MOBILE_NO, token)
        assert cache.wait(MOBILE_NO, 5.0) is None
        assert cache.stats()["waits_unanswered"] == 1

    def test_broken_store_claims_without_a_lock(self, clock):
        """With the store unreachable every worker may ask: UNLOCKED, and waits answer None."""
        cache = self.make_broken(clock)
        assert cache.claim(MOBILE_NO, 5.0) == UNLOCKED
        assert cache.wait(MOBILE_NO, 5.0) is None
        cache.release(MOBILE_NO, UNLOCKED)
        assert cache.errors >= 1


class TestRedisCacheRedisOnly(TestRedisCache):
    """The same contract with the near tier off (near_ttl=0): every read goes to Redis."""

    near_ttl = 0.0


class TestRedisCacheLongNearTier(TestRedisCache):
    """The same contract with a near tier that outlives the TTL: the TTL still rules."""

    near_ttl = 3600.0


class SyncOverAsync:
    """A synchronous face on an AsyncRedisCache: each call runs on the test's own event loop.

    It lets the synchronous contract (and a Router) drive the asyncio
    backend unchanged; ``near`` is passed through, as the router reads it.
    """

    def __init__(self, cache: AsyncRedisCache) -> None:
        self.inner = cache
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one coroutine of the backend to its end."""
        return self.loop.run_until_complete(coro)

    def get(self, number: str) -> tuple[int, bool] | None:
        """Await the backend's get."""
        return self.run(self.inner.get(number))

    def set(self, number: str, answer: int) -> None:
        """Await the backend's set."""
        self.run(self.inner.set(number, answer))

    def delete(self, number: str) -> None:
        """Await the backend's delete."""
        self.run(self.inner.delete(number))

    def claim(self, number: str, ttl: float) -> str | None:
        """Await the backend's claim."""
        return self.run(self.inner.claim(number, ttl))

    def wait(self, number: str, timeout: float) -> tuple[int, bool] | None:
        """Await the backend's wait."""
        return self.run(self.inner.wait(number, timeout))

    def release(self, number: str, token: str) -> None:
        """Await the backend's release."""
        self.run(self.inner.release(number, token))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def close(self) -> None:
        """Close the backend's connections, then the loop."""
        self.run(self.inner.aclose())
        self.loop.close()


class TestAsyncRedisCache(TestRedisCache):
    """The contract on AsyncRedisCache, driven through SyncOverAsync."""

    def build(self, url: str, clock: FakeClock, **kwargs: Any) -> Any:
        """Return an AsyncRedisCache behind a synchronous face."""
        return SyncOverAsync(AsyncRedisCache(url, clock=clock, monotonic=clock, **kwargs))

    def test_is_an_async_backend(self, cache):
        """Underneath, the backend is an AsyncCacheBackend and AsyncSharedFlight to await."""
        assert isinstance(cache.inner, AsyncCacheBackend)
        assert isinstance(cache.inner, AsyncSharedFlight)
        assert is_async(cache.inner)
        assert not is_async(MemoryCache())


class TestAsyncRedisCacheRedisOnly(TestAsyncRedisCache):
    """The async contract with the near tier off."""

    near_ttl = 0.0
