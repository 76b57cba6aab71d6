"""Tests for the send path: send(), wrap(), WrongCarrier healing, route_many()."""

from __future__ import annotations

import pytest
from _fakes import (
    MOBILE_NO,
    TELECOM_NO,
    UNICOM_NO,
    CountingClient,
    FakeClient,
    Gateway,
    M,
    T,
    U,
    api_error,
    gateways,
    info,
)

from smsroute import Decision, InvalidNumber, NoRoute, Router, WrongCarrier
from smsroute.cache import MemoryCache
from smsroute.errors import ConfigurationError
from smsroute.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """Return the fake time of the router and its cache."""
    return FakeClock()


def make(client, clock, gw=None, **kwargs) -> tuple[Router, dict]:
    """Return a router with recording gateways, and the gateways."""
    gw = gateways() if gw is None else gw
    router = Router(client, gw, cache=MemoryCache(timer=clock), clock=clock, **kwargs)
    return router, gw


# -- send ---------------------------------------------------------------------------------


def test_send_calls_the_gateway_with_the_normalised_number(clock):
    """send() calls the gateway with the 11 digits and the arguments and returns its result."""
    router, gw = make(FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")}), clock)
    result = router.send("+86 (139) 0000-0001", "验证码 1234", sign="【例】")
    assert result == ("telecom", MOBILE_NO, ("验证码 1234",), {"sign": "【例】"})
    assert gw[T].calls == [(MOBILE_NO, ("验证码 1234",), {"sign": "【例】"})]
    assert gw[M].calls == []


def test_gateway_exceptions_propagate_unchanged(clock):
    """A gateway's own exception reaches the caller as is, with no second lookup."""
    boom = TimeoutError("sms channel down")
    client = FakeClient()
    router, _ = make(client, clock, {M: Gateway("m", raises=boom)})
    with pytest.raises(TimeoutError) as caught:
        router.send(MOBILE_NO, "hi")
    assert caught.value is boom
    assert client.calls == [MOBILE_NO]


def test_send_invalid_number_calls_nothing(clock):
    """An invalid number raises InvalidNumber: no lookup, no gateway call."""
    client = FakeClient()
    router, gw = make(client, clock)
    with pytest.raises(InvalidNumber):
        router.send("12345", "hi")
    assert client.calls == []
    assert all(g.calls == [] for g in gw.values())


def test_send_no_route(clock):
    """An operator without gateway or default makes send() raise NoRoute."""
    router, _ = make(FakeClient(), clock, {M: Gateway("m")})
    with pytest.raises(NoRoute):
        router.send(UNICOM_NO, "hi")


def test_send_needs_a_callable_gateway(clock):
    """send() refuses a gateway that is not callable (a product code belongs with route())."""
    router, _ = make(FakeClient(), clock, {M: "product-code-1"})
    with pytest.raises(ConfigurationError, match="not callable"):
        router.send(MOBILE_NO, "hi")


# -- wrap -----------------------------------------------------------------------------------


def test_wrap_passes_the_decision(clock):
    """@router.wrap calls the function with the normalised number, its arguments and route=."""
    router, _ = make(FakeClient({MOBILE_NO: info(MOBILE_NO, "联通")}), clock, {U: "unicom-topup"})
    seen = []

    @router.wrap
    def recharge(number: str, amount: int, *, route: Decision, note: str = "") -> str:
        """Top up a number."""
        seen.append((number, amount, route, note))
        return f"{route.gateway}:{amount}"

    assert recharge("139 0000 0001", 50, note="x") == "unicom-topup:50"
    number, amount, route, note = seen[0]
    assert (number, amount, note) == (MOBILE_NO, 50, "x")
    assert isinstance(route, Decision)
    assert (route.carrier, route.gateway, route.source) == (U, "unicom-topup", "upstream")
    assert recharge.__name__ == "recharge"
    assert recharge.__doc__ == "Top up a number."


def test_wrap_exceptions_propagate(clock):
    """A wrapped function's own exception reaches the caller unchanged."""
    router, _ = make(FakeClient(), clock, {M: "m"})

    @router.wrap
    def send(number, *, route):
        raise KeyError(number)

    with pytest.raises(KeyError):
        send(MOBILE_NO)


# -- WrongCarrier ---------------------------------------------------------------------------


def ported_later(mobile: str = MOBILE_NO) -> FakeClient:
    """Return a client whose first answer is 移动 and every later one 电信 (the number moved)."""
    return FakeClient(script=[info(mobile, "移动")], answers={mobile: info(mobile, "电信")})


def test_wrong_carrier_heals_and_retries_once(clock):
    """On WrongCarrier the cached answer is dropped, the upstream asked, the send retried once."""
    client = ported_later()
    router, gw = make(client, clock)
    assert router.route(MOBILE_NO).carrier == M  # now cached: 移动
    gw[M].raises = WrongCarrier("号码不属于本网")
    result = router.send(MOBILE_NO, "hi")
    assert result == ("telecom", MOBILE_NO, ("hi",), {})
    assert client.calls == [MOBILE_NO, MOBILE_NO]
    assert len(gw[M].calls) == 1
    assert gw[T].calls == [(MOBILE_NO, ("hi",), {})]
    hit = router.route(MOBILE_NO)  # the fresh answer replaced the wrong one
    assert (hit.source, hit.carrier) == ("cache", T)
    assert router.stats()["reroutes"] == 1


def test_wrong_carrier_burst_pays_once(clock):
    """Sends routed on the same wrong answer and refused together buy one fresh answer."""
    client = ported_later()
    router, _ = make(client, clock)
    first = router.route(MOBILE_NO)  # 移动, now cached
    second = router.route(MOBILE_NO)  # routed on the same wrong answer, before any refusal
    assert (first.carrier, second.carrier, second.source) == (M, M, "cache")
    refusal = WrongCarrier("号码不属于本网")

    def refuse(decision: Decision) -> str:
        if decision.carrier == M:
            raise refusal
        return str(decision.carrier)

    assert router.deliver(first, refuse) == "电信"
    assert router.deliver(second, refuse) == "电信"  # uses the answer the first one paid for
    assert client.calls == [MOBILE_NO, MOBILE_NO]  # the original lookup and one refresh


def test_wrong_carrier_log_masks_numbers_in_the_gateway_message(clock, caplog):
    """The gateway's refusal text is logged with any phone number in it masked."""
    client = ported_later()
    router, gw = make(client, clock)
    router.route(MOBILE_NO)
    gw[M].raises = WrongCarrier(f"号码{MOBILE_NO}不属于本网")
    with caplog.at_level("WARNING", logger="smsroute"):
        router.send(MOBILE_NO, "hi")
    text = caplog.text
    assert "route.wrong_carrier" in text
    assert MOBILE_NO not in text
    assert f"{MOBILE_NO[:3]}****{MOBILE_NO[-4:]}" in text


def test_wrong_carrier_same_operator_propagates(clock):
    """If the fresh answer names the same operator, the gateway's WrongCarrier propagates."""
    refusal = WrongCarrier("号码不属于本网")
    client = FakeClient({MOBILE_NO: info(MOBILE_NO, "移动")})
    router, gw = make(client, clock, {M: Gateway("m", raises=refusal)})
    with pytest.raises(WrongCarrier) as caught:
        router.send(MOBILE_NO, "hi")
    assert caught.value is refusal
    assert client.calls == [MOBILE_NO, MOBILE_NO]  # it did ask again
    assert len(gw[M].calls) == 1


def test_wrong_carrier_retries_only_once(clock):
    """When the new gateway refuses too, its WrongCarrier propagates: no third try."""
    client = ported_later()
    gw = gateways()
    gw[M].raises = WrongCarrier("不属于本网")
    gw[T].raises = second = WrongCarrier("也不属于本网")
    router, _ = make(client, clock, gw)
    with pytest.raises(WrongCarrier) as caught:
        router.send(MOBILE_NO, "hi")
    assert caught.value is second
    assert (len(gw[M].calls), len(gw[T].calls)) == (1, 1)
    assert len(client.calls) == 2


def test_wrong_carrier_with_wrap_gets_the_fresh_decision(clock):
    """A wrapped send retried after WrongCarrier receives the fresh decision as route=."""
    router, _ = make(ported_later(), clock, {M: "m", T: "t"})
    routes: list[Decision] = []

    @router.wrap
    def send(number, text, *, route):
        routes.append(route)
        if route.gateway == "m":
            raise WrongCarrier("号码不属于本网")
        return route.gateway

    assert send(MOBILE_NO, "hi") == "t"
    assert [(r.carrier, r.source) for r in routes] == [(M, "upstream"), (T, "upstream")]


def test_wrong_carrier_when_the_lookup_fails_tries_the_original_operator(clock):
    """If the fresh lookup fails, the segment table's operator is tried instead."""
    client = FakeClient(script=[info(MOBILE_NO, "电信"), api_error(-8)])
    router, gw = make(client, clock)
    router.route(MOBILE_NO)  # cached: 电信 (ported)
    gw[T].raises = WrongCarrier("号码不属于本网")  # ...but it went home to 移动
    assert router.send(MOBILE_NO, "hi")[0] == "mobile"
    assert len(client.calls) == 2


def test_refresh_drops_the_cached_answer(clock):
    """refresh() forgets the cached answer and asks the upstream again."""
    client = ported_later()
    router, _ = make(client, clock)
    router.route(MOBILE_NO)
    d = router.refresh("+8613900000001")
    assert (d.source, d.carrier) == ("upstream", T)
    assert len(client.calls) == 2


# -- route_many ----------------------------------------------------------------------------------


def test_route_many_in_input_order_with_shared_lookups(clock):
    """One Decision per input, in order; duplicates (any spelling) share one lookup."""
    client = FakeClient(
        {
            MOBILE_NO: info(MOBILE_NO, "电信"),
            UNICOM_NO: info(UNICOM_NO, "联通"),
            TELECOM_NO: info(TELECOM_NO, "移动"),
        }
    )
    router, _ = make(client, clock, {M: "m", U: "u", T: "t"})
    router.route(TELECOM_NO)  # already cached: no lookup in the batch
    inputs = [UNICOM_NO, MOBILE_NO, "+86 139 0000 0001", TELECOM_NO, UNICOM_NO, MOBILE_NO]
    out = router.route_many(inputs, concurrency=4)
    assert [d.mobile for d in out] == [
        UNICOM_NO,
        MOBILE_NO,
        MOBILE_NO,
        TELECOM_NO,
        UNICOM_NO,
        MOBILE_NO,
    ]
    assert [d.gateway for d in out] == ["u", "t", "t", "m", "u", "t"]
    assert sorted(client.calls) == sorted([TELECOM_NO, MOBILE_NO, UNICOM_NO])
    assert out[3].source == "cache"


def test_route_many_misses_on_a_bounded_pool(clock):
    """Misses are looked up concurrently, never more than ``concurrency`` at a time."""
    numbers = [f"1390000{i:04d}" for i in range(12)]
    client = CountingClient(3)
    router, _ = make(client, clock, deadline=10.0)
    out = router.route_many(numbers, concurrency=3)
    assert [d.source for d in out] == ["upstream"] * 12
    assert sorted(client.calls) == numbers
    assert client.max_active == 3  # reached (they meet at a barrier of 3), never exceeded


def test_route_many_invalid_number_raises_before_any_lookup(clock):
    """Without return_exceptions an invalid number raises InvalidNumber and nothing is looked up."""
    client = FakeClient()
    router, _ = make(client, clock)
    with pytest.raises(InvalidNumber):
        router.route_many([MOBILE_NO, "not a number", UNICOM_NO])
    assert client.calls == []


def test_route_many_return_exceptions(clock):
    """With return_exceptions each error takes its input's place and the rest are routed."""
    client = FakeClient()
    router, _ = make(client, clock, {M: "m"})
    out = router.route_many(["12345", MOBILE_NO, UNICOM_NO, "12345"], return_exceptions=True)
    assert isinstance(out[0], InvalidNumber)
    assert isinstance(out[1], Decision)
    assert out[1].gateway == "m"
    assert isinstance(out[2], NoRoute)
    assert isinstance(out[3], InvalidNumber)
    assert sorted(client.calls) == sorted([MOBILE_NO, UNICOM_NO])


def test_route_many_no_route_raises_without_return_exceptions(clock):
    """A NoRoute in a batch is raised when errors are not returned in place."""
    router, _ = make(FakeClient(), clock, {M: "m"})
    with pytest.raises(NoRoute):
        router.route_many([MOBILE_NO, UNICOM_NO])


def test_route_many_edges(clock):
    """An empty batch is an empty list; concurrency below 1 is refused."""
    router, _ = make(FakeClient(), clock)
    assert router.route_many([]) == []
    with pytest.raises(ValueError, match="concurrency"):
        router.route_many([MOBILE_NO], concurrency=0)
