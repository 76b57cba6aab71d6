"""Figure 13: ``smsroute route`` on cold numbers, asyncio engine vs threads, from the command line.

What an operator sees: a list of numbers nobody asked before, routed by the
command as it ships, each run a fresh process (start-up, reading the file,
writing the CSV and the summary included). Every number is new, so every
row is a paid lookup against the asyncio fake vendor at 10 ms in a child
process. Per round, in rotating order, three runs over fresh numbers:

* ``--engine async`` at its default concurrency (AsyncRouter on aiohttp);
* ``--engine threads`` at its default concurrency (the threaded path the
  command had before the asyncio engine);
* ``--engine threads --concurrency 32``: threads at about their best
  (figure 9 finds the threaded router's best at 32 on this machine).

Each run's output is read back: every row must come from the vendor
(``source`` upstream, no guess from the segment table). The figure is the
median of the per-round ratios of rows per second: async ÷ threads at the
default (aim >= 3), and async ÷ threads at 32 (reported). Wall time and the
command's CPU (user + system of the child) per row are in the context.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aioharness import aiohttp_missing
from harness import Env, check, child_environment, figure, median, rotated, skipped

F13_LATENCY = 0.010
F13_RUN_LIMIT = 300.0  # seconds one command may take before the figure gives up

_TITLE = "smsroute route on cold numbers: --engine async vs threads, a process per run"
_VARIANTS: dict[str, list[str]] = {
    "async": ["--engine", "async"],
    "threads": ["--engine", "threads"],
    "threads_32": ["--engine", "threads", "--concurrency", "32"],
}


@dataclass(frozen=True)
class Sizes:
    """Rows per run and rounds."""

    f13_rows: int
    f13_rounds: int


FULL = Sizes(f13_rows=6_000, f13_rounds=3)
QUICK = Sizes(f13_rows=150, f13_rounds=1)


def _run(env: Env, variant: str, numbers: list[str], work: Path) -> dict[str, Any]:
    """Run the command once over ``numbers``; return its rate, CPU and what it wrote."""
    server = env.aio_server
    source = work / f"{variant}-in.txt"
    output = work / f"{variant}-out.csv"
    source.write_text("".join(f"{n}\n" for n in numbers), encoding="utf-8")
    argv = [
        sys.executable,
        "-m",
        "smsroute",
        "--apikey",
        server.apikey,
        "--base-url",
        server.url,
        "route",
        str(source),
        "--no-cache",
        "--no-progress",
        "-o",
        str(output),
        *_VARIANTS[variant],
    ]
    before = os.times()
    started = time.perf_counter()
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=F13_RUN_LIMIT,
        env=child_environment(),
        check=False,
    )
    wall = time.perf_counter() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    with output.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        "exit": done.returncode,
        "rows": len(rows),
        "upstream": sum(1 for r in rows if r.get("source") == "upstream"),
        "seconds": wall,
        "per_second": len(numbers) / wall,
        "cpu_ms_per_row": cpu / max(1, len(numbers)) * 1e3,
        "summary": done.stderr.strip().splitlines()[-3:],
    }


def measure(env: Env, sizes: Sizes) -> dict[str, Any]:
    """Route fresh numbers from the command line on each engine, rounds rotated."""
    missing = aiohttp_missing()
    if missing is not None:
        return figure(
            _TITLE, [skipped("rows/s: --engine async / threads (default)", "x", ">=", 3, missing)]
        )
    server = env.aio_server
    server.control(latency=F13_LATENCY, fault=None)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in _VARIANTS}
    try:
        with tempfile.TemporaryDirectory(prefix="smsroute-f13-") as tmp:
            for r in range(sizes.f13_rounds):
                for variant in rotated(list(_VARIANTS), r):
                    numbers = env.pool.take(sizes.f13_rows)
                    runs[variant].append(_run(env, variant, numbers, Path(tmp)))
    finally:
        server.control(latency=0)
    ratios = [
        a["per_second"] / t["per_second"]
        for a, t in zip(runs["async"], runs["threads"], strict=True)
    ]
    ratios_32 = [
        a["per_second"] / t["per_second"]
        for a, t in zip(runs["async"], runs["threads_32"], strict=True)
    ]
    guessed = sum(r["rows"] - r["upstream"] for rs in runs.values() for r in rs)
    failed = sum(1 for rs in runs.values() for r in rs if r["exit"] != 0)
    rate = {v: median([r["per_second"] for r in rs]) for v, rs in runs.items()}
    cpu = {v: median([r["cpu_ms_per_row"] for r in rs]) for v, rs in runs.items()}
    return figure(
        _TITLE,
        [
            check("rows/s: --engine async / threads (default)", median(ratios), "x", ">=", 3),
            check("rows/s: --engine async / threads at 32", median(ratios_32), "x", ">=", 1),
            check(
                "rows not answered by the vendor, runs not exit 0",
                float(guessed + failed),
                "",
                "==",
                0,
            ),
        ],
        note=(
            f"{sizes.f13_rows:,} rows a run; rows/s async {rate['async']:,.0f}, threads "
            f"{rate['threads']:,.0f}, threads at 32 {rate['threads_32']:,.0f}; CPU ms per row "
            f"{cpu['async']:.2f} / {cpu['threads']:.2f} / {cpu['threads_32']:.2f}; per round "
            f"{[round(x, 2) for x in ratios]}"
        ),
        upstream_latency_s=F13_LATENCY,
        server=server.kind,
        ratios=ratios,
        ratios_at_32=ratios_32,
        runs=runs,
    )
