"""In-process answer cache and the TTL policy every backend shares.

Default TTLs, and why:

* ``ttl`` = 7 days. Porting takes days and a number can be ported again only
  120 days after its last port, so an answer rarely changes within a week;
  the exception (a cancelled number reissued to a new subscriber, back on
  its original operator) is healed by the router when a gateway raises
  WrongCarrier. A week keeps the paid-query bill near one query per number
  per week for a steady audience.
* ``negative_ttl`` = 1 hour. "Vendor does not know this number" (-4) is often
  a number that is being activated or moved: ask again soon.
* ``stale_ttl`` = 30 days. An expired answer is still a far better guess
  than the segment table (it knows about ports): it is kept this much longer
  and served only when the upstream fails.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from smsroute import codec
from smsroute.types import Clock

__all__ = ["CachePolicy", "MemoryCache"]

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How long answers stay fresh, how long negatives live, how long stale ones are kept."""

    ttl: float = 7 * DAY
    negative_ttl: float = 3600.0
    stale_ttl: float = 30 * DAY

    def __post_init__(self) -> None:
        for name in ("ttl", "negative_ttl", "stale_ttl"):
            value = getattr(self, name)
            # Not infinite or NaN either: expiry times are stored as whole
            # seconds, and a set() that cannot store would silently cache nothing.
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds, not negative")

    def ttl_for(self, answer: int) -> float:
        """Return how long ``answer`` stays fresh."""
        return self.negative_ttl if codec.is_negative(answer) else self.ttl

    def keep_for(self, answer: int) -> float:
        """Return how long ``answer`` is kept at all (fresh plus stale)."""
        return self.negative_ttl if codec.is_negative(answer) else self.ttl + self.stale_ttl

    @classmethod
    def resolve(
        cls,
        policy: CachePolicy | None,
        ttl: float | None = None,
        negative_ttl: float | None = None,
        stale_ttl: float | None = None,
    ) -> CachePolicy:
        """Return ``policy`` (or the defaults) with the durations given as keywords."""
        base = policy or cls()
        changes = {
            name: value
            for name, value in (
                ("ttl", ttl),
                ("negative_ttl", negative_ttl),
                ("stale_ttl", stale_ttl),
            )
            if value is not None
        }
        return base.copy(**changes) if changes else base

    def copy(self, **changes: Any) -> CachePolicy:
        """Return a copy with some fields changed."""
        return replace(self, **changes)


# Value layout: fresh-until (whole seconds of the cache's clock) above bit 32,
# a "recently used" bit at 31, the answer code below. One int per number.
_SHIFT = 32
_USED = 1 << 31
_ANSWER = _USED - 1


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
        timer: Clock = time.monotonic,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.policy = CachePolicy.resolve(policy, ttl, negative_ttl, stale_ttl)
        self.maxsize = maxsize
        self._timer = timer
        self._data: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stale_ttl = self.policy.stale_ttl

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, number: object) -> bool:
        return number in self._data

    def __repr__(self) -> str:
        return f"MemoryCache({len(self._data)}/{self.maxsize}, {self.policy})"

    def get(self, number: str) -> tuple[int, bool] | None:
        """Return ``(answer, fresh)`` or None; expired entries are dropped on the way."""
        value = self._data.get(number)
        if value is None:
            return None
        now = self._timer()
        fresh_until = value >> _SHIFT
        answer = value & _ANSWER
        if now < fresh_until:
            if not value & _USED:
                self._mark_used(number, value)
            return answer, True
        if now < fresh_until + self._stale_ttl and not codec.is_negative(answer):
            return answer, False
        with self._lock:
            if self._data.get(number) == value:
                del self._data[number]
        return None

    def _mark_used(self, number: str, value: int) -> None:
        # Taken once per entry per eviction round, so a hot number stays lock-free.
        with self._lock:
            if self._data.get(number) == value:
                self._data[number] = value | _USED

    def set(self, number: str, answer: int) -> None:
        """Store an answer, fresh for the policy's TTL."""
        fresh_until = int(self._timer() + self.policy.ttl_for(answer)) + 1
        value = fresh_until << _SHIFT | (answer & _ANSWER)
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
            if value & _USED:
                data[number] = value & ~_USED
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
