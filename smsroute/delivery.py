"""The send path: one reroute when a gateway refuses the number as not its own; routed functions."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from smsroute._log import get_logger
from smsroute.decision import Decision
from smsroute.errors import ConfigurationError, WrongCarrier
from smsroute.numbers import mask, mask_numbers

__all__ = ["awrapped", "deliver", "log_reroute", "wrapped"]

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


def wrapped(
    fn: Callable[..., R],
    route: Callable[[Any], Decision],
    deliver_: Callable[[Decision, Callable[[Decision], R]], R],
) -> Callable[..., R]:
    """Return ``fn`` routed: its number argument is routed, normalised, and the Decision passed.

    ``fn`` takes the number as its first parameter (after ``self`` or ``cls``:
    methods work) and a ``route`` keyword. The number may come positionally or
    by keyword; the returned function shows ``fn``'s signature without ``route``.
    """
    signature, number = _routed_signature(fn)

    @functools.wraps(fn)
    def routed(*args: Any, **kwargs: Any) -> R:
        bound = signature.bind(*args, **kwargs)
        decision = route(bound.arguments[number])

        def invoke(d: Decision) -> R:
            bound.arguments[number] = d.mobile
            return fn(*bound.args, route=d, **bound.kwargs)

        return deliver_(decision, invoke)

    routed.__signature__ = signature  # type: ignore[attr-defined]
    return routed


def awrapped(
    fn: Callable[..., Awaitable[R]],
    route: Callable[[Any], Awaitable[Decision]],
    deliver_: Callable[[Decision, Callable[[Decision], Any]], Awaitable[Any]],
) -> Callable[..., Awaitable[R]]:
    """Return the coroutine function ``fn`` routed, as :func:`wrapped` does for plain ones."""
    signature, number = _routed_signature(fn)

    @functools.wraps(fn)
    async def routed(*args: Any, **kwargs: Any) -> R:
        bound = signature.bind(*args, **kwargs)
        decision = await route(bound.arguments[number])

        def invoke(d: Decision) -> Awaitable[R]:
            bound.arguments[number] = d.mobile
            return fn(*bound.args, route=d, **bound.kwargs)

        result: R = await deliver_(decision, invoke)
        return result

    routed.__signature__ = signature  # type: ignore[attr-defined]
    return routed


def _routed_signature(fn: Callable[..., Any]) -> tuple[inspect.Signature, str]:
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    if "route" not in signature.parameters and not any(p.kind is p.VAR_KEYWORD for p in params):
        raise ConfigurationError(f"{fn.__qualname__} must take a keyword argument 'route'")
    shown = [p for p in params if p.name != "route"]
    positional = [p for p in shown if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if positional and positional[0].name in ("self", "cls"):
        positional = positional[1:]
    if not positional:
        raise ConfigurationError(f"{fn.__qualname__} must take the number as its first argument")
    return signature.replace(parameters=shown), positional[0].name
