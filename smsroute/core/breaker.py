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
  failure opens it again. One alert per incident, and one ``recovered``
  alert when it ends (:func:`ended`, which the drivers call around a move).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple

from smsroute.core.outcome import Blame, blame
from smsroute.errors import Unauthorized

__all__ = ["HARD_KINDS", "RECOVERED", "Alert", "BreakerCore", "Change", "State", "ended"]

State = Literal["closed", "open", "half-open"]
HARD_KINDS: Final = ("unauthorized", "balance_exhausted")
"""The incidents that need a person (a wrong key, an empty account): only an answer ends them."""


RECOVERED: Final = "recovered"
"""The :attr:`Alert.kind` of an alert that says an incident is over."""


@dataclass(frozen=True, slots=True)
class Alert:
    """An incident that needs a person (the breaker opened, the balance ran low), or its end.

    ``kind`` is what happened: ``unauthorized`` (-1, -9), ``balance_exhausted``
    (-5, or a prepaid balance at 0), ``upstream_down`` (the breaker opened on
    failures), ``balance_low`` (under the watcher's low-water mark), or
    ``recovered``: the incident named by ``incident`` is over (sent once per
    alert, when the breaker closes again or the balance is back). ``incident``
    is the key a pager groups by and :class:`smsroute.AlertHub` dedupes on: the
    incident's kind, for an alert and for its recovery alike.

    .. versionchanged:: 0.2.0
       ``incident``, and ``recovered`` alerts.
    """

    kind: str
    """What happened (see above); ``recovered`` for the end of an incident."""
    code: int | None
    """The vendor's code (-1, -5, -9 ...) when it gave one; None for a recovery."""
    reason: str
    at: float = field(default=0.0, compare=False)
    """The ``clock`` time of the breaker or watcher that raised it."""
    incident: str = ""
    """The incident this alert opens or ends; defaults to ``kind``."""

    def __post_init__(self) -> None:
        if not self.incident:
            object.__setattr__(self, "incident", self.kind)

    @property
    def recovered(self) -> bool:
        """Return True for an alert that says its incident is over."""
        return self.kind == RECOVERED

    def ended(self, reason: str, at: float) -> Alert:
        """Return the ``recovered`` alert that ends this alert's incident."""
        return Alert(RECOVERED, None, reason, at, self.incident)


def ended(before: Alert | None, after: Alert | None, now: float, how: str) -> Alert | None:
    """Return the recovery of incident ``before`` if the breaker's incident is now ``after``.

    None while the incident goes on (``after is before``); an incident
    replaced by another (a vendor that was down now answers -1) is over too.
    """
    if before is None or after is before:
        return None
    how = how if after is None else f"now {after.kind}"
    return before.ended(f"{before.kind} is over: {how}", now)


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
        # A timeout on the probe of an account problem is not its end either
        # (only an answer proves the key or the balance was fixed): a plain
        # failure keeps it; another account problem replaces it.
        current = self.incident
        same = current is not None and (
            current.kind == kind or (current.kind in HARD_KINDS and not force)
        )
        if not same:
            code = getattr(exc, "code", None)
            reason = getattr(exc, "reason", None) or str(exc)
            alert = self.incident = Alert(kind, code, reason, now)
        return (Change(old, "open", kind) if old != "open" else None), alert
