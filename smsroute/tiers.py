"""What a two-tier cache shares: the in-process near tier, and the health of the store behind it.

SqliteCache, RedisCache and AsyncRedisCache keep a
:class:`~smsroute.cache.MemoryCache` (:class:`NearTier`) in front of a store
that may fail, and judge that store's failures with :class:`Health`: a
count of errors, a back-off entered only when the store looks sick rather
than busy, and a yes/no on when an outage begins and ends (the backend logs
it, once per outage). Nothing here does I/O; the backends drive it.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

from smsroute.cache import MemoryCache
from smsroute.core.freshness import CachePolicy, Hit
from smsroute.types import Clock

__all__ = ["Counts", "Health", "NearTier"]


class Counts:
    """Named counters many threads bump; read together by ``stats()``."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def bump(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name``."""
        with self._lock:
            self._counts[name] += n

    def __getitem__(self, name: str) -> int:
        return self._counts[name]

    def snapshot(self, names: Iterable[str]) -> dict[str, int]:
        """Return the counters ``names`` (0 for those never bumped)."""
        with self._lock:
            return {name: self._counts[name] for name in names}


class Health:
    """Whether a store is worth asking: failures counted, a back-off for a sick store.

    A slow reply is not an outage. One command that times out while the
    store is busy (a fork for a snapshot, a burst of load) would otherwise
    send every send of the next ``backoff`` seconds past the shared tier and
    to the vendor. So the back-off starts only after ``failures``
    consecutive failures, where *consecutive* means each failed command was
    sent after the previous failure was seen: the commands in flight when
    one stall hits (every thread of a busy worker) fail together and count
    as one. A store that keeps failing what is sent to it is sick; it is
    then left alone for ``backoff`` seconds, and one more failure after that
    starts the next back-off at once. Any success ends the outage.

    :meth:`failed` and :meth:`succeeded` say when an outage begins and ends,
    so that the backend logs one warning per outage. Each failure bumps the
    ``counters`` (the first is the one reported when an outage ends).
    Thread-safe.
    """

    def __init__(
        self,
        *,
        backoff: float,
        failures: int,
        monotonic: Clock,
        counts: Counts,
        counters: tuple[str, ...] = ("errors",),
    ) -> None:
        if backoff < 0 or failures < 1:
            raise ValueError("backoff must be >= 0 and failures at least 1")
        self.backoff = float(backoff)
        self.failures = int(failures)
        self._monotonic = monotonic
        self._counts = counts
        self._counters = counters
        self._lock = threading.Lock()
        self._streak = 0
        self._seen = float("-inf")  # when the last failure was seen
        self._down_until = 0.0
        self._outage = False

    def resting(self) -> bool:
        """Return True during a back-off: the store is not to be asked now."""
        # Read without the lock: the send path asks this before every command.
        return self._down_until > 0.0 and self._monotonic() < self._down_until

    def failed(self, started: float) -> bool:
        """Count a failure of a command sent at ``started`` (monotonic); True: an outage begins."""
        with self._lock:
            for name in self._counters:
                self._counts.bump(name)
            now = self._monotonic()
            if started >= self._seen:
                self._streak += 1
            self._seen = max(self._seen, now)
            if self._streak < self.failures:
                return False
            if self.backoff > 0:
                self._down_until = now + self.backoff
            first, self._outage = not self._outage, True
            return first

    def succeeded(self) -> int | None:
        """Note a success; return the error count when this ends an outage (else None)."""
        if not self._streak and not self._outage:
            return None  # the usual case: no lock
        with self._lock:
            was, self._outage = self._outage, False
            self._streak = 0
            self._down_until = 0.0
            return self._counts[self._counters[0]] if was else None

    @property
    def available(self) -> bool:
        """Return False during an outage (from the failure that began it to the next success)."""
        return not self._outage


class NearTier:
    """The MemoryCache in front of a shared store, never fresher than the store's own verdict.

    Its entries are fresh for ``ttl`` seconds (``near_ttl``) at most and never
    longer than the store's policy, so a worker sees what the fleet changed
    within that time. Its stale window (one full TTL) is used only while the
    store cannot be asked: what it holds is then served as fresh
    (:meth:`outage_answer`), as a plain MemoryCache would serve it. An answer
    the store could not take is *held* here for its whole TTL
    (:meth:`hold`): a worker whose shared tier refuses writes pays no more
    than one with a MemoryCache. Times are on the ``monotonic`` clock.
    """

    def __init__(self, policy: CachePolicy, *, maxsize: int, ttl: float, monotonic: Clock) -> None:
        if ttl < 0:
            raise ValueError("near_ttl must be >= 0")
        self.policy = policy
        self.ttl = float(ttl)
        self.cache = MemoryCache(
            maxsize,
            policy=CachePolicy(
                ttl=min(self.ttl, policy.ttl),
                negative_ttl=min(self.ttl, policy.negative_ttl),
                stale_ttl=policy.ttl,
            ),
            clock=monotonic,
        )

    def fresh(self, number: str) -> Hit | None:
        """Return the near tier's fresh hit for ``number``, or None (the store must be asked)."""
        hit = self.cache.get(number)
        return hit if hit is not None and hit[1] else None

    def learn(self, number: str, until: int, answer: int, now: float) -> Hit | None:
        """Return the verdict on the store's entry (fresh until ``until``) at ``now``; keep it here.

        Kept only when the store's entry stays fresh longer than the near
        tier would keep it (strictly: fresh-until is rounded up to a whole
        second), so the near tier never answers fresh for an entry the store
        already calls stale.
        """
        hit = self.policy.hit(until, answer, now)
        if (
            hit is not None
            and hit[1]
            and self.ttl > 0
            and until - now > self.cache.policy.ttl_for(answer)
        ):
            self.cache.set(number, answer)
        return hit

    def stored(self, number: str, answer: int) -> None:
        """Note an answer the store took: keep a copy for ``near_ttl``."""
        if self.ttl > 0:
            self.cache.set(number, answer)

    def hold(self, number: str, answer: int) -> None:
        """Keep an answer the store could not take, fresh for its whole TTL."""
        self.cache.set(number, answer, ttl=self.policy.ttl_for(answer))

    def forget(self, number: str) -> None:
        """Drop a number (deleted, or gone from the store)."""
        self.cache.delete(number)

    def outage_answer(self, number: str) -> Hit | None:
        """Return what to answer while the store cannot be asked: the near entry, as fresh."""
        # MemoryCache drops a negative at the end of its TTL: what is left is usable.
        hit = self.cache.get(number)
        return None if hit is None else (hit[0], True)
