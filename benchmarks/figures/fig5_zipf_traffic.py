"""Figure 5: queries paid under realistic traffic, Zipf(1.1) sends through the router.

Real send traffic repeats numbers with a heavy tail; the cache and single
flight together should pay exactly one query per distinct number, however
the sends interleave. 16 threads send a Zipf(1.1) stream over a population
of numbers through one router (against the fake vendor in full mode, an
in-process simulator in quick mode); the figure is upstream queries divided
by distinct numbers sent to (aim: 1.00), with no failed send. Queries saved
per million sends and the hit ratio are in the context.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness import Deliveries, Env, SimClient, check, figure, gateways, optional

from smsroute import Router

F5_EXPONENT = 1.1


@dataclass(frozen=True)
class Sizes:
    """Sends, the population they draw from, and whether the fake vendor answers."""

    f5_sends: int
    f5_numbers: int
    f5_real_server: bool


FULL = Sizes(f5_sends=200_000, f5_numbers=50_000, f5_real_server=True)
QUICK = Sizes(f5_sends=20_000, f5_numbers=5_000, f5_real_server=False)


def zipf_stream(population: Sequence[str], sends: int, exponent: float, seed: int) -> list[str]:
    """Return ``sends`` draws from population with P(rank k) proportional to k**-exponent."""
    np = optional("numpy")
    if np is None:
        rng = random.Random(seed)
        weights = list(itertools.accumulate(k**-exponent for k in range(1, len(population) + 1)))
        return rng.choices(population, cum_weights=weights, k=sends)
    p = np.arange(1, len(population) + 1, dtype=float) ** -exponent
    picks = np.random.default_rng(seed).choice(len(population), size=sends, p=p / p.sum())
    return [population[i] for i in picks]


def measure(env: Env, sizes: Sizes) -> dict[str, Any]:
    """Zipf(1.1) sends through the router: one paid query per distinct number."""
    population = env.pool.take(sizes.f5_numbers)
    stream = zipf_stream(population, sizes.f5_sends, F5_EXPONENT, seed=5)
    distinct = len(set(stream))
    threads_n = 16
    if sizes.f5_real_server:
        env.server.control(latency=0, fault=None)
        client: Any = env.client(pool_maxsize=threads_n)
        before = env.server.control()["carrier_calls"]
    else:
        client = SimClient()
    deliveries = Deliveries()
    router = Router(client, gateways(deliveries), default=deliveries)
    raised: list[str] = []
    work = iter(stream)

    def sender() -> None:
        for n in work:
            try:
                router.send(n, "hello")
            except Exception as exc:  # counted: the figure's failed sends
                raised.append(type(exc).__name__)  # list.append is atomic

    threads = [threading.Thread(target=sender) for _ in range(threads_n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if sizes.f5_real_server:
        queries = env.server.control()["carrier_calls"] - before
        client.close()
        upstream = "FakeCarrierServer, latency 0"
    else:
        queries = client.calls
        upstream = "in-process VendorSimulator client"
    stats = router.stats()
    # A send that raised was not delivered: each send is delivered or failed, once.
    undelivered = sizes.f5_sends - deliveries.count
    return figure(
        "Zipf(1.1) traffic through the router",
        note=(
            f"{sizes.f5_sends:,} sends to {distinct:,} distinct numbers, {queries:,} queries "
            f"({upstream}); {round((1 - queries / sizes.f5_sends) * 1e6):,} queries saved "
            "per million sends"
        ),
        measures=[
            check("upstream queries / distinct numbers", queries / distinct, "", "==", 1),
            check("failed sends", float(undelivered), "", "==", 0),
        ],
        upstream=upstream,
        sends=sizes.f5_sends,
        raised=sorted(set(raised)),
        numbers=sizes.f5_numbers,
        distinct_numbers_sent_to=distinct,
        upstream_queries=queries,
        cache_hits=stats["hits"],
        coalesced=stats["coalesced"],
        hit_ratio=1 - queries / sizes.f5_sends,
        queries_saved_per_million_sends=round((1 - queries / sizes.f5_sends) * 1e6),
        sends_per_second=sizes.f5_sends / elapsed,
        threads=threads_n,
    )
