"""MemoryCache: the in-process answer cache (TTL + LRU), and the home of CachePolicy.

The TTL policy and the fresh/stale verdict are :mod:`smsroute.core.freshness`'s
(re-exported here: ``from smsroute.cache import CachePolicy`` keeps working);
this module only stores.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from smsroute import codec
from smsroute.core.freshness import (
    ANSWER_MASK,
    DAY,
    FRESH_SHIFT,
    USED_BIT,
    CachePolicy,
    fresh_until,
)
from smsroute.types import Clock

__all__ = ["DAY", "CachePolicy", "MemoryCache"]


class MemoryCache:
    """A thread-safe TTL + LRU cache of answer codes, about 130 bytes per number.

    Not cachetools' ``LRUCache``/``TTLCache`` (and so cachetools is not a
    dependency): measured here, with the same int values, they cost 205-230
    and 290-320 bytes per entry (a second OrderedDict for the order, a linked
    list for expiry), over the 200-byte aim, and ~650 ns per locked hit, a
    third of the whole hit-path budget. A plain dict already keeps
    insertion order, so eviction is "second chance" (CLOCK): a hit only sets
    a used bit, and eviction gives used entries one more round at the back.
    Reads take no lock; writes, deletes and evictions take one.
    """

    def __init__(
        self,
        maxsize: int = 100_000,
        *,
        ttl: float | None = None,
        negative_ttl: float | None = None,
        stale_ttl: float | None = None,
        policy: CachePolicy | None = None,
        clock: Clock | None = None,
        timer: Clock | None = None,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.policy = CachePolicy.resolve(policy, ttl, negative_ttl, stale_ttl)
        self.maxsize = maxsize
        # ``timer`` is the name this keyword had before 0.2.0; ``clock`` is the
        # name every other part of smsroute uses.
        self._clock: Clock = clock or timer or time.monotonic
        self._data: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stale_ttl = self.policy.stale_ttl

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, number: object) -> bool:
        return number in self._data

    def __repr__(self) -> str:
        return f"MemoryCache({len(self._data)}/{self.maxsize}, {self.policy})"

    @property
    def entries(self) -> Mapping[str, int]:
        """Return the live table, number -> packed entry (read it, never write it).

        The supported fast path for a router's hit test: values are packed as
        :func:`smsroute.core.freshness.pack` describes (fresh-until, a
        recently-used bit, the answer code), and an entry without the used
        bit must go through :meth:`get` once so that eviction sees the use.
        """
        return self._data

    @property
    def clock(self) -> Clock:
        """Return the clock the cache times its entries with."""
        return self._clock

    def get(self, number: str) -> tuple[int, bool] | None:
        """Return ``(answer, fresh)`` or None; expired entries are dropped on the way."""
        value = self._data.get(number)
        if value is None:
            return None
        now = self._clock()
        until = value >> FRESH_SHIFT
        answer = value & ANSWER_MASK
        if now < until:
            if not value & USED_BIT:
                self._mark_used(number, value)
            return answer, True
        if now < until + self._stale_ttl and not codec.is_negative(answer):
            return answer, False
        with self._lock:
            if self._data.get(number) == value:
                del self._data[number]
        return None

    def _mark_used(self, number: str, value: int) -> None:
        # Taken once per entry per eviction round, so a hot number stays lock-free.
        with self._lock:
            if self._data.get(number) == value:
                self._data[number] = value | USED_BIT

    def set(self, number: str, answer: int, *, ttl: float | None = None) -> None:
        """Store an answer, fresh for the policy's TTL (or for ``ttl`` seconds)."""
        fresh = self.policy.ttl_for(answer) if ttl is None else ttl
        value = fresh_until(self._clock(), fresh) << FRESH_SHIFT | (answer & ANSWER_MASK)
        data = self._data
        with self._lock:
            if number in data:
                data[number] = value
                return
            while len(data) >= self.maxsize:
                self._evict_one()
            data[number] = value

    def _evict_one(self) -> None:
        # Second chance: a used entry goes to the back with its bit cleared.
        # Bounded: after one pass every bit is clear.
        data = self._data
        for _ in range(len(data) + 1):
            number = next(iter(data))
            value = data.pop(number)
            if value & USED_BIT:
                data[number] = value & ~USED_BIT
            else:
                return

    def delete(self, number: str) -> None:
        """Forget a number."""
        with self._lock:
            self._data.pop(number, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._data.clear()
