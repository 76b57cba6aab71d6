"""Prometheus metrics for a Router (and a BalanceWatcher), read at scrape time.

Needs the extra ``smsroute[prometheus]``. The collector reads
:meth:`smsroute.Router.stats` when Prometheus scrapes, so the send path pays
nothing for metrics::

    from smsroute.metrics import PrometheusCollector

    PrometheusCollector(router, watcher=watcher).register()
    prometheus_client.start_http_server(9100)

Without the extra, ``router.stats()`` holds the same counters as a dict.

==========================================  =======  ===========================================
metric                                      type     labels / meaning
==========================================  =======  ===========================================
``smsroute_decisions_total``                counter  ``source`` (cache, upstream, stale,
                                                     fallback), ``carrier`` (移动 ..., unknown)
``smsroute_fallbacks_total``                counter  ``reason``: why a send did not use a fresh
                                                     answer (``circuit open``, ``TransportError``,
                                                     ``ServiceError -8`` ...)
``smsroute_upstream_calls_total``           counter  lookups sent to the vendor
``smsroute_coalesced_total``                counter  lookups that waited for another thread's
``smsroute_errors_total``                   counter  ``code``: vendor code, exception name or
                                                     ``cache``
``smsroute_upstream_latency_seconds``       histo    time of each upstream lookup
``smsroute_breaker_state``                  gauge    0 closed, 1 half-open, 2 open
``smsroute_breaker_opened_total``           counter  times the breaker opened
``smsroute_cache_size``                     gauge    numbers in the cache (when it can tell)
``smsroute_balance``                        gauge    queries left (with a watcher, once read)
``smsroute_balance_level``                  gauge    0 ok, 1 low, 2 exhausted (with a watcher)
``smsroute_balance_poll_errors_total``      counter  failed balance polls (with a watcher)
==========================================  =======  ===========================================

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Final, Protocol

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import REGISTRY, CollectorRegistry
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "smsroute.metrics needs prometheus-client: pip install 'smsroute[prometheus]'"
    ) from exc

from smsroute.core.stats import Histogram, RouterStats, build_stats

if TYPE_CHECKING:
    from smsroute.watcher import BalanceWatcher

__all__ = ["BREAKER_STATES", "HasStats", "PrometheusCollector"]

BREAKER_STATES: Final = {"closed": 0, "half-open": 1, "open": 2}
"""The value of ``<namespace>_breaker_state`` for each breaker state."""
_LEVELS: Final = {"ok": 0, "low": 1, "exhausted": 2}
# What describe() renders from: the families without samples.
_EMPTY: Final = build_stats(
    (),
    upstream_calls=0,
    coalesced=0,
    errors={},
    fallback_reasons={},
    breaker="closed",
    breaker_opened=0,
    cache_size=None,
    latency=Histogram().snapshot(),
)


class HasStats(Protocol):
    """What the collector reads: ``stats()``, which Router and AsyncRouter both have."""

    def stats(self) -> RouterStats:
        """Return the router's counters (see :class:`smsroute.core.stats.RouterStats`)."""
        ...


class PrometheusCollector:
    """A prometheus_client collector over ``router.stats()`` (and ``watcher``), at scrape time.

    ``router`` is a :class:`~smsroute.Router`, an :class:`~smsroute.AsyncRouter`
    (``stats()`` is a plain call on both, safe from the scrape's thread), or
    anything with such a ``stats()``.
    """

    def __init__(
        self,
        router: HasStats,
        *,
        watcher: BalanceWatcher | None = None,
        namespace: str = "smsroute",
    ) -> None:
        self.router = router
        self.watcher = watcher
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"PrometheusCollector(namespace={self.namespace!r}, watcher={self.watcher!r})"

    def register(self, registry: CollectorRegistry = REGISTRY) -> PrometheusCollector:
        """Register with ``registry`` (the default global one) and return self."""
        registry.register(self)
        return self

    def describe(self) -> Iterable[Metric]:
        """Return the metric families without samples (registration does not scrape)."""
        return list(self._families(None))

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families with the router's (and watcher's) current values."""
        yield from self._families(self.router.stats())

    def _families(self, stats: RouterStats | None) -> Iterator[Metric]:
        ns = self.namespace
        reading = stats is not None
        s: RouterStats = stats if stats is not None else _EMPTY

        decisions = CounterMetricFamily(
            f"{ns}_decisions",
            "Routing decisions by where the answer came from and the operator chosen.",
            labels=["source", "carrier"],
        )
        for source, by_carrier in s["decisions_by_carrier"].items():
            for carrier, n in sorted(by_carrier.items()):
                decisions.add_metric([source, carrier], n)
        yield decisions

        fallbacks = CounterMetricFamily(
            f"{ns}_fallbacks",
            "Decisions that did not use a fresh answer, by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(s["fallback_reasons"].items()):
            fallbacks.add_metric([reason], n)
        yield fallbacks

        yield CounterMetricFamily(
            f"{ns}_upstream_calls",
            "Lookups sent to the vendor.",
            value=s["upstream_calls"] if reading else None,
        )
        yield CounterMetricFamily(
            f"{ns}_coalesced",
            "Lookups that waited for another thread's lookup of the same number.",
            value=s["coalesced"] if reading else None,
        )

        yield CounterMetricFamily(
            f"{ns}_reroutes",
            "Sends a gateway refused as not its own (WrongCarrier), routed again.",
            value=s["reroutes"] if reading else None,
        )

        errors = CounterMetricFamily(
            f"{ns}_errors",
            "Lookup and cache errors by vendor code or exception name.",
            labels=["code"],
        )
        for code, n in sorted(s["errors"].items()):
            errors.add_metric([code], n)
        yield errors

        latency = HistogramMetricFamily(
            f"{ns}_upstream_latency_seconds", "Time of each upstream lookup."
        )
        snapshot = s["upstream_latency"]
        if reading:
            buckets = [(le, float(n)) for le, n in snapshot["buckets"].items()]
            latency.add_metric([], buckets, snapshot["sum"])
        yield latency

        yield GaugeMetricFamily(
            f"{ns}_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            value=BREAKER_STATES[s["breaker"]] if reading else None,
        )
        yield CounterMetricFamily(
            f"{ns}_breaker_opened",
            "Times the circuit breaker opened.",
            value=s["breaker_opened"] if reading else None,
        )
        cache_errors = s["cache_errors"]
        yield CounterMetricFamily(
            f"{ns}_cache_errors",
            "Cache store failures the backend absorbed (Redis, SQLite); sends went on without.",
            value=cache_errors if reading and cache_errors is not None else None,
        )
        available = s["cache_available"]
        yield GaugeMetricFamily(
            f"{ns}_cache_available",
            "1 while the shared cache's store answers, 0 while it is believed down.",
            value=float(available) if reading and available is not None else None,
        )
        size = s["cache_size"]
        yield GaugeMetricFamily(
            f"{ns}_cache_size",
            "Numbers in the answer cache.",
            value=size if reading and size is not None else None,
        )

        if self.watcher is None:
            return
        last = self.watcher.last if reading else None
        yield GaugeMetricFamily(
            f"{ns}_balance",
            "Queries left on the vendor account, as last polled.",
            value=last.remaining if last is not None else None,
        )
        level = _LEVELS.get(self.watcher.level) if reading else None
        yield GaugeMetricFamily(
            f"{ns}_balance_level",
            "Balance level: 0 ok, 1 under the low-water mark, 2 exhausted.",
            value=level,
        )
        yield CounterMetricFamily(
            f"{ns}_balance_poll_errors",
            "Balance polls that failed.",
            value=self.watcher.errors if reading else None,
        )
