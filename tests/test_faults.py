"""Fault matrix: every fault the test server can produce, against a cold, a warm and a stale cache.

A real CarrierClient talks to FakeCarrierServer on 127.0.0.1; the cache and
the breaker run on a FakeClock, the deadline on the real clock. Each case
checks the promise: the send reaches exactly one gateway, nothing raises,
route() keeps its deadline, the decision says where the answer came from and
why, the breaker opens only as designed and on_alert fires once per incident.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest

import smsroute
from smsroute import Alert, Carrier, CarrierClient, CircuitBreaker, MemoryCache, Router
from smsroute.cache import CachePolicy
from smsroute.testing import FakeCarrierServer, FakeClock

DEADLINE = 0.2
# A correctness bound, not a performance one: the client's own timeout is the
# default (2 s connect, 3 s read), so only the router's deadline keeps a
# hung or slow lookup under this.
BOUND = DEADLINE + 0.8
THRESHOLD = 3
COOLDOWN = 10.0
HARD_COOLDOWN = 60.0
TTL = CachePolicy().ttl

PORTED = "13800138000"  # a 移动 segment, pinned as ported to 电信
COLD = "1380013{:04d}"  # more 移动-segment numbers, never looked up before

FAULTS: list[int | str] = [
    1,
    -1,
    -2,
    -3,
    -4,
    -5,
    -8,
    -9,
    "http500",
    "http502",
    "html",
    "truncated",
    "trailing_comma",
    "unknown_isp",
    "missing_field",
    "slow",
    "hang",
    "reset",
]
# Account problems: the breaker opens at once, with this alert kind.
HARD = {-1: "unauthorized", -9: "unauthorized", -5: "balance_exhausted"}
# The upstream answered (a caller's problem or an unknown number): never opens.
ANSWERED = {1, -2, -3, -4}
# Not a fault at all: the vendor document's own JSON style.
SUCCESS = {"trailing_comma"}
# Everything else is an outage: retried within the budget, THRESHOLD in a row open it.
TIMING = {"slow", "hang"}
# Answered with code 0 (and charged) but unreadable: an outage for the breaker,
# but never retried, as asking again would pay again for the same answer.
PAID_UNREADABLE = {"unknown_isp", "missing_field"}

REASON = {
    1: r"RequestRejected 1\b",
    -1: r"Unauthorized -1\b",
    -2: r"RequestRejected -2\b",
    -3: r"RequestRejected -3\b",
    -4: r"NumberNotFound -4\b",
    -5: r"BalanceExhausted -5\b",
    -8: r"ServiceError -8\b",
    -9: r"Unauthorized -9\b",
    "http500": r"TransportError.*HTTP 500",
    "http502": r"TransportError.*HTTP 502",
    "html": r"TransportError.*not JSON",
    "truncated": r"TransportError.*not (JSON|UTF-8)",
    "unknown_isp": r"TransportError.*unknown Now_isp",
    "missing_field": r"TransportError.*Now_isp is missing",
    "slow": r"TransportError.*(timed out|deadline|no time left)",
    "hang": r"TransportError.*(timed out|deadline|no time left)",
    "reset": r"TransportError.*(ConnectionError|reset|aborted)",
}


def kind_of(fault: int | str) -> str:
    """Return how the breaker should treat a fault: hard, answered, success or outage."""
    if fault in HARD:
        return "hard"
    if fault in ANSWERED or fault in PAID_UNREADABLE:
        # A billed but unusable answer is an oddity of one number, not an outage.
        return "answered"
    if fault in SUCCESS:
        return "success"
    return "outage"


class Gateway:
    """A callable gateway that records every delivery."""

    def __init__(self, name: str, sink: list[tuple[str, str, str]], lock: threading.Lock):
        self.name = name
        self._sink = sink
        self._lock = lock

    def __call__(self, mobile: str, message: str) -> str:
        with self._lock:
            self._sink.append((self.name, mobile, message))
        return self.name

    def __repr__(self) -> str:
        return f"Gateway({self.name})"


class Harness:
    """A router over a real client, a FakeClock-driven cache and breaker, counting gateways."""

    def __init__(self, server: FakeCarrierServer) -> None:
        self.server = server
        self.clock = FakeClock()
        self.alerts: list[Alert] = []
        self.deliveries: list[tuple[str, str, str]] = []
        lock = threading.Lock()
        self.gateways = {
            c: Gateway(c.name, self.deliveries, lock)
            for c in (Carrier.MOBILE, Carrier.UNICOM, Carrier.TELECOM)
        }
        self.client = CarrierClient(
            server.apikey,
            base_url=server.url,
            retry=smsroute.default_retrying(attempts=2, sleep=lambda _s: None),
        )
        self.breaker = CircuitBreaker(
            threshold=THRESHOLD, cooldown=COOLDOWN, hard_cooldown=HARD_COOLDOWN, clock=self.clock
        )
        self.router = Router(
            self.client,
            self.gateways,
            default=Gateway("default", self.deliveries, lock),
            cache=MemoryCache(timer=self.clock),
            deadline=DEADLINE,
            breaker=self.breaker,
            on_alert=self.alerts.append,
        )
        self._sent = 0

    def route(self, number: str) -> smsroute.Decision:
        """Route one number, checking the deadline."""
        started = time.perf_counter()
        decision = self.router.route(number)
        assert time.perf_counter() - started < BOUND
        return decision

    def send(self, number: str) -> tuple[str, str, str]:
        """Send one message and return its single delivery, checking the deadline."""
        self._sent += 1
        message = f"m{self._sent}"
        before = len(self.deliveries)
        started = time.perf_counter()
        self.router.send(number, message)
        assert time.perf_counter() - started < BOUND
        delivered = self.deliveries[before:]
        assert len(delivered) == 1, delivered
        assert delivered[0][2] == message
        return delivered[0]

    def deliver(self, number: str) -> smsroute.Decision:
        """Send one message through a wrap()ped function and return the decision it was given."""
        seen: list[smsroute.Decision] = []

        @self.router.wrap
        def send(mobile: str, message: str, *, route: smsroute.Decision) -> str:
            seen.append(route)
            return route.gateway(mobile, message)  # type: ignore[no-any-return]

        self._sent += 1
        before = len(self.deliveries)
        started = time.perf_counter()
        send(number, f"m{self._sent}")
        assert time.perf_counter() - started < BOUND
        assert len(self.deliveries) - before == 1
        assert len(seen) == 1
        return seen[0]


@pytest.fixture
def server() -> Iterator[FakeCarrierServer]:
    """Yield a fake vendor on 127.0.0.1 that knows PORTED as ported to 电信."""
    with FakeCarrierServer() as s:
        s.set_answer(PORTED, res=1, now=Carrier.TELECOM.value)
        yield s
        s.set_fault(None)  # release held requests before stopping


@pytest.fixture
def h(server) -> Iterator[Harness]:
    """Yield a harness over the server; close its client afterwards."""
    harness = Harness(server)
    yield harness
    harness.client.close()


@pytest.mark.parametrize("cache", ["cold", "warm", "stale"])
@pytest.mark.parametrize("fault", FAULTS, ids=str)
def test_fault_matrix(h, server, fault, cache):
    """Each fault against each cache state: one delivery, the right source and reason."""
    if cache != "cold":
        primed = h.route(PORTED)
        assert (primed.source, primed.carrier) == ("upstream", Carrier.TELECOM)
        if cache == "stale":
            h.clock.advance(TTL + 1)
    server.set_fault(fault)
    calls = server.carrier_calls
    kind = kind_of(fault)

    decision = h.route(PORTED)
    spent = server.carrier_calls - calls

    if cache == "warm":
        assert (decision.source, decision.reason) == ("cache", None)
        assert decision.carrier is Carrier.TELECOM
        assert spent == 0
    elif kind == "success":
        assert (decision.source, decision.reason) == ("upstream", None)
        assert decision.carrier is Carrier.TELECOM
        assert spent == 1
    else:
        # The vendor not knowing the number (or a billed answer we cannot use,
        # remembered like a -4) is an answer: the original operator (segment
        # table) is the better guess than an old port.
        if cache == "stale" and fault != -4 and fault not in PAID_UNREADABLE:
            assert decision.source == "stale"
            assert decision.carrier is Carrier.TELECOM  # the paid answer, though expired
        else:
            assert decision.source == "fallback"
            assert decision.carrier is Carrier.MOBILE  # the segment table's 138
        assert re.search(REASON[fault], decision.reason or ""), decision.reason
        if kind == "outage" and fault not in TIMING | PAID_UNREADABLE:
            assert spent == 2  # retried once within the budget
        elif fault in TIMING:
            assert 1 <= spent <= 2  # the deadline may leave no time for a retry
        else:
            assert spent == 1  # never retried
    assert decision.gateway is h.gateways[decision.carrier]

    if cache != "warm" and kind == "hard":
        assert h.breaker.state == "open"
        assert [(a.kind, a.code) for a in h.alerts] == [(HARD[fault], fault)]
    else:
        assert h.breaker.state == "closed"
        assert h.alerts == []

    # The send path: the same number again reaches exactly the same gateway.
    name, mobile, _ = h.send(PORTED)
    assert (name, mobile) == (h.gateways[decision.carrier].name, PORTED)
    assert len(h.alerts) <= 1


@pytest.mark.parametrize("fault", FAULTS, ids=str)
def test_breaker_opens_and_recovers(h, server, fault):
    """The breaker opens at the threshold (at once for account problems, never for answers)."""
    kind = kind_of(fault)
    server.set_fault(fault)
    opens_after = {"hard": 1, "outage": THRESHOLD}.get(kind)
    numbers = iter(COLD.format(i) for i in range(100))

    for i in range(1, THRESHOLD + 3):
        calls = server.carrier_calls
        before_state = h.breaker.state
        number = next(numbers)
        decision = h.deliver(number)
        if before_state == "open":
            assert decision.reason == "circuit open"
            assert server.carrier_calls == calls  # no query while open
        expected = "open" if opens_after is not None and i >= opens_after else "closed"
        assert h.breaker.state == expected, (i, h.breaker.state)
        assert decision.source == ("upstream" if kind == "success" else "fallback")

    if opens_after is None:
        assert h.alerts == []
        assert h.breaker.opened == 0
        return

    alert_kind = HARD.get(fault, "upstream_down")  # type: ignore[call-overload]
    assert [a.kind for a in h.alerts] == [alert_kind]
    assert h.breaker.opened == 1
    cooldown = HARD_COOLDOWN if kind == "hard" else COOLDOWN

    # Cool-down over, fault still there: one probe, it fails, open again; same incident.
    h.clock.advance(cooldown)
    assert h.breaker.state == "half-open"
    calls = server.carrier_calls
    h.send(next(numbers))
    assert server.carrier_calls - calls in (1, 2)  # one probe (retried within its budget)
    assert h.breaker.state == "open"
    assert len(h.alerts) == 1

    # Cool-down over, vendor healthy: the probe succeeds and closes the breaker.
    h.clock.advance(cooldown)
    server.set_fault(None)
    decision = h.route(next(numbers))
    assert decision.source == "upstream"
    assert h.breaker.state == "closed"
    assert [(a.kind, a.incident) for a in h.alerts] == [
        (alert_kind, alert_kind),
        ("recovered", alert_kind),  # the incident is over: said once
    ]

    # The same fault again is a new incident: a second alert, once.
    server.set_fault(fault)
    for _ in range(opens_after + 1):
        h.send(next(numbers))
    assert h.breaker.state == "open"
    assert [a.kind for a in h.alerts] == [alert_kind, "recovered", alert_kind]
    assert h.breaker.opened == 3  # counts transitions into open: the failed probe too


def test_failing_alert_hook_does_not_fail_the_send(server):
    """An on_alert that raises is logged; the send still reaches its gateway."""
    h = Harness(server)

    def boom(alert: Alert) -> None:
        raise RuntimeError("pager down")

    h.breaker.on_alert = boom
    try:
        server.set_fault(-1)
        name, _, _ = h.send(COLD.format(1))
        assert name == "MOBILE"
        assert h.breaker.state == "open"
    finally:
        h.client.close()


def test_coalesced_followers_keep_the_deadline(h, server):
    """Threads waiting on one hung lookup of a number each fall back within the deadline."""
    server.set_fault("hang")
    number = COLD.format(7)
    results: list[tuple[str, float]] = []
    lock = threading.Lock()

    def one() -> None:
        started = time.perf_counter()
        decision = h.router.route(number)
        with lock:
            results.append((decision.source, time.perf_counter() - started))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in threads)
    assert len(results) == 8
    assert all(source == "fallback" and took < BOUND for source, took in results)
    assert server.carrier_calls <= 2  # one leader (and its retry), not eight
    assert h.router.stats()["coalesced"] >= 1


def test_an_unusable_charged_answer_is_bought_once_and_never_opens_the_breaker():
    """A billed, unreadable answer (unknown Now_isp) is bought once; the breaker stays closed."""
    from smsroute import CarrierClient, Router
    from smsroute.testing import FakeCarrierServer

    with FakeCarrierServer() as server:
        client = CarrierClient(server.apikey, base_url=server.url)
        router = Router(client, {"移动": "m", "联通": "u", "电信": "t"}, deadline=1.0)
        numbers = [f"1390000{i:04d}" for i in range(20)]
        for n in numbers:
            server.set_answer(n, fault="unknown_isp")
        for _ in range(5):
            for n in numbers:
                d = router.route(n)
                assert d.source == "fallback"
        assert server.paid == len(numbers)  # each bought once, then remembered
        assert router.breaker.state == "closed"
        assert router.stats()["errors"] == {"unusable": len(numbers)}
        client.close()
