"""Retry policy and the thread-safe circuit breaker.

The breaker's decisions are :class:`smsroute.core.breaker.BreakerCore`'s,
with an injectable clock (pybreaker reads the wall clock itself, so its tests
sleep; ours never do); this module adds the lock, the clock reads, the log
lines, listeners and the alert hook. Caller mistakes never open it; account
problems open it at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar, cast

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
    stop_before_delay,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from smsroute._log import get_logger
from smsroute.core.breaker import Alert, BreakerCore, Change, State, ended
from smsroute.core.outcome import HARD, RETRYABLE, is_retryable
from smsroute.types import Clock

__all__ = [
    "HARD",
    "RETRYABLE",
    "Alert",
    "BreakerListener",
    "CircuitBreaker",
    "State",
    "call_alert_hook",
    "default_async_retrying",
    "default_retrying",
    "is_retryable",
    "within_budget",
]

_log = get_logger()
_ANSWERS_AGAIN = "the vendor answers again"


def default_retrying(
    *, attempts: int = 3, budget: float = 5.0, sleep: Callable[[float], None] = time.sleep
) -> Retrying:
    """Return the default retry policy: ``attempts`` tries within ``budget`` seconds, jittered."""
    return Retrying(
        stop=stop_after_attempt(attempts) | stop_after_delay(budget),
        wait=wait_random_exponential(multiplier=0.05, max=1.0),
        retry=retry_if_exception(is_retryable),
        reraise=True,
        sleep=sleep,
    )


def call_alert_hook(hook: Callable[[Alert], None] | None, alert: Alert) -> None:
    """Call an ``on_alert`` hook; one that raises is logged, never passed on to a send."""
    if hook is None:
        return
    try:
        hook(alert)
    except Exception:  # noqa: BLE001 - an alert hook must never break a send
        _log.exception("breaker.alert_hook_failed", kind=alert.kind, incident=alert.incident)


def default_async_retrying(*, attempts: int = 3, budget: float = 5.0) -> AsyncRetrying:
    """Return :func:`default_retrying`'s policy for asyncio clients (sleeps with asyncio)."""
    return AsyncRetrying(
        stop=stop_after_attempt(attempts) | stop_after_delay(budget),
        wait=wait_random_exponential(multiplier=0.05, max=1.0),
        retry=retry_if_exception(is_retryable),
        reraise=True,
    )


RetryingT = TypeVar("RetryingT", Retrying, AsyncRetrying)


def within_budget(
    retrying: RetryingT, timeout: float | None, clock: Clock
) -> tuple[RetryingT, float | None]:
    """Return ``retrying`` stopped by a call's budget, and the call's end on ``clock``.

    No attempt starts, and no wait before one is slept, past ``timeout``
    seconds from now. Judged on the client's clock, so that the vendor's last
    error is what surfaces, not a "no time left" attempt that never went out.
    Written once for both clients.
    """
    if timeout is None:
        return retrying, None
    end = clock() + timeout

    def out_of_time(state: RetryCallState) -> bool:
        return clock() + state.upcoming_sleep >= end

    stop = stop_any(
        cast("stop_base", retrying.stop),
        stop_before_delay(timeout),
        cast("stop_base", out_of_time),
    )
    return retrying.copy(stop=stop), end


class BreakerListener(Protocol):
    """Receives breaker transitions; all methods are optional in spirit."""

    def state_change(self, old: State, new: State, reason: str) -> None:
        """Called after the breaker moved from ``old`` to ``new``."""


class CircuitBreaker:
    """Consecutive-failure breaker with a cool-down and a single half-open probe.

    * ServiceError/TransportError (and any other failure that is no answer)
      count; ``threshold`` in a row open it. CircuitOpen from an inner
      breaker counts for nothing: no call was made.
    * Unauthorized/BalanceExhausted open it at once for ``hard_cooldown``.
    * Any other outcome (an answer, NumberNotFound, RequestRejected) shows
      the upstream is healthy and resets the count; an open breaker ignores
      it (a late answer to an old call) and waits for its probe.
    * After the cool-down one caller probes (half-open); success closes it,
      failure opens it again. ``on_alert`` fires once per incident, and once
      more with a ``recovered`` alert when the incident ends (the breaker
      closes, by a probe or :meth:`reset`).

    Thread-safe; the asyncio router shares it too (no call here waits).
    """

    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown: float = 10.0,
        hard_cooldown: float = 60.0,
        clock: Clock = time.monotonic,
        on_alert: Callable[[Alert], None] | None = None,
        listeners: list[BreakerListener] | None = None,
    ) -> None:
        self._core = BreakerCore(
            threshold=threshold, cooldown=cooldown, hard_cooldown=hard_cooldown
        )
        self.on_alert = on_alert
        self.listeners: list[BreakerListener] = list(listeners or [])
        self._clock = clock
        self._lock = threading.Lock()

    # Settings and counters read through to the core.
    @property
    def threshold(self) -> int:
        """Return how many failures in a row open the breaker."""
        return self._core.threshold

    @property
    def cooldown(self) -> float:
        """Return how long an outage keeps the breaker open before a probe."""
        return self._core.cooldown

    @property
    def hard_cooldown(self) -> float:
        """Return how long an account problem keeps the breaker open."""
        return self._core.hard_cooldown

    @property
    def opened(self) -> int:
        """Return how many times the breaker opened."""
        return self._core.opened

    @property
    def clock(self) -> Clock:
        """Return the clock the breaker times its cool-downs with."""
        return self._clock

    @property
    def state(self) -> State:
        """Return the current state (an open breaker past its cool-down reads half-open)."""
        return self._core.current(self._clock())

    @property
    def failures(self) -> int:
        """Return the current number of consecutive failures."""
        return self._core.failures

    @property
    def incident(self) -> Alert | None:
        """Return the alert of the incident in progress, or None."""
        return self._core.incident

    def rejecting(self) -> bool:
        """Return True while open and cooling down: a call now would be refused (no lock)."""
        core = self._core
        return core.state == "open" and self._clock() < core.open_until

    def allow(self) -> bool:
        """Return True when a call may go upstream now (claims the probe when half-open)."""
        if self._core.state == "closed":  # lock-free fast path; a stale read only delays a probe
            return True
        with self._lock:
            allowed, change = self._core.allow(self._clock())
        self._notify(change)
        return allowed

    def release(self) -> None:
        """Give back a probe claimed by allow() when no call was made after all."""
        with self._lock:
            self._core.release()

    def success(self) -> None:
        """Record an answer from a healthy upstream (while open, only a probe can close it)."""
        core = self._core
        if core.state == "closed" and not core.failures:
            return  # closed means no incident: nothing can end here
        with self._lock:
            before = core.incident
            change = core.success()
            over = ended(before, core.incident, self._clock(), _ANSWERS_AGAIN)
        self._notify(change)
        if over is not None:
            call_alert_hook(self.on_alert, over)

    def failure(self, exc: BaseException) -> Alert | None:
        """Record a failed call; decides whether the breaker opens. Return the alert it raised.

        ``on_alert`` also hears the ``recovered`` alert of an incident this
        outcome ended (an answer closing a half-open breaker, or a new kind
        of incident replacing the old one); that one is not returned.
        """
        with self._lock:
            now = self._clock()
            before = self._core.incident
            change, alert = self._core.failure(exc, now)
            over = ended(before, self._core.incident, now, _ANSWERS_AGAIN)
        self._notify(change)
        if over is not None:
            call_alert_hook(self.on_alert, over)
        if alert is not None:
            call_alert_hook(self.on_alert, alert)
        return alert

    def reset(self) -> None:
        """Close the breaker by hand (e.g. after topping up the account); ends its incident."""
        with self._lock:
            before = self._core.incident
            change = self._core.reset()
            over = ended(before, None, self._clock(), "the breaker was reset by hand")
        self._notify(change)
        if over is not None:
            call_alert_hook(self.on_alert, over)

    def _notify(self, change: Change | None) -> None:
        if change is None:
            return
        old, new, reason = change
        # The breaker logs its own transitions: once, however many routers share it.
        _log.warning("breaker.state", old=old, new=new, reason=reason)
        for listener in self.listeners:
            try:
                listener.state_change(old, new, reason)
            except Exception:  # noqa: BLE001 - listeners observe; they must not break routing
                _log.exception("breaker.listener_failed")

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, failures={self._core.failures})"
