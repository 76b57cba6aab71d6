"""``/metrics`` for the service: the router's collector plus HTTP, balance and quota metrics.

Needs prometheus-client (the extra ``smsroute[prometheus]``); importing this
module without it raises ImportError, which ``/metrics`` turns into a 501
with the hint. Each application has a registry of its own, so tests and
several apps in one process do not collide in the global one.

=============================================  =======  ===================================
metric                                         type     labels / meaning
=============================================  =======  ===================================
``smsroute_*`` of :mod:`smsroute.metrics`                decisions, fallbacks, upstream
                                                        calls, errors, breaker, cache size
``smsroute_http_requests_total``               counter  ``endpoint``, ``method``, ``status``
``smsroute_http_request_duration_seconds``     histo    ``endpoint``
``smsroute_http_in_flight``                    gauge    requests being served
``smsroute_queries_paid_total``                counter  vendor lookups that were answered
``smsroute_quota_refusals_total``              counter  lookups refused by a daily quota
``smsroute_client_queries_today``              gauge    ``client``: paid queries it caused
``smsroute_balance``                           gauge    queries left, as last read
``smsroute_uptime_seconds``                    gauge    since this worker started
=============================================  =======  ===================================
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from smsroute.metrics import PrometheusCollector
from smsroute.serve.observe import BUCKETS
from smsroute.serve.service import Service

__all__ = ["CONTENT_TYPE_LATEST", "ServiceCollector", "exposition", "registry_for"]


class ServiceCollector:
    """A prometheus_client collector of the service's HTTP, balance and quota counters."""

    def __init__(self, service: Service, namespace: str = "smsroute") -> None:
        self.service = service
        self.namespace = namespace

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families with their current values."""
        ns, s = self.namespace, self.service
        requests = CounterMetricFamily(
            f"{ns}_http_requests",
            "HTTP requests served, by endpoint, method and status.",
            labels=["endpoint", "method", "status"],
        )
        for (endpoint, method, status), n in sorted(s.http.counts.items()):
            requests.add_metric([endpoint, method, str(status)], n)
        yield requests
        latency = HistogramMetricFamily(
            f"{ns}_http_request_duration_seconds",
            "Time to answer an HTTP request, by endpoint.",
            labels=["endpoint"],
        )
        for endpoint, counts in sorted(s.http.latency.items()):
            running, buckets = 0, []
            for bound, n in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
                running += n
                buckets.append((bound, float(running)))
            latency.add_metric([endpoint], buckets, s.http.sums[endpoint])
        yield latency
        yield GaugeMetricFamily(
            f"{ns}_http_in_flight", "HTTP requests being served.", value=s.http.in_flight
        )
        yield CounterMetricFamily(
            f"{ns}_queries_paid", "Vendor lookups that were answered.", value=s.metered.paid
        )
        yield CounterMetricFamily(
            f"{ns}_quota_refusals",
            "Lookups not made because the caller's daily quota was used up.",
            value=s.metered.refused,
        )
        quota = GaugeMetricFamily(
            f"{ns}_client_queries_today",
            "Paid vendor queries each client caused today.",
            labels=["client"],
        )
        for caller in s.callers.callers:
            quota.add_metric([caller.name], s.limits.used_today(caller))
        yield quota
        last = s.balance.last
        if last is not None:
            yield GaugeMetricFamily(
                f"{ns}_balance", "Queries left on the vendor account, as last read.", last.remaining
            )
        yield GaugeMetricFamily(
            f"{ns}_uptime_seconds", "Seconds since this worker started.", time.time() - s.started
        )


def registry_for(service: Service) -> CollectorRegistry:
    """Return a registry with the router's and the service's collectors."""
    registry = CollectorRegistry(auto_describe=False)
    PrometheusCollector(service.router).register(registry)
    registry.register(ServiceCollector(service))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """Return the registry in the Prometheus text format."""
    return generate_latest(registry)
