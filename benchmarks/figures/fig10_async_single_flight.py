"""Figure 10: single flight on asyncio, 1,000 tasks route one cold number at once and pay once.

The asyncio twin of figure 4, at five times the crowd: an asyncio service
that fans a campaign out as tasks sends many of them to the same fresh
number in the same instant, and each must not cost a paid query. Each round
makes a fresh AsyncRouter (AsyncCarrierClient, default deadline) against
the asyncio fake vendor at 50 ms in a child process, starts 1,000 tasks
that wait on one event, sets it and gathers them. The figure is the worst
round's count of queries the vendor was paid for (aim: exactly 1), whether
every task got the leader's answer (aim: no error, no fallback, one
operator), and how long the 1,000 took from the event to the last answer
(median round; aim: within the router's deadline, since a follower past it
falls back). The time above the vendor's 50 ms is what 999 followers cost.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass
from typing import Any

from aioharness import aiohttp_missing
from harness import (
    AioProcessServer,
    AioThreadServer,
    Deliveries,
    Env,
    check,
    figure,
    gateways,
    median,
    skipped,
)

F10_TASKS = 1_000
F10_LATENCY = 0.050  # long enough that all 1,000 tasks arrive while the one query is out
F10_LIMIT = 30.0  # seconds a round may take before the figure gives up (each route has 0.5)

_TITLE = "1,000 asyncio tasks route one cold number at once"


@dataclass(frozen=True)
class Sizes:
    """How many cold numbers (rounds of 1,000 tasks)."""

    f10_rounds: int


FULL = Sizes(f10_rounds=9)
QUICK = Sizes(f10_rounds=2)


async def _round(server: AioProcessServer | AioThreadServer, number: str) -> dict[str, Any]:
    """Release 1,000 tasks on one cold number; return what the vendor and the tasks saw."""
    from smsroute import AsyncCarrierClient, AsyncRouter

    deliveries = Deliveries()
    client = AsyncCarrierClient(server.apikey, base_url=server.url)
    router = AsyncRouter(client, gateways(deliveries), default=deliveries)
    go = asyncio.Event()

    async def one() -> Any:
        await go.wait()
        return await router.route(number)

    try:
        tasks = [asyncio.ensure_future(one()) for _ in range(F10_TASKS)]
        await asyncio.sleep(0)  # every task runs up to go.wait()
        before = server.control()
        started = time.perf_counter()
        go.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), F10_LIMIT)
        elapsed = time.perf_counter() - started
        after = server.control()
    finally:
        await router.aclose()
        await client.aclose()
    stats = router.stats()
    sources: dict[str, int] = {}
    for d in results:
        source = getattr(d, "source", type(d).__name__)
        sources[source] = sources.get(source, 0) + 1
    return {
        "paid": after["paid"] - before["paid"],
        "carrier_calls": after["carrier_calls"] - before["carrier_calls"],
        "ms": elapsed * 1e3,
        "coalesced": stats["coalesced"],
        "sources": sources,
        "without_the_answer": sum(1 for d in results if getattr(d, "source", None) != "upstream"),
        "one_answer": len({getattr(d, "carrier", None) for d in results}) == 1,
        "deadline_ms": router.deadline * 1e3,
    }


def measure(env: Env, sizes: Sizes) -> dict[str, Any]:
    """1,000 tasks route one cold number at once: one paid query, every task answered."""
    missing = aiohttp_missing()
    if missing is not None:
        return figure(
            _TITLE, [skipped("paid queries per cold number (worst round)", "", "==", 1, missing)]
        )
    server = env.aio_server
    server.control(latency=F10_LATENCY, fault=None)
    rounds = []
    try:
        for number in env.pool.take(sizes.f10_rounds):
            gc.collect()  # the last round's router, client and loop, outside this round
            rounds.append(asyncio.run(_round(server, number)))
    finally:
        server.control(latency=0)
    worst = max(max(r["paid"], r["carrier_calls"]) for r in rounds)
    failures = sum(r["without_the_answer"] for r in rounds) + sum(
        not r["one_answer"] for r in rounds
    )
    ms = median([r["ms"] for r in rounds])
    deadline_ms = rounds[0]["deadline_ms"]
    return figure(
        _TITLE,
        [
            check("paid queries per cold number (worst round)", float(worst), "", "==", 1),
            check("tasks without the leader's answer", float(failures), "", "==", 0),
            check("time for the 1,000 routes (median round)", ms, "ms", "<=", deadline_ms),
        ],
        note=(
            f"{len(rounds)} rounds; paid per round {[r['paid'] for r in rounds]}, coalesced "
            f"{[r['coalesced'] for r in rounds]}; the 1,000 took "
            f"{min(r['ms'] for r in rounds):.0f}-{max(r['ms'] for r in rounds):.0f} ms "
            f"(vendor latency {F10_LATENCY * 1e3:.0f} ms)"
        ),
        tasks=F10_TASKS,
        upstream_latency_s=F10_LATENCY,
        deadline_ms=deadline_ms,
        server=server.kind,
        rounds=rounds,
    )
