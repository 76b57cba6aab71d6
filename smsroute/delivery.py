"""The send path's one rule: a gateway that refuses the number as not its own gets one reroute."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from smsroute._log import get_logger
from smsroute.decision import Decision
from smsroute.errors import WrongCarrier
from smsroute.numbers import mask, mask_numbers

__all__ = ["deliver", "log_reroute"]

R = TypeVar("R")
_log = get_logger()


def log_reroute(refused: Decision, fresh: Decision, exc: WrongCarrier) -> None:
    """Log a WrongCarrier reroute (the number masked, the gateway's text capped and masked)."""
    _log.warning(
        "route.wrong_carrier",
        mobile=mask(refused.mobile),
        was=str(refused.carrier),
        now=str(fresh.carrier),
        source=fresh.source,
        message=mask_numbers(str(exc)[:80]),
    )


def deliver(
    decision: Decision,
    call: Callable[[Decision], R],
    reroute: Callable[[Decision], Decision],
) -> R:
    """Call the gateway; on WrongCarrier reroute once, unless the operator stays the same."""
    try:
        return call(decision)
    except WrongCarrier as exc:
        fresh = reroute(decision)
        log_reroute(decision, fresh, exc)
        if fresh.carrier == decision.carrier:
            raise
        return call(fresh)
