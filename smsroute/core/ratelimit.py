"""The token bucket of a vendor rate limit, with an explicit ``now``: reserve a slot or refuse.

A lookup asks for a token within what is left of its deadline. The bucket
answers how long to wait for it (0 when a token is there) and reserves it,
or None when no token can come in time, in which case nothing is taken and
the route falls back at once instead of waiting past its deadline. Waits
are reserved in order, so a burst of callers is spread at ``qps`` rather
than all waking at the same refill.
"""

from __future__ import annotations

import math

__all__ = ["TokenBucket"]


class TokenBucket:
    """``qps`` tokens a second, up to ``burst`` saved up. Not thread-safe (drivers lock)."""

    __slots__ = ("burst", "qps", "stamp", "tokens")

    def __init__(self, qps: float, burst: float | None = None, *, now: float = 0.0) -> None:
        if not math.isfinite(qps) or qps <= 0:
            raise ValueError("qps must be a positive, finite number of requests a second")
        burst = max(1.0, qps / 10) if burst is None else float(burst)
        if not math.isfinite(burst) or burst < 1:
            raise ValueError("burst must be at least 1")
        self.qps = float(qps)
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def reserve(self, now: float, max_wait: float) -> float | None:
        """Return the seconds to wait for a token (reserving it), or None if it comes too late."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.qps)
            self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        wait = (1 - self.tokens) / self.qps
        if wait > max_wait:
            return None
        self.tokens -= 1  # may go negative: later callers queue behind this one
        return wait
