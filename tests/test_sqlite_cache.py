"""Tests for SqliteCache: persistence, near tier, failures, purges, threads and processes."""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _fakes import MOBILE_NO, TELECOM_NO, FakeClient, gateways, info
from test_cache_contract import NEGATIVE_TTL, PLAIN, PORTED, STALE_TTL, TTL

from smsroute import codec
from smsroute.carrier import Carrier
from smsroute.client import CarrierClient
from smsroute.models import CarrierInfo
from smsroute.routing import Router
from smsroute.sqlite_cache import SqliteCache, default_cache_path
from smsroute.testing import FakeCarrierServer, FakeClock

GATEWAYS: dict[Carrier | str, str] = {c: c.name.lower() for c in Carrier}
POLICY = {"ttl": TTL, "negative_ttl": NEGATIVE_TTL, "stale_ttl": STALE_TTL}
DAY = 86400.0


def opened(path: Path, clock: FakeClock, **kwargs: Any) -> SqliteCache:
    """Return a SqliteCache whose wall and monotonic clocks are both ``clock`` (time passing)."""
    return SqliteCache(path, clock=clock, monotonic=clock, **kwargs)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Return a database path in a directory that does not exist yet."""
    return tmp_path / "sub" / "answers.sqlite3"


def test_persists_across_reopen(path):
    """A second SqliteCache on the same file sees the answers, fresh or stale as before."""
    clock = FakeClock()
    with opened(path, clock, **POLICY) as first:
        first.set(MOBILE_NO, PORTED)
        first.set(TELECOM_NO, codec.NOT_FOUND)
    with opened(path, clock, **POLICY) as second:
        assert second.get(MOBILE_NO) == (PORTED, True)
        assert second.get(TELECOM_NO) == (codec.NOT_FOUND, True)
        clock.advance(TTL + 2)
        assert second.get(MOBILE_NO) == (PORTED, False)
        assert second.get(TELECOM_NO) is None


def test_file_is_wal_with_the_documented_table(path):
    """The file is in WAL mode with one row per number: integer key, fresh-until, dumps text."""
    clock = FakeClock(1_767_225_000)
    with SqliteCache(path, clock=clock) as cache:
        cache.set(MOBILE_NO, PORTED)
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        row = db.execute("SELECT number, fresh_until, answer FROM answers").fetchone()
    finally:
        db.close()
    assert row == (int(MOBILE_NO), 1_767_225_000 + 7 * 86400 + 1, "113湖北-宜昌")


def test_expired_rows_are_purged(path):
    """Rows past their stale window go on open and on a periodic purge; live ones stay."""
    clock = FakeClock()
    with opened(path, clock, purge_interval=500, **POLICY) as cache:
        cache.set(MOBILE_NO, PORTED)
        cache.set(TELECOM_NO, codec.NOT_FOUND)
        clock.advance(NEGATIVE_TTL + 2)
        assert cache.purge() == 1  # the negative; the answer is fresh
        assert len(cache) == 1
        clock.advance(TTL + STALE_TTL)
        cache.set("13900000009", PLAIN)  # a write past purge_interval purges
        assert len(cache) == 1
        assert cache.stats()["purged"] == 2
    with opened(path, clock, **POLICY) as reopened:
        clock.advance(TTL + STALE_TTL + 2)
        assert reopened.purge() == 1
        assert len(reopened) == 0


def test_purge_on_open(path):
    """Opening the file drops the rows that had expired by the newest write to it."""
    clock = FakeClock()
    with opened(path, clock, **POLICY) as cache:
        cache.set(MOBILE_NO, PORTED)
    clock.advance(TTL + STALE_TTL + 2)
    with opened(path, clock, **POLICY) as cache:
        cache.set(TELECOM_NO, PLAIN)  # this write shows the time really passed
    with opened(path, clock, **POLICY) as cache:
        assert len(cache) == 1
        assert cache.stats()["purged"] == 1
        assert cache.get(TELECOM_NO) == (PLAIN, True)


def test_many_threads_share_one_cache(path):
    """Threads setting, reading and deleting at once raise nothing and lose no write."""
    cache = SqliteCache(path)
    failures: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(k: int) -> None:
        try:
            barrier.wait()
            for i in range(200):
                number = f"139{k:02d}{i:06d}"
                cache.set(number, PORTED)
                assert cache.get(number) == (PORTED, True)
                if i % 4 == 0:
                    cache.delete(number)
                    assert cache.get(number) is None
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert not failures
        assert len(cache) == 8 * 150
        assert cache.errors == 0
    finally:
        cache.close()


def _write_in_process(path: str, start: int, count: int, barrier: Any, out: Any) -> None:
    """Write ``count`` answers from ``start`` in a fresh process; report errors and misses."""
    area = "广东-深圳" if start else "湖北-宜昌"  # area ids differ between the processes
    ans = codec.encode(CarrierInfo(MOBILE_NO, 1, area, Carrier.MOBILE, Carrier.UNICOM))
    with SqliteCache(path) as cache:
        barrier.wait(30)
        misses = 0
        for i in range(start, start + count):
            number = f"1390000{i:04d}"
            cache.set(number, ans)
            if cache.get(number) is None:
                misses += 1
        out.put((cache.errors, misses))


def test_two_processes_write_one_file(path):
    """Two processes writing the same file at once (overlapping numbers) lose nothing."""
    SqliteCache(path).close()  # create it, and WAL mode, before the race
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_write_in_process, args=(str(path), start, 300, barrier, out))
        for start in (0, 150)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)
    assert [p.exitcode for p in procs] == [0, 0]
    assert results == [(0, 0), (0, 0)]
    with SqliteCache(path) as cache:
        assert len(cache) == 450
        for i in (0, 149, 150, 299, 300, 449):
            hit = cache.get(f"1390000{i:04d}")
            assert hit is not None
            assert hit[1]
            assert codec.fields(hit[0])[0] == Carrier.UNICOM
            assert codec.fields(hit[0])[3] in ("广东-深圳", "湖北-宜昌")


def test_locked_file_does_not_fail_a_send(path, caplog):
    """While another connection holds the write lock, set() gives up after write_timeout, quietly.

    busy_timeout (1 s by default) is for opening and purging only: a send
    waits at most write_timeout (0.05 s) for the file. What the file did not
    take is served from the near tier; the failures are counted and logged
    once.
    """
    cache = SqliteCache(path)
    cache.set(MOBILE_NO, PORTED)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with caplog.at_level(logging.WARNING, logger="smsroute"):
            for write in (
                lambda: cache.set(MOBILE_NO, PLAIN),
                lambda: cache.set(TELECOM_NO, PLAIN),
                lambda: cache.delete("13900000009"),
            ):
                started = time.monotonic()
                write()
                assert time.monotonic() - started < 0.5  # not busy_timeout's 1 s
            assert cache.get(MOBILE_NO) == (PLAIN, True)  # held in the near tier
            assert cache.get(TELECOM_NO) == (PLAIN, True)
            assert not cache.available
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert cache.errors == 3
    assert cache.stats()["errors"] == 3
    warnings = [r for r in caplog.records if "cache.sqlite.error" in r.getMessage()]
    assert len(warnings) == 1
    cache.set(MOBILE_NO, PLAIN)
    assert cache.available
    cache.clear_near()
    assert cache.get(MOBILE_NO) == (PLAIN, True)
    cache.close()


@pytest.mark.parametrize("trouble", ["locked", "full"])
def test_a_failing_file_pays_once_per_number(path, trouble):
    """One number sent once a minute for 50 minutes while the file is locked (or full) pays once.

    Reads still work (WAL), so without the near tier holding the answer the
    file said "miss" and every send paid again: 50 queries for 50 sends.
    """
    clock = FakeClock()
    cache = opened(path, clock)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        if trouble == "locked":
            other.execute("BEGIN EXCLUSIVE")
        else:
            # A full disk, as SQLite reports it: no page beyond the file's
            # size. Keys ascending, so the last leaf is the full one, and the
            # number routed below (a larger key) lands there too.
            for i in range(3000):
                cache.set(f"1380000{i:04d}", PLAIN)
            pages = cache._db.execute("PRAGMA page_count").fetchone()[0]
            cache._db.execute(f"PRAGMA max_page_count = {pages}")
            for i in range(3000, 9000):
                cache.set(f"1380000{i:04d}", PLAIN)
                if cache.errors:
                    break
            assert cache.errors == 1  # the file is full now
        client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
        router = Router(client, gateways(), cache=cache, clock=clock)
        errors_before = cache.errors
        decisions = []
        for _ in range(50):
            decisions.append(router.route(MOBILE_NO))
            clock.advance(60)  # each send past the near tier's own 60 s
    finally:
        if trouble == "locked":
            other.execute("ROLLBACK")
        other.close()
        cache.close()
    assert len(client.calls) == 1
    assert {d.carrier for d in decisions} == {Carrier.TELECOM}
    assert cache.errors == errors_before + 1  # the one set that failed: counted, not swallowed


def test_router_hot_path_runs_no_query(path):
    """Routing a number again and again reads the near tier: no statement on the file."""
    with SqliteCache(path) as cache:
        client = FakeClient()
        router = Router(client, gateways(), cache=cache)
        assert router.route(MOBILE_NO).source == "upstream"
        statements: list[str] = []
        for conn in {id(c): c for c in (cache._db, cache._rdb) if c}.values():
            conn.set_trace_callback(statements.append)
        for _ in range(50):
            assert router.route(MOBILE_NO).source == "cache"
        assert statements == []
        assert len(client.calls) == 1


def test_a_clock_jump_at_start_up_purges_nothing(path):
    """Opened 40 days ahead of its last write, the file keeps every answer, fresh once fixed."""
    start = 1_767_225_000.0
    with opened(path, FakeClock(start)) as cache:
        for i in range(100):
            cache.set(f"1390000{i:04d}", PORTED)
    with opened(path, FakeClock(start + 40 * DAY)) as jumped:
        assert jumped.stats()["purged"] == 0
        assert len(jumped) == 100
        assert jumped.purge() == 0
        assert jumped.get("13900000001") is None  # past the stale window by this clock
    with opened(path, FakeClock(start + 3600)) as fixed:
        assert len(fixed) == 100
        assert fixed.get("13900000001") == (PORTED, True)
        assert fixed.get("13900000099") == (PORTED, True)


def test_a_clock_jump_while_running_purges_nothing(path):
    """A wall clock that jumps 40 days while the monotonic clock does not purges nothing."""
    wall, mono = FakeClock(1_767_225_000.0), FakeClock()
    with SqliteCache(path, clock=wall, monotonic=mono, purge_interval=60) as cache:
        for i in range(100):
            cache.set(f"1390000{i:04d}", PORTED)
        wall.advance(40 * DAY)
        assert cache.purge() == 0
        mono.advance(61)  # past purge_interval: a set sweeps
        cache.set("13800000000", PLAIN)
        assert cache.stats()["purged"] == 0
        mono.advance(40 * DAY)  # now the time has really passed
        assert cache.purge() == 100
        assert len(cache) == 1


def test_a_read_does_not_queue_behind_a_blocked_write(path):
    """A get() answers while another thread's set() is still waiting for the file."""
    cache = SqliteCache(path, write_timeout=5.0)
    cache.set(MOBILE_NO, PORTED)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    writer = threading.Thread(target=cache.set, args=(TELECOM_NO, PLAIN))
    try:
        writer.start()
        time.sleep(0.2)  # the writer is now waiting for the file, inside the cache
        assert cache.get(MOBILE_NO) == (PORTED, True)
        assert writer.is_alive()  # the read did not wait for it
    finally:
        other.execute("ROLLBACK")
        other.close()
        writer.join(10)
    assert cache.get(TELECOM_NO) == (PLAIN, True)  # the write went in once the lock was free
    assert cache.errors == 0
    cache.close()


def test_a_set_purges_one_window_at_a_time(path):
    """Past purge_interval each set() purges at most purge_batch rows, until the sweep is done."""
    clock = FakeClock()
    with opened(path, clock, purge_interval=500, purge_batch=10, **POLICY) as cache:
        for i in range(100):
            cache.set(f"1390000{i:04d}", PORTED)
        clock.advance(TTL + STALE_TTL + 2)  # all 100 past their stale window
        purged = [cache.stats()["purged"]]
        for i in range(15):
            cache.set(f"1500000{i:04d}", PLAIN)
            purged.append(cache.stats()["purged"])
        steps = [b - a for a, b in itertools.pairwise(purged)]
        assert max(steps) <= 10
        assert purged[-1] == 100  # the sweep went round: every expired row is gone
        assert len(cache) == 15
        # The sweep is over: the next sets purge nothing until purge_interval.
        cache.set("13900009999", PLAIN)
        assert cache.stats()["purged"] == 100


def test_purge_on_open_in_windows(path):
    """Opening the file sweeps it whole, window by window, and counts what is left."""
    clock = FakeClock()
    with opened(path, clock, **POLICY) as cache:
        for i in range(40):
            cache.set(f"1390000{i:04d}", PORTED if i % 2 else codec.NOT_FOUND)
        clock.advance(NEGATIVE_TTL + 2)  # the 20 negatives are gone, the answers fresh
        cache.set("13900009999", PLAIN)
    with opened(path, clock, purge_batch=3, **POLICY) as cache:
        assert cache.stats()["purged"] == 20
        assert len(cache) == 21
        assert cache.get("13900000001") == (PORTED, True)


def test_len_runs_no_query(path):
    """len() (every stats() scrape) is a counter: no statement on the file, no lock."""
    with SqliteCache(path) as cache:
        cache.set(MOBILE_NO, PORTED)
        statements: list[str] = []
        connections = {id(c): c for c in (cache._db, getattr(cache, "_rdb", None)) if c}
        for conn in connections.values():
            conn.set_trace_callback(statements.append)
        sizes: list[int] = []
        scrape = threading.Thread(target=lambda: sizes.extend([len(cache), cache.stats()["size"]]))
        with cache._lock:  # a send holding the write lock does not hold up a scrape
            scrape.start()
            scrape.join(5)
            done = not scrape.is_alive()
        scrape.join(5)
        assert done
        assert sizes == [1, 1]
        assert statements == []


def test_len_is_approximate_across_processes(path):
    """len() follows this process's writes at once and other processes' at the next purge."""
    with SqliteCache(path) as cache:
        cache.set(MOBILE_NO, PORTED)
        cache.set(MOBILE_NO, PLAIN)  # a replacement is not a new row
        cache.set(TELECOM_NO, PLAIN)
        cache.delete(TELECOM_NO)
        cache.delete(TELECOM_NO)  # nothing to delete
        assert len(cache) == 1
        other = sqlite3.connect(path, isolation_level=None)
        other.execute(
            "INSERT INTO answers VALUES (13712340001, ?, 'N'), (13712340002, ?, 'N')",
            (2**40, 2**40),
        )
        other.close()
        assert len(cache) == 1
        assert cache.purge() == 0
        assert len(cache) == 3


def test_purge_batch_must_be_positive(path):
    """A purge window of no rows would never finish a sweep."""
    with pytest.raises(ValueError, match="purge_batch"):
        SqliteCache(path, purge_batch=0)


def test_corrupt_row_reads_as_a_miss(path):
    """A row whose answer is not ours reads as None and is counted, never raised."""
    with SqliteCache(path) as cache:
        cache.set(MOBILE_NO, PORTED)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("UPDATE answers SET answer = 'junk'")
        db.close()
        assert cache.get(MOBILE_NO) == (PORTED, True)  # the near tier's copy
        cache.clear_near()
        assert cache.get(MOBILE_NO) is None
        assert cache.stats()["corrupt"] == 1
        assert cache.errors == 0


def test_closed_cache_answers_none(path):
    """After close() reads answer None and writes are dropped; close() is idempotent."""
    cache = SqliteCache(path)
    cache.set(MOBILE_NO, PORTED)
    cache.close()
    cache.close()
    assert cache.get(MOBILE_NO) is None
    cache.set(MOBILE_NO, PORTED)
    cache.delete(MOBILE_NO)
    assert cache.errors == 3
    assert "closed" in repr(cache)


@pytest.mark.parametrize("key", ["abc", "0139000000", "", "１３９００００００００"])
def test_keys_must_be_normalised_numbers(path, key):
    """A key that is not a normalised number is a caller error: ValueError, nothing stored."""
    with SqliteCache(path) as cache:
        with pytest.raises(ValueError, match="normalised"):
            cache.set(key, PORTED)
        assert len(cache) == 0


def test_memory_database(tmp_path):
    """An in-memory database works for a throw-away cache."""
    with SqliteCache(":memory:") as cache:
        cache.set(MOBILE_NO, PORTED)
        assert cache.get(MOBILE_NO) == (PORTED, True)
    assert not list(tmp_path.iterdir())


def test_running_a_list_twice_pays_once(path):
    """A router over SqliteCache, restarted between two runs of a list, pays once per number."""
    numbers = [f"1390000{i:04d}" for i in range(30)]
    with FakeCarrierServer(ported_share=0.5) as vendor:
        for run in range(2):
            with SqliteCache(path) as cache, CarrierClient(vendor.apikey, base_url=vendor.url) as c:
                decisions = Router(c, GATEWAYS, cache=cache).route_many(numbers)
            expected = "upstream" if run == 0 else "cache"
            assert {d.source for d in decisions} == {expected}
        assert vendor.paid == len(numbers)


def test_default_path_follows_xdg_cache_home(monkeypatch, tmp_path):
    """The default file lives under $XDG_CACHE_HOME/smsroute, with or without platformdirs."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    expected = tmp_path / "smsroute" / "answers.sqlite3"
    if sys.platform.startswith("linux"):  # platformdirs honours XDG on Linux only
        assert default_cache_path() == expected
    monkeypatch.setitem(sys.modules, "platformdirs", None)  # as if not installed
    assert default_cache_path() == expected
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_path() == Path.home() / ".cache" / "smsroute" / "answers.sqlite3"
