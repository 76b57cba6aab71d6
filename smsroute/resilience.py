"""Retry policy and circuit breaker.

The breaker is a small state machine with an injectable clock (pybreaker
reads the wall clock itself, so its tests sleep; ours never do). Caller
mistakes never open it; account problems open it at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from smsroute._log import get_logger
from smsroute.errors import (
    ApiError,
    BalanceExhausted,
    CircuitOpen,
    ServiceError,
    TransportError,
    Unauthorized,
)

__all__ = [
    "RETRYABLE",
    "Alert",
    "BreakerListener",
    "CircuitBreaker",
    "State",
    "default_retrying",
    "is_retryable",
]

_log = get_logger()

RETRYABLE: Final = (ServiceError, TransportError)
# Nothing succeeds after these until a person acts: open at once and alert.
HARD: Final = (Unauthorized, BalanceExhausted)

State = Literal["closed", "open", "half-open"]


def is_retryable(exc: BaseException) -> bool:
    """Return True for errors worth another paid attempt: ServiceError, most TransportErrors."""
    return isinstance(exc, RETRYABLE) and getattr(exc, "retryable", True)


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


@dataclass(frozen=True, slots=True)
class Alert:
    """An incident that needs a person: the breaker opened for this reason."""

    kind: str
    """``unauthorized``, ``balance_exhausted`` or ``upstream_down``."""
    code: int | None
    reason: str
    at: float = field(default=0.0, compare=False)


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
      failure opens it again. ``on_alert`` fires once per incident.
    """

    def __init__(
        self,
        *,
        threshold: int = 5,
        cooldown: float = 10.0,
        hard_cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        on_alert: Callable[[Alert], None] | None = None,
        listeners: list[BreakerListener] | None = None,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.threshold = threshold
        self.cooldown = cooldown
        self.hard_cooldown = hard_cooldown
        self.on_alert = on_alert
        self.listeners: list[BreakerListener] = list(listeners or [])
        self._clock = clock
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._open_until = 0.0
        self._probing = False
        self._incident: Alert | None = None
        self.opened = 0  # times the breaker opened, for stats

    @property
    def state(self) -> State:
        """Return the current state (an open breaker past its cool-down reads half-open)."""
        if self._state == "open" and self._clock() >= self._open_until:
            return "half-open"
        return self._state

    @property
    def failures(self) -> int:
        """Return the current number of consecutive failures."""
        return self._failures

    @property
    def incident(self) -> Alert | None:
        """Return the alert of the incident in progress, or None."""
        return self._incident

    def rejecting(self) -> bool:
        """Return True while open and cooling down: a call now would be refused (no lock)."""
        return self._state == "open" and self._clock() < self._open_until

    def allow(self) -> bool:
        """Return True when a call may go upstream now (claims the probe when half-open)."""
        if self._state == "closed":  # lock-free fast path; a stale read only delays a probe
            return True
        change = None
        with self._lock:
            state: State = self._state  # re-read under the lock: another thread may have moved it
            if state == "closed":
                return True
            if state == "open":
                if self._clock() < self._open_until:
                    return False
                change = (self._state, "half-open")
                self._state = "half-open"
            if self._probing:
                allowed = False
            else:
                self._probing = True
                allowed = True
        if change:
            self._notify(change[0], "half-open", "cool-down over")
        return allowed

    def release(self) -> None:
        """Give back a probe claimed by allow() when no call was made after all."""
        with self._lock:
            self._probing = False

    def success(self) -> None:
        """Record an answer from a healthy upstream (while open, only a probe can close it)."""
        if self._state == "closed" and not self._failures:
            return
        self._close("probe succeeded", force=False)

    def failure(self, exc: BaseException) -> None:
        """Record a failed call; decides whether the breaker opens."""
        if isinstance(exc, HARD):
            kind = "unauthorized" if isinstance(exc, Unauthorized) else "balance_exhausted"
            self._open(kind, exc, self.hard_cooldown, force=True)
        elif isinstance(exc, ApiError) and not isinstance(exc, RETRYABLE):
            self.success()  # the upstream answered: a caller's problem, not an outage
        elif isinstance(exc, CircuitOpen):
            self.release()  # an inner breaker refused: no call was made, nothing learnt
        else:
            # ServiceError, TransportError, or anything else that is no answer
            # (a bare LookupFailed from a user's client): the upstream is not answering.
            self._open("upstream_down", exc, self.cooldown, force=False)

    def reset(self) -> None:
        """Close the breaker by hand (e.g. after topping up the account)."""
        self._close("reset by hand", force=True)

    def _close(self, reason: str, *, force: bool) -> None:
        with self._lock:
            old = self._state
            if old == "open" and not force:
                # An answer to a call sent before the breaker opened proves
                # nothing (and would end the incident, so the next failure
                # alerts again): only the half-open probe may close it.
                return
            self._failures = 0
            self._probing = False
            self._state = "closed"
            self._incident = None
        if old != "closed":
            self._notify(old, "closed", reason)

    def _open(self, kind: str, exc: BaseException, cooldown: float, *, force: bool) -> None:
        alert = None
        with self._lock:
            old = self._state
            self._failures += 1
            self._probing = False
            if not (force or old == "half-open" or self._failures >= self.threshold):
                return
            self._state = "open"
            self._open_until = self._clock() + cooldown
            if old != "open":
                self.opened += 1
            # One alert per incident: a failed probe or a second send hitting
            # the same account problem is the same incident.
            if self._incident is None or self._incident.kind != kind:
                code = getattr(exc, "code", None)
                reason = getattr(exc, "reason", None) or str(exc)
                alert = self._incident = Alert(kind, code, reason, self._clock())
        if old != "open":
            self._notify(old, "open", kind)
        if alert is not None and self.on_alert is not None:
            try:
                self.on_alert(alert)
            except Exception:  # noqa: BLE001 - an alert hook must never break a send
                _log.exception("breaker.alert_hook_failed", kind=kind)

    def _notify(self, old: State, new: State, reason: str) -> None:
        # The breaker logs its own transitions: once, however many routers share it.
        _log.warning("breaker.state", old=old, new=new, reason=reason)
        for listener in self.listeners:
            try:
                listener.state_change(old, new, reason)
            except Exception:  # noqa: BLE001 - listeners observe; they must not break routing
                _log.exception("breaker.listener_failed")

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, failures={self._failures})"
