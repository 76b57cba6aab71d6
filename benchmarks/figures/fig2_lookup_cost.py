"""Figure 2: the cost of one paid lookup, ``CarrierClient.lookup()`` vs a bare requests call.

On a miss the router calls the vendor through CarrierClient; this figure
asks whether that client costs more than calling requests yourself. Each
round makes one call of each variant in rotating order against the fake
vendor at latency 0: our client, a bare ``Session.post().json()`` on a
reused session, the same with ``trust_env = False``, and (every few rounds)
a new session per call. The figure is the ratio of the per-call medians of
wall time (aim <= 1.0); the client's CPU per call (``thread_time``) and the
server's are in the context.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from harness import Env, check, figure, median, rotated


@dataclass(frozen=True)
class Sizes:
    """Calls per variant on a reused session, and calls on a new session each."""

    f2_calls: int
    f2_new_session_calls: int


FULL = Sizes(f2_calls=2_000, f2_new_session_calls=300)
QUICK = Sizes(f2_calls=150, f2_new_session_calls=20)


def measure(env: Env, sizes: Sizes) -> dict[str, Any]:
    """CarrierClient.lookup() on a miss vs a bare requests call, interleaved call by call."""
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
