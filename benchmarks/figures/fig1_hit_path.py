"""Figure 1: what routing adds to a send, a warm ``Router.route()`` vs offline libraries.

A gateway calls ``route()`` before every send, so on a warm cache it has to
cost less than what a gateway would otherwise use to pick the operator: the
offline ``phone`` lookup (``Phone().find``) and ``phonenumbers`` (parse, then
``carrier.name_for_number``), neither of which knows about ported numbers.
The three take turns over the same numbers, round by round in rotating
order; the figure is the median per-round speed-up (aims: 6x and 25x), and
``Router.stats()`` checks that every timed call was a cache hit. Without the
``bench`` extra the two comparisons are skipped and the router half still
runs.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness import (
    Deliveries,
    Env,
    NumberPool,
    SimClient,
    check,
    figure,
    gateways,
    median,
    rotated,
    skipped,
)

from smsroute import Router


@dataclass(frozen=True)
class Sizes:
    """How many numbers each variant routes per round, and how many rounds."""

    f1_numbers: int
    f1_rounds: int


FULL = Sizes(f1_numbers=10_000, f1_rounds=9)
QUICK = Sizes(f1_numbers=2_000, f1_rounds=3)


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


def measure(env: Env, sizes: Sizes) -> dict[str, Any]:
    """Router.route() on a warm cache vs phone and phonenumbers, same numbers, same run."""
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
