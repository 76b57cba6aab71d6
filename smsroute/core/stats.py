"""What a router counts, as plain data: decision sources, latency histogram, the stats shape.

The shape of ``Router.stats()`` (and ``AsyncRouter.stats()``) is
:class:`RouterStats`, a TypedDict: metrics, the command line and the demo
read it by typed keys. Counting itself is the driver's: the threaded router
bumps lock-free counters, the asyncio router plain ints; both hand their
numbers to :func:`build_stats`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from typing import Final, Literal, TypedDict

from smsroute.carrier import Carrier

__all__ = [
    "BUCKETS",
    "SOURCES",
    "Histogram",
    "LatencySnapshot",
    "RouterStats",
    "Source",
    "build_stats",
    "carrier_label",
]

Source = Literal["cache", "upstream", "stale", "fallback"]
SOURCES: Final[tuple[Source, ...]] = ("cache", "upstream", "stale", "fallback")
BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upstream latency buckets (seconds), as Prometheus would bucket a ~10 ms API."""


class LatencySnapshot(TypedDict):
    """Cumulative bucket counts (``le`` -> count), their sum in seconds and the count."""

    buckets: dict[str, int]
    sum: float
    count: int


class RouterStats(TypedDict):
    """What ``Router.stats()`` answers."""

    decisions: dict[str, int]
    """Decisions by source: cache, upstream, stale, fallback."""
    decisions_by_carrier: dict[str, dict[str, int]]
    """Decisions by source, then by operator name (``unknown`` for none)."""
    hits: int
    misses: int
    upstream_calls: int
    coalesced: int
    """Misses that followed another caller's lookup of the same number."""
    reroutes: int
    """Sends a gateway refused as not its own (WrongCarrier) and that were routed again."""
    maybe_billed: int
    """Lookups that failed after the request went out (a timeout): the vendor may have charged."""
    errors: dict[str, int]
    """Failures by vendor code or exception name; ``cache`` for cache I/O."""
    fallback_reasons: dict[str, int]
    breaker: str
    breaker_opened: int
    cache_size: int | None
    cache_errors: int | None
    """Failures the cache backend absorbed itself (Redis, SQLite); None for MemoryCache."""
    cache_available: bool | None
    """False while a shared cache believes its store unreachable; None when it cannot tell."""
    upstream_latency: LatencySnapshot


def carrier_label(carrier: Carrier | None) -> str:
    """Return how stats name an operator (``unknown`` for None)."""
    return carrier.value if carrier is not None else "unknown"


class Histogram:
    """Upstream latency in fixed buckets. Plain data: not thread-safe (the driver locks)."""

    __slots__ = ("_counts", "_sum")

    BUCKETS: Final = BUCKETS

    def __init__(self) -> None:
        self._counts = [0] * (len(BUCKETS) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        """Record one observation."""
        self._counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self._sum += seconds

    def snapshot(self) -> LatencySnapshot:
        """Return cumulative bucket counts (``le`` -> count), the sum and the count."""
        cumulative: dict[str, int] = {}
        running = 0
        for bound, n in zip((*map(str, BUCKETS), "+Inf"), self._counts, strict=True):
            running += n
            cumulative[bound] = running
        return {"buckets": cumulative, "sum": self._sum, "count": running}


def build_stats(
    by_source_carrier: Iterable[tuple[tuple[Source, Carrier | None], int]],
    *,
    upstream_calls: int,
    coalesced: int,
    errors: Mapping[str, int],
    reroutes: int = 0,
    maybe_billed: int = 0,
    fallback_reasons: Mapping[str, int],
    breaker: str,
    breaker_opened: int,
    cache_size: int | None,
    latency: LatencySnapshot,
    cache_errors: int | None = None,
    cache_available: bool | None = None,
) -> RouterStats:
    """Return the stats shape from a driver's counts."""
    decisions: dict[str, int] = dict.fromkeys(SOURCES, 0)
    by_carrier: dict[str, dict[str, int]] = {source: {} for source in SOURCES}
    for (source, carrier), n in by_source_carrier:
        if n:
            by_carrier[source][carrier_label(carrier)] = n
            decisions[source] += n
    return {
        "decisions": dict(decisions),
        "decisions_by_carrier": by_carrier,
        "hits": decisions["cache"],
        "misses": sum(decisions.values()) - decisions["cache"],
        "upstream_calls": upstream_calls,
        "coalesced": coalesced,
        "reroutes": reroutes,
        "maybe_billed": maybe_billed,
        "errors": dict(errors),
        "fallback_reasons": dict(fallback_reasons),
        "breaker": breaker,
        "breaker_opened": breaker_opened,
        "cache_size": cache_size,
        "cache_errors": cache_errors,
        "cache_available": cache_available,
        "upstream_latency": latency,
    }
