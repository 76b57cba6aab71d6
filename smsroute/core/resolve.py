"""The miss path as a plan: a generator that says what to do next and is fed the outcomes.

A router asks :func:`plan` what to do for a number the cache could not
answer, and performs each :class:`Step` it yields: join the in-process
flight, follow another caller's, claim the number fleet-wide, wait for the
fleet, ask the vendor with so much time, tell the breaker, store, release.
It sends back ``(result, now)``, or throws the exception the step raised
(cancellation included) into the generator, which then says how to clean up
(give back a half-open probe, release a claim) before the exception goes
on. The plan returns an :class:`Outcome`; :func:`settle` turns it into an
answer or a fallback for each caller. The models are tenacity's ``iter()``
(DoAttempt/DoSleep) and psycopg 3's generators that yield what to wait for:
the decisions are written once, and the threaded and the asyncio router
differ only in how they wait.

The plan never waits past ``end``: every timeout it yields fits in what is
left (``tests/test_core_resolve.py`` checks this and the other invariants
with hypothesis).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Final

from smsroute import codec
from smsroute.core.outcome import CIRCUIT_OPEN, check_answer, judge_error, reason, usable_stale
from smsroute.core.stats import Source
from smsroute.errors import (
    CircuitOpen,
    ConfigurationError,
    LookupFailed,
    NumberNotFound,
    TransportError,
)
from smsroute.models import CarrierInfo

__all__ = [
    "ALLOW",
    "HEADROOM",
    "JOIN",
    "READ",
    "RELEASE",
    "SUCCESS",
    "Allow",
    "Answered",
    "Ask",
    "Claim",
    "Failed",
    "Failure",
    "Fallback",
    "Follow",
    "GiveBack",
    "Join",
    "Outcome",
    "Plan",
    "Read",
    "Release",
    "Step",
    "Store",
    "Success",
    "WaitFleet",
    "after_refusal",
    "check_deadline",
    "from_cache",
    "plan",
    "settle",
    "shortcut",
]

HEADROOM: Final = 0.02
"""Seconds of a deadline kept back from the vendor call (at most; 10% of short budgets).

For what follows a timed-out call: unwinding, the fallback, and many callers
timing out at once taking turns on one CPU, so that a route returns within
its deadline, not just after it.
"""
MIN_CLAIM: Final = 0.05  # a fleet claim outlives a very short deadline a little


# -- steps ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Join:
    """Join the in-process flight for the number. Send True when this caller leads it.

    Always a plan's first step: a driver may join before it runs the rest.
    """


@dataclass(frozen=True, slots=True)
class Follow:
    """Wait up to ``timeout`` s for the leader's Outcome. Send it, or None if none came."""

    timeout: float


@dataclass(frozen=True, slots=True)
class Read:
    """Read the cache again (errors not counted: the first read counted them). Send the hit."""


@dataclass(frozen=True, slots=True)
class Claim:
    """Claim the number fleet-wide for ``ttl`` s.

    Send True when this caller should ask (it won the claim, or the shared
    store failed and there is no fleet to coordinate with), False when
    another worker holds it or a fresh answer is already stored.
    """

    ttl: float


@dataclass(frozen=True, slots=True)
class WaitFleet:
    """Wait up to ``timeout`` s for the claim holder's fresh answer. Send the hit or None."""

    timeout: float


@dataclass(frozen=True, slots=True)
class Allow:
    """Ask the breaker whether a call may go out now. Send True or False."""


@dataclass(frozen=True, slots=True)
class Ask:
    """Ask the vendor, within ``timeout`` s. Send the CarrierInfo, or throw what it raised."""

    timeout: float


@dataclass(frozen=True, slots=True)
class Success:
    """Tell the breaker the upstream answered."""


@dataclass(frozen=True, slots=True)
class Failure:
    """Tell the breaker the call failed with ``error``; count it under ``code``."""

    error: LookupFailed
    code: str


@dataclass(frozen=True, slots=True)
class GiveBack:
    """Give the breaker its probe back: no call was made, or it was cancelled; count ``code``."""

    code: str | None = None


@dataclass(frozen=True, slots=True)
class Store:
    """Store ``answer`` in the cache (guarded: a failed write is only counted)."""

    answer: int


@dataclass(frozen=True, slots=True)
class Release:
    """Release this caller's fleet claim."""


Step = (
    Join
    | Follow
    | Read
    | Claim
    | WaitFleet
    | Allow
    | Ask
    | Success
    | Failure
    | GiveBack
    | Store
    | Release
)
JOIN: Final = Join()
READ: Final = Read()
ALLOW: Final = Allow()
SUCCESS: Final = Success()
RELEASE: Final = Release()


# -- outcomes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answered:
    """An answer code to route by, and where it came from."""

    answer: int
    source: Source
    info: CarrierInfo | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """No answer: the error (None for a wait that ran out) and the fallback reason."""

    error: LookupFailed | None
    reason: str


@dataclass(frozen=True, slots=True)
class Fallback:
    """Route by ``stale`` (an answer code) when given, else by the segment table."""

    stale: int | None
    reason: str
    error: LookupFailed | None = None
    """Why there is no answer: what ``route(..., fallback=False)`` raises."""


Outcome = Answered | Failed
Plan = Generator[Step, tuple[Any, float], Outcome]


def check_deadline(deadline: float, *, spent_ok: bool = False) -> float:
    """Return ``deadline`` as float seconds; refuse NaN, infinity and (unless ``spent_ok``) <= 0."""
    try:
        value = float(deadline)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"deadline must be a number of seconds, not {deadline!r}"
        ) from None
    # NaN and infinity bound no wait; a per-call deadline may be spent already.
    if not math.isfinite(value) or (value <= 0 and not spent_ok):
        raise ConfigurationError("deadline must be a positive, finite number of seconds")
    return value


def _failed(error: LookupFailed) -> Failed:
    return Failed(error, reason(error))


def shortcut(stale: tuple[int, bool] | None, *, shared: bool, rejecting: bool) -> Fallback | None:
    """Return the fallback when no lookup can help (the breaker is open), else None.

    With a shared cache the flight still runs: another worker of the fleet
    may bring the answer. Checked before a plan is made: half the cost of a
    send while the vendor is down is the flight it skips.
    """
    if rejecting and not shared:
        return Fallback(
            usable_stale(stale, None),
            CIRCUIT_OPEN,
            CircuitOpen("circuit open: upstream not called"),
        )
    return None


def from_cache(hit: tuple[int, bool] | None) -> Answered | Fallback | None:
    """Return the decision a cache hit makes by itself: an answer, a cached negative, or None."""
    if hit is None or not hit[1]:
        return None
    if codec.is_negative(hit[0]):
        return Fallback(None, "number not found (cached)", NumberNotFound(-4, "not found (cached)"))
    return Answered(hit[0], "cache")


def after_refusal(hit: tuple[int, bool] | None, refused: int | None) -> Answered | None:
    """Return the answer to reroute by after a gateway refused ``refused``, if the cache has one.

    A burst of sends to one ported number all come back WrongCarrier. The
    first one's refresh pays for the new answer; the others must use it, not
    delete it and pay again: a fresh cached answer other than the refused one
    is the new answer. None: drop the refused one and ask again.
    """
    if hit is None or not hit[1] or hit[0] == refused or codec.is_negative(hit[0]):
        return None
    return Answered(hit[0], "cache")


def settle(outcome: Outcome, stale: tuple[int, bool] | None) -> Answered | Fallback:
    """Return what one caller does with a flight's outcome, given its own stale entry."""
    if isinstance(outcome, Answered):
        return outcome
    error = outcome.error if outcome.error is not None else TransportError(outcome.reason)
    return Fallback(usable_stale(stale, outcome.error), outcome.reason, error)


def _fresh(hit: object, where: str) -> Outcome | None:
    if not isinstance(hit, tuple) or not hit[1]:
        return None
    if codec.is_negative(hit[0]):
        return _failed(NumberNotFound(-4, f"not found ({where})"))
    return Answered(hit[0], "cache")


# -- the plan ---------------------------------------------------------------------------


def plan(*, now: float, end: float, shared: bool) -> Plan:
    """Return the plan for one miss that must be decided by ``end`` (on the driver's clock)."""
    leader, now = yield JOIN
    if not leader:
        outcome, now = yield Follow(max(0.0, end - now))
        if outcome is None:
            return Failed(None, "deadline: another lookup of it is slow")
        return outcome  # type: ignore[no-any-return]
    if not shared:
        # Look again now that the flight is ours: a caller that missed just
        # before another leader stored its answer and landed its flight would
        # otherwise lead a second flight and pay a second query (measured:
        # 0-7 extra per 20,000 Zipf sends on 16 threads).
        hit, now = yield READ
        cached = _fresh(hit, "cached")
        if cached is not None:
            return cached
        return (yield from _ask(end, now))
    return (yield from _fleet(end, now))


def _fleet(end: float, now: float) -> Plan:
    # Fleet-wide single-flight: one worker of the fleet pays, the others wait
    # for its answer to land in the shared cache.
    claimed, now = yield Claim(max(end - now, MIN_CLAIM))
    held = bool(claimed)
    try:
        if not held:
            hit, now = yield WaitFleet(max(0.0, end - now))
            # Only a fresh answer is the holder's: a stale one was there before
            # (it is why this is a miss), so ask or fall back to it.
            cached = _fresh(hit, "answered to another worker")
            if cached is not None:
                return cached
            if end <= now:
                return _failed(TransportError("deadline: another worker's lookup is slow"))
            # The holder let go without an answer (its lookup failed or ran out
            # of time). Claim again rather than ask at once: otherwise every
            # waiting worker of the fleet would pay for the number.
            claimed, now = yield Claim(max(end - now, MIN_CLAIM))
            held = bool(claimed)
            if not held:
                return _failed(TransportError("another worker's lookup of it failed"))
        outcome = yield from _ask(end, now)
    except GeneratorExit:
        raise  # the driver dropped the plan: nothing may be yielded now
    except BaseException:
        if held:
            yield RELEASE
        raise
    yield RELEASE
    return outcome


def _ask(end: float, now: float) -> Plan:
    allowed, now = yield ALLOW
    if not allowed:
        return _failed(CircuitOpen("circuit open: upstream not called"))
    left = end - now
    if left <= 0:
        yield GiveBack()
        return _failed(TransportError("deadline: no time left for the upstream"))
    left -= min(HEADROOM, 0.1 * left)
    try:
        got, now = yield Ask(left)
        info = check_answer(got)
    except GeneratorExit:
        raise
    except Exception as exc:  # noqa: BLE001 - every client error is judged, none escapes
        judged = judge_error(exc)
        if judged.report:
            yield Failure(judged.error, judged.code)
        else:
            yield GiveBack(judged.code)
        if judged.negative:
            yield Store(codec.NOT_FOUND)
        return _failed(judged.error)
    except BaseException:
        # Cancelled mid-call (a task cancelled, KeyboardInterrupt): give back a
        # half-open probe, or the breaker would wait for it forever.
        yield GiveBack()
        raise
    yield SUCCESS
    answer = codec.encode(info)
    yield Store(answer)
    return Answered(answer, "upstream", info)
