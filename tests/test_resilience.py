"""Tests for the circuit breaker, the retry policy, and the router's breaker and deadline."""

from __future__ import annotations

import threading
import time

import pytest
from _fakes import (
    MOBILE_NO,
    TELECOM_NO,
    UNICOM_NO,
    BlockingClient,
    FakeClient,
    M,
    T,
    U,
    api_error,
    info,
)

from smsroute.cache import MemoryCache
from smsroute.client import CarrierClient
from smsroute.errors import (
    BalanceExhausted,
    CircuitOpen,
    ConfigurationError,
    InvalidNumber,
    LookupFailed,
    NumberNotFound,
    RequestRejected,
    ServiceError,
    TransportError,
    Unauthorized,
)
from smsroute.resilience import Alert, CircuitBreaker, default_retrying
from smsroute.routing import Router
from smsroute.testing import FakeCarrierServer, FakeClock

GW = {M: "gw-mobile", U: "gw-unicom", T: "gw-telecom"}


@pytest.fixture
def clock() -> FakeClock:
    """Return the fake time of the breaker under test."""
    return FakeClock()


class Recorder:
    """A breaker listener that records transitions."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, str]] = []

    def state_change(self, old, new, reason):
        self.changes.append((old, new))


def breaker(clock: FakeClock, alerts: list[Alert] | None = None, **kwargs) -> CircuitBreaker:
    """Return a breaker on the fake clock: threshold 3, cool-down 10 s, hard cool-down 60 s."""
    kwargs.setdefault("threshold", 3)
    kwargs.setdefault("cooldown", 10.0)
    kwargs.setdefault("hard_cooldown", 60.0)
    on_alert = alerts.append if alerts is not None else None
    return CircuitBreaker(clock=clock, on_alert=on_alert, **kwargs)


# -- CircuitBreaker ----------------------------------------------------------------------


@pytest.mark.parametrize("error", [api_error(-8), TransportError("timed out")])
def test_opens_after_threshold_consecutive_failures(clock, error):
    """ServiceError and TransportError open the breaker on the threshold-th in a row."""
    b = breaker(clock)
    for _ in range(2):
        b.failure(error)
        assert b.state == "closed"
        assert b.allow()
    b.failure(error)
    assert b.state == "open"
    assert not b.allow()
    assert b.opened == 1


def test_success_resets_the_count(clock):
    """An answer in between restarts the count: only consecutive failures open it."""
    b = breaker(clock)
    for _ in range(5):
        b.failure(api_error(-8))
        b.failure(api_error(-8))
        b.success()
    assert b.state == "closed"
    assert b.failures == 0


def test_cooldown_then_single_half_open_probe(clock):
    """After the cool-down exactly one caller may probe; the others still get "no"."""
    b = breaker(clock)
    for _ in range(3):
        b.failure(api_error(-8))
    clock.advance(9.9)
    assert not b.allow()
    clock.advance(0.2)
    assert b.state == "half-open"
    assert b.allow()
    assert not b.allow()
    assert not b.allow()


def test_probe_success_closes(clock):
    """A successful probe closes the breaker and every caller may call again."""
    rec = Recorder()
    b = breaker(clock, listeners=[rec])
    for _ in range(3):
        b.failure(TransportError("x"))
    clock.advance(10.0)
    assert b.allow()
    b.success()
    assert b.state == "closed"
    assert b.allow()
    assert b.allow()
    assert rec.changes == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


def test_probe_failure_reopens_for_another_cooldown(clock):
    """One failed probe re-opens the breaker at once, for a whole new cool-down."""
    b = breaker(clock)
    for _ in range(3):
        b.failure(api_error(-8))
    clock.advance(10.0)
    assert b.allow()
    b.failure(api_error(-8))
    assert b.state == "open"
    clock.advance(9.9)
    assert not b.allow()
    clock.advance(0.2)
    assert b.allow()


def test_released_probe_can_be_claimed_again(clock):
    """release() gives back a probe that made no call, so the next caller may probe."""
    b = breaker(clock)
    for _ in range(3):
        b.failure(api_error(-8))
    clock.advance(10.0)
    assert b.allow()
    b.release()
    assert b.allow()


@pytest.mark.parametrize(
    ("code", "kind"), [(-1, "unauthorized"), (-9, "unauthorized"), (-5, "balance_exhausted")]
)
def test_account_errors_open_at_once_and_alert_once(clock, code, kind):
    """Unauthorized and BalanceExhausted open on the first failure and alert once per incident."""
    alerts: list[Alert] = []
    b = breaker(clock, alerts)
    b.failure(api_error(code))
    assert b.state == "open"
    for _ in range(20):  # more sends hitting the same problem, failed probes included
        b.failure(api_error(code))
        clock.advance(61.0)
        b.allow()
    assert len(alerts) == 1
    assert (alerts[0].kind, alerts[0].code) == (kind, code)
    assert b.incident == alerts[0]


def test_account_error_uses_hard_cooldown(clock):
    """An account problem keeps the breaker open for hard_cooldown, not the short cool-down."""
    b = breaker(clock)
    b.failure(api_error(-5))
    clock.advance(30.0)
    assert not b.allow()
    clock.advance(31.0)
    assert b.allow()


def test_new_incident_after_recovery_alerts_again(clock):
    """After a probe succeeds, the next account problem is a new incident with its own alert."""
    alerts: list[Alert] = []
    b = breaker(clock, alerts)
    b.failure(api_error(-5))
    clock.advance(60.0)
    assert b.allow()
    b.success()
    assert b.incident is None
    b.failure(api_error(-5))
    assert [(a.kind, a.incident) for a in alerts] == [
        ("balance_exhausted", "balance_exhausted"),
        ("recovered", "balance_exhausted"),  # the first incident is over
        ("balance_exhausted", "balance_exhausted"),
    ]


def test_reset_closes_by_hand(clock):
    """reset() closes an open breaker at once (after the account was topped up)."""
    b = breaker(clock)
    b.failure(api_error(-5))
    b.reset()
    assert b.state == "closed"
    assert b.allow()
    assert b.incident is None


def test_late_success_does_not_close_an_open_breaker(clock):
    """An answer to a call made before the breaker opened is no probe: it stays open."""
    alerts: list[Alert] = []
    b = breaker(clock, alerts)
    b.failure(api_error(-5))  # one send learns the balance ran out...
    b.success()  # ...while another, sent just before, is answered
    b.failure(NumberNotFound(-4, "x"))  # an answer too
    assert b.state == "open"
    assert not b.allow()
    b.failure(api_error(-5))
    assert len(alerts) == 1


@pytest.mark.parametrize(
    "error", [NumberNotFound(-4, "x"), RequestRejected(-2, "x"), RequestRejected(1, "x")]
)
def test_caller_errors_never_open(clock, error):
    """NumberNotFound and RequestRejected show a healthy upstream: never open, reset the count."""
    alerts: list[Alert] = []
    b = breaker(clock, alerts, threshold=1)
    for _ in range(50):
        b.failure(error)
    assert b.state == "closed"
    b2 = breaker(clock, threshold=3)
    b2.failure(api_error(-8))
    b2.failure(api_error(-8))
    b2.failure(error)
    b2.failure(api_error(-8))
    assert b2.state == "closed"
    assert alerts == []


def test_inner_circuit_open_counts_for_nothing(clock):
    """CircuitOpen from a client's own breaker neither opens, nor resets, nor keeps a probe."""
    b = breaker(clock)
    b.failure(api_error(-8))
    b.failure(api_error(-8))
    for _ in range(10):
        b.failure(CircuitOpen("inner breaker"))
    assert (b.state, b.failures) == ("closed", 2)
    b.failure(api_error(-8))
    assert b.state == "open"
    clock.advance(10.0)
    assert b.allow()
    b.failure(CircuitOpen("inner breaker"))  # the probe made no call
    assert b.state == "half-open"
    assert b.allow()


def test_bare_lookup_failed_is_an_outage(clock):
    """A failure that is no vendor answer (a bare LookupFailed) counts toward opening."""
    b = breaker(clock)
    for _ in range(3):
        b.failure(LookupFailed("my client gave up"))
    assert b.state == "open"


def test_upstream_down_alerts_once(clock):
    """Opening on consecutive outages is an incident too: one alert, not one per failure."""
    alerts: list[Alert] = []
    b = breaker(clock, alerts)
    for _ in range(10):
        b.failure(api_error(-8))
        clock.advance(10.0)
        b.allow()
    assert [a.kind for a in alerts] == ["upstream_down"]


def test_broken_hooks_do_not_break_the_breaker(clock):
    """A raising on_alert or listener is logged, and the breaker still opens."""

    class Broken:
        def state_change(self, old, new, reason):
            raise RuntimeError("listener bug")

    def bad_alert(alert):
        raise RuntimeError("pager down")

    b = CircuitBreaker(clock=clock, on_alert=bad_alert, listeners=[Broken()])
    b.failure(api_error(-1))
    assert b.state == "open"


def test_threshold_must_be_positive():
    """A breaker that can never close its count is refused."""
    with pytest.raises(ValueError):
        CircuitBreaker(threshold=0)


# -- default_retrying ----------------------------------------------------------------------


def test_default_retrying_retries_service_errors_within_attempts():
    """ServiceError and TransportError are retried up to ``attempts`` tries, sleeping between."""
    sleeps: list[float] = []
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise (api_error(-8) if len(calls) == 1 else TransportError("x"))
        return "ok"

    assert default_retrying(attempts=3, sleep=sleeps.append)(flaky) == "ok"
    assert len(calls) == 3
    assert len(sleeps) == 2
    assert all(0 <= s <= 1.0 for s in sleeps)


def test_default_retrying_gives_up_after_attempts():
    """The last error is re-raised after ``attempts`` tries."""
    calls = []

    def down():
        calls.append(1)
        raise api_error(-8)

    with pytest.raises(ServiceError):
        default_retrying(attempts=2, sleep=lambda _s: None)(down)
    assert len(calls) == 2


@pytest.mark.parametrize("code", [-1, -4, -5, -9, 1])
def test_default_retrying_never_retries_answers(code):
    """Account problems and caller errors are raised at once: retrying cannot help."""
    calls = []

    def refuse():
        calls.append(1)
        raise api_error(code)

    with pytest.raises((Unauthorized, NumberNotFound, BalanceExhausted, RequestRejected)):
        default_retrying(attempts=5, sleep=lambda _s: None)(refuse)
    assert len(calls) == 1


# -- the router and its breaker --------------------------------------------------------------


def router_with(client, clock, alerts=None, **kwargs) -> Router:
    """Return a router on the fake clock with a threshold-3 breaker."""
    b = breaker(clock, threshold=3, cooldown=10.0, hard_cooldown=60.0)
    cache = MemoryCache(timer=clock, ttl=100.0, stale_ttl=1000.0)
    on_alert = alerts.append if alerts is not None else None
    return Router(client, GW, cache=cache, clock=clock, breaker=b, on_alert=on_alert, **kwargs)


def test_router_opens_breaker_and_stops_calling(clock):
    """After threshold failures the router stops calling and answers from stale or segments."""
    client = FakeClient({MOBILE_NO: info(MOBILE_NO, "电信")})
    router = router_with(client, clock)
    router.route(MOBILE_NO)
    clock.advance(102.0)  # MOBILE_NO's answer is now stale
    client.script.extend([api_error(-8)] * 3)
    for n in (UNICOM_NO, TELECOM_NO, "13900000009"):
        assert router.route(n).source == "fallback"
    assert router.breaker.state == "open"
    calls = len(client.calls)

    stale = router.route(MOBILE_NO)
    fb = router.route("13900000077")
    assert len(client.calls) == calls  # no upstream call while open
    assert (stale.source, stale.carrier, stale.reason) == ("stale", T, "circuit open")
    assert (fb.source, fb.carrier, fb.reason) == ("fallback", M, "circuit open")
    stats = router.stats()
    assert stats["breaker"] == "open"
    assert stats["breaker_opened"] == 1
    assert stats["fallback_reasons"]["circuit open"] == 2


def test_router_probes_after_cooldown_and_closes(clock):
    """After the cool-down one route() probes; its success closes the breaker."""
    client = FakeClient(script=[api_error(-8)] * 3)
    router = router_with(client, clock)
    for n in ("13900000001", "13900000002", "13900000003"):
        router.route(n)
    assert router.breaker.state == "open"
    clock.advance(10.0)
    assert router.breaker.state == "half-open"
    d = router.route(UNICOM_NO)
    assert d.source == "upstream"
    assert router.breaker.state == "closed"
    assert len(client.calls) == 4


def test_router_failed_probe_reopens(clock):
    """A failed probe re-opens the breaker: the next route() makes no call."""
    client = FakeClient(script=[api_error(-8)] * 4)
    router = router_with(client, clock)
    for n in ("13900000001", "13900000002", "13900000003"):
        router.route(n)
    clock.advance(10.0)
    assert router.route(UNICOM_NO).source == "fallback"
    assert router.breaker.state == "open"
    router.route(TELECOM_NO)
    assert len(client.calls) == 4


@pytest.mark.parametrize(
    ("code", "kind"), [(-1, "unauthorized"), (-9, "unauthorized"), (-5, "balance_exhausted")]
)
def test_router_account_error_one_alert_many_sends(clock, code, kind):
    """The first -1/-9/-5 opens the breaker and alerts; many more sends add no call and no alert."""
    alerts: list[Alert] = []
    client = FakeClient(script=[api_error(code)] * 100)
    router = router_with(client, clock, alerts)
    decisions = [router.route(f"1390000{i:04d}") for i in range(50)]
    assert len(client.calls) == 1
    assert [(a.kind, a.code) for a in alerts] == [(kind, code)]
    assert all(d.source == "fallback" and d.carrier == M for d in decisions)
    clock.advance(60.0)
    router.route(UNICOM_NO)  # the probe meets the same problem: same incident
    assert len(client.calls) == 2
    assert len(alerts) == 1
    assert router.stats()["errors"] == {str(code): 2}


def test_router_late_answer_does_not_end_the_incident(clock):
    """An answer to a lookup sent before -5 opened the breaker keeps it open: one alert."""
    alerts: list[Alert] = []
    client = BlockingClient(
        {MOBILE_NO: info(MOBILE_NO, "移动"), UNICOM_NO: api_error(-5)}, only=[MOBILE_NO]
    )
    router = router_with(client, clock, alerts)
    early = threading.Thread(target=router.route, args=(MOBILE_NO,))
    early.start()
    try:
        assert client.entered.wait(5.0)
        assert router.route(UNICOM_NO).source == "fallback"  # -5: open, alert
    finally:
        client.gate.set()
        early.join(5.0)
    assert router.breaker.state == "open"
    client.answers[TELECOM_NO] = api_error(-5)
    assert router.route(TELECOM_NO).reason == "circuit open"
    assert len(client.calls) == 2
    assert len(alerts) == 1


class Cancelled(BaseException):
    """What a green-thread timeout or a KeyboardInterrupt looks like to the router."""


def test_router_cancelled_probe_is_given_back(clock):
    """A probe cancelled mid-call propagates and leaves the next caller free to probe."""
    client = FakeClient(script=[api_error(-8)] * 3 + [Cancelled()])
    router = router_with(client, clock)
    for n in ("13900000001", "13900000002", "13900000003"):
        router.route(n)
    clock.advance(10.0)
    with pytest.raises(Cancelled):
        router.route(UNICOM_NO)
    d = router.route(TELECOM_NO)
    assert d.source == "upstream"
    assert router.breaker.state == "closed"


def test_router_client_refusing_the_number_does_not_open(clock):
    """A client whose own number check refuses (an older segment table) never opens the breaker."""
    client = FakeClient(script=[InvalidNumber("unallocated segment: 140")] * 10)
    router = router_with(client, clock)
    for i in range(10):
        d = router.route(f"1390000{i:04d}")
        assert (d.source, d.carrier) == ("fallback", M)
    assert router.breaker.state == "closed"
    assert router.stats()["errors"] == {"InvalidNumber": 10}


@pytest.mark.parametrize("code", [-4, -2, -3, 1])
def test_router_caller_errors_never_open(clock, code):
    """Many NumberNotFound or RequestRejected answers leave the breaker closed."""
    client = FakeClient(script=[api_error(code)] * 20)
    router = router_with(client, clock)
    for i in range(20):
        router.route(f"1390000{i:04d}")
    assert router.breaker.state == "closed"
    assert len(client.calls) == 20


def test_router_on_alert_replaces_breakers(clock):
    """on_alert given to the router is the one the breaker calls."""
    alerts: list[Alert] = []
    router = Router(FakeClient(script=[api_error(-9)]), GW, clock=clock, on_alert=alerts.append)
    router.route(MOBILE_NO)
    assert [a.code for a in alerts] == [-9]


# -- deadline ------------------------------------------------------------------------------------


def test_deadline_against_a_server_that_never_answers():
    """route() returns within its deadline when the real upstream accepts and never answers."""
    with FakeCarrierServer() as server:
        server.fault = "hang"
        client = CarrierClient(server.apikey, base_url=server.url, timeout=(5.0, 5.0))
        with client:
            router = Router(client, GW, deadline=0.3)
            started = time.monotonic()
            d = router.route(MOBILE_NO)
            elapsed = time.monotonic() - started
    assert elapsed < 1.5
    assert (d.source, d.carrier) == ("fallback", M)
    assert d.reason is not None
    assert "TransportError" in d.reason
    assert router.stats()["upstream_calls"] == 1


def test_follower_returns_within_its_deadline_when_the_leader_hangs():
    """A second route() of a number whose lookup hangs gives up at its own deadline."""
    client = BlockingClient()
    router = Router(client, GW)
    leader = threading.Thread(target=router.route, args=(MOBILE_NO,), kwargs={"deadline": 5.0})
    leader.start()
    try:
        assert client.entered.wait(5.0)
        started = time.monotonic()
        d = router.route(MOBILE_NO, deadline=0.2)
        elapsed = time.monotonic() - started
    finally:
        client.gate.set()
        leader.join(5.0)
    assert elapsed < 1.5
    assert d.source == "fallback"
    assert d.reason is not None
    assert d.reason.startswith("deadline")
    assert client.calls == [MOBILE_NO]


def test_open_breaker_skips_the_flight(clock):
    """While the breaker is open and cooling down, route() falls back without a flight."""
    breaker = CircuitBreaker(threshold=1, cooldown=10.0, clock=clock)
    client = FakeClient(script=[api_error(-8)])
    router = Router(
        client, {"移动": "m"}, cache=MemoryCache(timer=clock), breaker=breaker, clock=clock
    )
    assert router.route("13800138000").source == "fallback"  # opens the breaker
    assert breaker.rejecting()
    d = router.route("13800138001")
    assert (d.source, d.reason) == ("fallback", "circuit open")
    assert router.stats()["coalesced"] == 0
    assert len(router._flights) == 0
    clock.advance(10.0)
    assert not breaker.rejecting()  # cooled down: the next call may probe


def test_routers_sharing_a_breaker_log_each_transition_once(clock, caplog):
    """Many routers on one breaker neither pile up as listeners nor repeat its log lines."""
    breaker = CircuitBreaker(threshold=1, clock=clock)
    routers = [Router(FakeClient(), {"移动": "m"}, breaker=breaker, clock=clock) for _ in range(5)]
    assert breaker.listeners == []
    with caplog.at_level("WARNING", logger="smsroute"):
        breaker.failure(api_error(-8))
    assert caplog.text.count("breaker.state") == 1
    assert len(routers) == 5


def test_on_alert_given_twice_is_refused(clock):
    """A router refuses an on_alert when its breaker already has a different one."""
    breaker = CircuitBreaker(clock=clock, on_alert=lambda alert: None)
    with pytest.raises(ConfigurationError, match="on_alert"):
        Router(FakeClient(), {"移动": "m"}, breaker=breaker, on_alert=lambda alert: None)
