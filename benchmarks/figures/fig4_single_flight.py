"""Figure 4: single flight, 200 threads route one cold number at once and pay once.

A burst of sends to a number the cache does not know yet (a campaign, a
retry storm) must cost one paid query, not one per thread. Each round
releases 200 threads at a barrier against a fresh router and a fake vendor
slow enough (50 ms) that all of them arrive while the one query is out; the
figure is the worst round's count of upstream queries (aim: exactly 1), and
every thread must get a Decision with the same answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from harness import Deliveries, Env, check, figure, gateways

from smsroute import Router

F4_THREADS = 200
F4_LATENCY = 0.050  # long enough that all 200 threads arrive while the one query is out


@dataclass(frozen=True)
class Sizes:
    """How many cold numbers (rounds of 200 threads)."""

    f4_rounds: int


FULL = Sizes(f4_rounds=5)
QUICK = Sizes(f4_rounds=2)


def measure(env: Env, sizes: Sizes) -> dict[str, Any]:
    """200 threads route one cold number at once: one upstream query."""
    server = env.server
    server.control(latency=F4_LATENCY, fault=None)
    rounds = []
    try:
        for _ in range(sizes.f4_rounds):
            client = env.client()
            deliveries = Deliveries()
            router = Router(client, gateways(deliveries), default=deliveries)
            number = env.pool.take(1)[0]
            barrier = threading.Barrier(F4_THREADS)
            results: list[Any] = [None] * F4_THREADS

            def worker(
                i: int,
                router: Router = router,
                number: str = number,
                barrier: threading.Barrier = barrier,
                results: list[Any] = results,
            ) -> None:
                barrier.wait()
                try:
                    results[i] = router.route(number)
                except Exception as exc:
                    results[i] = exc

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(F4_THREADS)]
            before = server.control()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            after = server.control()
            client.close()
            stats = router.stats()
            carriers = {getattr(d, "carrier", None) for d in results}
            rounds.append(
                {
                    "carrier_calls": after["carrier_calls"] - before["carrier_calls"],
                    "paid": after["paid"] - before["paid"],
                    "decisions": stats["decisions"],
                    "coalesced": stats["coalesced"],
                    "errors": sum(1 for d in results if not hasattr(d, "source")),
                    "one_answer": len(carriers) == 1,
                }
            )
    finally:
        server.control(latency=0)
    worst = max(r["carrier_calls"] for r in rounds)
    failures = sum(r["errors"] for r in rounds) + sum(not r["one_answer"] for r in rounds)
    return figure(
        "200 threads route one cold number at once",
        note=(
            f"{len(rounds)} rounds; queries per round "
            f"{[r['carrier_calls'] for r in rounds]}, coalesced {[r['coalesced'] for r in rounds]}"
        ),
        measures=[
            check("upstream queries per cold number (worst round)", float(worst), "", "==", 1),
            check("routes without a Decision or with another answer", float(failures), "", "==", 0),
        ],
        threads=F4_THREADS,
        upstream_latency_s=F4_LATENCY,
        rounds=rounds,
    )
