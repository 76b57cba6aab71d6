"""Figure 8: what the asyncio front end adds to a cache hit, ``await AsyncRouter.route()``.

An asyncio service awaits ``route()`` before every send, so on a warm cache
the await has to cost about what the synchronous ``Router.route()`` does:
the issue asks for at most a few µs. Both routers hold the same numbers in
a MemoryCache (each entry read twice first, so every timed call is a hit on
the hot path); then, inside one running event loop, the two take turns in
a tight loop over the numbers, ``await router.route(n)`` against
``router.route(n)``, round by round in rotating order, with a third
variant, ``await`` of a coroutine that does nothing, as the floor of any
awaited call. The figure is the median per-round ratio async/sync and the
async ns per call (aim <= 3,000 ns); CPU ns per call are reported next to
the times, and both routers' ``stats()`` check that every timed call was a
cache hit.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aioharness import AsyncSimClient, aiohttp_missing
from harness import Deliveries, Env, SimClient, check, figure, gateways, median, rotated, skipped

from smsroute import Router

F8_ASYNC_NS = 3_000.0  # "at most a few µs" per awaited hit
F8_RATIO = 3.0  # async/sync: at most a few times a synchronous hit (~0.6 µs)


@dataclass(frozen=True)
class Sizes:
    """How many numbers each variant routes per round, and how many rounds."""

    f8_numbers: int
    f8_rounds: int


FULL = Sizes(f8_numbers=10_000, f8_rounds=9)
QUICK = Sizes(f8_numbers=2_000, f8_rounds=3)

_TITLE = "await AsyncRouter.route() vs Router.route() on a warm cache"


async def _nothing(number: str) -> None:
    """Return None: the cost of awaiting a coroutine, what any async API adds at least."""


async def _measure(sizes: Sizes, numbers: list[str]) -> dict[str, Any]:
    from smsroute import AsyncRouter

    deliveries = Deliveries()
    sync_router = Router(SimClient(), gateways(deliveries), default=deliveries)
    async_router = AsyncRouter(AsyncSimClient(), gateways(deliveries), default=deliveries)
    sync_router.route_many(numbers, concurrency=1)
    await async_router.route_many(numbers, concurrency=64)
    for n in numbers:  # a second read marks each entry used: from now on every call is a hit
        sync_router.route(n)
        await async_router.route(n)
    before = {
        "async": async_router.stats()["decisions"],
        "sync": sync_router.stats()["decisions"],
    }

    # The same loop body for each variant: only the call differs.
    async def run_async() -> None:
        route = async_router.route
        for n in numbers:
            await route(n)

    async def run_sync() -> None:
        route = sync_router.route
        for n in numbers:
            route(n)

    async def run_floor() -> None:
        for n in numbers:
            await _nothing(n)

    variants: dict[str, Callable[[], Awaitable[None]]] = {
        "async": run_async,
        "sync": run_sync,
        "await_floor": run_floor,
    }
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    ratios: list[float] = []
    for r in range(sizes.f8_rounds):
        this_round: dict[str, float] = {}
        for name in rotated(list(variants), r):
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            await variants[name]()
            t1, c1 = time.perf_counter(), time.process_time()
            this_round[name] = (t1 - t0) / len(numbers)
            wall[name].append(this_round[name])
            cpu[name].append((c1 - c0) / len(numbers))
        ratios.append(this_round["async"] / this_round["sync"])

    expected = sizes.f8_rounds * len(numbers)
    all_hits = True
    delta: dict[str, dict[str, int]] = {}
    for name, router in (("async", async_router), ("sync", sync_router)):
        after = router.stats()["decisions"]
        delta[name] = {source: after[source] - before[name][source] for source in after}
        all_hits = all_hits and delta[name]["cache"] == expected == sum(delta[name].values())
    await async_router.aclose()
    sync_router.close()
    return {
        "ratio": median(ratios),
        "ns": {name: median(v) * 1e9 for name, v in wall.items()},
        "cpu_ns": {name: median(v) * 1e9 for name, v in cpu.items()},
        "ratios": ratios,
        "all_hits": all_hits,
        "decisions_while_timed": delta,
    }


def measure(env: Env, sizes: Sizes) -> dict[str, Any]:
    """Warm ``await AsyncRouter.route()`` vs ``Router.route()``, same numbers, one loop."""
    missing = aiohttp_missing()
    if missing is not None:
        return figure(
            _TITLE,
            [
                skipped("await route() / Router.route(), warm", "ratio", "<=", F8_RATIO, missing),
                skipped("await route() per call, warm", "ns", "<=", F8_ASYNC_NS, missing),
            ],
        )
    numbers = env.pool.take(sizes.f8_numbers)
    result = asyncio.run(_measure(sizes, numbers))
    ns, cpu_ns = result["ns"], result["cpu_ns"]
    return figure(
        _TITLE,
        [
            check("await route() / Router.route(), warm", result["ratio"], "ratio", "<=", F8_RATIO),
            check("await route() per call, warm", ns["async"], "ns", "<=", F8_ASYNC_NS),
            check(
                "timed route() calls that were cache hits",
                float(result["all_hits"]),
                "bool",
                "==",
                1,
            ),
        ],
        note=(
            f"ns per call (CPU): await route() {ns['async']:.0f} ({cpu_ns['async']:.0f}), "
            f"Router.route() {ns['sync']:.0f} ({cpu_ns['sync']:.0f}), await of an empty "
            f"coroutine {ns['await_floor']:.0f} ({cpu_ns['await_floor']:.0f})"
        ),
        numbers=len(numbers),
        rounds=sizes.f8_rounds,
        ns_per_call=ns,
        cpu_ns_per_call=cpu_ns,
        ratio_per_round=result["ratios"],
        decisions_while_timed=result["decisions_while_timed"],
    )
