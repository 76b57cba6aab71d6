"""smsroute benchmarks: every figure, side by side on one machine, in one command.

::

    python benchmarks/run.py                 # full mode: writes benchmarks/results/latest.json
    python benchmarks/run.py --quick         # a few seconds; CI runs it (tests/test_benchmarks.py)
    python benchmarks/run.py --only 1,3 --json /tmp/figures.json

Every figure is a ratio (or a count) measured side by side in the same run:
the compared variants alternate round by round and the medians are taken,
because the machine is shared and noisy. Absolute times are printed for
context only. The fake vendors (smsroute.testing.FakeCarrierServer, and
AsyncFakeCarrierServer for the asyncio figures 8-11) run on 127.0.0.1 in
child processes so that they do not share the benchmark's GIL; ``--server
thread`` runs them in-process instead. Nothing else on the network is
touched. See benchmarks/README.md.

This file only runs them: the figures are benchmarks/figures/fig*.py,
registered in benchmarks/figures/__init__.py, and what they share is
benchmarks/harness.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from figures import FIGURES, Figure, load
from harness import HERE, Env, machine, versions

DEFAULT_JSON = HERE / "results" / "latest.json"
SCHEMA = 1


def modules() -> dict[int, Figure]:
    """Return every registered figure's module, by number."""
    return {number: load(number) for number in FIGURES}


def sizes(figures: Mapping[int, Figure], *, quick: bool) -> dict[str, Any]:
    """Return all figures' sizes for the mode as one flat mapping (the JSON's ``sizes``)."""
    merged: dict[str, Any] = {}
    for number, module in figures.items():
        for name, value in asdict(module.QUICK if quick else module.FULL).items():
            if name in merged:
                raise ValueError(f"figure {number}: size {name!r} is another figure's name too")
            merged[name] = value
    return merged


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


def _choices() -> str:
    numbers = sorted(FIGURES)
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}-{numbers[-1]}"
    return ", ".join(map(str, numbers))


def parse_only(text: str | None) -> list[int]:
    """Return the figure numbers of ``--only 1,3`` (all of them for None)."""
    if not text:
        return sorted(FIGURES)
    chosen = []
    for part in text.split(","):
        n = int(part)
        if n not in FIGURES:
            raise argparse.ArgumentTypeError(f"no figure {n}: choose from {_choices()}")
        chosen.append(n)
    return sorted(set(chosen))


def run(
    *,
    quick: bool,
    only: Sequence[int],
    server: str,
    json_path: Path,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the chosen figures, print the table and write the JSON; return the results.

    ``options`` are the parsed command line (figures' own options included),
    handed to the figures as ``Env.options``.
    """
    # The router logs a warning per fallback (figure 6 makes many): the events
    # are still made and rendered, as in a host that logs them, but not shown.
    for name in ("smsroute", "urllib3"):
        logger = logging.getLogger(name)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    figures = modules()
    env = Env(server, quick=quick, options=options)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": "quick" if quick else "full",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "server": server,
        "sizes": sizes(figures, quick=quick),
        "figures": {},
    }
    print(f"{'#':>2}  {'measure':<52} {'value':>12}  {'aim':<9} result", flush=True)
    try:
        for number in only:
            module = figures[number]
            t0 = time.perf_counter()
            fig = module.measure(env, module.QUICK if quick else module.FULL)
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
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
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
    for module in modules().values():
        add_arguments = getattr(module, "add_arguments", None)
        if add_arguments is not None:
            add_arguments(parser)
    args = parser.parse_args(argv)
    json_path = args.json
    if json_path is None:
        json_path = (
            Path(tempfile.gettempdir()) / "smsroute-bench-quick.json"
            if args.quick
            else DEFAULT_JSON
        )
    run(
        quick=args.quick,
        only=args.only or sorted(FIGURES),
        server=args.server,
        json_path=json_path,
        options=vars(args),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
