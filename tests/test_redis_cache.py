"""Tests for RedisCache on a real redis-server: storage, tiers, outages, refusals, the fleet."""

from __future__ import annotations

import logging
import multiprocessing
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from _fakes import MOBILE_NO, TELECOM_NO, FakeClient, gateways
from redis_server import RedisServer, free_port
from test_cache_contract import NEGATIVE_TTL, PLAIN, PORTED, redis_binary

from smsroute import codec
from smsroute.carrier import Carrier
from smsroute.client import CarrierClient
from smsroute.models import CarrierInfo
from smsroute.redis_cache import UNLOCKED, RedisCache
from smsroute.redis_protocol import keys
from smsroute.routing import Decision, Router
from smsroute.testing import FakeCarrierServer, FakeClock

pytestmark = pytest.mark.redis

GATEWAYS: dict[Carrier | str, str] = {c: c.name.lower() for c in Carrier}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """Yield one redis-server for the module's tests that do not stop it."""
    with RedisServer(redis_binary()) as server:
        yield server


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """Yield a redis-server of this test's own, to kill and restart."""
    with RedisServer(redis_binary()) as server:
        yield server


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """Yield a plain redis-py client on the module's server, to look behind the cache."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
def prefix() -> str:
    """Return a key prefix of this test's own, so tests sharing a server never meet."""
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def made() -> Iterator[list[RedisCache]]:
    """Collect caches made by a test and close them afterwards."""
    caches: list[RedisCache] = []
    yield caches
    for cache in caches:
        cache.close()


class CountingRedis(redis.Redis):
    """A redis-py client that records the name of every command it sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: list[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        """Record the command name, then send it."""
        self.commands.append(str(args[0]).upper())
        return super().execute_command(*args, **options)


def code_of(now: str, area: str = "湖北-宜昌") -> int:
    """Return the answer code of a number ported from 移动 to ``now``."""
    return codec.encode(CarrierInfo(MOBILE_NO, 1, area, Carrier.MOBILE, Carrier.parse(now)))


# -- storage -----------------------------------------------------------------------


def test_value_is_compact_text_under_the_prefix(redis_server, raw, prefix, made):
    """An answer is stored as "fresh-until|dumps" under the prefix, expiring after TTL + stale."""
    clock = FakeClock(1_767_225_000)
    cache = RedisCache(redis_server.url, prefix=prefix, clock=clock)
    made.append(cache)
    cache.set(MOBILE_NO, PORTED)
    fresh_until = int(1_767_225_000 + cache.policy.ttl) + 1
    assert raw.get(keys(prefix, MOBILE_NO)[0]) == f"{fresh_until}|113湖北-宜昌".encode()
    keep_ms = (fresh_until - 1_767_225_000 + cache.policy.stale_ttl) * 1000
    assert keep_ms - 5000 < raw.pttl(keys(prefix, MOBILE_NO)[0]) <= keep_ms


def test_negative_expires_after_negative_ttl(redis_server, raw, prefix, made):
    """A NOT_FOUND is stored as "N" and kept by Redis for negative_ttl only, no stale window."""
    cache = RedisCache(redis_server.url, prefix=prefix, negative_ttl=NEGATIVE_TTL)
    made.append(cache)
    cache.set(MOBILE_NO, codec.NOT_FOUND)
    assert raw.get(keys(prefix, MOBILE_NO)[0]).endswith(b"|N")
    assert 0 < raw.pttl(keys(prefix, MOBILE_NO)[0]) <= (NEGATIVE_TTL + 1) * 1000


# Values something else may leave under our keys; each used to raise or misread.
GARBAGE = [
    "²|113湖北-宜昌",  # a digit str.isdigit() accepts and int() refuses (ValueError)
    "١٢|113湖北-宜昌",  # Arabic-Indic digits int() reads as 12
    "9" * 5000 + "|113",  # more digits than int() converts (ValueError)
    b"\xff\xfe|113",  # not UTF-8
    "garbage",  # no "|"
    "|113",
    "12|",
    "x|113",
    "1|999",
    "",
]


@pytest.mark.parametrize("junk", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_value_reads_as_a_miss(redis_server, raw, prefix, made, junk):
    """get() and wait() read a value that is not ours as a miss, count it, and never raise."""
    cache = RedisCache(redis_server.url, prefix=prefix)
    made.append(cache)
    raw.set(keys(prefix, MOBILE_NO)[0], junk)
    assert cache.get(MOBILE_NO) is None
    assert cache.wait(MOBILE_NO, 0.05) is None
    assert cache.stats()["corrupt"] == 2
    token = cache.claim(MOBILE_NO, 1.0)  # a value that is not ours is no fresh answer
    assert token not in (None, UNLOCKED)
    cache.release(MOBILE_NO, token)
    assert (cache.errors, cache.available) == (0, True)


def test_key_of_another_type_reads_as_a_miss(redis_server, raw, prefix, made):
    """A list under our key (WRONGTYPE) is a corrupt value, not an outage: no back-off."""
    cache = RedisCache(redis_server.url, prefix=prefix, failures=1)
    made.append(cache)
    raw.rpush(keys(prefix, MOBILE_NO)[0], "x")
    raw.set(keys(prefix, TELECOM_NO)[0], f"{int(time.time()) + 3600}|113湖北-宜昌")
    for _ in range(3):
        assert cache.get(MOBILE_NO) is None
    assert cache.wait(MOBILE_NO, 0.05) is None
    assert cache.stats()["corrupt"] == 3
    assert cache.available
    assert cache.get(TELECOM_NO) is not None  # Redis is still asked


def test_keys_are_hash_tagged_by_number():
    """A number's answer and lock share one hash tag, the number; the prefix stays in front."""
    assert keys("smsroute:", "13800138000") == (
        "smsroute:{13800138000}",
        "smsroute:{13800138000}:lock",
    )
    with pytest.raises(ValueError, match="hash tags"):
        RedisCache("redis://127.0.0.1:1/0", prefix="app:{x}:")


def test_keys_of_before_hash_tags_are_ignored(redis_server, raw, prefix, made):
    """Keys of 0.2 (``prefix + number``, ``prefix + "lock:" + number``) are never read: misses."""
    cache = RedisCache(redis_server.url, prefix=prefix)
    made.append(cache)
    # An answer and a held lock as a 0.2 worker of the fleet would have left them.
    raw.set(prefix + MOBILE_NO, f"{int(time.time()) + 3600}|113湖北-宜昌")
    raw.set(prefix + "lock:" + MOBILE_NO, "old-token", px=5000)
    assert cache.get(MOBILE_NO) is None
    assert cache.stats()["redis_misses"] == 1
    token = cache.claim(MOBILE_NO, 1.0)  # the old lock does not hold the new worker back
    assert token not in (None, UNLOCKED)
    cache.set(MOBILE_NO, codec.loads("113湖北-宜昌") or 0)
    cache.release(MOBILE_NO, token)
    assert raw.get(prefix + "lock:" + MOBILE_NO) == b"old-token"  # left to expire
    assert raw.get(keys(prefix, MOBILE_NO)[0]).endswith("|113湖北-宜昌".encode())


# -- two tiers ---------------------------------------------------------------------


def test_near_hit_does_not_touch_redis(redis_server, prefix):
    """After set(), gets are answered in-process; Redis sees one SET and no GET."""
    client = CountingRedis.from_url(redis_server.url)
    try:
        cache = RedisCache(client, prefix=prefix)
        cache.set(MOBILE_NO, PORTED)
        assert client.commands == ["SET"]
        for _ in range(100):
            assert cache.get(MOBILE_NO) == (PORTED, True)
        assert client.commands == ["SET"]
        cache.clear_near()
        assert cache.get(MOBILE_NO) == (PORTED, True)
        assert cache.get(MOBILE_NO) == (PORTED, True)
        assert client.commands == ["SET", "GET"]
    finally:
        client.close()


def test_router_hot_path_stays_in_process(redis_server, prefix):
    """Routing a number again and again sends nothing to Redis after its first answer."""
    client = CountingRedis.from_url(redis_server.url)
    try:
        with FakeCarrierServer() as vendor:
            lookup = CarrierClient(vendor.apikey, base_url=vendor.url)
            router = Router(lookup, GATEWAYS, cache=RedisCache(client, prefix=prefix))
            assert router.route(MOBILE_NO).source == "upstream"
            sent = len(client.commands)
            for _ in range(50):
                assert router.route(MOBILE_NO).source == "cache"
            assert len(client.commands) == sent
            assert vendor.paid == 1
            lookup.close()
    finally:
        client.close()


def test_answers_cross_processes_as_text(redis_server, prefix, made):
    """An answer written by another process (other area ids) reads back as the same answer."""
    script = (
        "import sys; from smsroute.redis_cache import RedisCache\n"
        "from smsroute import codec\n"
        "from smsroute.models import CarrierInfo\n"
        "from smsroute.carrier import Carrier\n"
        "for area in ('新疆-喀什', '西藏-拉萨'):\n"
        "    codec.encode(CarrierInfo(sys.argv[3], 0, area, Carrier.MOBILE, Carrier.MOBILE))\n"
        "c = RedisCache(sys.argv[1], prefix=sys.argv[2])\n"
        "c.set(sys.argv[3], codec.encode(CarrierInfo(sys.argv[3], 1, '广东-深圳',"
        " Carrier.UNICOM, Carrier.TELECOM)))\n"
        "assert c.errors == 0\n"
    )
    subprocess.run([sys.executable, "-c", script, redis_server.url, prefix, TELECOM_NO], check=True)
    cache = RedisCache(redis_server.url, prefix=prefix)
    made.append(cache)
    hit = cache.get(TELECOM_NO)
    assert hit is not None
    assert hit[1]
    assert codec.fields(hit[0]) == (Carrier.TELECOM, Carrier.UNICOM, 1, "广东-深圳")


# -- outages -----------------------------------------------------------------------


def test_built_while_redis_is_down_never_raises(made):
    """With nothing listening, construction and every call succeed; failures are counted."""
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", backoff=0)
    made.append(cache)
    assert cache.get(MOBILE_NO) is None
    cache.set(MOBILE_NO, PORTED)
    assert cache.get(MOBILE_NO) == (PORTED, True)  # the near tier still works
    cache.delete(MOBILE_NO)
    token = cache.claim(TELECOM_NO, 0.5)
    assert token is not None  # no fleet to coordinate with: ask
    assert cache.wait(TELECOM_NO, 0.5) is None
    cache.release(TELECOM_NO, token)
    stats = cache.stats()
    assert cache.errors >= 4
    assert stats["errors"] == cache.errors
    assert stats["available"] is False


def test_down_redis_is_skipped_during_backoff(made):
    """After the failure that starts it, Redis is not asked for ``backoff`` seconds."""
    mono = FakeClock()
    cache = RedisCache(
        f"redis://127.0.0.1:{free_port()}/0", backoff=1.0, failures=1, monotonic=mono
    )
    made.append(cache)
    start = time.perf_counter()
    for i in range(500):
        number = f"139{i:08d}"
        assert cache.get(number) is None
        cache.set(number, PORTED)
    spent = time.perf_counter() - start
    assert cache.errors == 1
    assert cache.stats()["skipped"] == 500
    assert spent < 0.5  # 1000 calls; a refused connection costs well under a millisecond
    mono.advance(1.01)
    assert cache.get("13800000000") is None
    assert cache.errors == 2


def test_back_off_starts_after_three_consecutive_failures(made):
    """By default a dead Redis is asked three times, then left alone; once more after the pause."""
    mono = FakeClock()
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", backoff=1.0, monotonic=mono)
    made.append(cache)
    for i in range(100):
        assert cache.get(f"139{i:08d}") is None
    assert cache.errors == 3
    assert not cache.available
    mono.advance(1.01)
    for i in range(100):
        assert cache.get(f"139{i:08d}") is None
    assert cache.errors == 4  # still sick: one failure starts the next back-off


def test_unreachable_redis_costs_milliseconds_per_call(made):
    """Even with no back-off, a call against a dead Redis returns in a few milliseconds."""
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", backoff=0)
    made.append(cache)
    start = time.perf_counter()
    for i in range(50):
        assert cache.get(f"139{i:08d}") is None
    per_call = (time.perf_counter() - start) / 50
    assert cache.errors == 50
    assert per_call < 0.005


def test_slow_redis_times_out_quickly(made):
    """A Redis that accepts but never answers costs one short timeout; the near tier answers."""
    clock = FakeClock()
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)  # the kernel accepts connections; nothing ever replies
        port = black_hole.getsockname()[1]
        cache = RedisCache(
            f"redis://127.0.0.1:{port}/0",
            clock=clock,
            monotonic=clock,
            near_ttl=10,
            socket_timeout=0.05,
            backoff=0,
        )
        made.append(cache)
        start = time.perf_counter()
        cache.set(MOBILE_NO, PORTED)  # the Redis write times out; the near tier holds it
        miss = cache.get(TELECOM_NO)
        spent = time.perf_counter() - start
        clock.advance(11)  # past near_ttl: a held answer is still served
        hit = cache.get(MOBILE_NO)
    assert miss is None
    assert hit == (PORTED, True)
    assert spent < 0.5  # two 50 ms timeouts; redis-py's defaults would wait forever
    assert cache.errors == 2


def test_one_slow_reply_under_load_is_not_an_outage(redis_server, prefix, made):
    """Eight threads caught by one stall of a busy Redis count one failure: no back-off, no pay.

    The stall is ``CLIENT PAUSE``, longer than the socket timeout. Before the
    back-off waited for consecutive failures, the first timeout sent the
    cache into its 1 s back-off and all 800 sends paid the vendor again.
    """
    numbers = [f"139{k:02d}{i:06d}" for k in range(8) for i in range(100)]
    writer = RedisCache(redis_server.url, prefix=prefix)
    cache = RedisCache(redis_server.url, prefix=prefix, socket_timeout=0.2)
    made.extend((writer, cache))
    for number in numbers:
        writer.set(number, PORTED)
    client = FakeClient()
    router = Router(client, gateways(), cache=cache, deadline=3.0)
    assert cache.get("13800000000") is None  # connected
    pause = redis.Redis.from_url(redis_server.url)
    pause.execute_command("CLIENT", "PAUSE", 300, "ALL")  # 1.5 socket timeouts
    pause.close()
    barrier = threading.Barrier(8)

    def sends(k: int) -> None:
        barrier.wait()
        for number in numbers[k * 100 : (k + 1) * 100]:
            router.route(number)

    threads = [threading.Thread(target=sends, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert client.calls == []
    assert cache.available
    assert 1 <= cache.errors <= 16  # the stalled commands, each counted
    assert cache.stats()["skipped"] == 0


def test_consecutive_failures_start_the_back_off(made):
    """A Redis that times out on each command sent after a failure is sick: after three, rest."""
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)
        port = black_hole.getsockname()[1]
        cache = RedisCache(f"redis://127.0.0.1:{port}/0", socket_timeout=0.05, backoff=60)
        made.append(cache)
        start = time.perf_counter()
        for i in range(20):
            assert cache.get(f"139{i:08d}") is None
        spent = time.perf_counter() - start
    assert cache.errors == 3
    assert cache.stats()["available"] is False
    assert spent < 0.5  # three 50 ms timeouts, then nothing


def test_one_warning_per_outage(caplog, own_server, made):
    """A dead Redis logs one warning for the outage, not one per call, and notes the recovery."""
    own_server.kill()
    cache = RedisCache(own_server.url, backoff=0)
    made.append(cache)
    with caplog.at_level(logging.INFO, logger="smsroute"):
        for i in range(20):
            cache.get(f"139{i:08d}")
        own_server.start()
        cache.get(MOBILE_NO)
        cache.get(MOBILE_NO)
    events = [r.getMessage() for r in caplog.records if "cache.redis" in r.getMessage()]
    assert len(events) == 2, events
    assert "event=cache.redis.down" in events[0]
    assert "level=warning" in events[0]
    assert "event=cache.redis.up" in events[1]
    assert cache.errors == 20


def test_killed_mid_run_loses_no_send(own_server, made):
    """Sends go on while redis-server is SIGKILLed under them: every route() returns a Decision."""
    cache = RedisCache(own_server.url, backoff=0.05)
    made.append(cache)
    numbers = [f"139{i:08d}" for i in range(300)]
    decisions: list[Any] = []
    errors: list[BaseException] = []
    halfway = threading.Event()
    with FakeCarrierServer() as vendor:
        lookup = CarrierClient(vendor.apikey, base_url=vendor.url)
        router = Router(lookup, GATEWAYS, cache=cache, deadline=2.0)

        def sends() -> None:
            for i, number in enumerate(numbers * 2):
                if i == 150:
                    halfway.set()
                try:
                    decisions.append(router.route(number))
                except BaseException as exc:
                    errors.append(exc)

        worker = threading.Thread(target=sends)
        worker.start()
        assert halfway.wait(10)
        own_server.kill()
        worker.join(30)
        lookup.close()
    assert not errors
    assert len(decisions) == 600
    assert all(isinstance(d, Decision) and d.carrier is not None for d in decisions)
    assert cache.errors >= 1
    assert router.stats()["errors"].get("cache") is None  # nothing reached the router


def test_restarted_redis_is_used_again(own_server, made):
    """After a restart (empty, same port) set and get go through Redis again, by themselves."""
    mono = FakeClock()
    cache = RedisCache(own_server.url, backoff=1.0, failures=1, monotonic=mono)
    made.append(cache)
    cache.set(MOBILE_NO, PORTED)
    own_server.kill()
    cache.set(TELECOM_NO, PLAIN)
    assert cache.errors == 1
    own_server.start()
    cache.set(TELECOM_NO, PLAIN)  # still in the back-off: not sent
    assert cache.stats()["skipped"] == 1
    mono.advance(1.01)
    cache.set(TELECOM_NO, PLAIN)
    assert cache.available
    check = redis.Redis.from_url(own_server.url)
    try:
        assert check.get(keys("smsroute:", TELECOM_NO)[0]) is not None
        assert check.get(keys("smsroute:", MOBILE_NO)[0]) is None  # the restart emptied Redis
    finally:
        check.close()
    cache.clear_near()
    assert cache.get(TELECOM_NO) == (PLAIN, True)
    assert cache.stats()["redis_hits"] == 1
    assert cache.errors == 1


# -- a Redis that reads but refuses writes ------------------------------------------


def refuse_writes(url: str, how: str) -> None:
    """Make the Redis at ``url`` refuse writes: OOM under noeviction, or a READONLY replica."""
    raw = redis.Redis.from_url(url)
    try:
        if how == "oom":
            raw.config_set("maxmemory-policy", "noeviction")
            raw.config_set("maxmemory", 1)  # one byte: every write is over the limit
        else:
            # A replica of a primary that is not there: it keeps serving its
            # data (replica-serve-stale-data) and refuses every write.
            raw.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
        with pytest.raises(redis.ResponseError):
            raw.set("probe", "x")
    finally:
        raw.close()


@pytest.mark.parametrize("how", ["oom", "readonly"])
def test_a_redis_refusing_writes_costs_no_more_than_a_memory_cache(own_server, how, caplog):
    """Three workers on a Redis that refuses writes pay 300 for 100 hot numbers in 10 minutes.

    That is once per number per worker, what a MemoryCache per worker pays.
    Before the near tier held refused answers, the same run paid 621 (1,917
    with a send of each number every second): a far-tier miss dropped the
    near copy once per near_ttl, the claim failed, and the worker paid again.
    """
    refuse_writes(own_server.url, how)
    clock = FakeClock(1_767_225_000)
    numbers = [f"1390000{i:04d}" for i in range(100)]
    workers = []
    for _ in range(3):
        cache = RedisCache(own_server.url, clock=clock, monotonic=clock, sleep=clock.sleep)
        workers.append((Router(FakeClient(), gateways(), cache=cache, clock=clock), cache))
    try:
        with caplog.at_level(logging.WARNING, logger="smsroute"):
            for _ in range(120):  # a send of each number every 5 s, for 10 minutes
                for router, _cache in workers:
                    for number in numbers:
                        router.route(number)
                clock.advance(5)
        paid = sum(len(router.client.calls) for router, _ in workers)
        stats = [cache.stats() for _, cache in workers]
    finally:
        for _, cache in workers:
            cache.close()
    assert paid == 300
    for one in stats:
        assert one["refused"] == one["errors"] == 200  # each number's claim and set
        assert one["available"] is False
        assert one["skipped"] == 0  # reads went on: a refusal is no outage
    downs = [r for r in caplog.records if "cache.redis.down" in r.getMessage()]
    assert len(downs) == 3  # one warning per worker


def test_a_refusing_redis_still_serves_its_answers(own_server, made, caplog):
    """While writes are refused, answers already in Redis are read; writes resume by themselves."""
    clock = FakeClock()
    writer = RedisCache(own_server.url, clock=clock, monotonic=clock)
    reader = RedisCache(own_server.url, clock=clock, monotonic=clock)
    made.extend((writer, reader))
    writer.set(MOBILE_NO, PORTED)
    refuse_writes(own_server.url, "oom")
    assert reader.get(MOBILE_NO) == (PORTED, True)  # from Redis
    reader.set(TELECOM_NO, PLAIN)  # refused: held in the near tier
    assert reader.stats()["refused"] == 1
    assert not reader.available
    clock.advance(3600)  # far past near_ttl
    assert reader.get(TELECOM_NO) == (PLAIN, True)
    assert reader.get(MOBILE_NO) == (PORTED, True)
    raw = redis.Redis.from_url(own_server.url)
    raw.config_set("maxmemory", 0)
    raw.close()
    with caplog.at_level(logging.INFO, logger="smsroute"):
        reader.set(TELECOM_NO, PLAIN)
    assert reader.available
    assert writer.get(TELECOM_NO) == (PLAIN, True)  # the fleet has it now
    assert any("cache.redis.up" in r.getMessage() for r in caplog.records)


# -- fleet single-flight -------------------------------------------------------------


def test_release_leaves_another_workers_lock(redis_server, raw, prefix, made):
    """A worker whose claim expired and was retaken does not delete the new holder's lock."""
    a = RedisCache(redis_server.url, prefix=prefix)
    b = RedisCache(redis_server.url, prefix=prefix)
    made.extend((a, b))
    token_a = a.claim(MOBILE_NO, 1.0)
    assert token_a
    raw.delete(keys(prefix, MOBILE_NO)[1])  # as if it had expired
    assert b.claim(MOBILE_NO, 1.0)
    a.release(MOBILE_NO, token_a)
    assert raw.exists(keys(prefix, MOBILE_NO)[1])
    assert not a.claim(MOBILE_NO, 1.0)


def test_claim_is_bounded_by_lock_ttl(redis_server, raw, prefix, made):
    """A claim is held for ttl, at most lock_ttl: a dead holder blocks the fleet briefly."""
    cache = RedisCache(redis_server.url, prefix=prefix, lock_ttl=2.0)
    made.append(cache)
    assert cache.claim(MOBILE_NO, 60.0)
    assert 1000 < raw.pttl(keys(prefix, MOBILE_NO)[1]) <= 2000
    assert cache.claim(TELECOM_NO, 0.3)
    assert 0 < raw.pttl(keys(prefix, TELECOM_NO)[1]) <= 300


def test_wait_returns_the_holders_answer(redis_server, prefix, made):
    """wait() returns the claim holder's answer as soon as it is stored."""
    a = RedisCache(redis_server.url, prefix=prefix)
    b = RedisCache(redis_server.url, prefix=prefix)
    made.extend((a, b))
    claimed = threading.Event()

    def leader() -> None:
        token = a.claim(MOBILE_NO, 5.0)
        assert token
        claimed.set()
        time.sleep(0.05)  # the upstream lookup
        a.set(MOBILE_NO, PORTED)
        a.release(MOBILE_NO, token)

    thread = threading.Thread(target=leader)
    thread.start()
    assert claimed.wait(5)
    assert not b.claim(MOBILE_NO, 5.0)
    start = time.perf_counter()
    assert b.wait(MOBILE_NO, 3.0) == (PORTED, True)
    assert time.perf_counter() - start < 1.0
    thread.join(5)
    assert b.get(MOBILE_NO) == (PORTED, True)


def test_wait_ends_early_when_the_holder_gives_up(redis_server, prefix, made):
    """wait() returns None as soon as the lock goes away without an answer."""
    a = RedisCache(redis_server.url, prefix=prefix)
    b = RedisCache(redis_server.url, prefix=prefix)
    made.extend((a, b))
    claimed = threading.Event()

    def leader() -> None:
        token = a.claim(MOBILE_NO, 5.0)
        assert token
        claimed.set()
        time.sleep(0.05)  # the upstream lookup, which fails
        a.release(MOBILE_NO, token)

    thread = threading.Thread(target=leader)
    thread.start()
    assert claimed.wait(5)
    start = time.perf_counter()
    assert b.wait(MOBILE_NO, 3.0) is None
    assert time.perf_counter() - start < 1.0
    thread.join(5)


def test_wait_is_bounded_by_its_timeout(redis_server, prefix, made):
    """wait() gives up after its timeout while the holder is still at work."""
    a = RedisCache(redis_server.url, prefix=prefix)
    b = RedisCache(redis_server.url, prefix=prefix)
    made.extend((a, b))
    token = a.claim(MOBILE_NO, 5.0)
    assert token
    start = time.perf_counter()
    assert b.wait(MOBILE_NO, 0.1) is None
    assert 0.09 < time.perf_counter() - start < 0.5
    a.release(MOBILE_NO, token)


def test_fleet_single_flight_across_workers(redis_server, prefix, made):
    """Eight workers (own router, own RedisCache) missing one number at once pay one query."""
    parties = 8
    barrier = threading.Barrier(parties)
    decisions: list[Decision] = []
    with FakeCarrierServer(latency=0.1) as vendor:
        clients = [CarrierClient(vendor.apikey, base_url=vendor.url) for _ in range(parties)]
        routers = []
        for client in clients:
            cache = RedisCache(redis_server.url, prefix=prefix)
            made.append(cache)
            routers.append(Router(client, GATEWAYS, cache=cache, deadline=3.0))

        def worker(router: Router) -> None:
            barrier.wait()
            decisions.append(router.route(MOBILE_NO))

        threads = [threading.Thread(target=worker, args=(r,)) for r in routers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        paid = vendor.paid
        for client in clients:
            client.close()
    assert paid == 1
    assert len(decisions) == parties
    assert sorted(d.source for d in decisions) == ["cache"] * (parties - 1) + ["upstream"]
    assert len({d.carrier for d in decisions}) == 1


def _route_in_process(
    redis_url: str,
    vendor_url: str,
    apikey: str,
    prefix: str,
    numbers: list[str],
    start: Any,
    out: Any,
) -> None:
    """Route ``numbers`` in a fresh process sharing one Redis; put (number, carrier, source)s."""
    cache = RedisCache(redis_url, prefix=prefix)
    client = CarrierClient(apikey, base_url=vendor_url)
    router = Router(client, GATEWAYS, cache=cache, deadline=5.0)
    start.wait(30)
    decisions = router.route_many(numbers, concurrency=4)
    out.put([(d.mobile, str(d.carrier), d.source) for d in decisions])
    client.close()
    cache.close()


def test_two_processes_sharing_redis_pay_once_per_number(redis_server, prefix):
    """Two processes routing the same list at the same time through one Redis pay once a number."""
    numbers = [f"1390000{i:04d}" for i in range(40)]
    ctx = multiprocessing.get_context("spawn")  # no fork of a threaded process
    start = ctx.Barrier(3)
    out = ctx.Queue()
    with FakeCarrierServer(latency=0.02, ported_share=0.5) as vendor:
        procs = [
            ctx.Process(
                target=_route_in_process,
                args=(redis_server.url, vendor.url, vendor.apikey, prefix, numbers, start, out),
            )
            for _ in range(2)
        ]
        for p in procs:
            p.start()
        start.wait(30)
        results = [out.get(timeout=30) for _ in procs]
        for p in procs:
            p.join(10)
        paid = vendor.paid
        expected = {n: vendor.answer_for(n)["result"]["Now_isp"] for n in numbers}
    assert [p.exitcode for p in procs] == [0, 0]
    assert paid == len(numbers)
    first, second = results
    assert [(m, c) for m, c, _ in first] == [(m, c) for m, c, _ in second]
    assert {m: Carrier.parse(c) for m, c, _ in first} == {
        m: Carrier.parse(now) for m, now in expected.items()
    }
    sources = [s for _, _, s in first + second]
    assert sources.count("upstream") == len(numbers)
    assert set(sources) <= {"upstream", "cache"}


# -- packaging ---------------------------------------------------------------------


def test_without_redis_py_the_error_names_the_extra():
    """Importing the module works without redis-py; building a RedisCache says what to install."""
    script = (
        "import sys; sys.modules['redis'] = None\n"
        "import smsroute.redis_cache as m\n"
        "try:\n"
        "    m.RedisCache('redis://127.0.0.1:1/0')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert "smsroute[redis]" in done.stdout


def test_import_smsroute_does_not_import_redis_py():
    """``import smsroute`` stays free of redis-py (75 ms to import); RedisCache loads it lazily."""
    script = "import sys, smsroute; print('redis' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "False"
