"""Tests for RedisRateLimit on a real redis-server: one fleet limit; a local one without Redis."""

from __future__ import annotations

import asyncio
import bisect
import logging
import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis_server import RedisServer
from test_cache_contract import redis_binary

from smsroute.errors import Throttled
from smsroute.ratelimit import RateLimiter
from smsroute.redis_ratelimit import RedisRateLimit

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """Yield one redis-server for the module's tests that do not stop it."""
    with RedisServer(redis_binary()) as server:
        yield server


@pytest.fixture
def key() -> str:
    """Return a bucket key of this test's own."""
    return f"t{uuid.uuid4().hex[:10]}:{{ratelimit}}"


def most_in_a_second(times: list[float]) -> int:
    """Return the most grants in any half-open one-second window [t, t + 1)."""
    times = sorted(times)
    return max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))


def test_three_workers_share_one_limit(redis_server, key):
    """Three workers, each its own limiter and connection, get at most qps + burst in any second."""
    qps, burst, seconds = 50, 5, 3.0
    # A generous timeout: on a loaded test machine a 50 ms one can expire,
    # and the local fallback (by design) then grants tokens of its own.
    limiters = [
        RedisRateLimit(redis_server.url, qps, burst=burst, key=key, socket_timeout=1.0)
        for _ in range(3)
    ]
    assert all(isinstance(limiter, RateLimiter) for limiter in limiters)
    granted: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def work(limiter: RedisRateLimit) -> None:
        while time.monotonic() < end:
            wait = limiter.reserve(0.5)
            if wait is None:
                continue
            at = time.monotonic() + wait  # when the call would be made
            with lock:
                granted.append(at)
            time.sleep(wait)

    threads = [threading.Thread(target=work, args=(limiter,)) for limiter in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 5)
    busiest = most_in_a_second(granted)
    print(
        f"granted {len(granted)} in {seconds}s; busiest second {busiest} (qps+burst {qps + burst})"
    )
    assert sum(limiter.stats()["local"] for limiter in limiters) == 0
    assert busiest <= qps + burst
    # The limit is used, not just respected: about qps a second plus the burst.
    assert len(granted) >= qps * seconds * 0.9
    assert all(limiter.available for limiter in limiters)
    for limiter in limiters:
        limiter.close()


def _reserve_in_process(url: str, key: str, seconds: float, start: Any, out: Any) -> None:
    """Reserve tokens for ``seconds`` in a fresh process; put the monotonic times they are for."""
    limiter = RedisRateLimit(url, 50, burst=5, key=key, socket_timeout=1.0)
    granted: list[float] = []
    start.wait(30)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        wait = limiter.reserve(0.5)
        if wait is not None:
            granted.append(time.monotonic() + wait)
            time.sleep(wait)
    out.put((granted, limiter.stats()["local"]))
    limiter.close()


def test_three_processes_share_one_limit(redis_server, key):
    """Three processes on one key get at most qps + burst in any second, together."""
    ctx = multiprocessing.get_context("spawn")  # no fork of a threaded process
    start = ctx.Barrier(4)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_reserve_in_process, args=(redis_server.url, key, 2.0, start, out))
        for _ in range(3)
    ]
    for p in procs:
        p.start()
    start.wait(30)
    # CLOCK_MONOTONIC is one clock for every process of the host.
    results = [out.get(timeout=30) for _ in procs]
    granted = [t for times, _ in results for t in times]
    for p in procs:
        p.join(10)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert [local for _, local in results] == [0, 0, 0]  # every token from Redis
    busiest = most_in_a_second(granted)
    print(f"3 processes: granted {len(granted)} in 2s; busiest second {busiest}, bound 55")
    assert busiest <= 55
    assert len(granted) >= 50 * 2 * 0.8  # processes start a little apart


def test_reserve_refuses_a_wait_past_max_wait(redis_server, key):
    """A token that would come after max_wait is refused and nothing is taken."""
    limiter = RedisRateLimit(redis_server.url, 10, burst=1, key=key)
    assert limiter.reserve(0.0) == 0.0
    assert limiter.reserve(0.01) is None  # the next token is 100 ms away
    wait = limiter.reserve(1.0)
    assert wait is not None
    assert 0.05 < wait <= 0.1
    with pytest.raises(Throttled):
        limiter.acquire(0.0)
    with pytest.raises(Throttled):
        asyncio.run(limiter.aacquire(0.0))
    assert limiter.stats()["refused"] == 3
    raw = redis.Redis.from_url(redis_server.url)
    assert 0 < raw.pttl(key) <= 2000  # the bucket expires once it would be full
    raw.close()
    limiter.close()


def test_redis_down_falls_back_to_a_local_share_with_one_warning(caplog):
    """Redis gone: the local limit of qps * local_share answers, one warning, then Redis again."""
    with RedisServer(redis_binary()) as server:
        limiter = RedisRateLimit(server.url, 40, local_share=0.25, backoff=0.05)
        assert limiter.reserve(0.0) == 0.0
        server.kill()
        granted = 0
        with caplog.at_level(logging.INFO, logger="smsroute"):
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                if limiter.reserve(0.0) is not None:
                    granted += 1
                time.sleep(0.002)
            assert not limiter.available
            server.start()
            time.sleep(0.06)  # past the back-off
            assert limiter.reserve(0.0) == 0.0
        assert limiter.available
        events = [r.getMessage() for r in caplog.records if "cache.redis" in r.getMessage()]
        assert len(events) == 2, events
        assert "event=cache.redis.down op=ratelimit" in events[0]
        assert "level=warning" in events[0]
        assert "event=cache.redis.up op=ratelimit" in events[1]
        # 10 a second locally (a quarter of 40), burst 1: about 5 in half a second.
        assert 3 <= granted <= 1 + 10 * 0.5 + 1, granted
        assert limiter.stats()["errors"] >= 2  # asked again after each back-off
        limiter.close()


def test_bad_arguments_are_refused():
    """qps, burst and local_share are checked when the limiter is built."""
    for kwargs in ({"qps": 0}, {"qps": 10, "burst": 0.5}, {"qps": 10, "local_share": 0}):
        with pytest.raises(ValueError):
            RedisRateLimit("redis://127.0.0.1:1/0", **kwargs)


def test_carrier_client_takes_the_fleet_limit(redis_server, key):
    """CarrierClient(rate_limit=RedisRateLimit) spreads calls and throttles past the budget."""
    from smsroute.client import CarrierClient
    from smsroute.testing import FakeCarrierServer

    limit = RedisRateLimit(redis_server.url, 20, burst=1, key=key)
    with (
        FakeCarrierServer() as server,
        CarrierClient(server.apikey, base_url=server.url, rate_limit=limit) as client,
    ):
        started = time.perf_counter()
        for i in range(4):
            client.lookup(f"1390000{i:04d}", timeout=2.0)
        assert time.perf_counter() - started >= 3 / 20 - 0.02
        for _ in range(20):
            limit.reserve(10.0)  # the next second is taken, fleet-wide
        with pytest.raises(Throttled):
            client.lookup("13900009999", timeout=0.1)
        assert server.carrier_calls == 4
    limit.close()
