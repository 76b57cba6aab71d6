"""BalanceWatcher: poll the vendor's ``/balance`` in the background and alert when it runs low.

The send path never asks for the balance; one daemon thread does, every
``interval`` seconds::

    watcher = BalanceWatcher(client, interval=60, low_water=1000, on_alert=page)
    with watcher:
        serve()

Alerts are :class:`smsroute.resilience.Alert` objects, each sent once per
incident: ``balance_low`` when the balance drops under ``low_water``,
``balance_exhausted`` when a prepaid account reaches 0 or the vendor answers
-5. Each incident alerted ends with one ``recovered`` alert (its
``incident`` names which): the exhaustion as soon as the balance is above 0
again, the low balance when it is back at or above ``low_water``; then the
alert re-arms. A poll that fails is logged and retried at the next interval;
nothing is raised into the host. Give the watcher and the router of one
account the same :class:`smsroute.AlertHub` to be told of an empty account
once, not by both.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Literal, Protocol

from smsroute._log import get_logger
from smsroute.errors import BalanceExhausted, SmsRouteError
from smsroute.models import Balance
from smsroute.resilience import Alert
from smsroute.types import Clock

__all__ = ["BalanceSource", "BalanceWatcher", "Level"]

Level = Literal["unknown", "ok", "low", "exhausted"]

_log = get_logger()


class BalanceSource(Protocol):
    """Anything with the vendor's balance call, such as :class:`smsroute.CarrierClient`."""

    def balance(self, *, timeout: float | None = None) -> Balance:
        """Return the account's fee type and remaining queries."""


class BalanceWatcher:
    """Poll ``client.balance()`` in a daemon thread and alert once per incident.

    Thread-safe: :meth:`poll` may also be called by hand (a health check, a
    test) while the thread runs. ``clock`` stamps alerts and polls.
    """

    def __init__(
        self,
        client: BalanceSource,
        interval: float = 60.0,
        low_water: int = 1000,
        on_alert: Callable[[Alert], None] | None = None,
        *,
        timeout: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be a positive number of seconds")
        if low_water < 0:
            raise ValueError("low_water must not be negative")
        if timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.client = client
        self.interval = float(interval)
        self.low_water = int(low_water)
        self.on_alert = on_alert
        self.timeout = float(timeout)
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: Balance | None = None
        self._level: Level = "unknown"
        # The alerts of the incidents in progress (each ends with a recovered
        # alert); _low_sent also covers a low phase folded into an exhaustion.
        self._exhausted: Alert | None = None
        self._low: Alert | None = None
        self._low_sent = False
        self.polls = 0
        """Polls made, failed ones included."""
        self.errors = 0
        """Polls that failed (the vendor's -5 is an answer, not a failure)."""
        self.last_polled: float | None = None
        """The ``clock`` time of the last successful poll, or None."""

    # -- state ------------------------------------------------------------------

    @property
    def last(self) -> Balance | None:
        """Return the last balance read, or None before the first successful poll."""
        return self._last

    @property
    def level(self) -> Level:
        """Return ``"ok"``, ``"low"``, ``"exhausted"``, or ``"unknown"`` before any answer."""
        return self._level

    @property
    def running(self) -> bool:
        """Return True while the polling thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __repr__(self) -> str:
        last = None if self._last is None else self._last.remaining
        return (
            f"BalanceWatcher(interval={self.interval}, low_water={self.low_water}, "
            f"level={self._level!r}, last={last}, running={self.running})"
        )

    # -- polling ----------------------------------------------------------------

    def poll(self) -> Balance | None:
        """Ask for the balance once, update the level and alert; return it (None on failure)."""
        with self._lock:
            self.polls += 1
        try:
            balance = self.client.balance(timeout=self.timeout)
        except BalanceExhausted as exc:
            # The vendor refuses even the balance call: as exhausted as it gets.
            self._update(None, exc)
            return None
        except Exception as exc:  # noqa: BLE001 - a failed poll must never reach the host
            with self._lock:
                self.errors += 1
            _log.warning(
                "balance.poll_failed",
                error=type(exc).__name__,
                code=getattr(exc, "code", None),
                reason=str(exc)[:200] if isinstance(exc, SmsRouteError) else None,
            )
            return None
        self._update(balance, None)
        return balance

    def _update(self, balance: Balance | None, refused: BalanceExhausted | None) -> None:
        raised: list[Alert] = []
        with self._lock:
            now = self._clock()
            if balance is not None:
                self._last = balance
                self.last_polled = now
                remaining = balance.remaining
                exhausted = remaining <= 0 and not balance.postpaid
            else:
                remaining = None
                exhausted = True
            if exhausted:
                level: Level = "exhausted"
                if self._exhausted is None:
                    code = refused.code if refused is not None else None
                    reason = (
                        f"the vendor refuses queries: {refused.reason}"
                        if refused is not None
                        else f"no queries left ({remaining})"
                    )
                    self._exhausted = Alert("balance_exhausted", code, reason, now)
                    raised.append(self._exhausted)
                # Exhausted includes low: no separate low alert on the way back up.
                self._low_sent = True
            else:
                # Above 0 again: the exhaustion is over (a new one is a new incident).
                level = "low" if remaining is not None and remaining < self.low_water else "ok"
                back = f"{remaining} queries left"
                if self._exhausted is not None:
                    raised.append(self._exhausted.ended(f"balance_exhausted is over: {back}", now))
                    self._exhausted = None
                if level == "low" and not self._low_sent:
                    self._low = Alert(
                        "balance_low",
                        None,
                        f"{remaining} queries left, under the low-water mark {self.low_water}",
                        now,
                    )
                    raised.append(self._low)
                    self._low_sent = True
                elif level == "ok":
                    if self._low is not None:
                        over = f"balance_low is over: {back}, low-water mark {self.low_water}"
                        raised.append(self._low.ended(over, now))
                    self._low, self._low_sent = None, False
            self._level = level
        _log.debug("balance.polled", remaining=remaining, level=level)
        for alert in raised:
            self._alert(alert, remaining)

    def _alert(self, alert: Alert, remaining: int | None) -> None:
        if alert.recovered:
            _log.info(
                "balance.recovered",
                incident=alert.incident,
                remaining=remaining,
                low_water=self.low_water,
            )
        elif alert.kind == "balance_exhausted":
            _log.error("balance.exhausted", remaining=remaining, code=alert.code)
        else:
            _log.warning("balance.low", remaining=remaining, low_water=self.low_water)
        if self.on_alert is None:
            return
        try:
            self.on_alert(alert)
        except Exception:  # noqa: BLE001 - an alert hook must never break the watcher
            _log.exception("balance.alert_hook_failed", kind=alert.kind, incident=alert.incident)

    # -- the thread ---------------------------------------------------------------

    def start(self) -> BalanceWatcher:
        """Start polling in a daemon thread (the first poll at once); a no-op when running."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
                return self
            # A fresh event per thread: a thread that stop() could not join
            # (its poll still running) keeps its own, set, event and exits
            # after that poll, while the new thread polls on.
            self._stop = stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(stop,), name="smsroute-balance-watcher", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop polling and join the thread, waiting at most ``timeout`` (default: a poll's)."""
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.timeout + 1.0 if timeout is None else timeout)

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll()
            if stop.wait(self.interval):
                break

    def __enter__(self) -> BalanceWatcher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
