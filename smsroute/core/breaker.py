"""Circuit-breaker transitions with an explicit ``now``: a state and the moves between them.

:class:`BreakerCore` holds the state and changes it; it never reads a clock,
takes a lock or logs. Each move returns what changed (a :class:`Change`, an
:class:`Alert`), so that the driver (:class:`smsroute.CircuitBreaker`) can
log and alert outside its lock.

* Outcomes that are no answer count; ``threshold`` in a row open it for
  ``cooldown``. An account problem opens it at once for ``hard_cooldown``.
* An answer (even "no such number") resets the count; an open breaker
  ignores it (a late answer to an old call) and waits for its probe.
* After the cool-down one caller probes (half-open); success closes it,
  failure opens it again. One alert per incident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from smsroute.core.outcome import Blame, blame
from smsroute.errors import Unauthorized

__all__ = ["Alert", "BreakerCore", "Change", "State"]

State = Literal["closed", "open", "half-open"]


@dataclass(frozen=True, slots=True)
class Alert:
    """An incident that needs a person: the breaker opened for this reason."""

    kind: str
    """``unauthorized``, ``balance_exhausted`` or ``upstream_down``."""
    code: int | None
    reason: str
    at: float = field(default=0.0, compare=False)


class Change(NamedTuple):
    """A state transition, for logs and listeners."""

    old: State
    new: State
    reason: str


class BreakerCore:
    """The breaker's state and transitions; every move takes ``now``. Not thread-safe."""

    __slots__ = (
        "cooldown",
        "failures",
        "hard_cooldown",
        "incident",
        "open_until",
        "opened",
        "probing",
        "state",
        "threshold",
    )

    def __init__(self, *, threshold: int = 5, cooldown: float = 10.0, hard_cooldown: float = 60.0):
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.threshold = threshold
        self.cooldown = cooldown
        self.hard_cooldown = hard_cooldown
        self.state: State = "closed"
        self.failures = 0
        self.open_until = 0.0
        self.probing = False
        self.incident: Alert | None = None
        self.opened = 0  # times the breaker opened, for stats

    def current(self, now: float) -> State:
        """Return the state as callers see it (open past its cool-down reads half-open)."""
        if self.state == "open" and now >= self.open_until:
            return "half-open"
        return self.state

    def rejecting(self, now: float) -> bool:
        """Return True while open and cooling down: a call now would be refused."""
        return self.state == "open" and now < self.open_until

    def allow(self, now: float) -> tuple[bool, Change | None]:
        """Return whether a call may go upstream now (claiming the probe when half-open)."""
        if self.state == "closed":
            return True, None
        change = None
        if self.state == "open":
            if now < self.open_until:
                return False, None
            change = Change("open", "half-open", "cool-down over")
            self.state = "half-open"
        if self.probing:
            return False, change
        self.probing = True
        return True, change

    def release(self) -> None:
        """Give back a probe claimed by allow() when no call was made after all."""
        self.probing = False

    def success(self) -> Change | None:
        """Record an answer from a healthy upstream (while open, only a probe can close it)."""
        if self.state == "closed" and not self.failures:
            return None
        return self._close("probe succeeded", force=False)

    def failure(self, exc: BaseException, now: float) -> tuple[Change | None, Alert | None]:
        """Record a failed call; return the transition and the alert it causes, if any."""
        verdict = blame(exc)
        if verdict is Blame.HARD:
            kind = "unauthorized" if isinstance(exc, Unauthorized) else "balance_exhausted"
            return self._open(kind, exc, self.hard_cooldown, now, force=True)
        if verdict is Blame.HEALTHY:
            return self.success(), None
        if verdict is Blame.NOTHING:
            self.release()
            return None, None
        return self._open("upstream_down", exc, self.cooldown, now, force=False)

    def reset(self) -> Change | None:
        """Close the breaker by hand (e.g. after topping up the account)."""
        return self._close("reset by hand", force=True)

    def _close(self, reason: str, *, force: bool) -> Change | None:
        old = self.state
        if old == "open" and not force:
            # An answer to a call sent before the breaker opened proves
            # nothing (and would end the incident, so the next failure
            # alerts again): only the half-open probe may close it.
            return None
        self.failures = 0
        self.probing = False
        self.state = "closed"
        self.incident = None
        return Change(old, "closed", reason) if old != "closed" else None

    def _open(
        self, kind: str, exc: BaseException, cooldown: float, now: float, *, force: bool
    ) -> tuple[Change | None, Alert | None]:
        old = self.state
        self.failures += 1
        self.probing = False
        if not (force or old == "half-open" or self.failures >= self.threshold):
            return None, None
        self.state = "open"
        self.open_until = now + cooldown
        if old != "open":
            self.opened += 1
        alert = None
        # One alert per incident: a failed probe or a second send hitting
        # the same account problem is the same incident.
        if self.incident is None or self.incident.kind != kind:
            code = getattr(exc, "code", None)
            reason = getattr(exc, "reason", None) or str(exc)
            alert = self.incident = Alert(kind, code, reason, now)
        return (Change(old, "open", kind) if old != "open" else None), alert
