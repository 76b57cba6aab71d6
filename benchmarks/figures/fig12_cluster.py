"""Figure 12: Redis Cluster against one Redis: a hit, a miss, and a fleet's paid queries.

A fleet that outgrows one Redis moves its answers to a Redis Cluster
(``RedisCache(url, cluster=True)``); what it should cost is the same one
round trip per command, to the node that owns the number's slot, and the
same one paid query per number across the fleet. Two parts, on one cluster
of 3 masters + 3 replicas (tests/redis_cluster.py's ``LocalCluster``, the
cluster the tests use) and one single redis-server (``harness.redis_server``)
of the same binary, all on 127.0.0.1:

- **Hit and miss, cluster ÷ single node.** ``Router.route()`` (and, with
  aiohttp, ``await AsyncRouter.route()``) on a RedisCache (AsyncRedisCache)
  made with ``near_ttl=0``: the near tier keeps nothing, so the router's hot
  path and the cache's in-process tier are both empty and every route
  crosses the router's whole cache path (CacheIO's worker thread, one GET to
  Redis, the verdict). That is how the near tier is defeated: the Redis
  round trip is measured through the router, not a bare ``get``. (The bare
  ``RedisCache.get`` of the same numbers is timed too, in the context.) A
  *hit* routes numbers whose answers the same backend stored before the
  rounds; a *miss* routes numbers never seen, through the fake vendor at
  latency 0: GET (nothing), claim the fleet lock, the vendor, SET, release.
  The two backends take turns of 50 hits or 10 misses, the order rotated
  each turn, so that a burst of load lands on both; the figure is the median
  over rounds of each round's ratio of per-op times, cluster ÷ single node
  (the per-op times and this process's CPU per op are in the context: the
  Redis servers are other processes, so the CPU is the client's). Aim: ≤
  1.5, since a cluster command is still one round trip to one node.
- **Fleet.** ``f12_processes`` separate OS processes (benchmarks/_fleet.py,
  controlled over a pipe as the fake vendor's), each its own Router,
  CarrierClient and ``RedisCache(url, cluster=True)`` with the default near
  tier, send Zipf(1.1) streams (a different draw each, over one population)
  with ``f12_threads`` threads against one fake vendor at 5 ms, all released
  at once. The figure is the queries the vendor counted divided by the
  distinct numbers sent to (aim: 1.00, as figure 5 for one process), with no
  failed send.

Without redis-server, redis-cli or redis-py every measure is skipped with why;
without aiohttp, the AsyncRouter half.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from aioharness import aiohttp_missing
from harness import (
    HERE,
    Deliveries,
    Env,
    check,
    child_environment,
    figure,
    gateways,
    median,
    redis_server,
    rotated,
    skipped,
    stop_child,
)

import smsroute
from figures.fig5_zipf_traffic import F5_EXPONENT, zipf_stream

_TITLE = "Redis Cluster (3 masters + 3 replicas) vs a single Redis"
F12_AIM = 1.5  # cluster ÷ single node, per op
F12_FLEET_LATENCY = 0.005  # the fleet's vendor: slow enough that the processes overlap
_KINDS = ("single", "cluster")


@dataclass(frozen=True)
class Sizes:
    """Numbers per round for the hit and miss, rounds, and the fleet's shape and traffic."""

    f12_hit_numbers: int
    f12_miss_numbers: int
    f12_rounds: int
    f12_processes: int
    f12_threads: int
    f12_sends: int  # per process
    f12_numbers: int  # the population the Zipf streams draw from


FULL = Sizes(
    f12_hit_numbers=1_000,
    f12_miss_numbers=150,
    f12_rounds=9,
    f12_processes=4,
    f12_threads=8,
    f12_sends=25_000,
    f12_numbers=20_000,
)
# Four processes in quick mode too: the fleet is the point, its sizes are not.
QUICK = Sizes(100, 10, 2, 4, 4, 500, 300)

_MEASURES = (
    ("hit: Router.route() cluster ÷ single node", "ratio", "<=", F12_AIM),
    ("miss: Router.route() cluster ÷ single node", "ratio", "<=", F12_AIM),
    ("hit: await AsyncRouter.route() cluster ÷ single", "ratio", "<=", F12_AIM),
    ("miss: await AsyncRouter.route() cluster ÷ single", "ratio", "<=", F12_AIM),
    ("routes not answered as timed (hit: Redis, miss: vendor)", "", "==", 0),
    ("fleet on the cluster: paid queries / distinct numbers", "", "==", 1),
    ("fleet: failed sends", "", "==", 0),
)


class Skip(Exception):
    """Part of the figure cannot run here (a binary or module missing)."""


def redis_cluster_module() -> ModuleType:
    """Return tests/redis_cluster.py (LocalCluster, find_redis_cli), or raise Skip with why."""
    # The cluster the tests start, not a second copy of it: the module needs
    # redis-py and its sibling redis_server.py, not pytest. tests/ is on the
    # path only for this import, and last, so it shadows no other module.
    tests = str(HERE.parent / "tests")
    if not (Path(tests) / "redis_cluster.py").is_file():
        raise Skip("tests/redis_cluster.py not found (a checkout of the repository is needed)")
    sys.path.append(tests)
    try:
        return importlib.import_module("redis_cluster")
    except ImportError as exc:
        raise Skip(f"cannot import tests/redis_cluster.py: {exc}") from exc
    finally:
        sys.path.remove(tests)


@contextlib.contextmanager
def servers() -> Iterator[tuple[str, str]]:
    """Yield the URLs of a single redis-server and of a 3 + 3 cluster of the same binary."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise Skip("no redis-server on PATH (apt-get install redis-server)")
    try:
        smsroute.RedisCache  # noqa: B018 - raises without redis-py
    except ImportError as exc:
        raise Skip(f"no redis-py: {exc}") from exc
    cluster_module = redis_cluster_module()
    if cluster_module.find_redis_cli() is None:
        raise Skip("no redis-cli on PATH to create the cluster (apt-get install redis-tools)")
    with redis_server() as single:
        assert single is not None
        cluster = cluster_module.LocalCluster(binary)
        try:
            try:
                cluster.start()
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                # A machine too busy to form a cluster in 20 s says so, as a skip.
                raise Skip(f"the cluster did not start: {type(exc).__name__}: {exc}") from exc
            yield single, cluster.url
        finally:
            cluster.close()


# -- hit and miss, side by side ---------------------------------------------------


_BLOCKS = {"hit": 50, "get": 50, "miss": 10}  # numbers per turn: how often the variants alternate
_WANT = {"hit": "cache", "miss": "upstream"}  # where a timed route's answer must come from


def schedule(r: int, hits: int, misses: int) -> list[tuple[str, str, slice]]:
    """Return round ``r``'s turns: (what, single or cluster, which numbers), alternating."""
    # Turns of a few ms, the order rotated each turn: a burst of another
    # tenant's load lands on both backends rather than on one variant's round.
    turns = []
    for what, count in (("hit", hits), ("get", hits), ("miss", misses)):
        size = _BLOCKS[what]
        for b, start in enumerate(range(0, count, size)):
            turns += [(what, kind, slice(start, start + size)) for kind in rotated(_KINDS, r + b)]
    return turns


def _numbers(what: str, kind: str, part: slice, hit: list[str], miss: dict[str, list[str]]) -> Any:
    return hit[part] if what != "miss" else miss[kind][part]


class SyncVariant:
    """Router + RedisCache(near_ttl=0) on one backend, against the threaded fake vendor."""

    def __init__(self, env: Env, url: str, *, cluster: bool, prefix: str) -> None:
        self.cache = smsroute.RedisCache(
            url, cluster=cluster, prefix=prefix, near_ttl=0, socket_timeout=1.0
        )
        self.client = env.client()
        deliveries = Deliveries()
        self.router = smsroute.Router(
            self.client, gateways(deliveries), default=deliveries, cache=self.cache
        )

    def timed(self, what: str, numbers: Sequence[str]) -> tuple[float, float, int]:
        """Return the seconds and CPU seconds ``numbers`` took, and how many went wrong."""
        wrong = 0
        cpu, started = time.process_time(), time.perf_counter()
        if what == "get":
            for n in numbers:
                wrong += self.cache.get(n) is None
        else:
            want, route = _WANT[what], self.router.route
            for n in numbers:
                wrong += route(n).source != want
        return time.perf_counter() - started, time.process_time() - cpu, wrong

    def close(self) -> None:
        """Close the router, the client and the cache."""
        self.router.close()
        self.client.close()
        self.cache.close()


class AsyncVariant:
    """AsyncRouter + AsyncRedisCache(near_ttl=0) on one backend, against the asyncio fake vendor."""

    def __init__(self, env: Env, url: str, *, cluster: bool, prefix: str) -> None:
        server = env.aio_server
        self.cache = smsroute.AsyncRedisCache(
            url, cluster=cluster, prefix=prefix, near_ttl=0, socket_timeout=1.0
        )
        self.client = smsroute.AsyncCarrierClient(server.apikey, base_url=server.url)
        deliveries = Deliveries()
        self.router = smsroute.AsyncRouter(
            self.client, gateways(deliveries), default=deliveries, cache=self.cache
        )

    async def timed(self, what: str, numbers: Sequence[str]) -> tuple[float, float, int]:
        """Return the seconds and CPU seconds ``numbers`` took, and how many went wrong."""
        wrong = 0
        cpu, started = time.process_time(), time.perf_counter()
        if what == "get":
            for n in numbers:
                wrong += await self.cache.get(n) is None
        else:
            want, route = _WANT[what], self.router.route
            for n in numbers:
                wrong += (await route(n)).source != want
        return time.perf_counter() - started, time.process_time() - cpu, wrong

    async def aclose(self) -> None:
        """Close the router, the client and the cache."""
        await self.router.aclose()
        await self.client.aclose()
        await self.cache.aclose()


def _add(spent: dict[str, dict[str, float]], what: str, kind: str, timed: tuple[float, ...]) -> int:
    """Add a turn's seconds to ``what`` and its CPU seconds to ``what_cpu``; return its errors."""
    for name, seconds in ((what, timed[0]), (f"{what}_cpu", timed[1])):
        spent.setdefault(name, {}).setdefault(kind, 0.0)
        spent[name][kind] += seconds
    return int(timed[2])


async def _async_round(
    variants: dict[str, Any], turns: list[tuple[str, str, slice]], hit: list[str], miss: Any
) -> tuple[dict[str, dict[str, float]], int]:
    """Make the async variants on this round's loop, connect them, then take the turns."""
    made = {kind: make() for kind, make in variants.items()}
    try:
        for variant in made.values():  # connects (to every master, on the cluster)
            await variant.timed("hit", hit[:30])
        spent: dict[str, dict[str, float]] = {}
        wrong = 0
        for what, kind, part in turns:
            timed = await made[kind].timed(what, _numbers(what, kind, part, hit, miss))
            wrong += _add(spent, what, kind, timed)
        return spent, wrong
    finally:
        for variant in made.values():
            await variant.aclose()


def hit_and_miss(env: Env, sizes: Sizes, urls: dict[str, str]) -> dict[str, Any]:
    """Time hits, gets and misses on both backends (and both front ends), turn by turn."""
    hit = env.pool.take(sizes.f12_hit_numbers)
    env.server.control(latency=0, fault=None)
    no_async = aiohttp_missing()
    if no_async is None:
        env.aio_server.control(latency=0, fault=None)

    def options(kind: str) -> dict[str, Any]:
        # One prefix per backend: the async variants read what the sync ones stored.
        return {"cluster": kind == "cluster", "prefix": f"bench12-{kind}:"}

    sync = {kind: SyncVariant(env, urls[kind], **options(kind)) for kind in _KINDS}
    fronts = ["sync"] if no_async is not None else ["sync", "async"]
    # per front and what: a list per kind of per-op seconds, one per round
    times: dict[str, dict[str, dict[str, list[float]]]] = {f: {} for f in fronts}
    wrong = 0
    try:
        for variant in sync.values():
            for n in hit:  # a miss each: the answers are in Redis before the rounds
                variant.router.route(n)
        for r in range(sizes.f12_rounds):
            for front in rotated(fronts, r):
                gc.collect()
                miss = {kind: env.pool.take(sizes.f12_miss_numbers) for kind in _KINDS}
                turns = schedule(r, len(hit), sizes.f12_miss_numbers)
                if front == "sync":
                    spent: dict[str, dict[str, float]] = {}
                    for what, kind, part in turns:
                        numbers = _numbers(what, kind, part, hit, miss)
                        wrong += _add(spent, what, kind, sync[kind].timed(what, numbers))
                else:
                    makers = {
                        kind: functools.partial(AsyncVariant, env, urls[kind], **options(kind))
                        for kind in _KINDS
                    }
                    spent, bad = asyncio.run(_async_round(makers, turns, hit, miss))
                    wrong += bad
                for what, by_kind in spent.items():
                    count = sizes.f12_miss_numbers if what.startswith("miss") else len(hit)
                    for kind, seconds in by_kind.items():
                        times[front].setdefault(what, {}).setdefault(kind, []).append(
                            seconds / count
                        )
    finally:
        for variant in sync.values():
            variant.close()
    us = {
        f"{front}_{kind}": {what: median(t[kind]) * 1e6 for what, t in by_what.items()}
        for front, by_what in times.items()
        for kind in _KINDS
    }
    # Each round's cluster ÷ single node, then the median of those (README, "How it measures").
    per_round = {
        f"{front}_{what}": [c / s for c, s in zip(t["cluster"], t["single"], strict=True)]
        for front, by_what in times.items()
        for what, t in by_what.items()
    }
    return {
        "us_per_op": us,
        "ratios": {key: median(v) for key, v in per_round.items()},
        "ratio_per_round": per_round,
        "wrong": wrong,
        "async_skipped": no_async,
    }


# -- the fleet -------------------------------------------------------------------


def fleet(env: Env, sizes: Sizes, url: str) -> dict[str, Any]:
    """Run the fleet's processes on the cluster; return paid queries, distinct numbers, sends."""
    population = env.pool.take(sizes.f12_numbers)
    streams = [
        zipf_stream(population, sizes.f12_sends, F5_EXPONENT, seed=120 + i)
        for i in range(sizes.f12_processes)
    ]
    distinct = len(set().union(*streams))
    server = env.server
    server.control(latency=F12_FLEET_LATENCY, fault=None)
    procs: list[subprocess.Popen[str]] = []
    try:
        for stream in streams:
            proc = subprocess.Popen(
                [sys.executable, str(HERE / "_fleet.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=child_environment(),
            )
            procs.append(proc)
            job: dict[str, Any] = {"redis": url, "vendor": server.url, "apikey": server.apikey}
            _say(proc, {**job, "threads": sizes.f12_threads, "numbers": stream})
        for proc in procs:
            _hear(proc)  # ready: imported, connected to the cluster
        before = server.control()
        started = time.perf_counter()
        for proc in procs:
            _say(proc, {"go": True})
        results = [_hear(proc) for proc in procs]
        elapsed = time.perf_counter() - started
        after = server.control()
    finally:
        for proc in procs:
            stop_child(proc)
        server.control(latency=0)
    return {
        "queries": after["carrier_calls"] - before["carrier_calls"],
        "paid": after["paid"] - before["paid"],
        "distinct": distinct,
        "sends": sum(r["sends"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "fallbacks": sum(r["decisions"].get("fallback", 0) for r in results),
        "seconds": elapsed,
        "processes": results,
    }


def _say(proc: subprocess.Popen[str], message: dict[str, Any]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()


def _hear(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"a fleet process exited (code {proc.poll()})")
    return json.loads(line)  # type: ignore[no-any-return]


# -- the figure -------------------------------------------------------------------


def measure(env: Env, sizes: Sizes) -> dict[str, Any]:
    """Hit and miss on a Redis Cluster vs one Redis, and a fleet's paid queries on the cluster."""
    try:
        with servers() as (single, cluster):
            timed = hit_and_miss(env, sizes, {"single": single, "cluster": cluster})
            fleet_run = fleet(env, sizes, cluster)
    except Skip as why:
        return figure(
            _TITLE,
            [skipped(n, unit, op, aim, str(why)) for n, unit, op, aim in _MEASURES],
            note=str(why),
        )
    us, ratios = timed["us_per_op"], timed["ratios"]
    measures = [
        check(_MEASURES[0][0], ratios["sync_hit"], "ratio", "<=", F12_AIM),
        check(_MEASURES[1][0], ratios["sync_miss"], "ratio", "<=", F12_AIM),
    ]
    if timed["async_skipped"] is None:
        measures += [
            check(_MEASURES[2][0], ratios["async_hit"], "ratio", "<=", F12_AIM),
            check(_MEASURES[3][0], ratios["async_miss"], "ratio", "<=", F12_AIM),
        ]
    else:
        measures += [skipped(*m, timed["async_skipped"]) for m in _MEASURES[2:4]]
    queries, distinct = fleet_run["queries"], fleet_run["distinct"]
    measures += [
        check(_MEASURES[4][0], float(timed["wrong"]), "", "==", 0),
        check(_MEASURES[5][0], queries / distinct, "", "==", 1),
        check(_MEASURES[6][0], float(fleet_run["failed"]), "", "==", 0),
    ]
    parts = [
        f"{front} {what} {us[f'{front}_cluster'][what]:.0f} vs {us[f'{front}_single'][what]:.0f} us"
        for front in ("sync", "async")
        if f"{front}_single" in us
        for what in ("hit", "miss")
    ]
    return figure(
        _TITLE,
        measures,
        note=(
            "per op, cluster vs single: " + ", ".join(parts) + f"; fleet: {fleet_run['sends']:,} "
            f"sends from {sizes.f12_processes} processes to {distinct:,} distinct numbers, "
            f"{queries:,} queries, {fleet_run['fallbacks']} sends on the segment table"
        ),
        us_per_op=us,
        ratio_cluster_to_single=ratios,
        ratio_per_round=timed["ratio_per_round"],
        near_ttl=0,
        hit_numbers=sizes.f12_hit_numbers,
        miss_numbers_per_round=sizes.f12_miss_numbers,
        rounds=sizes.f12_rounds,
        fleet={**fleet_run, "vendor_latency_s": F12_FLEET_LATENCY, "threads": sizes.f12_threads},
        server=env.server.kind,
    )
