"""Figure 6: an outage, sends while the upstream hangs, before and after the breaker opens.

When the vendor stops answering, a send must still go out: waiting at most
its deadline (200 ms) while the breaker counts failures, then almost nothing
once it is open. Each round releases a burst of threads at once against the
hanging fake vendor: through a fresh router (until its breaker opens), and,
as the reference of what requests itself allows, bare ``Session.post()``
calls with a 200 ms ``(connect, read)`` timeout and with urllib3's
``Timeout(total=0.2)``; the three alternate round by round. Then the last
router, its breaker open, routes cold numbers one at a time. Aims: p99
before the breaker opens <= 220 ms, p50 after it opens <= 20 us, no failed
send.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import requests.adapters
from harness import Deliveries, Env, check, figure, gateways, percentile, rotated

from smsroute import Router

F6_DEADLINE = 0.200
F6_SLACK = 0.020
F6_OPEN_P50 = 20e-6


@dataclass(frozen=True)
class Sizes:
    """Rounds, threads per burst, and cold numbers routed once the breaker is open."""

    f6_rounds: int
    f6_threads: int
    f6_after_open: int


FULL = Sizes(f6_rounds=8, f6_threads=16, f6_after_open=20_000)
QUICK = Sizes(f6_rounds=1, f6_threads=8, f6_after_open=2_000)


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


def measure(env: Env, sizes: Sizes) -> dict[str, Any]:
    """Upstream hangs: sends bounded by the deadline until the breaker opens, then fast."""
    from urllib3.util.timeout import Timeout

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
