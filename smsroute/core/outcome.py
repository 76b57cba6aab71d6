"""Judging what a lookup brought back: what the breaker learns, what is cached, why we fell back.

One place answers, for every front end:

* which errors count against the breaker (caller mistakes and per-number
  answers never do; account problems open it at once),
* which outcomes are stored as negatives (the vendor does not know the number),
* when a stale answer may still be served,
* the fallback reason shown in ``Decision.reason`` and counted in stats.
"""

from __future__ import annotations

import enum
from typing import Final, NamedTuple

from smsroute import codec
from smsroute.core.vendor import unusable
from smsroute.errors import (
    ApiError,
    BalanceExhausted,
    CircuitOpen,
    InvalidNumber,
    LookupFailed,
    NumberNotFound,
    ServiceError,
    Throttled,
    TransportError,
    Unauthorized,
)
from smsroute.models import CarrierInfo

__all__ = [
    "CIRCUIT_OPEN",
    "HARD",
    "RETRYABLE",
    "Blame",
    "Judgement",
    "blame",
    "busy_error",
    "check_answer",
    "error_label",
    "is_retryable",
    "is_transient",
    "judge_error",
    "overload_note",
    "overloaded",
    "reason",
    "reason_key",
    "usable_stale",
]

RETRYABLE: Final = (ServiceError, TransportError)
KNOWN_CODES: Final = frozenset({1, -1, -2, -3, -4, -5, -8, -9})
"""The vendor's documented codes: counted under their own label, any other as ``other``."""
# Nothing succeeds after these until a person acts: open at once and alert.
HARD: Final = (Unauthorized, BalanceExhausted)
CIRCUIT_OPEN: Final = "circuit open"


class Blame(enum.Enum):
    """What an outcome tells the breaker about the upstream."""

    HEALTHY = "healthy"
    """It answered (even "no such number"): resets the failure count."""
    DOWN = "down"
    """No answer: counts towards opening."""
    HARD = "hard"
    """An account problem (wrong key, no balance): opens at once, alerts."""
    NOTHING = "nothing"
    """No call was made (an inner breaker refused), or this process was too busy to hear
    the answer (an overloaded timeout): gives back a probe, learns nothing."""


LATE_FLOOR: Final = 0.02
LATE_SHARE: Final = 0.1


def overloaded(late: float, budget: float) -> bool:
    """Return True when a timeout that fired ``late`` seconds after its time says "we were busy".

    A timer on a healthy event loop (or a healthy thread's watchdog) fires
    within a millisecond or two of its time. One that fires a tenth of
    its budget late, and at least 20 ms, means this process could not run
    for that long (a burst of callers saturating the CPU, a blocking call
    on the loop): the vendor's answer may well have been waiting in the
    socket. Such a timeout says nothing about the vendor, so it must not
    open the breaker: a breaker opened by local overload turns every miss
    of the next cool-down into a segment-table guess.
    """
    return late > max(LATE_FLOOR, LATE_SHARE * budget)


def overload_note(late: float, budget: float) -> str:
    """Return what a timeout's message adds when :func:`overloaded` excuses it, else ""."""
    if not overloaded(late, budget):
        return ""
    return f" (this process was overloaded: the timeout fired {late * 1000:.0f} ms late)"


def busy_error(message: str) -> TransportError:
    """Return a TransportError that this process's own slowness caused (never the vendor's).

    For a timeout that :func:`overloaded` excuses, and for a budget spent
    before the attempt could even start (no call was made).
    """
    exc = TransportError(message)
    exc.overloaded = True
    return exc


def blame(exc: BaseException) -> Blame:
    """Return what ``exc``, raised by a lookup, says about the upstream's health."""
    if isinstance(exc, HARD):
        return Blame.HARD
    if isinstance(exc, ApiError) and not isinstance(exc, RETRYABLE):
        return Blame.HEALTHY
    if isinstance(exc, CircuitOpen | Throttled) or getattr(exc, "overloaded", False) is True:
        return Blame.NOTHING
    if unusable(exc):
        # A charged answer we cannot use (an unknown operator, a junk Area) is
        # an oddity of one number, not an outage: it must not open the breaker.
        return Blame.HEALTHY
    # ServiceError, TransportError, or anything else that is no answer
    # (a bare LookupFailed from a user's client): the upstream is not answering.
    return Blame.DOWN


def is_retryable(exc: BaseException) -> bool:
    """Return True for errors worth another paid attempt: ServiceError, most TransportErrors."""
    return isinstance(exc, RETRYABLE) and getattr(exc, "retryable", True)


def is_transient(exc: BaseException) -> bool:
    """Return True for a failure that asking again later may cure (an outage, a throttle).

    False for the vendor's answers about the number (-4 not found, 1/-2/-3
    refused) and for account problems that need a person (-1/-9, -5).
    """
    if isinstance(exc, CircuitOpen | Throttled):
        return True
    if unusable(exc):
        return False  # a charged answer about this number: asking again pays again
    return (isinstance(exc, LookupFailed) and not isinstance(exc, ApiError)) or (
        isinstance(exc, ServiceError)
    )


class Judgement(NamedTuple):
    """What to do after a lookup raised."""

    error: LookupFailed
    """What the flight fails with (a foreign exception is wrapped in TransportError)."""
    report: bool
    """True: tell the breaker (``error``); False: only give back its probe (no call was made)."""
    negative: bool
    """True: store ``codec.NOT_FOUND`` for the number."""
    code: str
    """The key the error is counted under in ``stats()["errors"]``."""


def judge_error(exc: Exception) -> Judgement:
    """Return the judgement of an exception raised by a lookup client."""
    if isinstance(exc, NumberNotFound):
        # A healthy upstream: the breaker's failure() closes the failure count.
        return Judgement(exc, True, True, str(exc.code))
    if isinstance(exc, TransportError) and unusable(exc):
        # Charged but unusable: remembered like a -4 (briefly, as a negative),
        # so that the next send of the number does not buy it again.
        return Judgement(exc, True, True, "unusable")
    if isinstance(exc, LookupFailed):
        return Judgement(exc, True, False, error_label(exc))
    if isinstance(exc, InvalidNumber):
        # The client refused the number before asking (its segment table is
        # older than the router's): no call was made, the upstream is not at
        # fault, so the breaker only gets its probe back.
        return Judgement(
            TransportError(f"the client refused the number: {exc}"), False, False, "InvalidNumber"
        )
    wrapped = TransportError(f"the client raised {type(exc).__name__}")
    wrapped.__cause__ = exc
    return Judgement(wrapped, True, False, type(exc).__name__)


def error_label(exc: BaseException) -> str:
    """Return the stats label of an error: its vendor code if documented, else ``other``.

    Bounded: a vendor that invents a code per request must not grow stats()
    and Prometheus by a series per code.
    """
    code = getattr(exc, "code", None)
    if code is None:
        return type(exc).__name__
    return str(code) if code in KNOWN_CODES else "other"


def check_answer(info: object) -> CarrierInfo:
    """Return ``info`` when it is a routable answer; raise TransportError otherwise."""
    if not isinstance(info, CarrierInfo) or info.current is None:
        raise TransportError("the client answered no current operator")
    return info


def usable_stale(stale: tuple[int, bool] | None, error: BaseException | None) -> int | None:
    """Return the stale answer code that may be served after ``error``, or None."""
    # "Not found" (-4) is an answer, and it replaced the stale entry in the
    # cache: serving the stale answer now would send the next message
    # elsewhere. A number the vendor no longer knows was likely cancelled and
    # reissued, back on its original operator, so the segment table is the guess.
    # (A charged but unusable answer replaced it the same way.)
    if (
        stale is None
        or isinstance(error, NumberNotFound)
        or (error is not None and unusable(error))
        or codec.is_negative(stale[0])
    ):
        return None
    return stale[0]


def reason(exc: BaseException | None) -> str:
    """Return the fallback reason for a lookup that ended with ``exc``."""
    if exc is None:
        return "no answer"
    if isinstance(exc, CircuitOpen):
        return CIRCUIT_OPEN
    if isinstance(exc, Throttled):
        return f"throttled: {exc}"
    code = getattr(exc, "code", None)
    name = type(exc).__name__
    text = str(exc)
    if code is None:
        return f"{name}: {text}"
    # The label before the colon is what stats count: bounded like error_label().
    return f"{name} {code if code in KNOWN_CODES else 'other'}: {text}"


def reason_key(text: str) -> str:
    """Return the key a fallback reason is counted under (the part before its colon)."""
    return text.partition(":")[0]
