"""Tests for AsyncRouter: parity with Router, single-flight across tasks, cancellation, deadline."""

from __future__ import annotations

import asyncio
import time

import pytest
from _fakes import (
    MOBILE_NO,
    TELECOM_NO,
    UNICOM_NO,
    VIRTUAL_NO,
    FakeClient,
    M,
    T,
    U,
    api_error,
    info,
)

from smsroute import AsyncRouter, CircuitBreaker, MemoryCache, Router, SqliteCache, WrongCarrier
from smsroute.errors import InvalidNumber, NoRoute, TransportError
from smsroute.testing import FakeClock

GW = {M: "gw-mobile", U: "gw-unicom", T: "gw-telecom"}


class AsyncFake:
    """An asyncio face on a FakeClient: the same script, the same answers, awaited."""

    def __init__(self, fake: FakeClient, delay: float = 0.0) -> None:
        self.fake = fake
        self.delay = delay

    async def lookup(self, number: str, *, timeout: float | None = None):
        """Answer like the FakeClient, after ``delay`` seconds of real time."""
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.fake.lookup(number)

    @property
    def calls(self) -> list[str]:
        """Return the numbers asked so far."""
        return self.fake.calls


def pair(make_client, **kwargs):
    """Return a Router and an AsyncRouter, each over its own copy of the same fakes."""
    out = []
    for _ in range(2):
        clock = FakeClock()
        cache = MemoryCache(clock=clock, ttl=100.0, negative_ttl=10.0, stale_ttl=1000.0)
        breaker = CircuitBreaker(clock=clock, threshold=3, cooldown=10.0)
        out.append((make_client(), cache, breaker, clock))
    (c1, k1, b1, t1), (c2, k2, b2, t2) = out
    # The "mvno" gateway is there only when virtual= sends to it: an unused key is refused.
    gw = {**GW, "mvno": "gw-mvno"} if kwargs.get("virtual") == "mvno" else GW
    sync = Router(c1, gw, cache=k1, breaker=b1, clock=t1, **kwargs)
    aio = AsyncRouter(AsyncFake(c2), gw, cache=k2, breaker=b2, clock=t2, **kwargs)
    return (sync, t1), (aio, t2)


def facts(decision):
    """Return what a caller sees of a decision (or of the error it raised)."""
    if isinstance(decision, Exception):
        return type(decision).__name__
    return (decision.mobile, decision.carrier, decision.gateway, decision.source, decision.reason)


SCENARIOS = {
    "answers": lambda: FakeClient(
        {MOBILE_NO: info(MOBILE_NO, "电信"), VIRTUAL_NO: info(VIRTUAL_NO, "移动", res=3)}
    ),
    "not found": lambda: FakeClient(script=[api_error(-4), api_error(-4)]),
    "outage": lambda: FakeClient(script=[api_error(-8)] * 6),
    "wrong key": lambda: FakeClient(script=[api_error(-1)]),
    "bug in the client": lambda: FakeClient(script=[RuntimeError("boom"), TransportError("t")]),
    "refused by the client": lambda: FakeClient(script=[InvalidNumber("old table")]),
}
STEPS = [
    MOBILE_NO,
    MOBILE_NO,
    UNICOM_NO,
    TELECOM_NO,
    VIRTUAL_NO,
    "advance:150",
    MOBILE_NO,
    UNICOM_NO,
    "advance:5",
    TELECOM_NO,
    "123",
    MOBILE_NO,
]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("virtual", ["host", "mvno", "reject"])
def test_same_decisions_as_the_sync_router(scenario, virtual):
    """For the same answers, faults, cache and settings, both routers decide the same."""
    (sync, t1), (aio, t2) = pair(SCENARIOS[scenario], virtual=virtual)

    async def run_async():
        seen = []
        for step in STEPS:
            if step.startswith("advance:"):
                t2.advance(float(step.split(":")[1]))
                continue
            try:
                seen.append(facts(await aio.route(step)))
            except Exception as exc:
                seen.append(facts(exc))
        return seen

    expected = []
    for step in STEPS:
        if step.startswith("advance:"):
            t1.advance(float(step.split(":")[1]))
            continue
        try:
            expected.append(facts(sync.route(step)))
        except Exception as exc:
            expected.append(facts(exc))
    assert asyncio.run(run_async()) == expected
    s1, s2 = sync.stats(), aio.stats()
    for key in (
        "decisions",
        "decisions_by_carrier",
        "errors",
        "fallback_reasons",
        "breaker",
        "upstream_calls",
    ):
        assert s1[key] == s2[key], key
    assert sync.client.calls == aio.client.calls


def test_thousand_tasks_on_one_cold_number_pay_once():
    """1,000 concurrent routes of one cold number make one vendor call; all get its answer."""
    fake = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
    router = AsyncRouter(AsyncFake(fake, delay=0.02), GW)

    async def run():
        return await asyncio.gather(*(router.route(MOBILE_NO) for _ in range(1000)))

    decisions = asyncio.run(run())
    assert fake.calls == [MOBILE_NO]
    assert {(d.carrier, d.gateway) for d in decisions} == {(T, "gw-telecom")}
    assert router.stats()["coalesced"] == 999


def test_cancelled_leader_strands_nobody_and_returns_the_probe():
    """Cancelling a flight's leader: followers fall back at once, the probe comes back."""
    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock, threshold=1, cooldown=10.0)
    fake = FakeClient(script=[api_error(-8)])
    router = AsyncRouter(AsyncFake(fake, delay=0.0), GW, breaker=breaker, clock=clock)

    async def run():
        await router.route(MOBILE_NO)  # opens the breaker
        assert breaker.state == "open"
        clock.advance(11.0)  # half-open: the next lookup is the probe
        router.client.delay = 5.0
        leader = asyncio.ensure_future(router.route(UNICOM_NO))
        await asyncio.sleep(0.01)
        followers = [asyncio.ensure_future(router.route(UNICOM_NO)) for _ in range(5)]
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        leader.cancel()
        results = await asyncio.gather(*followers)
        waited = time.perf_counter() - started
        with pytest.raises(asyncio.CancelledError):
            await leader
        return results, waited

    results, waited = asyncio.run(run())
    assert waited < 0.2  # not their 0.5 s deadline: the flight told them
    assert {d.source for d in results} == {"fallback"}
    assert breaker.state == "half-open"
    assert breaker.allow()  # the probe was given back


def test_deadline_holds_against_a_client_that_ignores_it():
    """A client that never answers (and ignores timeout=) costs a route its deadline, no more."""
    router = AsyncRouter(AsyncFake(FakeClient(), delay=30.0), GW, deadline=0.2)

    async def run():
        started = time.perf_counter()
        d = await router.route(MOBILE_NO)
        return d, time.perf_counter() - started

    d, took = asyncio.run(run())
    assert (d.source, d.carrier) == ("fallback", M)
    assert "timed out" in d.reason
    assert took < 0.2 + 0.05
    assert router.stats()["errors"] == {"TransportError": 1}


class HonestSlowClient:
    """An async client that honours timeout= like AsyncCarrierClient does, and never answers."""

    async def lookup(self, number: str, *, timeout: float | None = None):
        """Wait out the budget, then fail like a timed-out HTTP call."""
        await asyncio.sleep(timeout if timeout is not None else 30.0)
        raise TransportError("/carrier: timed out")


def test_deadline_holds_with_a_client_that_honours_it():
    """The vendor gets what is left of the deadline; the route returns within it."""
    router = AsyncRouter(HonestSlowClient(), GW, deadline=0.2)

    async def run():
        started = time.perf_counter()
        d = await router.route(MOBILE_NO)
        return d, time.perf_counter() - started

    d, took = asyncio.run(run())
    assert (d.source, d.carrier) == ("fallback", M)
    assert took < 0.2 + 0.05


def test_send_calls_async_and_plain_gateways_and_heals_wrong_carrier():
    """send() awaits an async gateway; WrongCarrier drops the answer and retries once."""
    fake = FakeClient({MOBILE_NO: info(MOBILE_NO, "移动")})
    sent = []

    async def mobile_gw(mobile, text):
        raise WrongCarrier("号码不属于本网")

    def telecom_gw(mobile, text):
        sent.append((mobile, text))
        return "ok"

    router = AsyncRouter(AsyncFake(fake), {M: mobile_gw, T: telecom_gw})

    async def run():
        await router.route(MOBILE_NO)
        fake.answers[MOBILE_NO] = info(MOBILE_NO, "电信")
        return await router.send(MOBILE_NO, "hi")

    assert asyncio.run(run()) == "ok"
    assert sent == [(MOBILE_NO, "hi")]
    assert fake.calls == [MOBILE_NO, MOBILE_NO]


def test_wrap_passes_the_route():
    """@router.wrap gives the coroutine the normalised number and the Decision."""
    router = AsyncRouter(AsyncFake(FakeClient()), GW)

    @router.wrap
    async def recharge(mobile, amount, *, route):
        return mobile, amount, route.gateway

    assert asyncio.run(recharge("139 0000 0001", 30)) == (MOBILE_NO, 30, "gw-mobile")


def test_route_many_keeps_order_and_dedupes():
    """route_many answers in input order, one lookup per distinct number, errors in place."""
    fake = FakeClient()
    router = AsyncRouter(AsyncFake(fake), {M: "m"})
    numbers = [MOBILE_NO, "13900000002", MOBILE_NO, "bad", TELECOM_NO]

    out = asyncio.run(router.route_many(numbers, concurrency=2, return_exceptions=True))
    assert [type(o).__name__ for o in out] == [
        "Decision",
        "Decision",
        "Decision",
        "InvalidNumber",
        "NoRoute",
    ]
    assert [o.mobile for o in out[:3]] == [MOBILE_NO, "13900000002", MOBILE_NO]
    assert sorted(fake.calls) == sorted([MOBILE_NO, "13900000002", TELECOM_NO])
    with pytest.raises(InvalidNumber):
        asyncio.run(router.route_many(numbers))


def test_route_iter_streams_in_order():
    """route_iter yields one decision per input, in order, and raises an error at its place."""
    router = AsyncRouter(AsyncFake(FakeClient(), delay=0.001), {M: "m"})
    numbers = [f"1390000{i:04d}" for i in range(300)]

    async def run(items, **kw):
        return [d async for d in router.route_iter(items, concurrency=16, **kw)]

    out = asyncio.run(run(numbers))
    assert [d.mobile for d in out] == numbers
    with pytest.raises(NoRoute):
        asyncio.run(run([MOBILE_NO, TELECOM_NO]))
    assert isinstance(asyncio.run(run([TELECOM_NO], return_exceptions=True))[0], NoRoute)


class SlowCache(MemoryCache):
    """A blocking cache (like SqliteCache behind a lock): each read takes 0.3 s."""

    def get(self, number):
        """Block the calling thread, then answer."""
        time.sleep(0.3)
        return super().get(number)


def test_blocking_cache_never_stalls_the_loop_and_stays_in_the_budget():
    """A cache that blocks runs off the loop, and a read that takes too long is a miss."""

    class Blocking(SlowCache):
        """Not a MemoryCache as far as the router's fast path can tell."""

    router = AsyncRouter(AsyncFake(FakeClient()), GW, deadline=0.1)
    router._cache_kind = "thread"  # as for SqliteCache
    router._cache = Blocking()

    async def run():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.ensure_future(ticker())
        started = time.perf_counter()
        d = await router.route(MOBILE_NO)
        took = time.perf_counter() - started
        t.cancel()
        return d, took, ticks

    d, took, ticks = asyncio.run(run())
    assert took < 0.1 + 0.05
    assert ticks >= 5  # the loop kept running while the cache blocked
    assert d.source == "fallback"
    assert router.stats()["errors"]["cache"] >= 1


def test_sqlite_cache_under_the_async_router(tmp_path):
    """SqliteCache works under AsyncRouter: answers are stored (in the background) and hit."""
    fake = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
    cache = SqliteCache(tmp_path / "answers.sqlite3")

    async def run():
        async with AsyncRouter(AsyncFake(fake), GW, cache=cache) as router:
            first = await router.route(MOBILE_NO)
        async with AsyncRouter(AsyncFake(fake), GW, cache=cache) as router:
            second = await router.route(MOBILE_NO)
        return first, second

    first, second = asyncio.run(run())
    cache.close()
    assert (first.source, second.source, second.carrier) == ("upstream", "cache", T)
    assert fake.calls == [MOBILE_NO]


def test_a_stalled_loop_does_not_open_the_breaker_for_any_client():
    """A client that does not bound itself (serve's metered one), timed out by a stall: no blame."""

    class Parsing(AsyncFake):
        """An answer that, like aiohttp's, takes a few loop turns from the socket to the caller."""

        async def lookup(self, number, *, timeout=None):
            await asyncio.sleep(self.delay)
            for _ in range(3):
                await asyncio.sleep(0)
            return self.fake.lookup(number)

    fake = Parsing(FakeClient({}), delay=0.05)

    async def go():
        router = AsyncRouter(fake, GW, deadline=0.2, breaker=CircuitBreaker(threshold=3))

        async def stall():
            await asyncio.sleep(0.01)
            time.sleep(0.5)  # holds the loop past every lookup's budget

        stalled = asyncio.ensure_future(stall())
        decisions = await asyncio.gather(*(router.route(f"1390000{i:04d}") for i in range(10)))
        await stalled
        return router, decisions

    router, decisions = asyncio.run(go())
    assert {d.source for d in decisions} == {"fallback"}
    assert all("overloaded" in d.reason for d in decisions)
    assert router.breaker.state == "closed"
