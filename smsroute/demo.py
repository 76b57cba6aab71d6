"""``smsroute demo``: the whole routing path against an in-process fake vendor.

No key and no network: a :class:`~smsroute.testing.FakeCarrierServer` on
127.0.0.1 plays the vendor, a :class:`~smsroute.testing.FakeClock` plays the
days and the breaker's cool-down, so the walk-through takes about a second.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final, TextIO

from smsroute.cache import DAY, MemoryCache
from smsroute.client import CarrierClient
from smsroute.resilience import CircuitBreaker, default_retrying
from smsroute.routing import Decision, Router
from smsroute.tables import format_table

__all__ = ["GATEWAYS", "run_demo"]

GATEWAYS: Final = {"移动": "CMPP", "联通": "SGIP", "电信": "SMGP", "广电": "CBN"}
"""One SMS channel per operator, by the protocol each operator's SMS centre speaks."""

# The numbers of the story. The fake vendor answers every number by a hash;
# the ones the story depends on are pinned so it reads the same for any seed.
PLAIN: Final = "13800138000"  # 移动, not ported
DOC_PORTED: Final = "13972565391"  # the vendor document's example: 移动 -> 电信
VIRTUAL: Final = "17091234567"  # 1709: a virtual operator on 联通's network
NEW: Final = "18612345678"  # 联通, never looked up before the outage
PORTED: Final = "15012345678"  # a 移动 segment, ported to 联通

DEADLINE: Final = 0.3  # seconds the router waits for the vendor
THRESHOLD: Final = 2  # failures in a row that open the breaker
COOLDOWN: Final = 10.0  # seconds (of the fake clock) before the breaker probes


@dataclass
class _Step:
    title: str
    decision: Decision
    seconds: float
    breaker: str


def _duration(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1e3:.1f} ms"


def _operator(decision: Decision) -> str:
    info = decision.info
    name = decision.carrier.value if decision.carrier is not None else "?"
    if info is not None and info.ported and info.initial is not None:
        return f"{name} (was {info.initial.value})"
    if info is not None and info.virtual:
        return f"{name} (MVNO)"
    if decision.source == "fallback":
        return f"{name} (segment)"
    return name


def run_demo(out: TextIO) -> int:
    """Print the walk-through to ``out``; return 0."""
    # Imported here: the test doubles are not needed to import the module.
    from smsroute.testing import AnswerSpec, FakeCarrierServer, FakeClock

    clock = FakeClock()
    answers: dict[str, AnswerSpec] = {
        PLAIN: {"res": 0, "area": "北京-北京"},
        VIRTUAL: {"res": 3, "area": "广东-深圳"},
        NEW: {"res": 0, "area": "上海-上海"},
        PORTED: {"res": 1, "now": "联通", "area": "浙江-杭州"},
    }
    steps: list[_Step] = []
    notes: list[tuple[int, str]] = []  # (after step n, text)

    def say(text: str) -> None:
        notes.append((len(steps), text))

    with FakeCarrierServer(answers=answers) as server:
        client = CarrierClient(
            server.apikey,
            base_url=server.url,
            timeout=(DEADLINE, DEADLINE),
            retry=default_retrying(attempts=1),
        )
        breaker = CircuitBreaker(threshold=THRESHOLD, cooldown=COOLDOWN, clock=clock)
        router = Router(
            client,
            GATEWAYS,
            cache=MemoryCache(timer=clock),  # ttl 7 days, then stale for 30 more
            breaker=breaker,
            deadline=DEADLINE,
        )

        def step(title: str, number: str) -> Decision:
            started = time.perf_counter()
            decision = router.route(number)
            seconds = time.perf_counter() - started
            state: str = breaker.state
            if state == "closed" and breaker.failures:
                state = f"closed ({breaker.failures} failure{'s' if breaker.failures > 1 else ''})"
            steps.append(_Step(title, decision, seconds, state))
            if decision.reason:
                say(f"why {decision.source}: {decision.reason}")
            return decision

        with client:
            step("first lookup: ask the vendor", PLAIN)
            step("same number again", PLAIN)
            step("ported number (vendor's doc)", DOC_PORTED)
            step("virtual operator: host network", VIRTUAL)
            clock.advance(8 * DAY)
            say("8 days pass: cached answers are past their 7-day ttl, kept stale 30 days more")
            server.fault = "http500"
            say("the vendor goes down: every request now gets HTTP 500")
            step("cached number, vendor down", PLAIN)
            step("new number, vendor down", NEW)
            say(
                f"{THRESHOLD} failures in a row: the breaker opens; "
                f"no calls to the vendor for {COOLDOWN:.0f} s"
            )
            step("ported number, breaker open", PORTED)
            say("offline the segment table only knows the original operator: 移动, not 联通")
            server.fault = None
            clock.advance(COOLDOWN)
            say(f"the vendor recovers; {COOLDOWN:.0f} s pass: breaker is {breaker.state}")
            step("one probe goes upstream", PORTED)
            step("same number again", PORTED)
            balance = client.balance()
        stats = router.stats()
        url = server.url
        paid = server.paid

    _print(out, url, steps, notes)
    decisions = stats["decisions"]
    out.write(
        f"\nbalance: {balance.remaining:,} queries left ({balance.fee_type}); "
        f"this demo paid {paid} — one per upstream answer, none for cache, stale or fallback\n"
        f"router stats: upstream {decisions['upstream']}, cache {decisions['cache']}, "
        f"stale {decisions['stale']}, fallback {decisions['fallback']}; "
        f"upstream calls {stats['upstream_calls']}; breaker opened {stats['breaker_opened']} "
        f"time(s), now {stats['breaker']}\n"
        "\nnext: smsroute fake-server (the same fake vendor, in the foreground), "
        "smsroute --help, README.md\n"
    )
    return 0


def _print(
    out: TextIO,
    url: str,
    steps: list[_Step],
    notes: list[tuple[int, str]],
) -> None:
    out.write(f"smsroute demo: a fake vendor on {url} (no key, no network)\n")
    gateways = "  ".join(f"{op} → {gw}" for op, gw in GATEWAYS.items())
    out.write(f"gateways: {gateways}\n")
    out.write(
        "source: upstream = the vendor answered (one paid query); cache = a fresh cached\n"
        "        answer; stale = an expired cached answer, used when the vendor fails;\n"
        "        fallback = the offline segment table (the number's original operator)\n\n"
    )
    headers = ("#", "step", "number", "operator", "gateway", "source", "time", "breaker")
    rows = [
        (
            str(i),
            s.title,
            s.decision.mobile,
            _operator(s.decision),
            s.decision.gateway,
            s.decision.source,
            _duration(s.seconds),
            s.breaker,
        )
        for i, s in enumerate(steps, 1)
    ]
    lines = format_table(headers, rows).split("\n")
    out.write(lines[0] + "\n")
    for i, line in enumerate(lines[1:]):
        for _, text in (n for n in notes if n[0] == i):
            out.write(f"   -- {text}\n")
        out.write(line + "\n")
    for _, text in (n for n in notes if n[0] == len(steps)):
        out.write(f"   -- {text}\n")
