"""Figure 9: cold ``route_many()`` throughput on asyncio vs threads, vendor at 10 ms.

Every number is new, so every route is a paid lookup: the figure says how
many lookups a second one process gets through with the asyncio front end,
against the synchronous Router at its best, and against what aiohttp itself
allows. The vendor is AsyncFakeCarrierServer at 10 ms in a child process
(one event loop: cheap per request, and off the client's GIL), the same
server for every variant. Per round, in rotating order:

* ``AsyncRouter.route_many()`` (AsyncCarrierClient, one connection per
  concurrent route) at each concurrency (1, 64, 256, 1,024);
* ``Router.route_many()`` (CarrierClient on requests, threads) at each of a
  few concurrencies (16, 32, 64), of which the figure takes the best;
* bare aiohttp, the CPU bound: one ``ClientSession``, as many workers and
  connections as the router's concurrency, each ``post(data={...})`` then
  ``json()``, no smsroute.

Each run first routes ``2 x concurrency`` numbers untimed (connections
open, threads start), then times fresh ones. Aims: AsyncRouter at its best
>= 3x the sync Router at its best (median of the per-round ratios of the
round's bests), and AsyncRouter >= 0.70 of bare aiohttp at each
concurrency. Requests per second, the client's CPU ms per lookup (all its
threads) and the fake vendor's CPU µs per request are in the context.
Both routers get a 2 s deadline: a route that fell back did no lookup, and
is counted (aim 0); the deadline itself is figure 11's subject.

``--plot [PATH]`` draws requests per second against concurrency for the
three variants (matplotlib, Agg) to PATH (default
benchmarks/results/throughput.png; with ``--quick``, a file in the temp
directory, like its JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aioharness import aiohttp_missing
from harness import (
    HERE,
    AioProcessServer,
    AioThreadServer,
    Deliveries,
    Env,
    check,
    ensure_open_files,
    figure,
    gateways,
    median,
    optional,
    rotated,
    skipped,
)

from smsroute import CarrierClient, Router
from smsroute.core.outcome import reason_key

F9_LATENCY = 0.010  # the vendor's latency, seconds
F9_DEADLINE = 2.0  # long enough that no route falls back: this figure counts lookups
F9_SPEEDUP = 3.0  # AsyncRouter at its best vs Router at its best
F9_VS_BARE = 0.70  # AsyncRouter vs bare aiohttp at the same concurrency
F9_RUN_LIMIT = 600.0  # seconds one asyncio run may take before the figure gives up
DEFAULT_PLOT = HERE / "results" / "throughput.png"
# The quick mode's sizes say nothing: never over the full run's committed plot.
QUICK_PLOT = Path(tempfile.gettempdir()) / "smsroute-bench-quick-throughput.png"

Server = AioProcessServer | AioThreadServer


@dataclass(frozen=True)
class Sizes:
    """Timed numbers per run, by concurrency, for each variant; and how many rounds."""

    f9_async_numbers: dict[int, int]  # AsyncRouter and bare aiohttp
    f9_sync_numbers: dict[int, int]  # Router (threads)
    f9_rounds: int


FULL = Sizes(
    f9_async_numbers={1: 300, 64: 4_000, 256: 6_000, 1024: 8_000},
    f9_sync_numbers={16: 1_500, 32: 2_000, 64: 2_000},
    f9_rounds=5,
)
QUICK = Sizes(
    f9_async_numbers={1: 10, 16: 64, 64: 256},
    f9_sync_numbers={8: 64, 16: 128},
    f9_rounds=1,
)

_TITLE = "route_many() over unique numbers at 10 ms: AsyncRouter vs Router vs bare aiohttp"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--plot [PATH]``: figure 9's throughput against concurrency as a PNG."""
    parser.add_argument(
        "--plot",
        nargs="?",
        const=DEFAULT_PLOT,
        type=Path,
        metavar="PATH",
        help=(
            "with figure 9: draw its throughput against concurrency as a PNG "
            f"(default {DEFAULT_PLOT}; with --quick, {QUICK_PLOT})"
        ),
    )


# -- one timed run of each variant ---------------------------------------------------


def _run_record(
    server: Server, count: int, elapsed: float, cpu: float, s0: dict[str, Any], s1: dict[str, Any]
) -> dict[str, Any]:
    served = s1["served"] - s0["served"]
    return {
        "per_second": count / elapsed,
        "client_cpu_ms_per_lookup": cpu / count * 1e3,
        "server_cpu_us_per_request": (s1["cpu"] - s0["cpu"]) / max(1, served) * 1e6,
        "served": served,
    }


async def _async_router_run(
    server: Server, warm: list[str], numbers: list[str], concurrency: int
) -> dict[str, Any]:
    from smsroute import AsyncCarrierClient, AsyncRouter

    deliveries = Deliveries()
    client = AsyncCarrierClient(server.apikey, base_url=server.url, max_connections=concurrency)
    router = AsyncRouter(client, gateways(deliveries), default=deliveries, deadline=F9_DEADLINE)
    try:
        await router.route_many(warm, concurrency=concurrency)
        s0 = server.control()
        c0, t0 = time.process_time(), time.perf_counter()
        decisions = await router.route_many(numbers, concurrency=concurrency)
        t1, c1 = time.perf_counter(), time.process_time()
        s1 = server.control()
    finally:
        await router.aclose()
        await client.aclose()
    record = _run_record(server, len(numbers), t1 - t0, c1 - c0, s0, s1)
    record["not_upstream"] = sum(1 for d in decisions if d.source != "upstream")
    record["fallback_reasons"] = _reasons(decisions)
    return record


async def _bare_run(
    server: Server, warm: list[str], numbers: list[str], concurrency: int
) -> dict[str, Any]:
    import aiohttp

    url, key = server.url + "/carrier", server.apikey
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(work: Any) -> None:
            for n in work:  # one iterator shared by the workers: each number once
                async with session.post(url, data={"apikey": key, "mobile": n}) as resp:
                    await resp.json()

        async def run(batch: list[str]) -> None:
            work = iter(batch)
            await asyncio.gather(*(worker(work) for _ in range(concurrency)))

        await run(warm)
        s0 = server.control()
        c0, t0 = time.process_time(), time.perf_counter()
        await run(numbers)
        t1, c1 = time.perf_counter(), time.process_time()
        s1 = server.control()
    return _run_record(server, len(numbers), t1 - t0, c1 - c0, s0, s1)


def _sync_router_run(
    server: Server, warm: list[str], numbers: list[str], concurrency: int
) -> dict[str, Any]:
    deliveries = Deliveries()
    client = CarrierClient(server.apikey, base_url=server.url, pool_maxsize=concurrency)
    router = Router(client, gateways(deliveries), default=deliveries, deadline=F9_DEADLINE)
    try:
        router.route_many(warm, concurrency=concurrency)
        s0 = server.control()
        c0, t0 = time.process_time(), time.perf_counter()
        decisions = router.route_many(numbers, concurrency=concurrency)
        t1, c1 = time.perf_counter(), time.process_time()
        s1 = server.control()
    finally:
        router.close()
        client.close()
    record = _run_record(server, len(numbers), t1 - t0, c1 - c0, s0, s1)
    record["not_upstream"] = sum(1 for d in decisions if d.source != "upstream")
    record["fallback_reasons"] = _reasons(decisions)
    return record


async def _bounded(run: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Return the run's record, or raise TimeoutError past F9_RUN_LIMIT (a hung vendor)."""
    return await asyncio.wait_for(run, F9_RUN_LIMIT)


# -- the figure ------------------------------------------------------------------------


def _summary(runs: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    """Return the medians of a variant's runs at one concurrency."""
    return {
        "per_second": median([r["per_second"] for r in runs]),
        "per_second_runs": [r["per_second"] for r in runs],
        "latency_bound": concurrency / F9_LATENCY,
        "client_cpu_ms_per_lookup": median([r["client_cpu_ms_per_lookup"] for r in runs]),
        "server_cpu_us_per_request": median([r["server_cpu_us_per_request"] for r in runs]),
        "not_upstream": sum(r.get("not_upstream", 0) for r in runs),
        "fallback_reasons": sum(
            (Counter(r.get("fallback_reasons", {})) for r in runs), Counter[str]()
        ),
    }


def _reasons(decisions: list[Any]) -> dict[str, int]:
    """Return why the routes that did no lookup fell back, counted by the reason's head."""
    return dict(Counter(reason_key(d.reason or "") for d in decisions if d.source != "upstream"))


def _best(by_concurrency: dict[str, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    c = max(by_concurrency, key=lambda k: by_concurrency[k]["per_second"])
    return int(c), by_concurrency[c]


def measure(env: Env, sizes: Sizes) -> dict[str, Any]:
    """Cold route_many() at 10 ms: AsyncRouter vs Router at its best vs bare aiohttp."""
    missing = aiohttp_missing()
    if missing is not None:
        fig = figure(
            _TITLE,
            [skipped("AsyncRouter best / Router best", "x faster", ">=", F9_SPEEDUP, missing)],
        )
        _maybe_plot(env, fig)
        return fig
    # Client and vendor each hold a socket per connection; the vendor (a
    # child) inherits the limit when it starts here.
    ensure_open_files(4 * max(*sizes.f9_async_numbers, *sizes.f9_sync_numbers) + 256)
    server = env.aio_server
    server.control(latency=F9_LATENCY, fault=None)
    steps: list[tuple[str, int]] = [
        *(("async_router", c) for c in sizes.f9_async_numbers),
        *(("bare_aiohttp", c) for c in sizes.f9_async_numbers),
        *(("sync_router", c) for c in sizes.f9_sync_numbers),
    ]
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {step: [] for step in steps}
    speedups: list[float] = []
    try:
        for r in range(sizes.f9_rounds):
            this_round: dict[tuple[str, int], float] = {}
            for variant, c in rotated(steps, r):
                count = (
                    sizes.f9_sync_numbers[c]
                    if variant == "sync_router"
                    else sizes.f9_async_numbers[c]
                )
                warm, numbers = env.pool.take(2 * c), env.pool.take(count)
                gc.collect()  # the last run's router, client and loop, outside this run
                if variant == "sync_router":
                    run = _sync_router_run(server, warm, numbers, c)
                elif variant == "async_router":
                    run = asyncio.run(_bounded(_async_router_run(server, warm, numbers, c)))
                else:
                    run = asyncio.run(_bounded(_bare_run(server, warm, numbers, c)))
                runs[(variant, c)].append(run)
                this_round[(variant, c)] = run["per_second"]
            best_async = max(v for (name, _), v in this_round.items() if name == "async_router")
            best_sync = max(v for (name, _), v in this_round.items() if name == "sync_router")
            speedups.append(best_async / best_sync)
    finally:
        server.control(latency=0)

    variants: dict[str, dict[str, dict[str, Any]]] = {}
    for (variant, c), v in runs.items():
        variants.setdefault(variant, {})[str(c)] = _summary(v, c)
    async_c, async_best = _best(variants["async_router"])
    sync_c, sync_best = _best(variants["sync_router"])
    bare_c, bare_best = _best(variants["bare_aiohttp"])
    measures = [
        check(
            f"AsyncRouter best (c={async_c}) / Router best (c={sync_c})",
            median(speedups),
            "x faster",
            ">=",
            F9_SPEEDUP,
        )
    ]
    vs_bare: dict[str, float] = {}
    for c in sizes.f9_async_numbers:
        ratios = [
            a["per_second"] / b["per_second"]
            for a, b in zip(runs[("async_router", c)], runs[("bare_aiohttp", c)], strict=True)
        ]
        vs_bare[str(c)] = median(ratios)
        measures.append(
            check(
                f"AsyncRouter / bare aiohttp at concurrency {c}",
                vs_bare[str(c)],
                "ratio",
                ">=",
                F9_VS_BARE,
            )
        )
    fell_back = sum(v["not_upstream"] for by_c in variants.values() for v in by_c.values())
    measures.append(check("routes that fell back (no lookup)", float(fell_back), "", "==", 0))

    def line(name: str, c: int, v: dict[str, Any]) -> str:
        return (
            f"{name} c={c} {v['per_second']:,.0f}/s, {v['client_cpu_ms_per_lookup']:.2f} ms CPU"
            f" per lookup (vendor {v['server_cpu_us_per_request']:.0f} us)"
        )

    fig = figure(
        _TITLE,
        measures,
        note="best: "
        + "; ".join(
            (
                line("AsyncRouter", async_c, async_best),
                line("Router", sync_c, sync_best),
                line("bare aiohttp", bare_c, bare_best),
            )
        ),
        rounds=sizes.f9_rounds,
        upstream_latency_s=F9_LATENCY,
        deadline_s=F9_DEADLINE,
        server=server.kind,
        cpus=os.cpu_count(),
        speedup_per_round=speedups,
        best={
            "async_router": {"concurrency": async_c, **async_best},
            "sync_router": {"concurrency": sync_c, **sync_best},
            "bare_aiohttp": {"concurrency": bare_c, **bare_best},
        },
        async_router_vs_bare_aiohttp=vs_bare,
        variants=variants,
    )
    _maybe_plot(env, fig)
    return fig


# -- the plot --------------------------------------------------------------------------


def _maybe_plot(env: Env, fig: dict[str, Any]) -> None:
    """Write the PNG when ``--plot`` was given; say in one line why not when it cannot be."""
    path = env.options.get("plot")
    if path is None:
        return
    if env.quick and path == DEFAULT_PLOT:
        path = QUICK_PLOT
    fig["context"]["plot"] = str(path)
    why = None
    if optional("matplotlib") is None:
        why = "matplotlib is not installed (pip install -e '.[bench]')"
    elif "variants" not in fig["context"]:
        why = "figure 9 was skipped"
    if why is not None:
        fig["context"]["plot"] = None
        print(f"--plot: {why}; no plot written", flush=True)
        return
    plot(fig, Path(path))


def plot(fig: dict[str, Any], path: Path) -> None:
    """Draw requests per second against concurrency for figure 9's three variants to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = fig["context"]["variants"]
    labels = {
        "async_router": "AsyncRouter.route_many (aiohttp)",
        "bare_aiohttp": "bare aiohttp, no smsroute (CPU bound)",
        "sync_router": "Router.route_many (requests, threads)",
    }
    figure_, axes = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    try:
        everywhere: set[int] = set()
        for name, label in labels.items():
            by_c = variants.get(name, {})
            xs = sorted(int(c) for c in by_c)
            everywhere.update(xs)
            axes.plot(xs, [by_c[str(c)]["per_second"] for c in xs], marker="o", label=label)
        xs = sorted(everywhere)
        axes.plot(
            xs,
            [c / F9_LATENCY for c in xs],
            linestyle=":",
            color="grey",
            label=f"latency bound (concurrency / {F9_LATENCY * 1e3:.0f} ms)",
        )
        top = max(
            (v["per_second"] for by_c in variants.values() for v in by_c.values()), default=1.0
        )
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_ylim(bottom=50, top=10 ** math.ceil(math.log10(top * 1.5)))
        axes.set_xticks(xs, [str(c) for c in xs])
        axes.set_xlabel("concurrency (routes or requests in flight)")
        axes.set_ylabel("lookups per second (median of rounds)")
        axes.set_title(
            "Cold lookups per second, vendor at 10 ms, one process\n"
            f"({fig['context']['rounds']} rounds, {fig['context'].get('cpus')} CPUs, "
            f"vendor in a {fig['context']['server']})",
            fontsize=10,
        )
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8, loc="upper left")
        figure_.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure_.savefig(path)
    finally:
        plt.close(figure_)
    print(f"--plot: wrote {path}", flush=True)
