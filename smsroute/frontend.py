"""BaseRouter: what every router front end shares, everything but the waiting.

The settings (a :class:`RoutingPolicy`), the memo of routes per answer code,
turning a verdict of the core into a :class:`Decision` (answers, stale
answers, segment-table fallbacks), the counters and ``stats()``, the
breaker's side of a miss plan, and the in-process hit test. The threaded
:class:`~smsroute.Router` and the asyncio ``AsyncRouter`` add only how they
wait: threads or the event loop, blocking or awaited I/O.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from smsroute import segments
from smsroute._log import get_logger
from smsroute.cache import MemoryCache
from smsroute.carrier import Carrier
from smsroute.core import resolve
from smsroute.core.breaker import ended
from smsroute.core.freshness import ANSWER_MASK, FRESH_SHIFT, USED_BIT
from smsroute.core.outcome import CIRCUIT_OPEN, reason_key
from smsroute.core.policy import Route, RoutingPolicy, Rule
from smsroute.core.resolve import check_deadline
from smsroute.core.stats import SOURCES, Histogram, RouterStats, Source, build_stats
from smsroute.core.vendor import maybe_billed
from smsroute.decision import Decision
from smsroute.errors import (
    ConfigurationError,
    InvalidNumber,
    LookupFailed,
    NoRoute,
    RequestRejected,
)
from smsroute.models import CarrierInfo
from smsroute.numbers import mask, normalize
from smsroute.resilience import Alert, CircuitBreaker, call_alert_hook
from smsroute.tally import Tally
from smsroute.types import Clock

__all__ = ["DEFAULT_DEADLINE", "BaseRouter"]

DEFAULT_DEADLINE: Final = 0.5  # seconds; the vendor answers in ~10 ms

_log = get_logger()
_STDLIB = logging.getLogger("smsroute")  # what _log writes through; see smsroute._log

# answer code -> (operator, gateway or NoRoute message, routable, hit counter)
_Memo = tuple[Carrier | None, Any, bool, Callable[[], int]]


class BaseRouter:
    """Settings, memo, decisions and counters of a router; subclasses add the waiting."""

    def __init__(
        self,
        client: Any,
        gateways: Mapping[Carrier | str, Any] | RoutingPolicy,
        *,
        default: Any = None,
        cache: Any = None,
        virtual: str = "host",
        rules: Iterable[Rule] | None = None,
        deadline: float = DEFAULT_DEADLINE,
        breaker: CircuitBreaker | None = None,
        on_alert: Callable[[Alert], None] | None = None,
        segments: segments.SegmentTable | None = None,
        unknown_segments: str = "ask",
        clock: Clock = time.monotonic,
    ) -> None:
        self.deadline = check_deadline(deadline)
        if unknown_segments not in ("ask", "reject"):
            raise ConfigurationError(
                f"unknown_segments={unknown_segments!r}: not 'ask' or 'reject'"
            )
        # "ask": a mobile-range number whose segment the table does not know
        # as allocated is looked up (MIIT keeps allocating; the vendor answers
        # -3 for free if it is bad); "reject": InvalidNumber, as the table says.
        self._ask_unknown = unknown_segments == "ask"
        if isinstance(gateways, RoutingPolicy):
            policy = gateways
        else:
            policy = RoutingPolicy(
                gateways, default=default, virtual=virtual, rules=tuple(rules or ())
            )
        self._client = client
        self._memo: dict[int, _Memo] = {}
        self.policy = policy
        # The default cache keeps time on the router's clock, like the breaker.
        self._cache: Any = cache if cache is not None else MemoryCache(clock=clock)
        self._clock = clock
        self._segments = segments
        if breaker is None:
            breaker = CircuitBreaker(clock=clock)
        elif on_alert is not None and breaker.on_alert not in (None, on_alert):
            raise ConfigurationError(
                "on_alert given to both the Router and its breaker: pass it to one"
            )
        # The router calls its own on_alert with what the breaker reports: a
        # breaker passed in is never changed.
        self._on_alert = on_alert if on_alert is not breaker.on_alert else None
        self._alerted: Alert | None = None  # the breaker incident _on_alert was told of
        self.breaker = breaker
        self._upstream_calls = Tally()
        self._coalesced = Tally()
        self._reroutes = Tally()
        self._maybe_billed = Tally()
        # Decisions counted by (source, operator): a hit bumps the counter its
        # memo entry carries, so counting by operator costs the hot path nothing.
        self._by: dict[tuple[Source, Carrier | None], Tally] = {
            (source, carrier): Tally() for source in SOURCES for carrier in (*Carrier, None)
        }
        self.latency = Histogram()
        near = self._cache if isinstance(self._cache, MemoryCache) else getattr(cache, "near", None)
        # The hot path reads the in-process tier's table directly (MemoryCache,
        # or the near tier of a two-tier cache such as RedisCache).
        self._hot = near.entries if isinstance(near, MemoryCache) else None
        self._hot_clock = near.clock if isinstance(near, MemoryCache) else clock
        self._lock = threading.Lock()  # counters read by stats() from any thread
        self._errors: dict[str, int] = {}
        self._reasons: dict[str, int] = {}

    # -- settings ---------------------------------------------------------------------

    @property
    def policy(self) -> RoutingPolicy:
        """Return the routing policy (gateways, default, virtual policy, rules)."""
        return self._policy

    @policy.setter
    def policy(self, policy: RoutingPolicy) -> None:
        # Policy first, then a new memo: a _memo_for() racing this reads the
        # memo first, so it stores a route of the old policy only in the memo
        # nobody reads any more.
        self._policy = policy
        self._memo = {}

    @property
    def default(self) -> Any:
        """Return the gateway for an operator with no gateway of its own (None: NoRoute)."""
        return self._policy.default

    @default.setter
    def default(self, gateway: Any) -> None:
        self.policy = self._policy.copy(default=gateway)

    @property
    def virtual(self) -> str:
        """Return the virtual-operator policy: ``"host"``, ``"reject"`` or a gateway key."""
        return self._policy.virtual

    @virtual.setter
    def virtual(self, policy: str) -> None:
        self.policy = self._policy.copy(virtual=policy)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Return the routing rules, tried in order before the operator's gateway."""
        return self._policy.rules

    @rules.setter
    def rules(self, rules: Iterable[Rule]) -> None:
        self.policy = self._policy.copy(rules=tuple(rules))

    def _normalize(self, number: object) -> str:
        """Return the normalised number, by the router's table and unknown-segment rule."""
        return normalize(number, self._segments, unknown_segments=self._ask_unknown)

    # -- the hot path, for front ends that cannot inline it -----------------------------

    def _hot_hit(self, number: object) -> Decision | None:
        """Return the decision for a fresh, recently used in-process answer, or None."""
        hot = self._hot
        if hot is None or type(number) is not str:
            return None
        value = hot.get(number)
        if value is None or not value & USED_BIT or self._hot_clock() >= value >> FRESH_SHIFT:
            return None
        memo = self._memo.get(value & ANSWER_MASK)
        if memo is None or not memo[2]:
            return None
        memo[3]()
        return Decision(number, memo[0], memo[1], "cache", None, None, value & ANSWER_MASK)

    # -- the breaker's side of a plan ----------------------------------------------------

    def _breaker_step(self, step: resolve.Step) -> Any:
        """Perform an Allow, Success, Failure or GiveBack step (no waiting in any)."""
        if isinstance(step, resolve.Allow):
            return self.breaker.allow()
        if isinstance(step, resolve.Success):
            self.breaker.success()
            if self._alerted is not None:
                self._tell_incident(None)
        elif isinstance(step, resolve.Failure):
            if maybe_billed(step.error):
                self._maybe_billed.bump()
            alert = self.breaker.failure(step.error)
            if alert is not None or self._alerted is not None:
                self._tell_incident(alert)
            self._count_error(step.code, step.error)
        elif isinstance(step, resolve.GiveBack):
            self.breaker.release()
            if step.code is not None:
                self._count_error(step.code, None)
        else:
            raise TypeError(f"not a breaker step: {step!r}")
        return None

    def _tell_incident(self, raised: Alert | None) -> None:
        """Send on_alert the alert the breaker raised, after the recovery of the one it ended.

        The router keeps the incident it told its hook of and compares it
        with the breaker's: however that incident ended (this router's probe,
        another router's on a shared breaker, ``breaker.reset()``), the hook
        hears ``recovered`` once, at this router's next answer or failure.
        """
        hook = self._on_alert
        if hook is None:
            return
        with self._lock:
            told = self._alerted
            # Read after `told`: an incident told by another thread is already
            # the breaker's, so it is never taken for one that ended.
            current = self.breaker.incident
            if raised is not None:
                self._alerted = raised
            elif told is not None and current is not told:
                self._alerted = None
        over = ended(told, current, self.breaker.clock(), "the breaker closed")
        if over is not None:
            call_alert_hook(hook, over)
        if raised is not None:
            call_alert_hook(hook, raised)

    def _observe(self, seconds: float) -> None:
        with self._lock:
            self.latency.observe(seconds)

    # -- decisions --------------------------------------------------------------------

    def _decide(
        self, mobile: str, verdict: resolve.Answered | resolve.Fallback, guess: bool = True
    ) -> Decision:
        if isinstance(verdict, resolve.Fallback):
            return self._fallback(mobile, verdict.stale, verdict.reason, verdict.error, guess)
        return self._counted(
            self._from_answer(mobile, verdict.answer, verdict.source, None, verdict.info)
        )

    def _memo_for(self, answer: int) -> _Memo:
        memo = self._memo  # read before the policy: see the policy setter
        route = self._policy.route(answer)
        entry = (
            route.carrier,
            route.gateway if route.refusal is None else route.refusal,
            route.refusal is None,
            self._by["cache", route.carrier].bump,
        )
        if len(memo) >= 65536:
            memo.clear()  # bounded like the policy's own memo
        memo[answer] = entry
        return entry

    def _from_answer(
        self,
        mobile: str,
        answer: int,
        source: Source,
        reason: str | None,
        info: CarrierInfo | None,
        error: LookupFailed | None = None,
    ) -> Decision:
        memo = self._memo.get(answer) or self._memo_for(answer)
        carrier, gateway, routable, _ = memo
        if not routable:
            raise NoRoute(f"{mask(mobile)}: {gateway}")
        return Decision(mobile, carrier, gateway, source, info, reason, answer, error)

    def _fallback(
        self,
        mobile: str,
        stale: int | None,
        reason: str,
        error: LookupFailed | None = None,
        guess: bool = True,
    ) -> Decision:
        segment = None
        if stale is None:
            table = self._segments or segments.default_table()
            segment = table.lookup(mobile)
            if isinstance(error, RequestRejected) and (segment is None or not segment.allocated):
                # A segment the table does not know was asked only because MIIT
                # keeps allocating: the vendor's "not a valid number" (1, -2,
                # -3, free of charge) settles it. Not a guess for the default.
                raise InvalidNumber(
                    f"{mask(mobile)}: not a valid number, the vendor says ({error.code}),"
                    " and its segment is not in the segment table"
                )
        if not guess:
            # route(fallback=False): the caller gets the lookup's error, and a
            # guess nobody was given is counted nowhere (decisions, reasons).
            raise error if error is not None else LookupFailed(reason)
        with self._lock:
            key = reason_key(reason)
            self._reasons[key] = self._reasons.get(key, 0) + 1
        if stale is not None:
            decision = self._from_answer(mobile, stale, "stale", reason, None, error)
        else:
            route: Route = self._policy.offline(segment)
            if route.refusal is not None:
                raise NoRoute(f"{mask(mobile)}: {route.refusal} (fallback after: {reason})")
            decision = Decision(
                mobile, route.carrier, route.gateway, "fallback", None, reason, None, error
            )
        self._counted(decision)
        # While the breaker is open every send falls back; the opening itself
        # was the warning, so these stay at debug and the path stays fast. The
        # level is asked first: even a dropped structlog event costs ~3.5 us,
        # a third of an open-breaker route() (benchmarks/, figure 6).
        if not reason.startswith(CIRCUIT_OPEN):
            level = _log.warning
        elif _STDLIB.isEnabledFor(logging.DEBUG):
            level = _log.debug
        else:
            return decision
        level(
            "route.fallback",
            mobile=mask(mobile),
            source=decision.source,
            carrier=str(decision.carrier) if decision.carrier else None,
            reason=reason,
        )
        return decision

    def _counted(self, decision: Decision) -> Decision:
        self._by[decision.source, decision.carrier].bump()
        return decision

    def _count_error(self, code: str, exc: BaseException | None) -> None:
        with self._lock:
            self._errors[code] = self._errors.get(code, 0) + 1
        if code == "cache":
            _log.warning("cache.error", error=type(exc).__name__)

    # -- observability ----------------------------------------------------------------

    def stats(self) -> RouterStats:
        """Return counters: decisions by source, upstream calls, hits, misses, errors, breaker."""
        with self._lock:
            errors = dict(self._errors)
            reasons = dict(self._reasons)
            latency = self.latency.snapshot()
        return build_stats(
            ((key, tally.value) for key, tally in self._by.items()),
            upstream_calls=self._upstream_calls.value,
            coalesced=self._coalesced.value,
            reroutes=self._reroutes.value,
            maybe_billed=self._maybe_billed.value,
            errors=errors,
            fallback_reasons=reasons,
            breaker=self.breaker.state,
            breaker_opened=self.breaker.opened,
            cache_size=_size(self._cache),
            latency=latency,
            cache_errors=_attr(self._cache, "errors", int),
            cache_available=_attr(self._cache, "available", bool),
        )


def _attr(cache: object, name: str, kind: type) -> Any:
    value = getattr(cache, name, None)
    return value if isinstance(value, kind) else None


def _size(cache: object) -> int | None:
    try:
        return len(cache)  # type: ignore[arg-type]
    except TypeError:
        return None
