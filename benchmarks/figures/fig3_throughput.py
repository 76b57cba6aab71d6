"""Figure 3: throughput of ``route_many()`` over unique numbers, upstream latency 10 ms.

Every number is new, so every route is a paid lookup: the figure says how
close route_many comes to what the machine allows. With the vendor at
10 ms a worker does at most 100 lookups a second (the latency bound); with
the vendor at latency 0, bare requests on as many threads and connections
show what the CPUs allow (the CPU bound). Per concurrency, each round runs
the bound, route_many and bare requests at 10 ms (the reference) in rotating
order; the figure is the median ratio of route_many to the lower bound
(aim >= 0.70). Client and server CPU per number are in the context.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
import requests.adapters
from harness import Deliveries, Env, check, figure, gateways, median, rotated

from smsroute import Router

F3_LATENCY = 0.010  # seconds of upstream latency in figure 3


@dataclass(frozen=True)
class Sizes:
    """Numbers per concurrency (over all rounds), rounds, and requests per CPU-bound run."""

    f3_numbers: dict[int, int]  # per concurrency, over all rounds
    f3_rounds: int
    f3_bound_requests: int


FULL = Sizes(
    f3_numbers={1: 20_000, 8: 20_000, 32: 20_000, 64: 20_000},
    f3_rounds=5,
    f3_bound_requests=1_000,
)
QUICK = Sizes(f3_numbers={1: 20, 8: 120, 32: 320, 64: 640}, f3_rounds=1, f3_bound_requests=150)


def _bare_throughput(env: Env, concurrency: int, count: int) -> float:
    """Return bare requests per second over ``concurrency`` threads and connections.

    Whatever latency the server is set to: at 0 it is figure 3's CPU bound, at
    10 ms the reference that tells the router's cost from the environment's.
    """
    url = env.server.url + "/carrier"
    key = env.server.apikey
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=1, pool_maxsize=concurrency, max_retries=0
    )
    session.mount("http://", adapter)
    work = iter(env.pool.take(count))

    def worker() -> None:
        for n in work:  # a list iterator hands out each item once across threads
            session.post(url, data={"apikey": key, "mobile": n}).json()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    session.close()
    return count / elapsed


def _route_many_throughput(env: Env, concurrency: int, count: int) -> dict[str, Any]:
    """Return route_many() numbers per second and what the run saw."""
    client = env.client(pool_maxsize=concurrency)  # the same connection count as the bound
    deliveries = Deliveries()
    router = Router(client, gateways(deliveries), default=deliveries)
    numbers = env.pool.take(count)
    s0 = env.server.control()
    c0 = time.process_time()
    started = time.perf_counter()
    decisions = router.route_many(numbers, concurrency=concurrency)
    elapsed = time.perf_counter() - started
    c1 = time.process_time()
    s1 = env.server.control()
    client.close()
    stats = router.stats()
    latency = stats["upstream_latency"]
    return {
        "per_second": count / elapsed,
        "not_upstream": sum(1 for d in decisions if d.source != "upstream"),
        "mean_upstream_ms": latency["sum"] / max(1, latency["count"]) * 1e3,
        "client_cpu_us": (c1 - c0) / count * 1e6,
        "server_cpu_us": (s1["cpu"] - s0["cpu"]) / count * 1e6 if s1["cpu"] is not None else None,
    }


def measure(env: Env, sizes: Sizes) -> dict[str, Any]:
    """route_many() at latency 10 ms vs min(latency bound, bare-requests CPU bound)."""
    server = env.server
    measures = []
    per_concurrency: dict[str, Any] = {}
    for concurrency, total in sizes.f3_numbers.items():
        latency_bound = concurrency / F3_LATENCY
        chunk = math.ceil(total / sizes.f3_rounds)
        # Bare requests at 10 ms too (fewer: it only says what the environment
        # allows at this latency, whatever the router does).
        reference_count = min(sizes.f3_bound_requests, 100 * concurrency, chunk)
        ratios, runs, bounds, references = [], [], [], []
        steps = ("bound", "route_many", "reference")
        for r in range(sizes.f3_rounds):
            run: dict[str, Any] = {}
            bound = math.nan
            for step in rotated(steps, r):
                if step == "bound":
                    server.control(latency=0)
                    bound = _bare_throughput(env, concurrency, sizes.f3_bound_requests)
                elif step == "reference":
                    server.control(latency=F3_LATENCY)
                    references.append(_bare_throughput(env, concurrency, reference_count))
                else:
                    server.control(latency=F3_LATENCY)
                    run = _route_many_throughput(env, concurrency, chunk)
            server.control(latency=0)
            bounds.append(bound)
            runs.append(run)
            ratios.append(run["per_second"] / min(latency_bound, bound))
        cpu_bound = median(bounds)
        per_second = median([x["per_second"] for x in runs])
        measures.append(
            check(
                f"route_many() at concurrency {concurrency} / lower bound",
                median(ratios),
                "ratio",
                ">=",
                0.70,
            )
        )
        per_concurrency[str(concurrency)] = {
            "numbers": chunk * sizes.f3_rounds,
            "per_second": per_second,
            "latency_bound": latency_bound,
            "cpu_bound_bare_requests": cpu_bound,
            "lower_bound": "latency" if latency_bound <= cpu_bound else "cpu",
            "ratio_vs_latency_bound": per_second / latency_bound,
            "ratio_vs_cpu_bound": per_second / cpu_bound,
            "bare_requests_at_10ms_per_second": median(references),
            "ratio_vs_bare_requests_at_10ms": per_second / median(references),
            "mean_upstream_ms": median([x["mean_upstream_ms"] for x in runs]),
            "client_cpu_us_per_number": median([x["client_cpu_us"] for x in runs]),
            "server_cpu_us_per_request": (
                median([x["server_cpu_us"] for x in runs])
                if runs[0]["server_cpu_us"] is not None
                else None
            ),
            "not_upstream": sum(x["not_upstream"] for x in runs),
        }
    return figure(
        "route_many() over unique numbers, upstream latency 10 ms",
        measures,
        note="; ".join(
            f"c={c}: {v['per_second']:.0f}/s (latency bound {v['latency_bound']:.0f}, "
            f"CPU bound {v['cpu_bound_bare_requests']:.0f}, bare at 10 ms "
            f"{v['bare_requests_at_10ms_per_second']:.0f})"
            for c, v in per_concurrency.items()
        ),
        rounds=sizes.f3_rounds,
        server=server.kind,
        cpus=os.cpu_count(),
        by_concurrency=per_concurrency,
    )
