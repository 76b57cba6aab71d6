"""RateLimit: keep this process's lookups under the vendor's queries per second.

Vendors of this kind throttle per key (Aliyun's comparable API documents
100-1,000 QPS per account); a bulk run at high concurrency would pass that
in a second. Pass ``rate_limit=RateLimit(qps)`` to a client: each attempt
then waits for a token within the call's time budget, and when no token can
come in time the lookup raises :class:`~smsroute.errors.Throttled` at once,
so the route falls back instead of waiting past its deadline (a throttled
call was never made: the breaker learns nothing from it).

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Protocol, runtime_checkable

from smsroute.core.ratelimit import TokenBucket
from smsroute.errors import Throttled
from smsroute.types import Clock

__all__ = ["RateLimit", "RateLimiter", "turn"]


@runtime_checkable
class RateLimiter(Protocol):
    """What a client's ``rate_limit=`` takes: reserve a token within ``max_wait`` seconds."""

    def reserve(self, max_wait: float) -> float | None:
        """Return how long to wait before the call (the token is then reserved), or None."""


def turn(limiter: RateLimiter, max_wait: float, what: str) -> float:
    """Return the seconds to wait for a reserved token; raise Throttled if none comes in time.

    What every user of a limiter does (both clients, and ``acquire`` on the
    limiters themselves); ``what`` names the limit in the Throttled message.
    """
    wait = limiter.reserve(max_wait)
    if wait is None:
        raise Throttled(f"{what}: no token within {max_wait:.3f} s")
    return wait


class RateLimit:
    """A token bucket of ``qps`` a second and ``burst`` tokens (default qps/10, at least 1).

    Thread-safe and usable from asyncio (reserving takes a lock for a few
    microseconds, never waits). :meth:`acquire` and :meth:`aacquire` do the
    waiting for a blocking or an asyncio caller.
    """

    def __init__(self, qps: float, burst: float | None = None, *, clock: Clock = time.monotonic):
        self._clock = clock
        self._bucket = TokenBucket(qps, burst, now=clock())
        self._lock = threading.Lock()

    @property
    def qps(self) -> float:
        """Return the rate in tokens a second."""
        return self._bucket.qps

    @property
    def burst(self) -> float:
        """Return how many tokens may be saved up."""
        return self._bucket.burst

    def reserve(self, max_wait: float) -> float | None:
        """Return the seconds to wait for a token (reserving it), or None if it comes too late."""
        with self._lock:
            return self._bucket.reserve(self._clock(), max_wait)

    def acquire(self, max_wait: float, *, sleep: object = time.sleep) -> None:
        """Wait for a token; raise Throttled when none can come within ``max_wait`` seconds."""
        wait = turn(self, max_wait, f"rate limit of {self.qps:g}/s")
        if wait > 0:
            sleep(wait)  # type: ignore[operator]

    async def aacquire(self, max_wait: float) -> None:
        """Await a token; raise Throttled when none can come within ``max_wait`` seconds."""
        wait = turn(self, max_wait, f"rate limit of {self.qps:g}/s")
        if wait > 0:
            await asyncio.sleep(wait)

    def __repr__(self) -> str:
        return f"RateLimit(qps={self.qps:g}, burst={self.burst:g})"
