"""BalanceWatcher against FakeCarrierServer: one alert per incident, re-armed, stops promptly."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

import smsroute
from smsroute import Alert, Balance, Carrier, CarrierClient, Router
from smsroute.testing import FakeCarrierServer, FakeClock
from smsroute.watcher import BalanceWatcher

LOW_WATER = 1000


@pytest.fixture
def server() -> Iterator[FakeCarrierServer]:
    """Yield a fake vendor on 127.0.0.1 with a healthy prepaid balance."""
    with FakeCarrierServer(balance=5000) as s:
        yield s
        s.set_fault(None)


@pytest.fixture
def client(server) -> Iterator[CarrierClient]:
    """Yield a client of the server that does not retry."""
    with CarrierClient(
        server.apikey,
        base_url=server.url,
        retry=smsroute.default_retrying(attempts=1, sleep=lambda _s: None),
    ) as c:
        yield c


@pytest.fixture
def alerts() -> list[Alert]:
    """Return the list the watcher's on_alert appends to."""
    return []


@pytest.fixture
def watcher(client, alerts) -> BalanceWatcher:
    """Return a watcher polled by hand (never started) with a FakeClock."""
    return BalanceWatcher(
        client, interval=60, low_water=LOW_WATER, on_alert=alerts.append, clock=FakeClock()
    )


def kinds(alerts: list[Alert]) -> list[str]:
    """Return the kinds of the alerts, in order."""
    return [a.kind for a in alerts]


def wait_for(condition, timeout: float = 5.0) -> bool:
    """Poll ``condition`` every 10 ms until it holds or ``timeout`` passes."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_low_then_exhausted_then_recovered(server, watcher, alerts):
    """One low alert, one exhausted alert, none while it stays there; re-armed after recovery."""
    assert watcher.poll().remaining == 5000
    assert (watcher.level, alerts) == ("ok", [])

    server.balance = 800
    watcher.poll()
    watcher.poll()
    assert watcher.level == "low"
    assert kinds(alerts) == ["balance_low"]
    assert "800" in alerts[0].reason
    assert alerts[0].code is None

    server.balance = 0
    watcher.poll()
    watcher.poll()
    assert watcher.level == "exhausted"
    assert kinds(alerts) == ["balance_low", "balance_exhausted"]

    server.balance = 5000
    watcher.poll()
    watcher.poll()
    assert watcher.level == "ok"
    assert watcher.last.remaining == 5000
    # Each incident ends with one recovered alert, the newest first.
    assert [(a.kind, a.incident) for a in alerts[2:]] == [
        ("recovered", "balance_exhausted"),
        ("recovered", "balance_low"),
    ]
    assert "5000" in alerts[2].reason

    server.balance = 900  # a new incident: the low alert was re-armed
    watcher.poll()
    assert kinds(alerts)[4:] == ["balance_low"]


def test_straight_to_exhausted_alerts_once(server, watcher, alerts):
    """Dropping from healthy straight to 0 sends the exhausted alert only, once."""
    watcher.poll()
    server.balance = 0
    for _ in range(3):
        watcher.poll()
    assert kinds(alerts) == ["balance_exhausted"]


def test_partial_top_up_rearms_exhausted_only(server, watcher, alerts):
    """Topped up above 0 but under the mark: no new low alert, but a new exhaustion alerts."""
    server.balance = 0
    watcher.poll()
    server.balance = 300
    watcher.poll()
    assert watcher.level == "low"
    server.balance = 0
    watcher.poll()
    assert kinds(alerts) == ["balance_exhausted", "recovered", "balance_exhausted"]


def test_vendor_code_minus_5_counts_as_exhausted(server, watcher, alerts):
    """A -5 answer to the balance call is an exhausted account: one alert with code -5."""
    watcher.poll()
    server.set_fault(-5)
    assert watcher.poll() is None
    assert watcher.poll() is None
    assert watcher.level == "exhausted"
    assert [(a.kind, a.code) for a in alerts] == [("balance_exhausted", -5)]
    assert watcher.errors == 0  # an answer, not a failed poll
    assert watcher.last.remaining == 5000  # the last balance read is kept


def test_postpaid_below_zero_is_low_not_exhausted(server, watcher, alerts):
    """A postpaid account may go negative: that is low, never exhausted."""
    server.fee_type = "后付费"
    server.balance = -10
    watcher.poll()
    assert watcher.level == "low"
    assert kinds(alerts) == ["balance_low"]


@pytest.mark.parametrize("fault", ["http500", "html", "reset", -8, -1])
def test_poll_errors_are_logged_not_raised(server, watcher, alerts, caplog, fault):
    """A failed poll returns None, counts an error, logs a warning and changes nothing else."""
    watcher.poll()
    server.set_fault(fault)
    with caplog.at_level(logging.WARNING, logger="smsroute"):
        assert watcher.poll() is None
    assert watcher.errors == 1
    assert watcher.level == "ok"
    assert alerts == []
    assert any("balance.poll_failed" in r.getMessage() for r in caplog.records)
    server.set_fault(None)
    assert watcher.poll().remaining == 5000  # retried at the next poll


def test_hung_poll_is_bounded_by_the_timeout(server, client):
    """A vendor that never answers costs one poll its timeout, then the poll fails."""
    watcher = BalanceWatcher(client, low_water=LOW_WATER, timeout=0.2)
    server.set_fault("hang")
    started = time.perf_counter()
    assert watcher.poll() is None
    assert time.perf_counter() - started < 2.0
    assert watcher.errors == 1


def test_failing_alert_hook_is_logged_and_not_fatal(server, client, caplog):
    """An on_alert that raises is logged; the watcher keeps polling and alerting."""
    calls: list[str] = []

    def hook(alert: Alert) -> None:
        calls.append(alert.kind)
        raise RuntimeError("pager down")

    watcher = BalanceWatcher(client, low_water=LOW_WATER, on_alert=hook)
    server.balance = 10
    with caplog.at_level(logging.ERROR, logger="smsroute"):
        watcher.poll()
    server.balance = 0
    watcher.poll()
    assert calls == ["balance_low", "balance_exhausted"]
    assert any("balance.alert_hook_failed" in r.getMessage() for r in caplog.records)


def test_background_thread_polls_and_stops_promptly(server, client, alerts):
    """The thread polls every interval, alerts from the background and stop() joins quickly."""
    watcher = BalanceWatcher(client, interval=0.02, low_water=LOW_WATER, on_alert=alerts.append)
    with watcher:
        assert watcher.running
        assert watcher.start() is watcher  # already running: a no-op
        assert wait_for(lambda: watcher.polls >= 3)
        server.balance = 10
        assert wait_for(lambda: kinds(alerts) == ["balance_low"])
        started = time.perf_counter()
    assert time.perf_counter() - started < 1.0
    assert not watcher.running
    polls = watcher.polls
    time.sleep(0.1)
    assert watcher.polls == polls  # stopped means stopped
    assert len(alerts) == 1


def test_stop_does_not_wait_for_the_interval(client):
    """With a long interval, stop() returns at once instead of sleeping it out."""
    watcher = BalanceWatcher(client, interval=3600).start()
    assert wait_for(lambda: watcher.polls == 1)
    started = time.perf_counter()
    watcher.stop()
    assert time.perf_counter() - started < 1.0
    assert not watcher.running
    watcher.start()  # restartable
    assert wait_for(lambda: watcher.polls == 2)
    watcher.stop()


def test_start_after_a_stop_that_timed_out_keeps_polling():
    """start() after a stop() whose join timed out (a poll still running) really restarts."""
    gate = threading.Event()
    calls: list[float | None] = []

    class Slow:
        def balance(self, *, timeout=None):
            calls.append(timeout)
            if len(calls) == 1:
                gate.wait(5.0)  # the first poll hangs until released
            return Balance("预付费", 5000)

    watcher = BalanceWatcher(Slow(), interval=0.01, low_water=LOW_WATER).start()
    assert wait_for(lambda: len(calls) == 1)
    watcher.stop(timeout=0.01)  # gives up on the join: the poll is still running
    watcher.start()
    gate.set()
    try:
        assert wait_for(lambda: len(calls) >= 3)
        assert watcher.running
    finally:
        watcher.stop()
    assert not watcher.running


def test_sends_never_poll_the_balance(server, client):
    """Only the watcher asks for the balance: routing sends never do."""
    watcher = BalanceWatcher(client, interval=3600)
    router = Router(client, {Carrier.MOBILE: lambda m, t: None}, default=lambda m, t: None)
    with watcher:
        assert wait_for(lambda: watcher.polls == 1)
        for i in range(20):
            router.send(f"1380013{i:04d}", "hi")
    paths = [r.path for r in server.requests]
    assert paths.count("/balance") == 1
    assert paths.count("/carrier") == 20


@pytest.mark.parametrize(
    "kwargs", [{"interval": 0}, {"interval": -1}, {"low_water": -1}, {"timeout": 0}]
)
def test_bad_settings_are_refused(client, kwargs):
    """Non-positive intervals and timeouts, and a negative low-water mark, are refused."""
    with pytest.raises(ValueError):
        BalanceWatcher(client, **kwargs)


def test_repr_shows_state_not_secrets(server, watcher):
    """The repr shows the level and last balance, and never the apikey."""
    watcher.poll()
    text = repr(watcher)
    assert "level='ok'" in text
    assert "5000" in text
    assert server.apikey not in text


def test_each_incident_ends_with_one_recovered_alert(server, watcher, alerts, caplog):
    """Exhausted, low, ok: the exhaustion ends above 0; a low phase folded into it says nothing."""
    watcher.poll()
    server.balance = 0
    watcher.poll()
    server.balance = 300  # above 0, under the mark: the exhaustion is over, no new low alert
    with caplog.at_level(logging.INFO, logger="smsroute"):
        watcher.poll()
        watcher.poll()
        server.balance = 5000
        watcher.poll()
        watcher.poll()
    assert [(a.kind, a.incident) for a in alerts] == [
        ("balance_exhausted", "balance_exhausted"),
        ("recovered", "balance_exhausted"),
    ]
    assert alerts[1].reason == "balance_exhausted is over: 300 queries left"
    assert alerts[1].code is None
    lines = [r.getMessage() for r in caplog.records if "balance.recovered" in r.getMessage()]
    assert len(lines) == 1
    assert "incident=balance_exhausted remaining=300" in lines[0]
