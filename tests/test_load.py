"""Load: 16 threads send 20,000 messages while the vendor's faults switch every second.

Everything runs on 127.0.0.1 against FakeCarrierServer with a real
CarrierClient. Bounded in time: a short deadline, a short breaker cool-down,
and a watchdog that fails the test (with every thread's stack) instead of
hanging CI.
"""

from __future__ import annotations

import itertools
import random
import sys
import threading
import time
import traceback
from collections import Counter

import pytest

import smsroute
from smsroute import Carrier, CarrierClient, CircuitBreaker, MemoryCache, Router
from smsroute.testing import FakeCarrierServer

THREADS = 16
MESSAGES = 20_000
NUMBERS = 3_000
FAULT_CYCLE: list[int | str | None] = [None, "http500", "hang", -8, "reset", None]
SWITCH_EVERY = 1.0
# The senders are paced over this long so that every fault of the cycle is met;
# unpaced, the 20,000 sends take about a second.
SPREAD = SWITCH_EVERY * len(FAULT_CYCLE)
WATCHDOG = 30.0  # seconds for the whole send phase; a deadlock fails here
PREFIXES = ("138", "139", "150", "186", "130", "133", "177", "189")


def numbers(count: int) -> list[str]:
    """Return ``count`` distinct valid numbers over a few operators' segments."""
    rng = random.Random(7)
    out: set[str] = set()
    while len(out) < count:
        out.add(smsroute.normalize(rng.choice(PREFIXES) + f"{rng.randrange(10**8):08d}"))
    return sorted(out)


def stacks() -> str:
    """Return every live thread's stack, for a watchdog failure."""
    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(
        f"--- {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame))
        for ident, frame in sys._current_frames().items()
    )


@pytest.mark.slow
def test_sends_survive_switching_faults():
    """Every message is delivered exactly once, and the router's counters add up."""
    pool = numbers(NUMBERS)
    rng = random.Random(11)
    plan = [(i, rng.choice(pool)) for i in range(MESSAGES)]
    delivered: dict[str, list[int]] = {}

    def gateway(name: str):
        sink = delivered.setdefault(name, [])

        def deliver(mobile: str, message_id: int) -> None:
            sink.append(message_id)  # list.append is atomic

        return deliver

    gateways = {c: gateway(c.name) for c in (Carrier.MOBILE, Carrier.UNICOM, Carrier.TELECOM)}
    failures: list[str] = []
    switches: list[int | str | None] = []
    stop = threading.Event()

    with FakeCarrierServer(seed=3) as server:
        client = CarrierClient(
            server.apikey,
            base_url=server.url,
            retry=smsroute.default_retrying(attempts=2, sleep=lambda _s: None),
            pool_maxsize=THREADS * 2,
        )
        router = Router(
            client,
            gateways,
            default=gateway("default"),
            # Answers go stale after a second or two, so lookups (and faults)
            # keep happening through the whole run, and stale answers get served.
            cache=MemoryCache(ttl=1, stale_ttl=3600),
            deadline=0.05,
            breaker=CircuitBreaker(threshold=5, cooldown=0.2, hard_cooldown=0.5),
        )

        def switch_faults() -> None:
            for fault in itertools.cycle(FAULT_CYCLE):
                server.set_fault(fault)
                switches.append(fault)
                if stop.wait(SWITCH_EVERY):
                    break
            server.set_fault(None)

        def worker(chunk: list[tuple[int, str]]) -> None:
            step = SPREAD / len(chunk)
            try:
                for k, (message_id, number) in enumerate(chunk):
                    ahead = started + k * step - time.perf_counter()
                    if ahead > 0:
                        time.sleep(ahead)
                    router.send(number, message_id)
            except BaseException:  # any escape breaks the promise
                failures.append(traceback.format_exc())

        switcher = threading.Thread(target=switch_faults, name="faults", daemon=True)
        workers = [
            threading.Thread(target=worker, args=(plan[k::THREADS],), name=f"w{k}", daemon=True)
            for k in range(THREADS)
        ]
        started = time.perf_counter()
        switcher.start()
        for t in workers:
            t.start()
        end = started + WATCHDOG
        for t in workers:
            t.join(timeout=max(0.0, end - time.perf_counter()))
        took = time.perf_counter() - started
        hung = [t.name for t in workers if t.is_alive()]
        dump = stacks() if hung else ""
        stop.set()
        switcher.join(timeout=5)
        stats = router.stats()
        calls = server.carrier_calls
        client.close()

    assert not hung, f"deadlock or runaway after {took:.1f}s: {hung}\n{dump}"
    assert not switcher.is_alive()
    assert not failures, failures[0]

    # Nothing lost, nothing sent twice.
    ids = [i for sink in delivered.values() for i in sink]
    assert len(ids) == MESSAGES
    twice = [i for i, n in Counter(ids).items() if n > 1]
    assert not twice
    assert set(ids) == set(range(MESSAGES))

    # The counters add up.
    decisions = stats["decisions"]
    assert sum(decisions.values()) == MESSAGES
    for source, by_carrier in stats["decisions_by_carrier"].items():
        assert sum(by_carrier.values()) == decisions[source]
    assert stats["hits"] + stats["misses"] == MESSAGES
    assert sum(stats["fallback_reasons"].values()) == decisions["stale"] + decisions["fallback"]
    assert stats["upstream_latency"]["count"] == stats["upstream_calls"]
    # The client retries some calls (more requests than calls), and cuts an
    # attempt whose deadline passed before it was written (a call no request).
    assert calls <= 2 * stats["upstream_calls"]

    # The run really met faults and answers: every kind of decision happened.
    assert set(FAULT_CYCLE) <= set(switches)
    assert decisions["cache"] > 0
    assert decisions["upstream"] > 0
    assert decisions["fallback"] + decisions["stale"] > 0
    print(
        f"\nload: {MESSAGES} sends in {took:.1f}s, {len(ids)} deliveries, "
        f"faults {switches}, decisions {decisions}, upstream calls {stats['upstream_calls']}, "
        f"HTTP requests {calls}, breaker opened {stats['breaker_opened']}x, "
        f"reasons {stats['fallback_reasons']}"
    )
