"""One on_alert for a router and a balance watcher: one alert per incident, one recovery."""

from __future__ import annotations

import asyncio
import logging

import pytest
from _fakes import MOBILE_NO, UNICOM_NO, FakeClient, api_error, info

from smsroute import Alert, AlertHub, AsyncRouter, Balance, CircuitBreaker, MemoryCache, Router
from smsroute.testing import FakeClock
from smsroute.watcher import BalanceWatcher

GW = {"移动": "CMPP", "联通": "SGIP", "电信": "SMGP", "广电": "CBN"}
HARD_COOLDOWN = 60.0


class Account:
    """One vendor account seen by both sides: lookups spend it, the balance call reads it."""

    def __init__(self, remaining: int = 5000) -> None:
        self.remaining = remaining
        self.lookups = 0

    def lookup(self, number: str):
        """Answer, or raise the vendor's -5 once the balance is spent."""
        self.lookups += 1
        if self.remaining <= 0:
            raise api_error(-5)
        self.remaining -= 1
        return info(number, "移动")

    def balance(self, *, timeout: float | None = None) -> Balance:
        """Return the prepaid balance left."""
        return Balance("预付费", self.remaining)


class AsyncAccount:
    """The same account behind an awaitable lookup."""

    def __init__(self, account: Account) -> None:
        self.account = account

    async def lookup(self, number: str, *, timeout: float | None = None):
        """Answer like the account."""
        return self.account.lookup(number)


def numbers():
    """Yield distinct cold numbers of 移动's 139 segment."""
    i = 0
    while True:
        i += 1
        yield f"1390000{i:04d}"


def world(*, use_async: bool = False):
    """Return an account, a hub recording into a list, a router and a watcher on one clock."""
    clock = FakeClock()
    account = Account()
    seen: list[Alert] = []
    hub = AlertHub(seen.append)
    breaker = CircuitBreaker(clock=clock, hard_cooldown=HARD_COOLDOWN)
    cache = MemoryCache(clock=clock)
    make = AsyncRouter if use_async else Router
    client = AsyncAccount(account) if use_async else account
    router = make(client, GW, cache=cache, breaker=breaker, clock=clock, on_alert=hub)
    watcher = BalanceWatcher(account, low_water=0, on_alert=hub, clock=clock)
    return clock, account, hub, seen, router, watcher


def route(router, number: str):
    """Route one number on either router."""
    if isinstance(router, AsyncRouter):
        return asyncio.run(router.route(number))
    return router.route(number)


def facts(seen: list[Alert]) -> list[tuple[str, str]]:
    """Return (kind, incident) of each alert passed on."""
    return [(a.kind, a.incident) for a in seen]


EXHAUSTED = ("balance_exhausted", "balance_exhausted")
RECOVERED = ("recovered", "balance_exhausted")


# -- AlertHub on its own -----------------------------------------------------------------


def test_hub_passes_the_first_alert_and_the_first_recovery():
    """Repeats of an open incident and a second recovery are dropped and counted."""
    seen: list[Alert] = []
    hub = AlertHub(seen.append)
    first = Alert("balance_exhausted", -5, "vendor says -5", 1.0)
    hub(first)
    hub(Alert("balance_exhausted", None, "no queries left (0)", 2.0))
    hub(Alert("unauthorized", -1, "wrong key", 3.0))  # another incident: passes
    assert hub.incidents == {"balance_exhausted", "unauthorized"}
    hub(first.ended("balance back", 4.0))
    hub(first.ended("probe answered", 5.0))
    assert [(a.kind, a.incident, a.at) for a in seen] == [
        ("balance_exhausted", "balance_exhausted", 1.0),
        ("unauthorized", "unauthorized", 3.0),
        ("recovered", "balance_exhausted", 4.0),
    ]
    assert hub.incidents == {"unauthorized"}
    assert hub.dropped == 2
    hub(Alert("balance_exhausted", -5, "again", 6.0))  # after its end: a new incident
    assert seen[-1].at == 6.0
    assert "unauthorized" in repr(hub)


def test_alert_fields_stay_compatible():
    """Alert keeps its four positional fields; incident defaults to kind; recovered is a kind."""
    alert = Alert("upstream_down", -8, "系统错误", 7.0)
    assert (alert.incident, alert.recovered) == ("upstream_down", False)
    over = alert.ended("the vendor answers again", 9.0)
    assert (over.kind, over.code, over.incident, over.at, over.recovered) == (
        "recovered",
        None,
        "upstream_down",
        9.0,
        True,
    )
    assert alert == Alert("upstream_down", -8, "系统错误", 0.0)  # `at` does not compare


# -- a router and a watcher of one account ------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True], ids=["Router", "AsyncRouter"])
def test_exhausted_account_alerts_once_then_recovers_once(use_async):
    """-5 on a send and 0 on the balance poll are one incident: one alert, one recovery."""
    clock, account, hub, seen, router, watcher = world(use_async=use_async)
    cold = numbers()
    assert route(router, next(cold)).source == "upstream"
    watcher.poll()
    account.remaining = 0

    assert route(router, next(cold)).source == "fallback"  # -5: the breaker opens, alerts
    watcher.poll()  # the watcher reads 0: the same incident
    watcher.poll()
    assert route(router, next(cold)).reason == "circuit open"
    assert facts(seen) == [EXHAUSTED]
    assert (watcher.level, router.breaker.state) == ("exhausted", "open")
    assert hub.dropped == 1

    account.remaining = 5000  # topped up: the watcher sees it first
    clock.advance(30.0)
    watcher.poll()
    assert facts(seen) == [EXHAUSTED, RECOVERED]
    clock.advance(HARD_COOLDOWN)
    assert route(router, next(cold)).source == "upstream"  # the probe closes the breaker
    assert router.breaker.state == "closed"
    assert facts(seen) == [EXHAUSTED, RECOVERED]  # the router's recovery was dropped
    assert hub.dropped == 2
    assert hub.incidents == frozenset()
    assert seen[0].code == -5
    assert seen[1].at == clock() - HARD_COOLDOWN


@pytest.mark.parametrize("use_async", [False, True], ids=["Router", "AsyncRouter"])
def test_router_may_see_the_end_first(use_async):
    """When the breaker's probe answers before the next poll, the router says it, once."""
    clock, account, hub, seen, router, watcher = world(use_async=use_async)
    assert hub.on_alert == seen.append
    cold = numbers()
    account.remaining = 0
    watcher.poll()  # the watcher sees it first this time
    route(router, next(cold))
    assert facts(seen) == [EXHAUSTED]
    account.remaining = 5000
    clock.advance(HARD_COOLDOWN)
    route(router, next(cold))
    assert facts(seen) == [EXHAUSTED, RECOVERED]
    assert "the breaker closed" in seen[1].reason
    watcher.poll()
    assert facts(seen) == [EXHAUSTED, RECOVERED]


def test_a_plain_callable_given_to_both_hears_each_side():
    """Without a hub, each side alerts and recovers on its own (the hub is the dedupe)."""
    clock, account, _hub, _seen, _router, _watcher = world()
    plain: list[Alert] = []
    router = Router(account, GW, clock=clock, on_alert=plain.append)
    watcher = BalanceWatcher(account, low_water=0, on_alert=plain.append, clock=clock)
    account.remaining = 0
    router.route(MOBILE_NO)
    watcher.poll()
    assert facts(plain) == [EXHAUSTED, EXHAUSTED]


def test_two_accounts_two_hubs_one_pager():
    """One pager behind two hubs (two apikeys): account B's exhaustion is not hidden by A's."""
    pager: list[Alert] = []
    hub_a, hub_b = AlertHub(pager.append), AlertHub(pager.append)
    a = Router(FakeClient(script=[api_error(-5)]), GW, on_alert=hub_a)
    b = Router(FakeClient(script=[api_error(-5)]), GW, on_alert=hub_b)
    a.route(MOBILE_NO)
    b.route(UNICOM_NO)
    assert facts(pager) == [EXHAUSTED, EXHAUSTED]


# -- the router's side of a recovery ----------------------------------------------------------


def test_reset_by_hand_is_told_at_the_next_answer():
    """breaker.reset() ends the incident: the router's hook hears recovered at its next answer."""
    clock = FakeClock()
    seen: list[Alert] = []
    client = FakeClient(script=[api_error(-1)])
    router = Router(client, GW, clock=clock, on_alert=seen.append)
    router.route(MOBILE_NO)
    router.breaker.reset()
    assert facts(seen) == [("unauthorized", "unauthorized")]
    router.route(UNICOM_NO)
    router.route("13900000077")
    assert facts(seen) == [("unauthorized", "unauthorized"), ("recovered", "unauthorized")]


def test_breaker_hook_hears_the_recovery_at_once():
    """A hook given to the breaker itself hears recovered from reset() and from a probe."""
    clock = FakeClock()
    seen: list[Alert] = []
    breaker = CircuitBreaker(clock=clock, threshold=1, cooldown=10.0, on_alert=seen.append)
    breaker.failure(api_error(-5))
    breaker.reset()
    breaker.failure(api_error(-8))
    clock.advance(10.0)
    assert breaker.allow()
    breaker.success()
    assert [(a.kind, a.incident, a.reason) for a in seen] == [
        ("balance_exhausted", "balance_exhausted", "vendor says -5"),
        (
            "recovered",
            "balance_exhausted",
            "balance_exhausted is over: the breaker was reset by hand",
        ),
        ("upstream_down", "upstream_down", "vendor says -8"),
        ("recovered", "upstream_down", "upstream_down is over: the vendor answers again"),
    ]


def test_an_incident_replaced_by_another_ends_first():
    """A vendor that was down and now answers -1: upstream_down is over, unauthorized begins."""
    clock = FakeClock()
    seen: list[Alert] = []
    breaker = CircuitBreaker(clock=clock, threshold=1, cooldown=10.0)
    client = FakeClient(script=[api_error(-8), api_error(-1)])
    router = Router(client, GW, clock=clock, breaker=breaker, on_alert=seen.append)
    router.route(MOBILE_NO)
    clock.advance(10.0)
    router.route(UNICOM_NO)  # the probe meets -1
    assert facts(seen) == [
        ("upstream_down", "upstream_down"),
        ("recovered", "upstream_down"),
        ("unauthorized", "unauthorized"),
    ]
    assert seen[1].reason == "upstream_down is over: now unauthorized"


def test_routers_sharing_a_breaker_each_end_what_they_told():
    """B's probe closes a shared breaker; A's hook hears recovered at A's next call."""
    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock, hard_cooldown=HARD_COOLDOWN)
    told_a: list[Alert] = []
    told_b: list[Alert] = []
    a = Router(FakeClient(script=[api_error(-5)]), GW, breaker=breaker, on_alert=told_a.append)
    b = Router(FakeClient(), GW, breaker=breaker, on_alert=told_b.append)
    a.route(MOBILE_NO)
    clock.advance(HARD_COOLDOWN)
    b.route(UNICOM_NO)  # b's probe closes it; b told nobody of the incident
    assert (facts(told_a), told_b) == ([EXHAUSTED], [])
    a.route("13900000077")
    assert facts(told_a) == [EXHAUSTED, RECOVERED]


def test_a_raising_hook_on_a_recovery_is_logged(caplog):
    """A hook that raises on the recovered alert is logged with the incident; routing goes on."""
    clock = FakeClock()

    def boom(alert: Alert) -> None:
        if alert.recovered:
            raise RuntimeError("pager down")

    breaker = CircuitBreaker(clock=clock, threshold=1, on_alert=boom)
    breaker.failure(api_error(-5))
    with caplog.at_level(logging.ERROR, logger="smsroute"):
        breaker.reset()
    (record,) = [r for r in caplog.records if "breaker.alert_hook_failed" in r.getMessage()]
    assert "kind=recovered incident=balance_exhausted" in record.getMessage()
    assert breaker.state == "closed"


def test_a_timed_out_probe_does_not_end_an_account_problem():
    """Wrong key, then the probe times out: still the same incident, no "recovered" page."""
    from smsroute.core.breaker import BreakerCore
    from smsroute.errors import TransportError, Unauthorized

    core = BreakerCore(threshold=1, cooldown=1.0, hard_cooldown=5.0)
    _change, first = core.failure(Unauthorized(-1, "key"), now=0.0)
    assert first is not None
    assert first.kind == "unauthorized"
    assert core.allow(now=6.0)[0]  # the probe, after the hard cool-down
    _change, again = core.failure(TransportError("timed out"), now=6.0)
    assert again is None
    assert core.incident is first
    assert core.state == "open"
