"""smsroute benchmarks: the seven figures of issue 6, in one command.

::

    python benchmarks/run.py                 # full mode: writes benchmarks/results/latest.json
    python benchmarks/run.py --quick         # a few seconds; CI runs it (tests/test_benchmarks.py)
    python benchmarks/run.py --only 1,3 --json /tmp/figures.json

Every figure is a ratio (or a count) measured side by side in the same run:
the compared variants alternate round by round and the medians are taken,
because the machine is shared and noisy. Absolute times are printed for
context only. The fake vendor (smsroute.testing.FakeCarrierServer) runs on
127.0.0.1 in a child process (benchmarks/_server.py) so that it does not
share the benchmark's GIL; ``--server thread`` runs it in-process instead.
Nothing else on the network is touched. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import itertools
import json
import logging
import math
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests
import requests.adapters

from smsroute import __version__, codec, segments
from smsroute.cache import MemoryCache
from smsroute.carrier import Carrier
from smsroute.client import CarrierClient
from smsroute.models import CarrierInfo
from smsroute.routing import Router
from smsroute.testing import AREAS, FakeCarrierServer, VendorSimulator

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "latest.json"
FIGURES = (1, 2, 3, 4, 5, 6, 7)
SCHEMA = 1


# -- sizes --------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does; the full mode follows the issue's numbers."""

    f1_numbers: int
    f1_rounds: int
    f2_calls: int  # per variant on a reused session
    f2_new_session_calls: int
    f3_numbers: dict[int, int]  # per concurrency, over all rounds
    f3_rounds: int
    f3_bound_requests: int  # per round, for the CPU bound
    f4_rounds: int
    f5_sends: int
    f5_numbers: int
    f5_real_server: bool
    f6_rounds: int
    f6_threads: int
    f6_after_open: int
    f7_sizes: tuple[int, ...]
    tier_keys: int
    tier_rounds: int


FULL = Sizes(
    f1_numbers=10_000,
    f1_rounds=9,
    f2_calls=2_000,
    f2_new_session_calls=300,
    f3_numbers={1: 20_000, 8: 20_000, 32: 20_000, 64: 20_000},
    f3_rounds=5,
    f3_bound_requests=1_000,
    f4_rounds=5,
    f5_sends=200_000,
    f5_numbers=50_000,
    f5_real_server=True,
    f6_rounds=8,
    f6_threads=16,
    f6_after_open=20_000,
    f7_sizes=(100_000, 1_000_000),
    tier_keys=5_000,
    tier_rounds=5,
)
QUICK = Sizes(
    f1_numbers=2_000,
    f1_rounds=3,
    f2_calls=150,
    f2_new_session_calls=20,
    f3_numbers={1: 20, 8: 120, 32: 320, 64: 640},
    f3_rounds=1,
    f3_bound_requests=150,
    f4_rounds=2,
    f5_sends=20_000,
    f5_numbers=5_000,
    f5_real_server=False,
    f6_rounds=1,
    f6_threads=8,
    f6_after_open=2_000,
    f7_sizes=(10_000, 50_000),
    tier_keys=300,
    tier_rounds=2,
)

F3_LATENCY = 0.010  # seconds of upstream latency in figure 3
F4_THREADS = 200
F4_LATENCY = 0.050  # long enough that all 200 threads arrive while the one query is out
F5_EXPONENT = 1.1
F6_DEADLINE = 0.200
F6_SLACK = 0.020
F6_OPEN_P50 = 20e-6


# -- helpers ------------------------------------------------------------------


def optional(module: str) -> Any:
    """Return an optional module, or None when it is not installed (or not written yet)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def median(values: Sequence[float]) -> float:
    """Return the median (NaN for no values)."""
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Return the nearest-rank percentile ``q`` (0-100) of values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def rotated(items: Sequence[Any], shift: int) -> list[Any]:
    """Return items rotated by ``shift``: round r runs the variants in a different order."""
    k = shift % len(items)
    return [*items[k:], *items[:k]]


def check(name: str, value: float, unit: str, op: str, target: float) -> dict[str, Any]:
    """Return one measure of a figure with its aim and whether it is met."""
    if math.isnan(value):
        met = False
    elif op == ">=":
        met = value >= target
    elif op == "<=":
        met = value <= target
    elif op == "==":
        met = value == target
    else:  # pragma: no cover - a typo in this file
        raise ValueError(op)
    return {"name": name, "value": value, "unit": unit, "aim": f"{op} {target:g}", "met": met}


def skipped(name: str, unit: str, op: str, target: float, why: str) -> dict[str, Any]:
    """Return a measure that could not be taken (value None, not met) and why."""
    return {
        "name": name,
        "value": None,
        "unit": unit,
        "aim": f"{op} {target:g}",
        "met": False,
        "skipped": why,
    }


def figure(
    title: str, measures: list[dict[str, Any]], *, note: str = "", **context: Any
) -> dict[str, Any]:
    """Return a figure: its measures, whether all are met, a one-line note and context."""
    return {
        "title": title,
        "met": all(m["met"] for m in measures),
        "measures": measures,
        "note": note,
        "context": context,
    }


class NumberPool:
    """Distinct valid mobile numbers spread over the segment table, deterministically.

    Row ``i % R`` gets suffix ``(i // R) * 7919 + c`` modulo its suffix space:
    injective per row (7919 is prime to 10), and a number is kept only when
    its longest-prefix row is the row it was made from, so no two rows make
    the same number.
    """

    def __init__(self, kinds: tuple[str, ...] = ("regular", "virtual"), start: int = 0) -> None:
        self._table = segments.default_table()
        self._rows = [
            r
            for r in self._table.rows()
            if r.kind in kinds and r.length == 11 and r.carrier is not None
        ]
        self._i = start

    def __iter__(self) -> Iterator[str]:
        rows, lookup = self._rows, self._table.lookup
        count = len(rows)
        while True:
            i = self._i
            self._i += 1
            row = rows[i % count]
            width = 11 - len(row.prefix)
            number = f"{row.prefix}{(i // count * 7919 + 4409) % 10**width:0{width}d}"
            if lookup(number) is row:
                yield number

    def take(self, n: int) -> list[str]:
        """Return the next ``n`` numbers, never handed out before."""
        return list(itertools.islice(self, n))


class Deliveries:
    """A gateway: counts the messages it is given (thread-safe)."""

    def __init__(self) -> None:
        self._count = itertools.count()

    def __call__(self, mobile: str, message: str) -> None:
        """Deliver one message (count it)."""
        next(self._count)

    @property
    def count(self) -> int:
        """Return how many messages were delivered."""
        return int(repr(self._count)[6:-1])


def gateways(gateway: Any) -> dict[Carrier | str, Any]:
    """Return one gateway for every operator."""
    return dict.fromkeys(Carrier, gateway)


class SimClient:
    """An in-process lookup client over VendorSimulator: no socket, no charge, counted."""

    def __init__(self) -> None:
        self._sim = VendorSimulator(balance=10**12)
        self._calls = itertools.count()

    def lookup(self, number: str, *, timeout: float | None = None) -> CarrierInfo:
        """Return the simulator's answer for a valid number."""
        next(self._calls)
        result = self._sim.answer_for(number)["result"]
        return CarrierInfo(
            number,
            int(result["res"]),
            result["Area"],
            Carrier.parse(result["Init_isp"]),
            Carrier.parse(result["Now_isp"]),
            result,
        )

    @property
    def calls(self) -> int:
        """Return how many lookups were made."""
        return int(repr(self._calls)[6:-1])


# -- the fake vendor ----------------------------------------------------------


class ProcessServer:
    """FakeCarrierServer in a child process (benchmarks/_server.py): its own GIL."""

    kind = "process"

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(HERE / "_server.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        hello = self._read()
        self.url: str = hello["url"]
        self.apikey: str = hello["apikey"]

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the fake server process exited")
        return json.loads(line)  # type: ignore[no-any-return]

    def control(self, **changes: Any) -> dict[str, Any]:
        """Apply changes (latency, fault) and return the counters (paid, carrier_calls, cpu)."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(changes) + "\n")
        self._proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        """Stop the child (end of its input) and wait for it."""
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class ThreadServer:
    """FakeCarrierServer in this process (shares the GIL with the benchmark)."""

    kind = "thread"

    def __init__(self) -> None:
        self._server = FakeCarrierServer(balance=10**12).start()
        self.url = self._server.url
        self.apikey = self._server.apikey

    def control(self, **changes: Any) -> dict[str, Any]:
        """Apply changes (latency, fault) and return the counters (no separate CPU time)."""
        if "latency" in changes:
            self._server.latency = changes["latency"]
        if "fault" in changes:
            self._server.fault = changes["fault"]
        return {
            "paid": self._server.paid,
            "carrier_calls": self._server.carrier_calls,
            "cpu": None,
        }

    def close(self) -> None:
        """Stop the server."""
        self._server.stop()


class Env:
    """What the figures share: the mode's sizes, the number pool, the (lazily started) server."""

    def __init__(self, sizes: Sizes, server_kind: str) -> None:
        self.sizes = sizes
        self.pool = NumberPool()
        self._server_kind = server_kind
        self._server: ProcessServer | ThreadServer | None = None

    @property
    def server(self) -> ProcessServer | ThreadServer:
        """Return the fake vendor, starting it on first use."""
        if self._server is None:
            self._server = ProcessServer() if self._server_kind == "process" else ThreadServer()
        return self._server

    def client(self, **kwargs: Any) -> CarrierClient:
        """Return a CarrierClient of the fake vendor."""
        return CarrierClient(self.server.apikey, base_url=self.server.url, **kwargs)

    def close(self) -> None:
        """Stop the server if it was started."""
        if self._server is not None:
            self._server.close()


# -- 1: the hot path ----------------------------------------------------------


def _offline_libraries() -> tuple[dict[str, Callable[[str], object]], dict[str, str]]:
    """Return the offline libraries' lookups by name, and why any is missing."""
    lookups: dict[str, Callable[[str], object]] = {}
    missing: dict[str, str] = {}
    hint = "not installed: pip install -e '.[bench]'"
    try:
        from phone import Phone
    except ImportError:
        missing["phone"] = hint
    else:
        lookups["phone"] = Phone().find
    try:
        import phonenumbers
        from phonenumbers import carrier as pn_carrier
    except ImportError:
        missing["phonenumbers"] = hint
    else:
        parse = phonenumbers.parse
        name_for_number = pn_carrier.name_for_number

        def pn_lookup(n: str) -> object:
            return name_for_number(parse(n, "CN"), "zh")

        lookups["phonenumbers"] = pn_lookup
    return lookups, missing


def figure_1(env: Env) -> dict[str, Any]:
    """Router.route() on a warm cache vs phone and phonenumbers, same numbers, same run."""
    sizes = env.sizes
    lookups, missing = _offline_libraries()

    # Numbers every library answers: a None from phone or "" from phonenumbers
    # would time a shorter path than a real answer.
    numbers: list[str] = []
    candidates = NumberPool(start=10**6)
    while len(numbers) < sizes.f1_numbers:
        numbers.extend(
            n for n in candidates.take(sizes.f1_numbers) if all(f(n) for f in lookups.values())
        )
    numbers = numbers[: sizes.f1_numbers]

    deliveries = Deliveries()
    router = Router(SimClient(), gateways(deliveries), default=deliveries)
    router.route_many(numbers, concurrency=1)
    for n in numbers:  # a second pass marks each entry used: from now on every call is a hit
        router.route(n)
    before = router.stats()["decisions"]

    def timer(fn: Callable[[str], object]) -> Callable[[], float]:
        def timed() -> float:
            started = time.perf_counter()
            for n in numbers:
                fn(n)
            return time.perf_counter() - started

        return timed

    variants = {"router": timer(router.route)}
    variants.update((name, timer(fn)) for name, fn in lookups.items())
    times: dict[str, list[float]] = {name: [] for name in variants}
    speedups: dict[str, list[float]] = {name: [] for name in lookups}
    for r in range(sizes.f1_rounds):
        this_round = {}
        for name in rotated(list(variants), r):
            gc.collect()
            this_round[name] = variants[name]() / len(numbers)
            times[name].append(this_round[name])
        for name in lookups:
            speedups[name].append(this_round[name] / this_round["router"])

    after = router.stats()["decisions"]
    delta = {source: after[source] - before[source] for source in after}
    expected = sizes.f1_rounds * len(numbers)
    all_hits = delta["cache"] == expected and sum(delta.values()) == expected
    measures = []
    for name, label, aim in (
        ("phone", "route() vs phone.find()", 6),
        ("phonenumbers", "route() vs phonenumbers parse+carrier", 25),
    ):
        if name in missing:
            measures.append(skipped(label, "x faster", ">=", aim, f"{name} {missing[name]}"))
        else:
            measures.append(check(label, median(speedups[name]), "x faster", ">=", aim))
    measures.append(
        check("timed route() calls that were cache hits", float(all_hits), "bool", "==", 1)
    )
    us = {name: median(v) * 1e6 for name, v in times.items()}
    return figure(
        "Router.route() on a warm cache vs offline number libraries",
        measures,
        note=", ".join(f"{name} {v:.2f} us" for name, v in us.items()) + " per call",
        numbers=len(numbers),
        rounds=sizes.f1_rounds,
        us_per_call=us,
        decisions_while_timed=delta,
    )


# -- 2: one lookup ------------------------------------------------------------


def figure_2(env: Env) -> dict[str, Any]:
    """CarrierClient.lookup() on a miss vs a bare requests call, interleaved call by call."""
    sizes = env.sizes
    server = env.server
    server.control(latency=0, fault=None)
    url = server.url + "/carrier"
    key = server.apikey
    client = env.client()
    bare = requests.Session()
    bare_noenv = requests.Session()
    bare_noenv.trust_env = False

    def lookup(n: str) -> object:
        return client.lookup(n)

    def post(n: str) -> object:
        return bare.post(url, data={"apikey": key, "mobile": n}).json()

    def post_noenv(n: str) -> object:
        return bare_noenv.post(url, data={"apikey": key, "mobile": n}).json()

    def post_new_session(n: str) -> object:
        with requests.Session() as session:
            return session.post(url, data={"apikey": key, "mobile": n}).json()

    variants: dict[str, Callable[[str], object]] = {
        "client": lookup,
        "bare": post,
        "bare_trust_env_off": post_noenv,
    }
    wall: dict[str, list[float]] = {name: [] for name in [*variants, "bare_new_session"]}
    cpu: dict[str, list[float]] = {name: [] for name in wall}
    for fn in variants.values():  # warm-up: connections open, code paths hot
        for n in env.pool.take(30):
            fn(n)

    def timed(name: str, fn: Callable[[str], object], n: str) -> None:
        c0 = time.thread_time()
        t0 = time.perf_counter()
        fn(n)
        wall[name].append(time.perf_counter() - t0)
        cpu[name].append(time.thread_time() - c0)

    start = server.control()
    every = max(1, sizes.f2_calls // sizes.f2_new_session_calls)
    calls = 0
    for i in range(sizes.f2_calls):
        for name in rotated(list(variants), i):
            timed(name, variants[name], env.pool.take(1)[0])
            calls += 1
        if i % every == 0:
            timed("bare_new_session", post_new_session, env.pool.take(1)[0])
            calls += 1
    end = server.control()
    client.close()
    bare.close()
    bare_noenv.close()

    us = {name: median(v) * 1e6 for name, v in wall.items()}
    cpu_us = {name: median(v) * 1e6 for name, v in cpu.items()}
    server_cpu = (end["cpu"] - start["cpu"]) / calls * 1e6 if end.get("cpu") is not None else None
    measures = [
        check("lookup() / bare reused-session post()", us["client"] / us["bare"], "ratio", "<=", 1)
    ]
    return figure(
        "CarrierClient.lookup() on a miss vs a bare requests call",
        measures,
        note=(
            f"lookup() {us['client']:.0f} us, bare post() {us['bare']:.0f} us per call; "
            f"client CPU {cpu_us['client']:.0f} us vs bare {cpu_us['bare']:.0f} us "
            f"({cpu_us['client'] - cpu_us['bare']:+.0f} us)"
        ),
        calls_per_variant=sizes.f2_calls,
        us_per_call=us,
        client_cpu_us_per_call=cpu_us,
        client_cpu_overhead_us=cpu_us["client"] - cpu_us["bare"],
        ratio_vs_trust_env_off=us["client"] / us["bare_trust_env_off"],
        ratio_vs_new_session=us["client"] / us["bare_new_session"],
        server_cpu_us_per_request=server_cpu,
        queries_charged=end["paid"] - start["paid"],
    )


# -- 3: throughput ------------------------------------------------------------


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


def figure_3(env: Env) -> dict[str, Any]:
    """route_many() at latency 10 ms vs min(latency bound, bare-requests CPU bound)."""
    sizes = env.sizes
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


# -- 4: single flight ---------------------------------------------------------


def figure_4(env: Env) -> dict[str, Any]:
    """200 threads route one cold number at once: one upstream query."""
    sizes = env.sizes
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


# -- 5: Zipf traffic ----------------------------------------------------------


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


def figure_5(env: Env) -> dict[str, Any]:
    """Zipf(1.1) sends through the router: one paid query per distinct number."""
    sizes = env.sizes
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
    failed = itertools.count()
    work = iter(stream)

    def sender() -> None:
        for n in work:
            try:
                router.send(n, "hello")
            except Exception:
                next(failed)

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
    failed_n = int(repr(failed)[6:-1])
    return figure(
        "Zipf(1.1) traffic through the router",
        note=(
            f"{sizes.f5_sends:,} sends to {distinct:,} distinct numbers, {queries:,} queries "
            f"({upstream}); {round((1 - queries / sizes.f5_sends) * 1e6):,} queries saved "
            "per million sends"
        ),
        measures=[
            check("upstream queries / distinct numbers", queries / distinct, "", "==", 1),
            check("failed sends", float(failed_n + sizes.f5_sends - deliveries.count), "", "==", 0),
        ],
        upstream=upstream,
        sends=sizes.f5_sends,
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


# -- 6: upstream hangs --------------------------------------------------------


def _burst(threads_n: int, send: Callable[[int], None]) -> None:
    """Run ``send(i)`` on ``threads_n`` threads released at the same instant."""
    barrier = threading.Barrier(threads_n)

    def run(i: int) -> None:
        barrier.wait()
        send(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def figure_6(env: Env) -> dict[str, Any]:
    """Upstream hangs: sends bounded by the deadline until the breaker opens, then fast.

    Each round releases a burst of threads at once against the hanging
    server: through a fresh router (until its breaker opens), and, as the
    reference of what requests itself allows, bare ``Session.post()`` calls
    with a 200 ms ``(connect, read)`` timeout and with urllib3's
    ``Timeout(total=0.2)``. The three alternate round by round.
    """
    from urllib3.util.timeout import Timeout

    sizes = env.sizes
    server = env.server
    url, key = server.url + "/carrier", server.apikey
    lock = threading.Lock()
    before_open: list[float] = []
    bare: dict[str, list[float]] = {"bare_connect_read": [], "bare_total": []}
    sources: dict[str, int] = {}
    failed = 0
    sends = 0
    deliveries = Deliveries()
    router: Router | None = None
    clients = []

    def router_round() -> None:
        nonlocal router, failed, sends
        client = env.client()
        clients.append(client)
        router = this = Router(
            client, gateways(deliveries), default=deliveries, deadline=F6_DEADLINE
        )
        work = iter(env.pool.take(sizes.f6_threads * 4))

        def sender(_: int) -> None:
            nonlocal failed, sends
            for n in work:
                if this.breaker.state != "closed":
                    return
                t0 = time.perf_counter()
                try:
                    decision = this.route(n)
                    elapsed = time.perf_counter() - t0
                    decision.gateway(decision.mobile, "hello")
                except Exception:
                    with lock:
                        failed += 1
                        sends += 1
                    continue
                with lock:
                    sends += 1
                    if not (decision.reason or "").startswith("circuit open"):
                        before_open.append(elapsed)
                    sources[decision.source] = sources.get(decision.source, 0) + 1

        _burst(sizes.f6_threads, sender)

    def bare_round(name: str) -> None:
        timeout: Any = (
            (F6_DEADLINE, F6_DEADLINE)
            if name == "bare_connect_read"
            else Timeout(total=F6_DEADLINE)
        )
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=sizes.f6_threads, max_retries=0)
        session.mount("http://", adapter)
        numbers = env.pool.take(sizes.f6_threads)

        def sender(i: int) -> None:
            t0 = time.perf_counter()
            with contextlib.suppress(requests.RequestException):
                session.post(url, data={"apikey": key, "mobile": numbers[i]}, timeout=timeout)
            with lock:
                bare[name].append(time.perf_counter() - t0)

        _burst(sizes.f6_threads, sender)
        session.close()

    variants: dict[str, Callable[[], None]] = {
        "router": router_round,
        "bare_connect_read": lambda: bare_round("bare_connect_read"),
        "bare_total": lambda: bare_round("bare_total"),
    }
    last: Router | None = None
    try:
        for r in range(sizes.f6_rounds):
            for name in rotated(list(variants), r):
                server.control(fault=None)  # lets the requests held by the last round go
                server.control(fault="hang")
                variants[name]()
                if name == "router":
                    last = router
        # The breaker of the last router is open: time sends to cold numbers.
        assert last is not None
        state = last.breaker.state
        open_times: list[float] = []
        for n in env.pool.take(sizes.f6_after_open):
            t0 = time.perf_counter()
            try:
                decision = last.route(n)
                elapsed = time.perf_counter() - t0
                decision.gateway(decision.mobile, "hello")
            except Exception:
                failed += 1
                sends += 1
                continue
            sends += 1
            open_times.append(elapsed)
            sources[decision.source] = sources.get(decision.source, 0) + 1
    finally:
        server.control(fault=None)
        for client in clients:
            client.close()

    failed_total = failed + (sends - failed - deliveries.count)
    ms = {
        name: {
            "p50": percentile(v, 50) * 1e3,
            "p99": percentile(v, 99) * 1e3,
            "max": max(v, default=math.nan) * 1e3,
        }
        for name, v in (("router", before_open), *bare.items())
    }
    return figure(
        "Upstream hangs, deadline 200 ms",
        note=(
            f"{len(before_open)} sends before the breaker opened, p50/p99 "
            f"{ms['router']['p50']:.0f}/{ms['router']['p99']:.0f} ms (bare requests, same "
            f"burst: {ms['bare_connect_read']['p50']:.0f}/{ms['bare_connect_read']['p99']:.0f} "
            f"ms; with Timeout(total): {ms['bare_total']['p50']:.0f}/"
            f"{ms['bare_total']['p99']:.0f} ms); {len(open_times):,} after (p99 "
            f"{percentile(open_times, 99) * 1e6:.0f} us); {deliveries.count:,} of {sends:,} "
            "delivered"
        ),
        measures=[
            check(
                "p99 route() before the breaker opens",
                ms["router"]["p99"],
                "ms",
                "<=",
                (F6_DEADLINE + F6_SLACK) * 1e3,
            ),
            check(
                "p50 route() after it opens",
                percentile(open_times, 50) * 1e6,
                "us",
                "<=",
                F6_OPEN_P50 * 1e6,
            ),
            check("failed sends", float(failed_total), "", "==", 0),
        ],
        deadline_ms=F6_DEADLINE * 1e3,
        burst_threads=sizes.f6_threads,
        rounds=sizes.f6_rounds,
        samples_before_open=len(before_open),
        samples_after_open=len(open_times),
        before_open_ms=ms,
        p99_after_open_us=percentile(open_times, 99) * 1e6,
        breaker_state_when_timing_open=state,
        sends=sends,
        delivered=deliveries.count,
        decisions_by_source=sources,
    )


# -- 7: memory ----------------------------------------------------------------


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
            [sys.executable, __file__, "--rss-probe", str(size)],
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


def figure_7(env: Env) -> dict[str, Any]:
    """Memory per cached number (tracemalloc), plus cache tiers when available."""
    sizes = env.sizes
    codes = _answer_codes()
    measures = []
    per_size: dict[str, Any] = {}
    tiers = cache_tiers(env)
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


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """Yield the URL of a throwaway redis-server on a free loopback port, or None."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="smsroute-bench-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def cache_tiers(env: Env) -> dict[str, Any]:
    """Return µs per hit of each cache tier that exists, as ratios to a MemoryCache hit.

    Optional: the Redis and SQLite backends are timed only when their modules
    import and work; anything that fails is reported as skipped, with why.
    """
    sizes = env.sizes
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


def _sqlite_tier(
    stack: contextlib.ExitStack, keys: list[str], codes: list[int], per_get: Timer
) -> dict[str, Callable[[], float]]:
    sqlite_cache = optional("smsroute.sqlite_cache")
    if sqlite_cache is None:
        raise Skip("smsroute.sqlite_cache not present")
    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="smsroute-bench-"))
    sqlite = sqlite_cache.SqliteCache(Path(tmp) / "answers.sqlite3")
    stack.callback(sqlite.close)
    for i, k in enumerate(keys):
        sqlite.set(k, codes[i % len(codes)])
    return {"sqlite_get": per_get(sqlite.get)}


def _redis_tier(
    stack: contextlib.ExitStack, keys: list[str], codes: list[int], per_get: Timer
) -> dict[str, Callable[[], float]]:
    redis_cache = optional("smsroute.redis_cache")
    if redis_cache is None:
        raise Skip("smsroute.redis_cache not present")
    url = stack.enter_context(redis_server())
    if url is None:
        raise Skip("skipped: no redis-server")
    rc = redis_cache.RedisCache(url, prefix="bench:", socket_timeout=1.0)
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


# -- running ------------------------------------------------------------------

RUNNERS: dict[int, Callable[[Env], dict[str, Any]]] = {
    1: figure_1,
    2: figure_2,
    3: figure_3,
    4: figure_4,
    5: figure_5,
    6: figure_6,
    7: figure_7,
}


def machine() -> dict[str, Any]:
    """Return what the figures ran on."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git_commit": commit,
    }


def versions() -> dict[str, str | None]:
    """Return the versions of smsroute and the libraries it is compared with."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"smsroute": __version__}
    for name in ("requests", "urllib3", "phone", "phonenumbers", "redis"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "skipped"
    if unit == "bool":
        return "yes" if value == 1 else "no"
    if math.isnan(value):
        return "n/a"
    if unit == "x faster":
        return f"{value:.1f}x"
    if unit in ("ratio", ""):
        return f"{value:.2f}" if value != int(value) else f"{int(value)}"
    return f"{value:.1f} {unit}"


def print_figure(number: int, fig: dict[str, Any], out: Any = sys.stdout) -> None:
    """Print one figure's measures as table rows."""
    for m in fig["measures"]:
        verdict = "met" if m["met"] else "MISSED"
        if m.get("skipped"):
            verdict = f"skipped: {m['skipped']}"
        print(
            f"{number:>2}  {m['name']:<52} {_fmt(m['value'], m['unit']):>12}  "
            f"{m['aim']:<9} {verdict}",
            file=out,
            flush=True,
        )
    if fig.get("note"):
        print(f"    {fig['note']}", file=out, flush=True)


def finite(value: Any) -> Any:
    """Return value with NaN and infinities replaced by None, so that the JSON is strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def parse_only(text: str | None) -> list[int]:
    """Return the figure numbers of ``--only 1,3`` (all of them for None)."""
    if not text:
        return list(FIGURES)
    chosen = []
    for part in text.split(","):
        n = int(part)
        if n not in FIGURES:
            raise argparse.ArgumentTypeError(f"no figure {n}: choose from 1-7")
        chosen.append(n)
    return sorted(set(chosen))


def run(*, quick: bool, only: Sequence[int], server: str, json_path: Path) -> dict[str, Any]:
    """Run the chosen figures, print the table and write the JSON; return the results."""
    # The router logs a warning per fallback (figure 6 makes many): the events
    # are still made and rendered, as in a host that logs them, but not shown.
    for name in ("smsroute", "urllib3"):
        logger = logging.getLogger(name)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    env = Env(QUICK if quick else FULL, server)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": "quick" if quick else "full",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "server": server,
        "sizes": asdict(env.sizes),
        "figures": {},
    }
    print(f"{'#':>2}  {'measure':<52} {'value':>12}  {'aim':<9} result", flush=True)
    try:
        for number in only:
            t0 = time.perf_counter()
            fig = RUNNERS[number](env)
            fig["seconds"] = time.perf_counter() - t0
            results["figures"][str(number)] = fig
            print_figure(number, fig)
    finally:
        env.close()
    results["seconds"] = time.perf_counter() - started
    results["machine"]["loadavg_at_end"] = (
        list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    )
    results["met"] = all(f["met"] for f in results["figures"].values())
    json_path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(finite(results), indent=2, ensure_ascii=False, allow_nan=False)
    json_path.write_text(text + "\n")
    print(
        f"\n{len(results['figures'])} figures in {results['seconds']:.1f} s "
        f"({results['mode']} mode, server in a {server}); context and absolute times: "
        f"{json_path}",
        flush=True,
    )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks from the command line; exit 0 even when an aim is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, small sizes (CI)")
    parser.add_argument("--only", type=parse_only, help="figures to run, e.g. 1,3")
    parser.add_argument(
        "--json",
        type=Path,
        help="where to write the figures (default: results/latest.json; a temp file with --quick)",
    )
    parser.add_argument(
        "--server",
        choices=("process", "thread"),
        default="process",
        help="run the fake vendor in a child process (default) or in this process",
    )
    parser.add_argument("--rss-probe", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_probe:
        print(rss_probe(args.rss_probe))
        return 0
    json_path = args.json
    if json_path is None:
        json_path = (
            Path(tempfile.gettempdir()) / "smsroute-bench-quick.json"
            if args.quick
            else DEFAULT_JSON
        )
    run(
        quick=args.quick,
        only=args.only or list(FIGURES),
        server=args.server,
        json_path=json_path,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
