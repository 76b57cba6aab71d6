"""Tests for AsyncRedisCache on a real redis-server: the async API, one fleet with RedisCache.

The CacheBackend contract runs on AsyncRedisCache in test_cache_contract;
here are the parts only an event loop shows: awaiting, a near-tier hit that
never suspends, many tasks holding claims at once, and a synchronous and an
asyncio worker sharing answers and locks.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from _fakes import MOBILE_NO, TELECOM_NO
from redis_server import RedisServer, free_port
from test_cache_contract import PLAIN, PORTED, redis_binary
from test_redis_cache import GARBAGE, refuse_writes

from smsroute.aio.redis_cache import UNLOCKED, AsyncRedisCache
from smsroute.aio.types import AsyncCacheBackend, AsyncSharedFlight
from smsroute.cache import MemoryCache
from smsroute.redis_cache import RedisCache
from smsroute.redis_protocol import keys
from smsroute.testing import FakeClock

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """Yield one redis-server for the module's tests that do not change it."""
    with RedisServer(redis_binary()) as server:
        yield server


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """Yield a redis-server of this test's own, to reconfigure."""
    with RedisServer(redis_binary()) as server:
        yield server


@pytest.fixture
def prefix() -> str:
    """Return a key prefix of this test's own."""
    return f"a{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """Yield a plain synchronous client on the module's server, to look behind the caches."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def run(test: Callable[[], Awaitable[Any]]) -> Any:
    """Run one async test body on a fresh event loop, bounded in time."""

    async def bounded() -> Any:
        return await asyncio.wait_for(test(), 20)

    return asyncio.run(bounded())


class CountingRedis(aioredis.Redis):
    """A redis.asyncio client that records the name of every command it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: list[str] = []

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Record the command name, then send it."""
        self.commands.append(str(args[0]).upper())
        return await super().execute_command(*args, **options)


def test_the_async_api(redis_server, prefix):
    """get/set/delete/claim/wait/release are awaited and do what RedisCache's do."""

    async def body() -> None:
        async with AsyncRedisCache(redis_server.url, prefix=prefix) as cache:
            assert isinstance(cache, AsyncCacheBackend)
            assert isinstance(cache, AsyncSharedFlight)
            assert await cache.get(MOBILE_NO) is None
            token = await cache.claim(MOBILE_NO, 1.0)
            assert token not in (None, UNLOCKED)
            assert await cache.claim(MOBILE_NO, 1.0) is None  # held by this task
            await cache.set(MOBILE_NO, PORTED)
            await cache.release(MOBILE_NO, token)
            assert await cache.wait(MOBILE_NO, 1.0) == (PORTED, True)
            cache.clear_near()
            assert await cache.get(MOBILE_NO) == (PORTED, True)
            await cache.delete(MOBILE_NO)
            assert await cache.get(MOBILE_NO) is None
            assert cache.stats()["claims_won"] == 1
            assert cache.errors == 0

    run(body)


def test_a_near_hit_never_suspends(redis_server, prefix):
    """A fresh near-tier hit completes at its first step and sends nothing; ``near`` is sync."""

    async def body() -> None:
        client = CountingRedis.from_url(redis_server.url)
        try:
            cache = AsyncRedisCache(client, prefix=prefix)
            await cache.set(MOBILE_NO, PORTED)
            assert client.commands == ["SET"]
            assert isinstance(cache.near, MemoryCache)
            assert MOBILE_NO in cache.near.entries
            for _ in range(100):
                step = cache.get(MOBILE_NO)
                with pytest.raises(StopIteration) as done:
                    step.send(None)  # no await inside: done without the loop
                assert done.value.value == (PORTED, True)
            assert client.commands == ["SET"]
            await cache.aclose()  # a given client is left open
            assert await client.ping()
        finally:
            await client.aclose()

    run(body)


def test_sync_and_async_workers_share_answers(redis_server, prefix):
    """A RedisCache and an AsyncRedisCache on one Redis read each other's answers."""
    sync = RedisCache(redis_server.url, prefix=prefix)

    async def body() -> None:
        async with AsyncRedisCache(redis_server.url, prefix=prefix) as aio:
            sync.set(MOBILE_NO, PORTED)
            assert await aio.get(MOBILE_NO) == (PORTED, True)
            await aio.set(TELECOM_NO, PLAIN)
            assert sync.get(TELECOM_NO) == (PLAIN, True)
            await aio.delete(MOBILE_NO)
            sync.clear_near()
            assert sync.get(MOBILE_NO) is None

    try:
        run(body)
    finally:
        sync.close()


def test_sync_and_async_workers_share_claims(redis_server, raw, prefix):
    """A claim taken by one kind of worker is refused to the other; release goes by token."""
    sync = RedisCache(redis_server.url, prefix=prefix)
    lock = keys(prefix, MOBILE_NO)[1]

    async def body() -> None:
        async with AsyncRedisCache(redis_server.url, prefix=prefix) as aio:
            token = sync.claim(MOBILE_NO, 5.0)
            assert token
            assert await aio.claim(MOBILE_NO, 5.0) is None
            await aio.release(MOBILE_NO, "not-the-token")
            assert raw.exists(lock)  # another token releases nothing
            sync.release(MOBILE_NO, token)
            assert not raw.exists(lock)
            mine = await aio.claim(MOBILE_NO, 5.0)
            assert mine
            assert sync.claim(MOBILE_NO, 5.0) is None
            await aio.release(MOBILE_NO, mine)
            assert not raw.exists(lock)

    try:
        run(body)
    finally:
        sync.close()


def test_an_async_waiter_gets_a_sync_leaders_answer(redis_server, prefix):
    """A task waiting on a number a threaded worker claimed gets that worker's answer."""
    sync = RedisCache(redis_server.url, prefix=prefix)
    token = sync.claim(MOBILE_NO, 5.0)
    assert token

    def leader() -> None:
        threading.Event().wait(0.05)  # the upstream lookup
        sync.set(MOBILE_NO, PORTED)
        sync.release(MOBILE_NO, token)

    async def body() -> None:
        async with AsyncRedisCache(redis_server.url, prefix=prefix) as aio:
            assert await aio.claim(MOBILE_NO, 5.0) is None
            thread = threading.Thread(target=leader)
            thread.start()
            try:
                assert await aio.wait(MOBILE_NO, 3.0) == (PORTED, True)
            finally:
                thread.join(5)
            assert aio.stats()["waits_answered"] == 1

    try:
        run(body)
    finally:
        sync.close()


def test_many_tasks_hold_different_claims_at_once(redis_server, raw, prefix):
    """Fifty tasks of one loop claim fifty numbers at once, each releasing its own by token."""
    numbers = [f"1390000{i:04d}" for i in range(50)]

    async def body() -> None:
        # Fifty connections opened at once: a loaded test machine can take
        # longer than the 50 ms default to set them all up.
        async with AsyncRedisCache(redis_server.url, prefix=prefix, socket_timeout=1.0) as cache:
            tokens = await asyncio.gather(*(cache.claim(n, 5.0) for n in numbers))
            assert all(t not in (None, UNLOCKED) for t in tokens)
            assert len(set(tokens)) == 50
            assert raw.exists(*(keys(prefix, n)[1] for n in numbers)) == 50
            # Same number from many tasks: exactly one wins.
            rivals = await asyncio.gather(*(cache.claim(TELECOM_NO, 5.0) for _ in range(20)))
            winners = [t for t in rivals if t is not None]
            assert len(winners) == 1
            pairs = zip(numbers, tokens, strict=True)
            await asyncio.gather(*(cache.release(n, t) for n, t in pairs))
            await cache.release(TELECOM_NO, winners[0])
            assert raw.exists(*(keys(prefix, n)[1] for n in [*numbers, TELECOM_NO])) == 0

    run(body)


def test_nothing_listening_never_raises(caplog):
    """With no Redis, every call returns, errors are counted, and one warning is logged."""

    async def body() -> None:
        mono = FakeClock()
        url = f"redis://127.0.0.1:{free_port()}/0"
        async with AsyncRedisCache(url, backoff=1.0, monotonic=mono) as cache:
            for i in range(10):
                assert await cache.get(f"139{i:08d}") is None
            assert cache.errors == 3  # then the back-off
            await cache.set(MOBILE_NO, PORTED)
            assert await cache.get(MOBILE_NO) == (PORTED, True)  # held in the near tier
            assert await cache.claim(TELECOM_NO, 1.0) == UNLOCKED
            assert await cache.wait(TELECOM_NO, 1.0) is None
            await cache.release(TELECOM_NO, UNLOCKED)
            mono.advance(1.01)
            await cache.delete(MOBILE_NO)
            assert cache.errors == 4
            assert cache.stats()["skipped"] == 1
            assert not cache.available

    with caplog.at_level("WARNING", logger="smsroute"):
        run(body)
    downs = [r for r in caplog.records if "cache.redis.down" in r.getMessage()]
    assert len(downs) == 1


@pytest.mark.parametrize("junk", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_value_reads_as_a_miss(redis_server, raw, prefix, junk):
    """A value that is not ours is a counted miss for get() and wait(), never an exception."""

    async def body() -> None:
        async with AsyncRedisCache(redis_server.url, prefix=prefix) as cache:
            assert await cache.get(MOBILE_NO) is None
            assert await cache.wait(MOBILE_NO, 0.05) is None
            assert cache.stats()["corrupt"] == 2
            assert cache.errors == 0

    raw.set(keys(prefix, MOBILE_NO)[0], junk)
    run(body)


def test_a_refusing_redis_is_held_in_the_near_tier(own_server):
    """On a Redis refusing writes, the answer is held for its TTL: asked again, none is paid."""
    refuse_writes(own_server.url, "readonly")

    async def body() -> None:
        clock = FakeClock()
        async with AsyncRedisCache(own_server.url, clock=clock, monotonic=clock) as cache:
            assert await cache.claim(MOBILE_NO, 1.0) == UNLOCKED
            await cache.set(MOBILE_NO, PORTED)
            clock.advance(3600)  # far past near_ttl
            assert await cache.get(MOBILE_NO) == (PORTED, True)
            stats = cache.stats()
            assert stats["refused"] == stats["errors"] == 2
            assert stats["skipped"] == 0

    run(body)


def test_without_redis_py_the_error_names_the_extra():
    """Importing the module works without redis-py; building the cache says what to install."""
    script = (
        "import sys; sys.modules['redis'] = None\n"
        "import smsroute.aio.redis_cache as m\n"
        "try:\n"
        "    m.AsyncRedisCache('redis://127.0.0.1:1/0')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30
    )
    assert "smsroute[redis]" in done.stdout
