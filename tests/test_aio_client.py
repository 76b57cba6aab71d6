"""Tests for AsyncCarrierClient against the fake vendor and hostile servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from smsroute import AsyncCarrierClient, AsyncRouter, RateLimit
from smsroute.carrier import Carrier
from smsroute.errors import (
    BalanceExhausted,
    ConfigurationError,
    InvalidNumber,
    NumberNotFound,
    ServiceError,
    Throttled,
    TransportError,
    Unauthorized,
)
from smsroute.testing import DOC_NUMBER, FakeCarrierServer

GW = {"移动": "CMPP", "联通": "SGIP", "电信": "SMGP", "广电": "CBN"}


@pytest.fixture
def server():
    """Return a running fake vendor."""
    with FakeCarrierServer() as s:
        yield s


def run(coro):
    """Run a coroutine on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, 20))


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_lookup_and_balance(server, method):
    """A lookup returns the document's answer; balance reads the account; one request each."""

    async def go():
        async with AsyncCarrierClient(server.apikey, base_url=server.url, method=method) as c:
            return await c.lookup(DOC_NUMBER), await c.balance()

    info, balance = run(go())
    assert (info.mobile, info.current, info.initial, info.area) == (
        DOC_NUMBER,
        Carrier.TELECOM,
        Carrier.MOBILE,
        "湖北-宜昌",
    )
    assert info.ported
    assert balance.remaining == server.balance
    assert [r.method for r in server.requests] == [method, method]
    assert server.paid == 1


@pytest.mark.parametrize(
    ("code", "exc"),
    [(-1, Unauthorized), (-4, NumberNotFound), (-5, BalanceExhausted), (-9, Unauthorized)],
)
def test_codes_raise_their_exceptions_without_retry(server, code, exc):
    """Vendor codes map to the same exceptions as the sync client, and are not retried."""
    server.set_fault(code)

    async def go():
        async with AsyncCarrierClient(server.apikey, base_url=server.url) as c:
            await c.lookup(DOC_NUMBER)

    with pytest.raises(exc):
        run(go())
    assert server.carrier_calls == 1


def test_service_error_is_retried_within_the_budget(server):
    """-8 twice, then an answer: the third attempt succeeds."""
    server.set_fault(-8, for_requests=2)

    async def go():
        async with AsyncCarrierClient(server.apikey, base_url=server.url) as c:
            return await c.lookup(DOC_NUMBER, timeout=2.0)

    assert run(go()).current == Carrier.TELECOM
    assert server.carrier_calls == 3


@pytest.mark.parametrize("timeout", [None, 2.0])
def test_a_retry_policy_judges_the_first_attempt_too(server, timeout):
    """The first attempt runs outside tenacity, yet the policy sees it: its stop and hooks hold."""
    from tenacity import AsyncRetrying, stop_after_attempt, wait_none

    server.set_fault(-8, for_requests=2)
    slept = []
    policy = AsyncRetrying(
        stop=stop_after_attempt(2),
        wait=wait_none(),
        reraise=True,
        before_sleep=lambda state: slept.append(state.attempt_number),
    )

    async def go():
        async with AsyncCarrierClient(server.apikey, base_url=server.url, retry=policy) as c:
            await c.lookup(DOC_NUMBER, timeout=timeout)

    with pytest.raises(ServiceError):
        run(go())
    assert server.carrier_calls == 2  # stop_after_attempt(2) counted the first attempt
    assert slept == [1]


def test_stop_after_delay_counts_the_first_attempt(server):
    """The first attempt ran before tenacity's loop, yet stop_after_delay counts it."""
    from tenacity import AsyncRetrying, stop_after_delay, wait_none

    server.set_fault(-8)
    server.latency = 0.25
    policy = AsyncRetrying(stop=stop_after_delay(0.2), wait=wait_none(), reraise=True)

    async def go():
        async with AsyncCarrierClient(server.apikey, base_url=server.url, retry=policy) as c:
            await c.lookup(DOC_NUMBER)

    with pytest.raises(ServiceError):
        run(go())
    assert server.carrier_calls == 1  # 0.25 s spent: past the 0.2 s, no second attempt


def test_invalid_number_costs_nothing(server):
    """A bad number raises InvalidNumber before any request."""

    async def go():
        async with AsyncCarrierClient(server.apikey, base_url=server.url) as c:
            await c.lookup("123")

    with pytest.raises(InvalidNumber):
        run(go())
    assert server.requests == []


@pytest.mark.parametrize("fault", ["http502", "html", "truncated", "reset", "unknown_isp"])
def test_transport_faults_are_transport_errors(server, fault):
    """Every transport-level fault is a TransportError."""
    server.set_fault(fault)

    async def go():
        async with AsyncCarrierClient(server.apikey, base_url=server.url) as c:
            await c.lookup(DOC_NUMBER, timeout=1.0)

    with pytest.raises(TransportError):
        run(go())


def test_hanging_vendor_costs_the_budget(server):
    """A vendor that never answers raises TransportError when the budget is spent."""
    server.set_fault("hang")

    async def go():
        async with AsyncCarrierClient(server.apikey, base_url=server.url) as c:
            started = time.perf_counter()
            with pytest.raises(TransportError, match="timed out"):
                await c.lookup(DOC_NUMBER, timeout=0.3)
            return time.perf_counter() - started

    assert run(go()) < 0.3 + 0.1


async def _dripping_server(body_delay: float):
    """Return a server that sends a valid answer one byte every ``body_delay`` seconds."""
    body = (
        '{"code":0,"reason":"Succ","result":{"res":"1","Mobile":"13972565391",'
        '"Area":"湖北-宜昌","Init_isp":"移动","Now_isp":"电信"}}'
    ).encode()
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )

    async def handle(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            for byte in head.encode() + body:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(body_delay)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_dripping_vendor_costs_the_budget_not_minutes():
    """Headers and body one byte every 50 ms: the call ends at its budget, not after 10 s."""

    async def go():
        srv = await _dripping_server(0.05)
        port = srv.sockets[0].getsockname()[1]
        async with srv, AsyncCarrierClient("k", base_url=f"http://127.0.0.1:{port}") as c:
            started = time.perf_counter()
            with pytest.raises(TransportError):
                await c.lookup(DOC_NUMBER, timeout=0.4)
            return time.perf_counter() - started

    assert run(go()) < 0.4 + 0.1


def test_apikey_never_shows(server, caplog):
    """The apikey is in no exception, repr or log line, in GET mode too."""
    key = server.apikey
    server.set_fault("http502")

    async def go():
        async with AsyncCarrierClient(key, base_url=server.url, method="GET") as c:
            assert key not in repr(c)
            try:
                await c.lookup(DOC_NUMBER, timeout=0.5)
            except TransportError as exc:
                return exc
        return None

    with caplog.at_level(logging.DEBUG):
        exc = run(go())
    assert exc is not None
    assert key not in str(exc)
    assert key not in repr(exc.__context__) if exc.__context__ else True
    assert key not in caplog.text
    assert DOC_NUMBER not in caplog.text


def test_bad_settings_are_refused():
    """An empty key, an odd method or a non-http URL is a ConfigurationError at construction."""
    for kwargs in (
        {"apikey": " "},
        {"apikey": "k", "method": "PUT"},
        {"apikey": "k", "base_url": "ftp://x"},
    ):
        with pytest.raises(ConfigurationError):
            AsyncCarrierClient(**kwargs)


def test_rate_limit_spreads_calls_and_throttles_past_the_deadline(server):
    """RateLimit(qps=20, burst=1) spreads calls at 20/s; one that cannot fit is Throttled."""
    limit = RateLimit(20, burst=1)

    async def go():
        async with AsyncCarrierClient(server.apikey, base_url=server.url, rate_limit=limit) as c:
            started = time.perf_counter()
            await asyncio.gather(*(c.lookup(f"1390000{i:04d}", timeout=2.0) for i in range(6)))
            spread = time.perf_counter() - started
            for _ in range(20):
                limit.reserve(10.0)  # use up the next second of tokens
            with pytest.raises(Throttled):
                await c.lookup("13900009999", timeout=0.1)
            return spread

    spread = run(go())
    assert spread >= 5 / 20 - 0.02
    assert server.carrier_calls == 6  # the throttled call never went out


def test_throttled_route_falls_back_without_opening_the_breaker(server):
    """A route whose token cannot come within its deadline falls back; the breaker stays closed."""
    limit = RateLimit(1, burst=1)

    async def go():
        async with AsyncCarrierClient(server.apikey, base_url=server.url, rate_limit=limit) as c:
            router = AsyncRouter(c, GW, deadline=0.2)
            first = await router.route("13900000001")
            others = [await router.route(f"1390000{i:04d}") for i in range(2, 9)]
            return router, first, others

    router, first, others = run(go())
    assert first.source == "upstream"
    assert {d.source for d in others} == {"fallback"}
    assert all(d.reason.startswith("throttled") for d in others)
    assert router.breaker.state == "closed"
    assert server.carrier_calls == 1


def test_a_stalled_event_loop_is_not_blamed_on_the_vendor(server):
    """Lookups that time out because this process's loop stalled never open the breaker.

    The vendor answers in a millisecond, but a blocking call holds the event
    loop past every lookup's budget (local overload: too many callers for the
    CPU). The timeouts fire late, by far more than a healthy loop is ever
    late: the breaker learns nothing from them, and the fallback reason says
    the process was overloaded, not that the vendor was down.
    """

    async def go():
        async with AsyncCarrierClient(server.apikey, base_url=server.url) as c:
            router = AsyncRouter(c, GW, deadline=0.2)
            await router.route("13900000001")  # connection warm, breaker closed
            server.latency = 0.05

            async def stall():
                await asyncio.sleep(0.01)  # the lookups are on the wire by now
                time.sleep(0.5)  # a CPU-bound burst holding the loop

            stalled = asyncio.ensure_future(stall())
            decisions = await asyncio.gather(
                *(router.route(f"1390000{i:04d}") for i in range(2, 12))
            )
            await stalled
            after = await router.route("13900000099")
            return router, decisions, after

    router, decisions, after = run(go())
    late = [d for d in decisions if d.source == "fallback"]
    assert late, "the stall made no lookup time out: the test proves nothing"
    assert all("overloaded" in (d.reason or "") for d in late)
    assert router.breaker.state == "closed"
    assert after.source == "upstream"


def test_a_vendor_that_hangs_still_opens_the_breaker(server):
    """The overload check does not excuse a vendor that is down: a healthy loop is on time."""
    server.set_fault("hang")

    async def go():
        async with AsyncCarrierClient(server.apikey, base_url=server.url) as c:
            router = AsyncRouter(c, GW, deadline=0.1)
            for i in range(6):
                d = await router.route(f"1390000{i:04d}")
                assert "overloaded" not in (d.reason or "")
            return router

    assert run(go()).breaker.state == "open"
