"""AsyncRouter: the asyncio driver of the decision core (the event loop and awaited I/O).

The same decisions as :class:`~smsroute.Router` (both run
:func:`smsroute.core.resolve.plan` and share
:class:`~smsroute.frontend.BaseRouter`); only the waiting differs. Single-flight
is per router and event loop (futures), the breaker is shared as it is (it
never waits), and cache I/O is awaited with a bound:

* MemoryCache is called directly (it never blocks);
* a cache with ``async def get`` (AsyncRedisCache) is awaited;
* any other cache (SqliteCache, a synchronous RedisCache) runs in a worker
  thread, so no call on the loop waits on a lock or the disk.

One budget covers the route: cache reads, fleet waits, the vendor call and
the writes after it all fit in ``deadline``; a write still running then
finishes in the background, so a slow store never delays a send past it.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from smsroute import segments
from smsroute.aio.bulk import route_ordered, route_pool
from smsroute.aio.client import AsyncCarrierClient
from smsroute.aio.types import AsyncClosing, is_async
from smsroute.cache import MemoryCache
from smsroute.carrier import Carrier
from smsroute.core import resolve
from smsroute.core.outcome import busy_error, overload_note, reason
from smsroute.core.policy import RoutingPolicy, Rule
from smsroute.core.resolve import check_deadline
from smsroute.decision import Decision
from smsroute.delivery import awrapped, log_reroute
from smsroute.errors import (
    ConfigurationError,
    InvalidNumber,
    SmsRouteError,
    TransportError,
    WrongCarrier,
)
from smsroute.frontend import DEFAULT_DEADLINE, BaseRouter
from smsroute.models import CarrierInfo
from smsroute.resilience import Alert, CircuitBreaker
from smsroute.types import Clock, accepts_timeout

__all__ = ["AsyncRouter"]

R = TypeVar("R")
_DRAIN_SECONDS = 5.0  # aclose() waits this long for background cache writes


class AsyncRouter(AsyncClosing, BaseRouter):
    """Choose the gateway for each number by its current operator, on an event loop.

    Takes what :class:`~smsroute.Router` takes. ``client`` is an
    :class:`~smsroute.AsyncCarrierClient` (or any object whose ``lookup`` is
    a coroutine; a blocking client is run in a worker thread). One router
    belongs to one event loop.
    """

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
        self._flights: dict[str, asyncio.Future[resolve.Outcome]] = {}
        self._background: set[asyncio.Future[Any]] = set()
        self._timed = True
        self._async_client = inspect.iscoroutinefunction(getattr(client, "lookup", None))
        # AsyncCarrierClient bounds a call by its timeout= itself (aiohttp's total
        # timeout and the retry budget): a second bound here would cost a task
        # and a timer per lookup (measured: 256 timeouts at once unwound ~90 ms
        # later). Any other client is bounded here too.
        self._bounds_itself = isinstance(client, AsyncCarrierClient)
        c = self._cache
        self._cache_kind = (
            "memory" if isinstance(c, MemoryCache) else "async" if is_async(c) else "thread"
        )
        self._shared = c if all(hasattr(c, m) for m in ("claim", "wait", "release")) else None

    async def aclose(self) -> None:
        """Let background cache writes finish (for a few seconds at most)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=_DRAIN_SECONDS)

    # -- routing ----------------------------------------------------------------------

    async def route(
        self, number: str, *, deadline: float | None = None, fallback: bool = True
    ) -> Decision:
        """Return where a send to ``number`` goes (the same Decision as Router.route()).

        Raises InvalidNumber (before any lookup) for a bad number and NoRoute
        when no gateway fits; never raises because the lookup failed, unless
        ``fallback=False`` (see :meth:`smsroute.Router.route`).
        """
        hit = self._hot_hit(number)
        if hit is not None:
            return hit
        return await self._route(number, deadline, fallback)

    async def _route(self, number: str, deadline: float | None, guess: bool = True) -> Decision:
        mobile = self._normalize(number)
        now = self._clock()
        end = now + self._budget(deadline)
        stale = await self._cache_op("get", mobile, end=end)
        first = resolve.from_cache(stale)
        if first is not None:
            return self._decide(mobile, first, guess)
        return await self._resolve(mobile, stale, end, guess)

    async def refresh(self, number: str, *, deadline: float | None = None) -> Decision:
        """Drop the cached answer for ``number`` and ask the upstream again."""
        mobile = self._normalize(number)
        end = self._clock() + self._budget(deadline)
        await self._cache_op("delete", mobile, end=end)
        return await self._resolve(mobile, None, end)

    def _budget(self, deadline: float | None) -> float:
        return self.deadline if deadline is None else check_deadline(deadline, spent_ok=True)

    async def _resolve(
        self, mobile: str, stale: tuple[int, bool] | None, end: float, guess: bool = True
    ) -> Decision:
        short = resolve.shortcut(
            stale, shared=self._shared is not None, rejecting=self.breaker.rejecting()
        )
        if short is not None:
            return self._fallback(mobile, short.stale, short.reason, short.error, guess)
        plan = resolve.plan(now=self._clock(), end=end, shared=self._shared is not None)
        outcome = await self._perform(mobile, plan, end)
        return self._decide(mobile, resolve.settle(outcome, stale), guess)

    async def _perform(self, mobile: str, plan: resolve.Plan, end: float) -> resolve.Outcome:
        """Run a miss plan: do each step it yields and feed back the result (or the error)."""
        clock = self._clock
        if type(next(plan)) is not resolve.Join:  # every plan opens by joining the flight
            raise AssertionError("a miss plan must open with Join")
        flight = self._flights.get(mobile)
        leader = flight is None
        if flight is None:
            flight = self._flights[mobile] = asyncio.get_running_loop().create_future()
        else:
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
                    if leader and not flight.done():
                        flight.set_result(outcome)
                    return outcome
                error = None
                try:
                    if isinstance(step, resolve.Ask):
                        result: Any = await self._ask(mobile, step.timeout)
                    elif isinstance(step, resolve.Follow):
                        result = await _follow(flight, step.timeout)
                    elif isinstance(step, resolve.Read):
                        result = await self._cache_op("get", mobile, end=end, count=False)
                    elif isinstance(step, resolve.Store):
                        await self._settle("set", mobile, step.answer, end=end)
                        result = None
                    elif isinstance(step, resolve.Claim):
                        token = await self._claim(mobile, step.ttl, end)
                        result = token is not None
                    elif isinstance(step, resolve.WaitFleet):
                        result = await self._cache_op("wait", mobile, step.timeout, end=end + 0.005)
                    elif isinstance(step, resolve.Release):
                        if token:
                            await self._settle("release", mobile, token, end=end)
                        token = None
                        result = None
                    else:
                        result = self._breaker_step(step)
                except BaseException as exc:  # noqa: BLE001 - fed back to the plan, which decides
                    error = exc
                    continue
                sent = (result, clock())
        except BaseException as exc:
            if leader and not flight.done():
                # Followers fall back at once rather than wait out their deadline.
                flight.set_result(resolve.Failed(None, reason(exc)))
            raise
        finally:
            if leader and self._flights.get(mobile) is flight:
                del self._flights[mobile]

    async def _ask(self, mobile: str, timeout: float) -> CarrierInfo:
        self._upstream_calls.bump()
        started = time.perf_counter()
        try:
            # Bounded here as well as by the client's own timeout=: a client
            # that ignores its budget (or a blocking one, run in a thread)
            # still costs the route no more than its deadline.
            if self._bounds_itself:
                return await self._client.lookup(mobile, timeout=timeout)  # type: ignore[no-any-return]
            return await asyncio.wait_for(self._lookup(mobile, timeout), timeout)
        except asyncio.TimeoutError:
            # Both monotonic: wait_for's timer (the loop's clock) and perf_counter.
            note = overload_note(time.perf_counter() - started - timeout, timeout)
            if not note:
                raise TransportError(
                    "/carrier: timed out (the lookup overran its budget)"
                ) from None
            raise busy_error("/carrier: timed out" + note) from None
        finally:
            self._observe(time.perf_counter() - started)

    async def _lookup(self, mobile: str, timeout: float) -> CarrierInfo:
        if not self._async_client:
            # A blocking client must not stall the loop: a worker thread waits.
            return await asyncio.to_thread(self._lookup_blocking, mobile, timeout)
        lookup = self._client.lookup
        if self._timed:
            try:
                return await lookup(mobile, timeout=timeout)  # type: ignore[no-any-return]
            except TypeError:
                if accepts_timeout(self._client):
                    raise
                self._timed = False  # an older client: see LookupClient.lookup
        return await lookup(mobile)  # type: ignore[no-any-return]

    def _lookup_blocking(self, mobile: str, timeout: float) -> CarrierInfo:
        if self._timed:
            try:
                return self._client.lookup(mobile, timeout=timeout)  # type: ignore[no-any-return]
            except TypeError:
                if accepts_timeout(self._client):
                    raise
                self._timed = False
        return self._client.lookup(mobile)  # type: ignore[no-any-return]

    async def _claim(self, mobile: str, ttl: float, end: float) -> str | None:
        token = await self._cache_op("claim", mobile, ttl, end=end, failed="")
        return token if token is None or isinstance(token, str) else ""

    # -- bounded cache I/O --------------------------------------------------------------

    async def _cache_op(
        self, op: str, mobile: str, *args: Any, end: float, count: bool = True, failed: Any = None
    ) -> Any:
        """Return ``cache.<op>(mobile, *args)``, awaited within ``end``; ``failed`` if it fails."""
        method = getattr(self._cache, op)
        if self._cache_kind == "memory":
            try:
                return method(mobile, *args)
            except Exception as exc:  # noqa: BLE001 - a broken cache must not fail a send
                self._count_error("cache", exc)
                return failed
        left = end - self._clock()
        try:
            if left <= 0:
                raise TimeoutError(f"cache {op}: no time left in the deadline")
            call = (
                method(mobile, *args)
                if self._cache_kind == "async"
                else asyncio.to_thread(method, mobile, *args)
            )
            return await asyncio.wait_for(call, left)
        except Exception as exc:  # noqa: BLE001 - a broken or slow cache must not fail a send
            if count or op != "get":
                self._count_error("cache", exc)
            return failed

    async def _settle(self, op: str, mobile: str, *args: Any, end: float) -> None:
        """Run a cache write, awaited while the deadline lasts, then left to the background.

        Awaited while it can be, so that the next send of the number finds the
        answer (and does not pay for it again); never past the deadline.
        """
        if self._cache_kind == "memory":
            self._later(op, mobile, *args)
            return
        task = self._later(op, mobile, *args)
        left = end - self._clock()
        if task is not None and left > 0:
            # shield(): a write that outlasts the deadline goes on by itself.
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), left)

    def _later(self, op: str, mobile: str, *args: Any) -> asyncio.Future[Any] | None:
        """Run a cache write in the background: the send has its answer already."""
        method = getattr(self._cache, op)
        if self._cache_kind == "memory":
            try:
                method(mobile, *args)
            except Exception as exc:  # noqa: BLE001 - losing a cache write must not fail a send
                self._count_error("cache", exc)
            return None
        call = (
            method(mobile, *args)
            if self._cache_kind == "async"
            else asyncio.to_thread(method, mobile, *args)
        )
        task = asyncio.ensure_future(call)
        self._background.add(task)
        task.add_done_callback(self._landed)
        return task

    def _landed(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._count_error("cache", task.exception())

    # -- send path --------------------------------------------------------------------

    async def send(self, number: str, *args: Any, fallback: bool = True, **kwargs: Any) -> Any:
        """Route ``number`` and call its gateway (plain or async) with the normalised number.

        A gateway's exceptions propagate unchanged, except WrongCarrier: the
        router then asks the upstream again and retries once through the
        gateway of the fresh answer. ``fallback=False``: see :meth:`route`.
        """

        def call(decision: Decision) -> Any:
            gateway = decision.gateway
            if not callable(gateway):
                raise ConfigurationError(
                    f"gateway for {decision.carrier} is not callable; use route() or wrap()"
                )
            return gateway(decision.mobile, *args, **kwargs)

        return await self.deliver(await self.route(number, fallback=fallback), call)

    def wrap(self, fn: Callable[..., Awaitable[R]] | None = None, *, fallback: bool = True) -> Any:
        """Decorate ``async def send(number, ..., route: Decision)`` into a routed coroutine.

        Use as ``@router.wrap`` or ``@router.wrap(fallback=False)``; keyword
        calls and methods work as with :meth:`smsroute.Router.wrap`.
        """
        if fn is None:
            return functools.partial(self.wrap, fallback=fallback)
        return awrapped(fn, functools.partial(self.route, fallback=fallback), self.deliver)

    async def deliver(self, decision: Decision, call: Callable[[Decision], Any]) -> Any:
        """Return ``call(decision)`` (awaited if it is awaitable); on WrongCarrier reroute once."""
        try:
            return await _resolved(call(decision))
        except WrongCarrier as exc:
            fresh = await self._reroute(decision)
            log_reroute(decision, fresh, exc)
            if fresh.carrier == decision.carrier:
                raise
            return await _resolved(call(fresh))

    async def _reroute(self, refused: Decision) -> Decision:
        self._reroutes.bump()
        mobile = refused.mobile
        end = self._clock() + self.deadline
        fresh = resolve.after_refusal(await self._cache_op("get", mobile, end=end), refused.answer)
        if fresh is not None:
            return self._decide(mobile, fresh)
        return await self.refresh(mobile)

    # -- bulk ---------------------------------------------------------------------------

    async def route_many(
        self,
        numbers: Iterable[str],
        *,
        concurrency: int = 64,
        return_exceptions: bool = False,
        fallback: bool = True,
    ) -> list[Any]:
        """Return one Decision per input, in input order; duplicates share one lookup.

        Invalid numbers raise InvalidNumber before any lookup, unless
        ``return_exceptions`` puts each error in its place.
        """
        mobiles: list[str | SmsRouteError] = []
        for number in numbers:
            try:
                mobiles.append(self._normalize(number))
            except InvalidNumber as exc:
                if not return_exceptions:
                    raise
                mobiles.append(exc)
        unique = list(dict.fromkeys(m for m in mobiles if isinstance(m, str)))
        results = await route_pool(
            functools.partial(self.route, fallback=fallback), unique, concurrency
        )
        out: list[Any] = []
        for m in mobiles:
            result = results[m] if isinstance(m, str) else m
            if isinstance(result, SmsRouteError) and not return_exceptions:
                raise result
            out.append(result)
        return out

    async def route_iter(
        self,
        numbers: Iterable[str],
        *,
        concurrency: int = 64,
        return_exceptions: bool = False,
        fallback: bool = True,
    ) -> AsyncIterator[Any]:
        """Yield one Decision per input, in input order, holding a bounded window in memory.

        For lists too large to hold: at most ``4 * concurrency`` routes are in
        progress or waiting to be yielded. An error (InvalidNumber, NoRoute)
        is raised at its place, or yielded there with ``return_exceptions``.
        """
        route = functools.partial(self.route, fallback=fallback)
        async for _number, result in route_ordered(route, numbers, concurrency):
            if isinstance(result, SmsRouteError) and not return_exceptions:
                raise result
            yield result

    @property
    def cache(self) -> Any:
        """Return the cache backend."""
        return self._cache

    @property
    def client(self) -> Any:
        """Return the lookup client."""
        return self._client


async def _follow(
    flight: asyncio.Future[resolve.Outcome], timeout: float
) -> resolve.Outcome | None:
    """Return the leader's outcome, or None when it does not come within ``timeout``."""
    try:
        # shield(): a follower that times out (or is cancelled) must not cancel the flight.
        return await asyncio.wait_for(asyncio.shield(flight), timeout)
    except asyncio.TimeoutError:
        return None


async def _resolved(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value
