"""Who is calling: client keys, each caller's qps and daily query quota, and the metered client.

A caller is found by its key (``Authorization: Bearer KEY``, ``X-Api-Key``,
or the vendor's ``apikey`` parameter in drop-in mode); keys are compared by
their SHA-256, so the table holds no key and a lookup leaks no timing worth
having. Limits live in :class:`Limits`, a few floats per caller in one flat
array: a plain array in one process, a shared-memory array (and a lock)
when ``--workers`` runs several, so a caller's qps and quota hold across the
workers whichever one the kernel hands its connection to.

The daily quota counts paid vendor queries, which only the lookup knows
about, and the router's miss plan does not know the caller. So the caller
travels in a context variable (:data:`CALLER`, set per request: aiohttp runs
each request in a task of its own, and the router's lookups run in the
caller's task or in tasks it creates, which copy the context), and
:class:`MeteredClient` wraps the vendor client: before a lookup it takes one
query from the caller's quota, or raises Throttled so the route falls back
instead of paying. A lookup that got no answer gives its query back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from array import array
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Protocol

from smsroute.config import ClientKey
from smsroute.errors import LookupFailed, Throttled, TransportError
from smsroute.models import CarrierInfo
from smsroute.types import Clock

__all__ = [
    "CALLER",
    "CALL_RESERVE",
    "Caller",
    "Callers",
    "Limits",
    "MeteredClient",
    "find_key",
    "retry_after",
    "today",
]

_SLOTS: Final = 3  # per caller: theoretical arrival time (GCRA), day number, queries used that day
CALL_RESERVE: Final = 0.1
"""Seconds of a lookup's budget kept for the vendor call itself, not spent waiting for a slot."""


@dataclass(frozen=True, eq=False)
class Caller:
    """One configured caller: its name (for logs and the status page), index and limits."""

    name: str
    index: int
    qps: float | None
    burst: float
    daily_queries: int | None


CALLER: ContextVar[Caller | None] = ContextVar("smsroute_serve_caller", default=None)
"""The caller of the request being served (None when no client keys are configured)."""


class _Lock(Protocol):
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> Any: ...


def today(now: float) -> float:
    """Return the local calendar day of ``now`` as a number: quotas reset at midnight."""
    t = time.localtime(now)
    return float(t.tm_year * 1000 + t.tm_yday)


class Limits:
    """Each caller's rate (GCRA) and daily quota, in a flat array of floats.

    ``slots`` is a plain ``array('d')`` in one process, or a
    ``multiprocessing`` shared array with its lock for several workers.
    ``clock`` is monotonic (CLOCK_MONOTONIC is one clock for every process
    of the host); ``wall`` is wall-clock time, for the day.
    """

    def __init__(
        self,
        size: int,
        *,
        slots: Any = None,
        lock: _Lock | None = None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.slots: Any = slots if slots is not None else array("d", [0.0] * (_SLOTS * size))
        self.lock: _Lock = lock if lock is not None else contextlib.nullcontext()
        self.clock = clock
        self.wall = wall

    @staticmethod
    def shared_slots(context: Any, size: int) -> tuple[Any, Any]:
        """Return ``(slots, lock)`` in shared memory for ``size`` callers, from a mp context."""
        return context.RawArray("d", _SLOTS * max(1, size)), context.Lock()

    def admit(self, caller: Caller, cost: int = 1) -> float | None:
        """Take ``cost`` requests from the caller's rate; return None, or seconds to retry after."""
        if caller.qps is None:
            return None
        interval = 1.0 / caller.qps
        # GCRA: a request conforms when the theoretical arrival time is at most
        # (burst - 1) intervals ahead of now; a batch moves it by its size.
        tolerance = (caller.burst - 1.0) * interval
        now = self.clock()
        i = caller.index * _SLOTS
        with self.lock:
            tat: float = max(self.slots[i], now)
            if tat - now > tolerance:
                return tat - now - tolerance
            self.slots[i] = tat + cost * interval
        return None

    def spend(self, caller: Caller) -> bool:
        """Take one paid query from the caller's daily quota; False when it is used up."""
        limit = caller.daily_queries
        if limit is None:
            return True
        day = today(self.wall())
        i = caller.index * _SLOTS
        with self.lock:
            if self.slots[i + 1] != day:
                self.slots[i + 1] = day
                self.slots[i + 2] = 0.0
            if self.slots[i + 2] >= limit:
                return False
            self.slots[i + 2] += 1.0
        return True

    def give_back(self, caller: Caller) -> None:
        """Return a query that was taken but not paid (the lookup got no answer)."""
        if caller.daily_queries is None:
            return
        day = today(self.wall())
        i = caller.index * _SLOTS
        with self.lock:
            if self.slots[i + 1] == day and self.slots[i + 2] > 0:
                self.slots[i + 2] -= 1.0

    def used_today(self, caller: Caller) -> int:
        """Return the paid queries the caller caused today."""
        i = caller.index * _SLOTS
        with self.lock:
            if self.slots[i + 1] != today(self.wall()):
                return 0
            return int(self.slots[i + 2])


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class Callers:
    """The configured callers by key digest; empty when the service is open (loopback only)."""

    def __init__(self, keys: Sequence[ClientKey]) -> None:
        self.callers: tuple[Caller, ...] = tuple(
            Caller(
                k.name,
                i,
                k.qps,
                k.burst if k.burst is not None else max(1.0, k.qps or 1.0),
                k.daily_queries,
            )
            for i, k in enumerate(keys)
        )
        self._by_digest = {_digest(k.key): c for k, c in zip(keys, self.callers, strict=True)}
        # Keys seen and found, so that a caller's every request does not hash its
        # key again; only valid keys land here, so it holds no more than the table.
        self._known: dict[str, Caller] = {}

    @property
    def open(self) -> bool:
        """Return True when no keys are configured: every request is served, unnamed."""
        return not self._by_digest

    def find(self, key: str | None) -> Caller | None:
        """Return the caller whose key this is, or None."""
        if not key:
            return None
        caller = self._known.get(key)
        if caller is None:
            caller = self._by_digest.get(_digest(key))
            if caller is not None:
                self._known[key] = caller
        return caller


def find_key(headers: Any) -> str | None:
    """Return the key a request carries in ``Authorization: Bearer`` or ``X-Api-Key``."""
    auth = headers.get("Authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return str(token.strip())
    key = headers.get("X-Api-Key")
    return str(key).strip() if key else None


class MeteredClient:
    """The vendor client, charging each lookup to the caller of the current request.

    Past a caller's daily quota a lookup raises Throttled (no call is made,
    the breaker learns nothing, the route falls back). A lookup that raised
    gives its query back, except an unreadable code-0 answer, which the
    vendor charged. ``paid`` counts the lookups that were answered.

    At most ``slots`` lookups are in flight (the client's connection pool):
    the others wait here for one, within their budget less
    :data:`CALL_RESERVE`, and raise Throttled when none comes. Queued in
    the client's pool instead, a burst of misses (hundreds of callers at
    once) would time out there as TransportErrors, which tell the breaker
    the vendor is down when it is only busy.
    """

    def __init__(self, client: Any, limits: Limits, *, slots: int | None = None) -> None:
        self.client = client
        self.limits = limits
        self.paid = 0
        self.refused = 0
        self.busy = 0
        size = slots if slots is not None else getattr(client, "max_connections", None)
        self.slots = size if isinstance(size, int) and size > 0 else None
        self._free = asyncio.Semaphore(self.slots) if self.slots else None

    async def lookup(self, number: str, *, timeout: float | None = None) -> CarrierInfo:
        """Return the vendor's answer, charged to the current caller's quota."""
        caller = CALLER.get()
        if caller is not None and not self.limits.spend(caller):
            self.refused += 1
            raise Throttled(f"client {caller.name} used its {caller.daily_queries} daily queries")
        free = self._free
        if free is not None:
            started = time.monotonic()
            wait = None if timeout is None else max(0.0, timeout - min(CALL_RESERVE, timeout / 2))
            try:
                await asyncio.wait_for(free.acquire(), wait)
            except asyncio.TimeoutError:
                self.busy += 1
                if caller is not None:
                    self.limits.give_back(caller)
                raise Throttled(f"all {self.slots} vendor connections busy") from None
            if timeout is not None:
                timeout = max(0.001, timeout - (time.monotonic() - started))
        try:
            info: CarrierInfo = await self.client.lookup(number, timeout=timeout)
        except LookupFailed as exc:
            if isinstance(exc, TransportError) and not exc.retryable:
                self.paid += 1  # a code-0 answer we could not read: charged all the same
            elif caller is not None:
                self.limits.give_back(caller)
            raise
        finally:
            if free is not None:
                free.release()
        self.paid += 1
        return info

    async def balance(self, *, timeout: float | None = None) -> Any:
        """Return the account balance (never charged to a caller)."""
        return await self.client.balance(timeout=timeout)

    async def aclose(self) -> None:
        """Close the wrapped client."""
        await self.client.aclose()


def retry_after(seconds: float) -> str:
    """Return a Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
