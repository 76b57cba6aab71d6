"""Tests for flows that must not guess (fallback=False) and for routed functions (wrap)."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from _fakes import MOBILE_NO, TELECOM_NO, FakeClient, M, T, api_error, info

from smsroute import AsyncRouter, CircuitBreaker, MemoryCache, Router
from smsroute.errors import CircuitOpen, ConfigurationError, NumberNotFound, ServiceError
from smsroute.testing import FakeClock

GW = {M: "gw-mobile", T: "gw-telecom"}


class AsyncFake:
    """An asyncio face on a FakeClient."""

    def __init__(self, fake: FakeClient) -> None:
        self.fake = fake

    async def lookup(self, number, *, timeout=None):
        """Answer like the FakeClient."""
        return self.fake.lookup(number)


def routers(fake: FakeClient, **kwargs):
    """Yield a sync router and an async router (wrapped to call like sync) over one fake."""
    clock = FakeClock()
    cache = MemoryCache(clock=clock, ttl=100.0, stale_ttl=1000.0)
    breaker = CircuitBreaker(clock=clock, threshold=1)
    return Router(fake, GW, cache=cache, breaker=breaker, clock=clock, **kwargs), clock


def test_fallback_false_raises_the_lookup_error_instead_of_guessing():
    """With fallback=False a failed lookup raises its LookupFailed; the default still guesses."""
    fake = FakeClient(script=[api_error(-8)])
    router, _clock = routers(fake)
    with pytest.raises(ServiceError):
        router.route(MOBILE_NO, fallback=False)
    # The breaker is open now: the guess is the segment table, refused as such.
    with pytest.raises(CircuitOpen):
        router.route(TELECOM_NO, fallback=False)
    d = router.route(TELECOM_NO)
    assert (d.source, d.guessed, type(d.error)) == ("fallback", True, CircuitOpen)


def test_fallback_false_refuses_a_stale_answer_and_a_cached_negative():
    """A stale answer and a cached 'not found' are guesses too."""
    fake = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
    router, clock = routers(fake)
    assert router.route(MOBILE_NO).source == "upstream"
    clock.advance(150.0)  # stale now
    fake.script.append(api_error(-8))
    with pytest.raises(ServiceError):
        router.route(MOBILE_NO, fallback=False)
    fake2 = FakeClient(script=[api_error(-4)])
    router2, _ = routers(fake2)
    assert router2.route(TELECOM_NO).source == "fallback"
    with pytest.raises(NumberNotFound):
        router2.route(TELECOM_NO, fallback=False)


def test_a_refused_guess_is_counted_as_no_decision():
    """route(fallback=False) that raises leaves decisions and fallback reasons as they were."""

    def route_of(router):
        if isinstance(router, Router):
            return lambda number: router.route(number, fallback=False)
        return lambda number: asyncio.run(router.route(number, fallback=False))

    for make in (Router, AsyncRouter):
        fake = FakeClient(script=[api_error(-4)])
        client = fake if make is Router else AsyncFake(fake)
        router = make(client, GW, cache=MemoryCache(ttl=100.0))
        route = route_of(router)
        for _ in range(2):  # the vendor's -4, then the negative it left in the cache
            with pytest.raises(NumberNotFound):
                route(TELECOM_NO)
        stats = router.stats()
        assert stats["decisions"]["fallback"] == 0, make
        assert stats["fallback_reasons"] == {}, make
        assert stats["errors"] == {"-4": 1}, make  # the lookup's error is counted, once


def test_send_and_route_many_take_fallback_too():
    """send(fallback=False) never calls the gateway on a guess; route_many puts errors in place."""
    calls = []
    fake = FakeClient(script=[api_error(-8)])
    router = Router(fake, {M: lambda m, text: calls.append((m, text)), T: "t"})
    with pytest.raises(ServiceError):
        router.send(MOBILE_NO, "hi", fallback=False)
    assert calls == []
    out = router.route_many([MOBILE_NO, MOBILE_NO], fallback=False, return_exceptions=True)
    assert all(o.source in ("upstream", "cache") or isinstance(o, Exception) for o in out)


def test_wrap_takes_keywords_methods_and_keeps_a_truthful_signature():
    """@router.wrap works for keyword calls and on methods, and shows fn's signature less route."""
    router = Router(FakeClient(), GW)

    @router.wrap
    def recharge(mobile, amount, *, route):
        """Top up ``mobile``."""
        return mobile, amount, route.gateway

    assert recharge("139 0000 0001", 30) == (MOBILE_NO, 30, "gw-mobile")
    assert recharge(mobile="13900000001", amount=50) == (MOBILE_NO, 50, "gw-mobile")
    assert str(inspect.signature(recharge)) == "(mobile, amount)"
    assert recharge.__doc__ == "Top up ``mobile``."

    class Shop:
        """A recharge flow with a routed method."""

        @router.wrap(fallback=False)
        def top_up(self, mobile, amount=10, *, route):
            """Top up through the routed channel."""
            return self, mobile, amount, route.gateway

    shop = Shop()
    assert shop.top_up(mobile="13900000001") == (shop, MOBILE_NO, 10, "gw-mobile")
    with pytest.raises(ConfigurationError):
        router.wrap(lambda mobile: mobile)


def test_async_router_takes_fallback_and_wrap_the_same_way():
    """AsyncRouter: route(fallback=False) raises; wrap works with keywords and methods."""
    fake = FakeClient(script=[api_error(-8)])
    router = AsyncRouter(AsyncFake(fake), GW)

    @router.wrap
    async def recharge(mobile, amount, *, route):
        return mobile, amount, route.source

    async def run():
        with pytest.raises(ServiceError):
            await router.route(MOBILE_NO, fallback=False)
        return await recharge(mobile="13900000001", amount=5)

    mobile, amount, source = asyncio.run(run())
    assert (mobile, amount) == (MOBILE_NO, 5)
    assert source in ("upstream", "cache")
    assert inspect.iscoroutinefunction(recharge)
