"""Tests for LoopEngine: routes submitted from threads run on one loop, bounded, none lost."""

from __future__ import annotations

import asyncio
import threading

import pytest
from _fakes import FakeClient, info

from smsroute import AsyncRouter, NoRoute
from smsroute.aio.engine import LoopEngine


class Slow:
    """An async client that answers after ``delay`` and records the most calls at once."""

    def __init__(self, delay: float = 0.01) -> None:
        self.fake = FakeClient({})
        self.delay = delay
        self.now = 0
        self.most = 0

    async def lookup(self, number: str, *, timeout: float | None = None):
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(self.delay)
            return self.fake.lookup(number)
        finally:
            self.now -= 1


def engine(client, concurrency=8, **router):
    """Return a LoopEngine over an AsyncRouter on ``client``."""

    async def make():
        return AsyncRouter(client, {"移动": "m", "联通": "u", "电信": "t"}, deadline=2.0, **router)

    return LoopEngine(make, concurrency)


def test_every_number_is_routed_once_within_the_concurrency():
    """300 numbers submitted from 3 threads: 300 decisions, never more than 8 lookups at once."""
    client = Slow()
    e = engine(client, concurrency=8)
    numbers = [f"1390000{i:04d}" for i in range(300)]
    futures: dict[str, object] = {}
    lock = threading.Lock()

    def submit(part):
        for n in part:
            f = e.submit(n)
            with lock:
                futures[n] = f

    threads = [threading.Thread(target=submit, args=(numbers[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    decisions = {n: f.result(10) for n, f in futures.items()}
    e.shutdown()
    assert sorted(decisions) == numbers
    assert all(d.mobile == n and d.source == "upstream" for n, d in decisions.items())
    assert 1 < client.most <= 8
    assert len(client.fake.calls) == 300


def test_errors_reach_the_future():
    """A route that raises (no gateway) gives its future that error; the others go on."""
    fake = FakeClient(
        {"13900000001": info("13900000001", "移动"), "13900000002": info("13900000002", "广电")}
    )

    class Quick:
        async def lookup(self, number, *, timeout=None):
            return fake.lookup(number)

    e = engine(Quick())
    ok, bad = e.submit("13900000001"), e.submit("13900000002")
    assert ok.result(5).gateway == "m"
    with pytest.raises(NoRoute):
        bad.result(5)
    e.shutdown()


def test_shutdown_lets_submitted_routes_land_then_refuses_more():
    """shutdown() waits for what was submitted; a submit after it is an error, not a lost row."""
    client = Slow(delay=0.05)
    e = engine(client, concurrency=2)
    futures = [e.submit(f"1390000{i:04d}") for i in range(10)]
    e.shutdown()
    assert all(f.done() and f.result().source == "upstream" for f in futures)
    with pytest.raises(RuntimeError, match="shut down"):
        e.submit("13900000099")
