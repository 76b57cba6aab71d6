"""Figure 7: memory per cached number, and what a hit costs in each cache tier.

A gateway keeps every number it sent to in the cache, so a million entries
has to fit in a modest process: the figure fills a MemoryCache under
tracemalloc with answers spread over every area and operator pair (aim <=
200 B per number, at 100,000 and 1,000,000), and checks it against the RSS
growth of a fresh process (``python -m figures.fig7_memory SIZE``, run from
benchmarks/, prints it). The context times a hit in each cache tier that is
available side by side, as ratios to a MemoryCache hit: SqliteCache, and
RedisCache's near tier and Redis itself against a throwaway redis-server;
a tier that cannot run here is reported as skipped, with why.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    HERE,
    Deliveries,
    Env,
    NumberPool,
    SimClient,
    check,
    figure,
    gateways,
    median,
    redis_server,
    rotated,
)

import smsroute
from smsroute import Carrier, CarrierInfo, MemoryCache, Router, codec
from smsroute.testing import AREAS


@dataclass(frozen=True)
class Sizes:
    """Cache sizes to fill, and keys and rounds per cache tier."""

    f7_sizes: tuple[int, ...]
    tier_keys: int
    tier_rounds: int


FULL = Sizes(f7_sizes=(100_000, 1_000_000), tier_keys=5_000, tier_rounds=5)
QUICK = Sizes(f7_sizes=(10_000, 50_000), tier_keys=300, tier_rounds=2)


def _answer_codes() -> list[int]:
    """Return answer codes from every area, operator pair and res the vendor uses."""
    codes = []
    main = (Carrier.MOBILE, Carrier.UNICOM, Carrier.TELECOM)
    for area in AREAS:
        for initial in main:
            for current in main:
                res = 0 if initial is current else 1
                codes.append(codec.encode(CarrierInfo("", res, area, initial, current)))
    return codes


def _rss() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _rss_probe(size: int) -> float | None:
    """Return RSS growth per number of a MemoryCache filled in a fresh process, or None."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", f"figures.{Path(__file__).stem}", str(size)],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        return float(proc.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def rss_probe(size: int) -> float:
    """Fill a MemoryCache with ``size`` numbers; return the RSS growth per number (bytes)."""
    codes = _answer_codes()
    next(iter(NumberPool()))  # loads the segment table before the first reading
    gc.collect()
    before = _rss()
    cache = MemoryCache(maxsize=size)
    _fill(cache, size, codes)
    after = _rss()
    if before is None or after is None:
        raise OSError("no /proc/self/statm")
    return (after - before) / len(cache)


def _fill(cache: MemoryCache, size: int, codes: Sequence[int]) -> None:
    # Numbers are made here, one at a time, so that only the cache keeps them.
    for i, number in enumerate(itertools.islice(NumberPool(start=0), size)):
        cache.set(number, codes[i % len(codes)])


def measure(env: Env, sizes: Sizes) -> dict[str, Any]:
    """Memory per cached number (tracemalloc), plus cache tiers when available."""
    codes = _answer_codes()
    measures = []
    per_size: dict[str, Any] = {}
    tiers = cache_tiers(sizes)
    for size in sizes.f7_sizes:
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        cache = MemoryCache(maxsize=size)
        _fill(cache, size, codes)
        traced = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        assert len(cache) == size
        del cache
        gc.collect()
        # The same as the OS sees it (pymalloc rounds objects up, arenas have
        # overhead), in a fresh process: here, memory freed by the figures run
        # before would be reused and hide the growth. Too coarse below 100,000.
        rss = _rss_probe(size) if size >= 100_000 else None
        measures.append(
            check(f"bytes per cached number at {size:,}", traced / size, "B", "<=", 200)
        )
        per_size[str(size)] = {
            "tracemalloc_bytes_per_number": traced / size,
            "rss_bytes_per_number": rss,
        }
    return figure(
        "Memory per cached number (MemoryCache)",
        measures,
        note=_tiers_note(tiers),
        by_size=per_size,
        distinct_answer_codes=len(set(codes)),
        tiers=tiers,
    )


def _tiers_note(tiers: dict[str, Any]) -> str:
    us = tiers["us_per_hit"]
    parts = [f"{name} {v:.2f} us" for name, v in us.items()]
    parts += [f"{name}: {why}" for name, why in tiers["skipped"].items()]
    return "hit: " + ", ".join(parts)


def cache_tiers(sizes: Sizes) -> dict[str, Any]:
    """Return µs per hit of each cache tier that exists, as ratios to a MemoryCache hit.

    Optional: the Redis and SQLite backends are timed only when their modules
    import and work; anything that fails is reported as skipped, with why.
    """
    keys = NumberPool(start=5 * 10**6).take(sizes.tier_keys)
    codes = _answer_codes()
    memory = MemoryCache()
    for i, k in enumerate(keys):
        memory.set(k, codes[i % len(codes)])
        memory.get(k)
    deliveries = Deliveries()
    mem_router = Router(SimClient(), gateways(deliveries), cache=memory, default=deliveries)
    for k in keys:
        mem_router.route(k)

    def per_get(get: Callable[[str], object]) -> Callable[[], float]:
        def timed() -> float:
            started = time.perf_counter()
            for k in keys:
                get(k)
            return (time.perf_counter() - started) / len(keys)

        return timed

    variants: dict[str, Callable[[], float]] = {
        "memory_get": per_get(memory.get),
        "memory_route": per_get(mem_router.route),
    }
    skipped: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for name, setup in (("sqlite", _sqlite_tier), ("redis", _redis_tier)):
            try:
                variants.update(setup(stack, keys, codes, per_get))
            except Skip as why:
                skipped[name] = str(why)
            except Exception as exc:  # another engineer's backend, maybe half-written
                skipped[name] = f"failed: {type(exc).__name__}: {exc}"
        times: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(sizes.tier_rounds):
            for name in rotated(list(variants), r):
                if name not in times:
                    continue
                try:
                    times[name].append(variants[name]())
                except Exception as exc:
                    skipped[name] = f"failed: {type(exc).__name__}: {exc}"
                    del times[name]
    us = {name: median(v) * 1e6 for name, v in times.items()}
    return {
        "us_per_hit": us,
        "ratio_to_memory_get": {
            name: v / us["memory_get"] for name, v in us.items() if name.endswith("_get")
        },
        "ratio_to_memory_route": {
            name: v / us["memory_route"] for name, v in us.items() if name.endswith("_route")
        },
        "keys": len(keys),
        "skipped": skipped,
    }


class Skip(Exception):
    """A cache tier that cannot be timed here (module or server missing)."""


Timer = Callable[[Callable[[str], object]], Callable[[], float]]


def _public(name: str) -> Any:
    """Return smsroute's export ``name``, or raise Skip when it is missing or cannot import."""
    # Public names, not module paths: the package's layout may change under
    # the benchmarks, its exports do not. RedisCache imports redis-py lazily.
    try:
        return getattr(smsroute, name)
    except (ImportError, AttributeError) as exc:
        raise Skip(f"smsroute.{name} not present") from exc


def _sqlite_tier(
    stack: contextlib.ExitStack, keys: list[str], codes: list[int], per_get: Timer
) -> dict[str, Callable[[], float]]:
    sqlite_cache_class = _public("SqliteCache")
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="smsroute-bench-"))
    sqlite = sqlite_cache_class(Path(tmp) / "answers.sqlite3")
    stack.callback(sqlite.close)
    for i, k in enumerate(keys):
        sqlite.set(k, codes[i % len(codes)])
    return {"sqlite_get": per_get(sqlite.get)}


def _redis_tier(
    stack: contextlib.ExitStack, keys: list[str], codes: list[int], per_get: Timer
) -> dict[str, Callable[[], float]]:
    redis_cache_class = _public("RedisCache")
    url = stack.enter_context(redis_server())
    if url is None:
        raise Skip("skipped: no redis-server")
    rc = redis_cache_class(url, prefix="bench:", socket_timeout=1.0)
    stack.callback(rc.close)
    for i, k in enumerate(keys):
        rc.set(k, codes[i % len(codes)])
        rc.get(k)
    deliveries = Deliveries()
    router = Router(SimClient(), gateways(deliveries), cache=rc, default=deliveries)
    for _ in range(2):  # fills the route memo, then marks the near entries used
        for k in keys:
            router.route(k)
    near_get = per_get(rc.get)

    def far_get() -> float:
        rc.clear_near()
        elapsed = near_get()  # every get goes to Redis and refills the near tier
        for k in keys:  # marks the refilled entries used, as before this pass
            rc.get(k)
        return elapsed

    return {
        "redis_near_get": near_get,
        "redis_near_route": per_get(router.route),
        "redis_far_get": far_get,
    }


if __name__ == "__main__":
    print(rss_probe(int(sys.argv[1])))
