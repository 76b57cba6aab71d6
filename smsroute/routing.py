"""Router: the synchronous driver of the decision core (threads and a blocking client).

The chain for one number::

    fresh cache -> upstream (within the deadline, single-flight, breaker)
                -> stale cache -> segment table (the original operator)

What to do is decided in :mod:`smsroute.core` (the routing policy, the miss
plan, the judgement of outcomes) and turned into decisions by
:class:`~smsroute.frontend.BaseRouter`; this module performs the plan: it
waits on threads and calls the cache and the client. A lookup failure never
fails a send: it only changes where the answer came from
(``Decision.source``) and why (``Decision.reason``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from smsroute import segments
from smsroute.batch import route_batch
from smsroute.cacheio import CacheIO
from smsroute.carrier import Carrier
from smsroute.core import resolve
from smsroute.core.freshness import ANSWER_MASK, FRESH_SHIFT, USED_BIT
from smsroute.core.outcome import reason
from smsroute.core.policy import RoutingPolicy, Rule
from smsroute.core.resolve import check_deadline
from smsroute.core.stats import Histogram, Source
from smsroute.decision import Decision
from smsroute.delivery import deliver, wrapped
from smsroute.errors import ConfigurationError
from smsroute.frontend import DEFAULT_DEADLINE, BaseRouter
from smsroute.models import CarrierInfo
from smsroute.resilience import Alert, CircuitBreaker
from smsroute.singleflight import SingleFlight
from smsroute.types import CacheBackend, Clock, LookupClient, SharedFlight, accepts_timeout

__all__ = ["DEFAULT_DEADLINE", "Decision", "Histogram", "Router", "Rule", "Source"]

R = TypeVar("R")


class Router(BaseRouter):
    """Choose the gateway for each number by its current operator.

    ``gateways`` maps a Carrier (or its Chinese name, or any key such as
    ``"mvno"``) to anything: a callable for :meth:`send`, a channel object, a
    product code; or pass a ready :class:`RoutingPolicy` instead. The routing
    settings form one policy (:attr:`policy`); give the router a new one to
    change them. One router serves many threads.
    """

    _cache: CacheBackend
    _client: LookupClient

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
        unknown_segments: str = "ask",
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(
            client,
            gateways,
            default=default,
            cache=cache,
            virtual=virtual,
            rules=rules,
            deadline=deadline,
            breaker=breaker,
            on_alert=on_alert,
            segments=segments,
            unknown_segments=unknown_segments,
            clock=clock,
        )
        self._timed = True  # False once the client showed it takes no timeout=
        self._io = CacheIO(self._cache, lambda exc: self._count_error("cache", exc))
        self._flights: SingleFlight[resolve.Outcome] = SingleFlight()
        self._shared = self._cache if isinstance(self._cache, SharedFlight) else None

    # -- routing ----------------------------------------------------------------------

    def route(
        self, number: str, *, deadline: float | None = None, fallback: bool = True
    ) -> Decision:
        """Return where a send to ``number`` goes.

        Raises InvalidNumber (before any lookup) for a bad number and NoRoute
        when no gateway fits; never raises because the lookup failed, unless
        ``fallback=False``: then a route that would rest on a stale answer or
        the segment table raises the lookup's error (a LookupFailed) instead.
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
        return self._route(number, deadline, fallback)

    def _route(self, number: str, deadline: float | None, guess: bool = True) -> Decision:
        mobile = self._normalize(number)
        # One budget from here on: the cache read counts against the deadline too.
        end = self._clock() + self._budget(deadline)
        hit = self._cache_get(mobile, end)
        first = resolve.from_cache(hit)
        if first is not None:
            return self._decide(mobile, first, guess)
        return self._resolve(mobile, hit, end, guess)

    def refresh(self, number: str, *, deadline: float | None = None) -> Decision:
        """Drop the cached answer for ``number`` and ask the upstream again."""
        mobile = self._normalize(number)
        end = self._clock() + self._budget(deadline)
        try:
            self._io.call("delete", mobile, timeout=end - self._clock())
        except Exception as exc:  # noqa: BLE001 - a broken cache must not fail a send
            self._count_error("cache", exc)
        return self._resolve(mobile, None, end)

    def _budget(self, deadline: float | None) -> float:
        # A per-call deadline may be spent already (<= 0: fall back at once).
        return self.deadline if deadline is None else check_deadline(deadline, spent_ok=True)

    def _resolve(
        self, mobile: str, stale: tuple[int, bool] | None, end: float, guess: bool = True
    ) -> Decision:
        short = resolve.shortcut(
            stale, shared=self._shared is not None, rejecting=self.breaker.rejecting()
        )
        if short is not None:
            return self._fallback(mobile, short.stale, short.reason, short.error, guess)
        plan = resolve.plan(now=self._clock(), end=end, shared=self._shared is not None)
        outcome = self._perform(mobile, plan, end)
        return self._decide(mobile, resolve.settle(outcome, stale), guess)

    def _perform(self, mobile: str, plan: resolve.Plan, end: float) -> resolve.Outcome:
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
                        token = self._claim(mobile, step.ttl, end)
                        result = token is not None
                    elif isinstance(step, resolve.Release):
                        if token is not None:
                            self._release(mobile, token, end)
                            token = None
                        result = None
                    else:
                        result = self._step(mobile, step, end)
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

    def _step(self, mobile: str, step: resolve.Step, end: float) -> Any:
        """Perform a step that needs no state of the plan's run."""
        if isinstance(step, resolve.Read):
            return self._cache_get(mobile, end, count=False)
        if isinstance(step, resolve.Store):
            self._io.settle("set", mobile, step.answer, timeout=end - self._clock())
            return None
        if isinstance(step, resolve.WaitFleet):
            try:
                # The store's own wait is bounded by step.timeout; the pool
                # bounds it too, against a store that blocks inside it.
                return self._io.call("wait", mobile, step.timeout, timeout=step.timeout + 0.005)
            except Exception as exc:  # noqa: BLE001 - a broken shared store must not fail a send
                self._count_error("cache", exc)
                return None
        return self._breaker_step(step)

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
            self._observe(time.perf_counter() - started)

    def _claim(self, mobile: str, ttl: float, end: float) -> str | None:
        try:
            token = self._io.call("claim", mobile, ttl, timeout=end - self._clock())
            return token if token is None or isinstance(token, str) else ""
        except Exception as exc:  # noqa: BLE001 - a broken shared store must not fail a send
            self._count_error("cache", exc)
            return ""  # ask as if there were no fleet; nothing to release

    def _release(self, mobile: str, token: str, end: float) -> None:
        if token:
            self._io.settle("release", mobile, token, timeout=end - self._clock())

    def _cache_get(self, mobile: str, end: float, *, count: bool = True) -> tuple[int, bool] | None:
        try:
            return self._io.get(mobile, end - self._clock())
        except Exception as exc:  # noqa: BLE001 - a broken cache must not fail a send
            if count:
                self._count_error("cache", exc)
            return None

    # -- send path --------------------------------------------------------------------

    def send(self, number: str, *args: Any, fallback: bool = True, **kwargs: Any) -> Any:
        """Route ``number`` and call its gateway with the normalised number and the arguments.

        A gateway's exceptions propagate unchanged, except WrongCarrier: the
        router then asks the upstream again and retries once through the
        gateway of the fresh answer. ``fallback=False``: see :meth:`route`
        (``fallback`` is not passed on to the gateway).
        """

        def call(decision: Decision) -> Any:
            gateway = decision.gateway
            if not callable(gateway):
                raise ConfigurationError(
                    f"gateway for {decision.carrier} is not callable; use route() or wrap()"
                )
            return gateway(decision.mobile, *args, **kwargs)

        return deliver(self.route(number, fallback=fallback), call, self._reroute)

    def wrap(self, fn: Callable[..., R] | None = None, *, fallback: bool = True) -> Any:
        """Decorate ``def send(number, ..., route: Decision)`` into a routed function.

        Use as ``@router.wrap`` or ``@router.wrap(fallback=False)`` (see :meth:`route`).
        The number is the first argument or the keyword of the same name
        (``recharge(mobile=..., amount=30)``).
        """
        if fn is None:
            return functools.partial(self.wrap, fallback=fallback)
        return wrapped(fn, lambda number: self.route(number, fallback=fallback), self.deliver)

    def deliver(self, decision: Decision, call: Callable[[Decision], R]) -> R:
        """Return ``call(decision)``; on WrongCarrier reroute once and call again.

        For code that routes first and sends later: what :meth:`send` and
        :meth:`wrap` do after their route().
        """
        return deliver(decision, call, self._reroute)

    def _reroute(self, refused: Decision) -> Decision:
        self._reroutes.bump()
        mobile = refused.mobile
        end = self._clock() + self.deadline
        fresh = resolve.after_refusal(self._cache_get(mobile, end), refused.answer)
        if fresh is not None:
            return self._decide(mobile, fresh)
        return self.refresh(mobile)

    def route_many(
        self,
        numbers: Iterable[str],
        *,
        concurrency: int = 8,
        return_exceptions: bool = False,
        fallback: bool = True,
    ) -> list[Any]:
        """Return one Decision per input, in input order.

        Duplicates share one lookup; misses are looked up on a pool of
        ``concurrency`` threads. Invalid numbers raise InvalidNumber before any
        lookup, unless ``return_exceptions`` puts each error in its place.
        """
        return route_batch(
            self.route if fallback else functools.partial(self.route, fallback=False),
            numbers,
            normalize=self._normalize,
            concurrency=concurrency,
            return_exceptions=return_exceptions,
        )

    def close(self) -> None:
        """Let cache writes in flight finish and stop the router's cache threads."""
        self._io.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def cache(self) -> CacheBackend:
        """Return the cache backend."""
        return self._cache

    @property
    def client(self) -> LookupClient:
        """Return the lookup client."""
        return self._client
