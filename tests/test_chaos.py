"""Chaos: sends under vendor, Redis and SQLite faults switching at random, for every backend.

Bounded: each backend runs for CHAOS_SECONDS on 127.0.0.1 (FakeCarrierServer,
a real redis-server, a SQLite file), with 8 sending threads. It checks the
promises together: every send returns a Decision within its deadline plus
50 ms (plus the worst stall a bystander thread saw: the machine's, not the
router's), nothing escapes but InvalidNumber and NoRoute, the paid queries stay
within the distinct numbers plus what the vendor's errors justify, and no
log line carries the apikey or a full number.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time

import pytest
from redis_server import RedisServer, find_redis_server

import smsroute
from smsroute import CarrierClient, CircuitBreaker, MemoryCache, Router, SqliteCache
from smsroute.errors import InvalidNumber, NoRoute
from smsroute.testing import FakeCarrierServer

CHAOS_SECONDS = 6.0
THREADS = 8
DEADLINE = 0.15
SLACK = 0.05  # the promise: deadline plus a small constant on a loaded 2-core machine
# A shared 2-core machine running other work can starve a thread for tens of
# milliseconds: a few sends in a thousand may pass SLACK that way, none may pass
# HARD (a real failure to hold the deadline costs seconds, not milliseconds).
# Both are counted above the worst stall a bystander thread saw in the same
# run: when the machine itself stops this process for 300 ms (other tenants'
# builds), every thread is 300 ms late, and that is not the router's doing.
HARD = 0.15
TICK = 0.005  # the bystander's sleep
VENDOR_FAULTS: list[int | str | None] = [
    None,
    None,
    "http500",
    "hang",
    "slow",
    "reset",
    -8,
    "truncated",
]
NUMBERS = [f"1380013{i:04d}" for i in range(300)] + ["123", "abc", "19400000001"]


def backends(tmp_path):
    """Yield (name, cache, fault switcher, closer) for each backend under test."""
    yield "memory", MemoryCache(ttl=1, stale_ttl=600), lambda rng: None, lambda: None

    path = tmp_path / "answers.sqlite3"
    cache = SqliteCache(path, ttl=1, stale_ttl=600, near_ttl=0.5)
    holder: dict[str, sqlite3.Connection] = {}

    def sqlite_fault(rng: random.Random) -> None:
        # Another process holding the write lock, on and off.
        conn = holder.pop("conn", None)
        if conn is not None:
            conn.rollback()
            conn.close()
        elif rng.random() < 0.5:
            conn = sqlite3.connect(path, timeout=0.01, isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            holder["conn"] = conn

    def sqlite_close() -> None:
        conn = holder.pop("conn", None)
        if conn is not None:
            conn.close()
        cache.close()

    yield "sqlite", cache, sqlite_fault, sqlite_close

    exe = find_redis_server()
    if exe is None:
        return
    server = RedisServer(exe)
    server.start()
    rcache = smsroute.RedisCache(server.url, ttl=1, stale_ttl=600, near_ttl=0.5, backoff=0.2)
    import redis

    raw = redis.Redis.from_url(server.url, socket_timeout=1)

    def redis_fault(rng: random.Random) -> None:
        roll = rng.random()
        if roll < 0.3:
            raw.execute_command("CLIENT", "PAUSE", 300)  # slow or "down" for 300 ms
        elif roll < 0.4:
            raw.set("smsroute:{13800130001}", "²|113湖北-宜昌")  # garbage value

    def redis_close() -> None:
        rcache.close()
        raw.close()
        server.stop()

    yield "redis", rcache, redis_fault, redis_close


@pytest.mark.slow
def test_chaos_on_every_backend(tmp_path, caplog):
    """Sends under random vendor and cache faults keep every promise, on every backend."""
    results = {}
    with FakeCarrierServer(seed=5) as vendor:
        for name, cache, cache_fault, close in backends(tmp_path):
            caplog.clear()
            with caplog.at_level(logging.DEBUG):
                results[name] = _run(vendor, cache, cache_fault)
            close()
            text = caplog.text
            assert vendor.apikey not in text, name
            assert "13800130001" not in text, name
    for name, r in results.items():
        assert r["escaped"] == [], (name, r["escaped"][:3])
        stall = r["stall"]
        hard = [t for t in r["late"] if t > DEADLINE + HARD + stall]
        assert hard == [], (name, sorted(r["late"])[-3:], stall)
        late = [t for t in r["late"] if t > DEADLINE + SLACK + stall]
        assert len(late) <= max(3, r["sends"] // 1000), (name, len(late), r["sends"], stall)
        assert r["sends"] > 100, name
        # Paid queries: at most one per distinct number per TTL round (answers
        # expire after 1 s, so a number may be bought once a second) plus one
        # retry per failed request the vendor answered.
        assert r["paid"] <= r["bound"], (name, r["paid"], r["bound"])
    print(
        {
            name: {k: v for k, v in r.items() if k not in ("escaped", "late")}
            for name, r in results.items()
        }
    )


def _run(vendor: FakeCarrierServer, cache, cache_fault) -> dict:
    """Send for CHAOS_SECONDS with faults switching; return what happened."""
    client = CarrierClient(
        vendor.apikey,
        base_url=vendor.url,
        retry=smsroute.default_retrying(attempts=2, sleep=lambda _s: None),
        pool_maxsize=THREADS * 2,
    )
    router = Router(
        client,
        {"移动": "m", "联通": "u", "电信": "t"},
        default="d",
        cache=cache,
        deadline=DEADLINE,
        breaker=CircuitBreaker(threshold=5, cooldown=0.3, hard_cooldown=0.5),
    )
    paid_before, calls_before = vendor.paid, vendor.carrier_calls
    stop = threading.Event()
    escaped: list[str] = []
    late: list[float] = []
    sends = [0]
    lock = threading.Lock()

    def chaos() -> None:
        rng = random.Random(1)
        while not stop.wait(rng.uniform(0.1, 0.5)):
            vendor.set_fault(rng.choice(VENDOR_FAULTS))
            cache_fault(rng)
        vendor.set_fault(None)

    def sender(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            number = rng.choice(NUMBERS)
            started = time.perf_counter()
            try:
                router.route(number)
            except (InvalidNumber, NoRoute):
                pass
            except BaseException as exc:
                escaped.append(f"{type(exc).__name__}: {exc}")
            took = time.perf_counter() - started
            with lock:
                sends[0] += 1
                if took > DEADLINE + SLACK:
                    late.append(took)

    stalls = [0.0]

    def bystander() -> None:
        # Sleeps TICK at a time and keeps the worst oversleep: how long the
        # machine (not smsroute) kept this process's threads from running.
        while not stop.is_set():
            started = time.perf_counter()
            time.sleep(TICK)
            stalls[0] = max(stalls[0], time.perf_counter() - started - TICK)

    threads = [threading.Thread(target=chaos, daemon=True)]
    threads.append(threading.Thread(target=bystander, daemon=True))
    threads += [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    time.sleep(CHAOS_SECONDS)
    stop.set()
    for t in threads:
        t.join(10)
    router.close()
    client.close()
    calls = vendor.carrier_calls - calls_before
    paid = vendor.paid - paid_before
    distinct = len([n for n in NUMBERS if n.isdigit() and len(n) == 11])
    rounds = int(CHAOS_SECONDS) + 2  # answers expire every second
    failed_requests = max(0, calls - paid)
    return {
        "sends": sends[0],
        "paid": paid,
        "calls": calls,
        "bound": distinct * rounds + failed_requests,
        "escaped": escaped,
        "late": late,
        "stall": stalls[0],
        "stats": {k: router.stats()[k] for k in ("decisions", "breaker_opened", "cache_errors")},
    }
