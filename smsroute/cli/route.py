"""``smsroute route``: route a list of numbers, in input order, on a pool of threads.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from smsroute.cache import MemoryCache
from smsroute.carrier import Carrier
from smsroute.cli.args import add_subcommand, positive_float, positive_int
from smsroute.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    err,
    make_client,
)
from smsroute.cli.progress import Progress
from smsroute.cli.reader import read_numbers
from smsroute.cli.summary import RouteSummary, print_summary
from smsroute.cli.writer import RowWriter, decision_row
from smsroute.errors import InvalidNumber, NoRoute
from smsroute.numbers import normalize
from smsroute.resilience import Alert
from smsroute.routing import Decision, Router
from smsroute.types import CacheBackend

__all__ = ["ROUTE_DEADLINE", "register", "run"]

ROUTE_DEADLINE: Final = 3.0  # seconds; a bulk job would rather wait than fall back
_VIRTUAL_KEYS: Final = ("virtual", "mvno")


def register(sub: Any) -> None:
    """Add the ``route`` subcommand."""
    p = add_subcommand(sub, "route", "route a list of numbers: CSV or JSON lines of decisions")
    p.add_argument("file", metavar="FILE", help="a text file (one number a line), a CSV, or -")
    p.add_argument(
        "--column",
        metavar="NAME_OR_INDEX",
        help="read a CSV: the column by header name, or by index counting from 1 "
        "(a .csv FILE defaults to column 1)",
    )
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="default: csv")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument(
        "--concurrency", type=positive_int, default=8, help="lookups in flight (default: 8)"
    )
    p.add_argument(
        "--gateway",
        action="append",
        default=[],
        metavar="OPERATOR=NAME",
        help="gateway name for an operator, e.g. 移动=cmpp (repeatable; default: the "
        "operator's name); 'virtual=NAME' routes virtual-operator numbers there",
    )
    p.add_argument(
        "--default-gateway", metavar="NAME", help="gateway for numbers of no known operator"
    )
    p.add_argument(
        "--deadline",
        type=positive_float,
        default=ROUTE_DEADLINE,
        help=f"seconds to wait for the vendor before falling back (default: {ROUTE_DEADLINE})",
    )
    cache = p.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache-file",
        metavar="PATH",
        help="SQLite cache of answers, so a second run pays nothing again "
        "(default: a file in the user cache directory)",
    )
    cache.add_argument("--no-cache", action="store_true", help="keep answers in memory only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def _gateways(args: argparse.Namespace) -> tuple[dict[Carrier | str, Any], str]:
    gateways: dict[Carrier | str, Any] = {c: c.value for c in Carrier}
    virtual = "host"
    for item in args.gateway:
        key, sep, name = item.partition("=")
        key, name = key.strip(), name.strip()
        if not sep or not key or not name:
            raise CommandError(
                f"--gateway {item!r}: expected OPERATOR=NAME, e.g. 移动=cmpp", EXIT_USAGE
            )
        carrier = Carrier.parse(key)
        if carrier is not None:
            gateways[carrier] = name
        elif key.lower() in _VIRTUAL_KEYS:
            gateways["virtual"] = name
            virtual = "virtual"
        else:
            raise CommandError(
                f"--gateway {item!r}: unknown operator {key!r} (移动, 联通, 电信, 广电 or virtual)",
                EXIT_USAGE,
            )
    return gateways, virtual


def _open_cache(args: argparse.Namespace) -> tuple[CacheBackend, Callable[[], None]]:
    """Return the cache for a route run and how to close it."""
    if args.no_cache:
        return MemoryCache(), lambda: None
    try:
        # Imported lazily: the other commands need neither sqlite3 nor platformdirs.
        import sqlite3

        from smsroute.sqlite_cache import SqliteCache, default_cache_path
    except ImportError:
        err("note: no persistent cache available; answers are kept in memory only")
        return MemoryCache(), lambda: None
    path = Path(args.cache_file) if args.cache_file else default_cache_path()
    try:
        cache = SqliteCache(path)
    except (OSError, sqlite3.Error) as exc:
        raise CommandError(f"cannot open the cache file {path}: {exc}") from None
    return cache, cache.close


def _collect(args: argparse.Namespace, summary: RouteSummary) -> tuple[list[str], dict[str, int]]:
    """Return the unique valid numbers in input order and the line each first appeared on."""
    first_line: dict[str, int] = {}
    unique: list[str] = []
    for lineno, text in read_numbers(args):
        summary.rows += 1
        try:
            mobile = normalize(text)
        except InvalidNumber as exc:
            summary.invalid.append((lineno, text, str(exc)))
            continue
        if mobile in first_line:
            summary.duplicates += 1
            continue
        first_line[mobile] = lineno
        unique.append(mobile)
    return unique, first_line


def run(args: argparse.Namespace) -> int:
    """Route every number of a file: one output row per unique valid number."""
    started = time.monotonic()
    summary = RouteSummary()
    gateways, virtual = _gateways(args)
    target = "stdout" if args.output in (None, "-") else args.output
    hard = threading.Event()

    def on_alert(alert: Alert) -> None:
        if alert.kind in ("unauthorized", "balance_exhausted"):
            summary.alert = alert
            hard.set()

    with contextlib.ExitStack() as stack:  # closed last-opened first
        client = make_client(args, pool_maxsize=max(32, args.concurrency))
        stack.callback(client.close)
        unique, first_line = _collect(args, summary)
        summary.unique = len(unique)
        cache, close_cache = _open_cache(args)
        stack.callback(close_cache)
        router = Router(
            client,
            gateways,
            default=args.default_gateway,
            cache=cache,
            virtual=virtual,
            deadline=args.deadline,
            on_alert=on_alert,
        )
        stream = sys.stdout
        if target != "stdout":
            try:
                stream = stack.enter_context(open(target, "w", encoding="utf-8", newline=""))
            except OSError as exc:
                raise CommandError(
                    f"cannot write {target}: {exc.strerror or exc}", EXIT_USAGE
                ) from None
        out = RowWriter(stream, args.format)
        progress = Progress(len(unique), sys.stderr.isatty() and not args.no_progress)
        pool = ThreadPoolExecutor(args.concurrency, thread_name_prefix="smsroute-cli")
        try:
            _route_all(
                router, unique, first_line, pool, args.concurrency * 4, out, progress, summary, hard
            )
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            # Lookups in flight are already paid: let them land in the cache
            # (each is bounded by the deadline) before it is closed.
            pool.shutdown(wait=True, cancel_futures=True)
            progress.close()
            out.flush()
        stats = router.stats()
    print_summary(summary, stats, args.file, target, time.monotonic() - started)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.alert is not None or summary.no_route:
        return EXIT_FAILED
    return EXIT_OK


def _route_all(
    router: Router,
    unique: list[str],
    first_line: dict[str, int],
    pool: ThreadPoolExecutor,
    limit: int,
    out: RowWriter,
    progress: Progress,
    summary: RouteSummary,
    hard: threading.Event,
) -> None:
    """Route on the pool, writing rows in input order as they complete."""
    # At most ``limit`` lookups submitted ahead of the row being written: memory
    # stays flat on a long list while the pool stays busy.
    window: deque[tuple[str, Future[Decision]]] = deque()

    def drain_one() -> None:
        mobile, future = window.popleft()
        try:
            decision = future.result()
        except NoRoute as exc:
            summary.no_route.append((first_line[mobile], mobile, str(exc)))
        else:
            row = decision_row(decision)
            out.write(row)
            summary.written += 1
            summary.operators[row["current"] or "unknown"] += 1
            if decision.info is not None:
                summary.answered += 1
                summary.ported += bool(row["ported"])
        progress.update()

    for mobile in unique:
        if hard.is_set():
            break  # a wrong key or an empty account: the rest would only fall back
        window.append((mobile, pool.submit(router.route, mobile)))
        while len(window) >= limit:
            drain_one()
    while window:
        drain_one()
