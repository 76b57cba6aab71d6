"""Batch engines: route many numbers concurrently, in input order, with bounded memory.

An :class:`Engine` takes numbers (``submit``) and hands back
``concurrent.futures`` futures of their decisions. :class:`ThreadEngine`
runs ``Router.route`` on a thread pool; ``smsroute.aio.engine.LoopEngine``
runs ``AsyncRouter.route`` on an event loop in a thread, with the same face.
``Router.route_many`` and the ``smsroute route`` command both drive an
engine through :func:`iter_ordered`-style windows: at most ``window``
lookups are in flight ahead of the result being handed out, so a list of
millions stays flat in memory while the engine stays busy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from smsroute.errors import InvalidNumber, SmsRouteError

__all__ = ["Engine", "ThreadEngine", "iter_ordered", "route_batch"]

T = TypeVar("T")


class Engine(Protocol):
    """Routes submitted numbers concurrently; results come back as futures."""

    def submit(self, mobile: str, *, fallback: bool = True) -> Future[Any]:
        """Start routing ``mobile``; the future holds its Decision or the error it raised.

        ``fallback=False``: a lookup failure is the future's error, not a guess.
        """

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop taking numbers; with ``wait``, let the lookups in flight land first."""


class ThreadEngine:
    """An Engine on a pool of ``concurrency`` threads calling ``route``."""

    def __init__(self, route: Callable[..., Any], concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._route = route
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="smsroute")

    def submit(self, mobile: str, *, fallback: bool = True) -> Future[Any]:
        """Start routing ``mobile`` on the pool (``route(mobile, fallback=False)`` if asked)."""
        if fallback:
            return self._pool.submit(self._route, mobile)
        return self._pool.submit(self._route, mobile, fallback=False)

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the pool; lookups in flight are already paid, so by default they land."""
        self._pool.shutdown(wait=wait, cancel_futures=True)


def iter_ordered(
    route: Callable[[str], T],
    mobiles: Iterable[str],
    *,
    concurrency: int = 8,
    window: int | None = None,
    stop: Callable[[], bool] | None = None,
) -> Iterator[tuple[str, T | SmsRouteError]]:
    """Yield ``(mobile, route(mobile) or the SmsRouteError it raised)`` in input order.

    ``window`` (default ``4 * concurrency``) bounds the lookups submitted
    ahead of the one being yielded. ``stop`` is asked before each new
    submission; once it answers True no more are submitted and what is in
    flight is drained. Closing the iterator early waits for the lookups in
    flight (each is bounded by its deadline, and already paid: they should
    land in the cache) and cancels the rest.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    limit = max(1, window if window is not None else 4 * concurrency)
    pending: deque[tuple[str, Future[T]]] = deque()

    def outcome(future: Future[T]) -> T | SmsRouteError:
        try:
            return future.result()
        except SmsRouteError as exc:
            return exc

    engine = ThreadEngine(route, concurrency)
    try:
        for mobile in mobiles:
            if stop is not None and stop():
                break
            pending.append((mobile, engine.submit(mobile)))
            while len(pending) >= limit:
                done, future = pending.popleft()
                yield done, outcome(future)
        while pending:
            done, future = pending.popleft()
            yield done, outcome(future)
    finally:
        engine.shutdown(wait=True)


def route_batch(
    route: Callable[[str], Any],
    numbers: Iterable[str],
    *,
    normalize: Callable[[str], str],
    concurrency: int = 8,
    return_exceptions: bool = False,
) -> list[Any]:
    """Return one result per input, in input order; duplicates share one lookup.

    Invalid numbers raise InvalidNumber before any lookup, unless
    ``return_exceptions`` puts each error in its place (as for every other
    SmsRouteError).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    mobiles: list[str | SmsRouteError] = []
    for number in numbers:
        try:
            mobiles.append(normalize(number))
        except InvalidNumber as exc:
            if not return_exceptions:
                raise
            mobiles.append(exc)
    unique = list(dict.fromkeys(m for m in mobiles if isinstance(m, str)))
    results: dict[str, Any] = {}
    if unique:
        workers = min(concurrency, len(unique))
        results = dict(iter_ordered(route, unique, concurrency=workers, window=len(unique)))
    out: list[Any] = []
    for m in mobiles:
        result = results[m] if isinstance(m, str) else m
        if isinstance(result, SmsRouteError) and not return_exceptions:
            raise result
        out.append(result)
    return out
