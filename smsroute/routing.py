"""Router: the synchronous driver of the decision core (threads and a blocking client).

The chain for one number::

    fresh cache -> upstream (within the deadline, single-flight, breaker)
                -> stale cache -> segment table (the original operator)

What to do is decided in :mod:`smsroute.core` (the routing policy, the miss
plan, the judgement of outcomes); this module performs it: it reads the
clock, waits on threads, calls the cache and the client, and logs. A lookup
failure never fails a send: it only changes where the answer came from
(``Decision.source``) and why (``Decision.reason``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

from smsroute import segments
from smsroute._log import get_logger
from smsroute.batch import route_batch
from smsroute.cache import MemoryCache
from smsroute.carrier import Carrier
from smsroute.core import resolve
from smsroute.core.freshness import ANSWER_MASK, FRESH_SHIFT, USED_BIT
from smsroute.core.outcome import CIRCUIT_OPEN, reason, reason_key
from smsroute.core.policy import Route, RoutingPolicy, Rule
from smsroute.core.resolve import check_deadline
from smsroute.core.stats import SOURCES, Histogram, RouterStats, Source, build_stats
from smsroute.decision import Decision
from smsroute.delivery import deliver
from smsroute.errors import ConfigurationError, NoRoute
from smsroute.models import CarrierInfo
from smsroute.numbers import mask, normalize
from smsroute.resilience import Alert, CircuitBreaker, call_alert_hook
from smsroute.singleflight import SingleFlight
from smsroute.tally import Tally
from smsroute.types import CacheBackend, Clock, LookupClient, SharedFlight, accepts_timeout

__all__ = ["DEFAULT_DEADLINE", "Decision", "Histogram", "Router", "Rule", "Source"]

DEFAULT_DEADLINE: Final = 0.5  # seconds; the vendor answers in ~10 ms

_log = get_logger()
_STDLIB = logging.getLogger("smsroute")  # what _log writes through; see smsroute._log
R = TypeVar("R")

# answer code -> (operator, gateway or NoRoute message, routable, hit counter)
_Memo = tuple[Carrier | None, Any, bool, Callable[[], int]]


class Router:
    """Choose the gateway for each number by its current operator.

    ``gateways`` maps a Carrier (or its Chinese name, or any key such as
    ``"mvno"``) to anything: a callable for :meth:`send`, a channel object, a
    product code. The routing settings form one :class:`RoutingPolicy`
    (:attr:`policy`); give the router a new one to change them. One router
    serves many threads.
    """

    def __init__(
        self,
        client: LookupClient,
        gateways: Mapping[Carrier | str, Any] | RoutingPolicy,
        *,
        default: Any = None,
        cache: CacheBackend | None = None,
        virtual: str = "host",
        rules: Iterable[Rule] | None = None,
        deadline: float = DEFAULT_DEADLINE,
        breaker: CircuitBreaker | None = None,
        on_alert: Callable[[Alert], None] | None = None,
        segments: segments.SegmentTable | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.deadline = check_deadline(deadline)
        if isinstance(gateways, RoutingPolicy):
            policy = gateways
        else:
            policy = RoutingPolicy(
                gateways, default=default, virtual=virtual, rules=tuple(rules or ())
            )
        self._client = client
        self._timed = True  # False once the client showed it takes no timeout=
        self._memo: dict[int, _Memo] = {}
        self.policy = policy
        # The default cache keeps time on the router's clock, like the breaker.
        self._cache: CacheBackend = cache if cache is not None else MemoryCache(clock=clock)
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
        self.breaker = breaker
        self._flights: SingleFlight[resolve.Outcome] = SingleFlight()
        self._shared = self._cache if isinstance(self._cache, SharedFlight) else None
        self._upstream_calls = Tally()
        self._coalesced = Tally()
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
        self._lock = threading.Lock()
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

    # -- routing ----------------------------------------------------------------------

    def route(self, number: str, *, deadline: float | None = None) -> Decision:
        """Return where a send to ``number`` goes.

        Raises InvalidNumber (before any lookup) for a bad number and NoRoute
        when no gateway fits; never raises because the lookup failed.
        """
        # Hot path: a fresh, recently used answer in the in-process tier. Only
        # validated numbers are ever stored, so a hit needs no normalize();
        # one dict read, one clock read, one memo read, no lock.
        hot = self._hot
        if hot is not None and type(number) is str:
            value = hot.get(number)
            if value is not None and value & USED_BIT and self._hot_clock() < value >> FRESH_SHIFT:
                memo = self._memo.get(value & ANSWER_MASK)
                if memo is not None and memo[2]:
                    memo[3]()
                    return Decision(
                        number, memo[0], memo[1], "cache", None, None, value & ANSWER_MASK
                    )
        return self._route(number, deadline)

    def _route(self, number: str, deadline: float | None) -> Decision:
        mobile = normalize(number, self._segments)
        hit = self._cache_get(mobile)
        first = resolve.from_cache(hit)
        if first is not None:
            return self._decide(mobile, first)
        return self._resolve(mobile, hit, deadline)

    def refresh(self, number: str, *, deadline: float | None = None) -> Decision:
        """Drop the cached answer for ``number`` and ask the upstream again."""
        mobile = normalize(number, self._segments)
        try:
            self._cache.delete(mobile)
        except Exception as exc:  # noqa: BLE001 - a broken cache must not fail a send
            self._count_error("cache", exc)
        return self._resolve(mobile, None, deadline)

    def _resolve(
        self, mobile: str, stale: tuple[int, bool] | None, deadline: float | None
    ) -> Decision:
        short = resolve.shortcut(
            stale, shared=self._shared is not None, rejecting=self.breaker.rejecting()
        )
        if short is not None:
            return self._fallback(mobile, short.stale, short.reason)
        # A per-call deadline may be spent already (<= 0: fall back at once).
        budget = self.deadline if deadline is None else check_deadline(deadline, spent_ok=True)
        now = self._clock()
        plan = resolve.plan(now=now, end=now + budget, shared=self._shared is not None)
        return self._decide(mobile, resolve.settle(self._perform(mobile, plan), stale))

    def _perform(self, mobile: str, plan: resolve.Plan) -> resolve.Outcome:
        """Run a miss plan: do each step it yields and feed back the result (or the error)."""
        clock = self._clock
        if type(next(plan)) is not resolve.Join:  # every plan opens by joining the flight
            raise AssertionError("a miss plan must open with Join")
        flight, leader = self._flights.join(mobile)
        if not leader:
            self._coalesced.bump()
        token: str | None = None
        sent: Any = (leader, clock())
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = plan.send(sent) if error is None else plan.throw(error)
                except StopIteration as stop:
                    outcome: resolve.Outcome = stop.value
                    if leader:
                        flight.finish(result=outcome)
                    return outcome
                error = None
                try:
                    if isinstance(step, resolve.Ask):
                        result: Any = self._ask(mobile, step.timeout)
                    elif isinstance(step, resolve.Follow):
                        result = flight.result if flight.wait(step.timeout) else None
                    elif isinstance(step, resolve.Claim):
                        token = self._claim(mobile, step.ttl)
                        result = token is not None
                    elif isinstance(step, resolve.Release):
                        if token is not None:
                            self._release(mobile, token)
                            token = None
                        result = None
                    else:
                        result = self._step(mobile, step)
                except BaseException as exc:  # noqa: BLE001 - fed back to the plan, which decides
                    error = exc
                    continue
                sent = (result, clock())
        except BaseException as exc:
            if leader:
                # Followers fall back rather than wait out their deadline.
                flight.finish(result=resolve.Failed(None, reason(exc)))
            raise
        finally:
            if leader:
                self._flights.land(mobile, flight)

    def _step(self, mobile: str, step: resolve.Step) -> Any:
        """Perform a step that needs no state of the plan's run."""
        if isinstance(step, resolve.Read):
            return self._cache_get(mobile, count=False)
        if isinstance(step, resolve.Allow):
            return self.breaker.allow()
        if isinstance(step, resolve.Success):
            self.breaker.success()
        elif isinstance(step, resolve.Failure):
            alert = self.breaker.failure(step.error)
            if alert is not None and self._on_alert is not None:
                call_alert_hook(self._on_alert, alert)
            self._count_error(step.code, step.error)
        elif isinstance(step, resolve.GiveBack):
            self.breaker.release()
            if step.code is not None:
                self._count_error(step.code, None)
        elif isinstance(step, resolve.Store):
            self._cache_set(mobile, step.answer)
        elif isinstance(step, resolve.WaitFleet):
            try:
                return self._shared.wait(mobile, step.timeout) if self._shared is not None else None
            except Exception as exc:  # noqa: BLE001 - a broken shared store must not fail a send
                self._count_error("cache", exc)
                return None
        return None

    def _ask(self, mobile: str, timeout: float) -> CarrierInfo:
        self._upstream_calls.bump()
        started = time.perf_counter()
        try:
            if self._timed:
                try:
                    return self._client.lookup(mobile, timeout=timeout)
                except TypeError:
                    if accepts_timeout(self._client):
                        raise
                    self._timed = False  # an older client: see LookupClient.lookup
            return self._client.lookup(mobile)
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self.latency.observe(elapsed)

    def _claim(self, mobile: str, ttl: float) -> str | None:
        try:
            return self._shared.claim(mobile, ttl)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - a broken shared store must not fail a send
            self._count_error("cache", exc)
            return ""  # ask as if there were no fleet; nothing to release

    def _release(self, mobile: str, token: str) -> None:
        if not token:
            return
        try:
            self._shared.release(mobile, token)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - the claim expires by itself
            self._count_error("cache", exc)

    # -- decisions --------------------------------------------------------------------

    def _decide(self, mobile: str, verdict: resolve.Answered | resolve.Fallback) -> Decision:
        if isinstance(verdict, resolve.Fallback):
            return self._fallback(mobile, verdict.stale, verdict.reason)
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
        self, mobile: str, answer: int, source: Source, reason: str | None, info: CarrierInfo | None
    ) -> Decision:
        memo = self._memo.get(answer) or self._memo_for(answer)
        carrier, gateway, routable, _ = memo
        if not routable:
            raise NoRoute(f"{mask(mobile)}: {gateway}")
        return Decision(mobile, carrier, gateway, source, info, reason, answer)

    def _fallback(self, mobile: str, stale: int | None, reason: str) -> Decision:
        with self._lock:
            key = reason_key(reason)
            self._reasons[key] = self._reasons.get(key, 0) + 1
        if stale is not None:
            decision = self._from_answer(mobile, stale, "stale", reason, None)
        else:
            table = self._segments or segments.default_table()
            route: Route = self._policy.offline(table.lookup(mobile))
            if route.refusal is not None:
                raise NoRoute(f"{mask(mobile)}: {route.refusal} (fallback after: {reason})")
            decision = Decision(mobile, route.carrier, route.gateway, "fallback", None, reason)
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

    # -- guarded cache I/O ------------------------------------------------------------

    def _cache_get(self, mobile: str, *, count: bool = True) -> tuple[int, bool] | None:
        try:
            return self._cache.get(mobile)
        except Exception as exc:  # noqa: BLE001 - a broken cache must not fail a send
            if count:
                self._count_error("cache", exc)
            return None

    def _cache_set(self, mobile: str, answer: int) -> None:
        try:
            self._cache.set(mobile, answer)
        except Exception as exc:  # noqa: BLE001 - losing a cache write must not fail a send
            self._count_error("cache", exc)

    def _count_error(self, code: str, exc: BaseException | None) -> None:
        with self._lock:
            self._errors[code] = self._errors.get(code, 0) + 1
        if code == "cache":
            _log.warning("cache.error", error=type(exc).__name__)

    # -- send path --------------------------------------------------------------------

    def send(self, number: str, *args: Any, **kwargs: Any) -> Any:
        """Route ``number`` and call its gateway with the normalised number and the arguments.

        A gateway's exceptions propagate unchanged, except WrongCarrier: the
        router then asks the upstream again and retries once through the
        gateway of the fresh answer.
        """

        def call(decision: Decision) -> Any:
            gateway = decision.gateway
            if not callable(gateway):
                raise ConfigurationError(
                    f"gateway for {decision.carrier} is not callable; use route() or wrap()"
                )
            return gateway(decision.mobile, *args, **kwargs)

        return deliver(self.route(number), call, self._reroute)

    def wrap(self, fn: Callable[..., R]) -> Callable[..., R]:
        """Decorate ``def send(number, ..., route: Decision)`` into a routed function."""
        import functools

        @functools.wraps(fn)
        def routed(number: str, *args: Any, **kwargs: Any) -> R:
            return deliver(
                self.route(number), lambda d: fn(d.mobile, *args, route=d, **kwargs), self._reroute
            )

        return routed

    def deliver(self, decision: Decision, call: Callable[[Decision], R]) -> R:
        """Return ``call(decision)``; on WrongCarrier reroute once and call again.

        For code that routes first and sends later: what :meth:`send` and
        :meth:`wrap` do after their route().
        """
        return deliver(decision, call, self._reroute)

    def _reroute(self, refused: Decision) -> Decision:
        mobile = refused.mobile
        fresh = resolve.after_refusal(self._cache_get(mobile), refused.answer)
        if fresh is not None:
            return self._decide(mobile, fresh)
        return self.refresh(mobile)

    def route_many(
        self,
        numbers: Iterable[str],
        *,
        concurrency: int = 8,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Return one Decision per input, in input order.

        Duplicates share one lookup; misses are looked up on a pool of
        ``concurrency`` threads. Invalid numbers raise InvalidNumber before any
        lookup, unless ``return_exceptions`` puts each error in its place.
        """
        return route_batch(
            self.route,
            numbers,
            normalize=lambda n: normalize(n, self._segments),
            concurrency=concurrency,
            return_exceptions=return_exceptions,
        )

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
            errors=errors,
            fallback_reasons=reasons,
            breaker=self.breaker.state,
            breaker_opened=self.breaker.opened,
            cache_size=_size(self._cache),
            latency=latency,
        )

    @property
    def cache(self) -> CacheBackend:
        """Return the cache backend."""
        return self._cache

    @property
    def client(self) -> LookupClient:
        """Return the lookup client."""
        return self._client


def _size(cache: object) -> int | None:
    try:
        return len(cache)  # type: ignore[arg-type]
    except TypeError:
        return None
