"""``smsroute route``: route a list of numbers, in input order, on asyncio or threads.

Two readings of the input (see :mod:`smsroute.cli.reader`): the first counts
and checks every row before a query is paid for, the second routes the first
line of each number with its cells and writes the rows as they complete, in
input order, with at most ``--concurrency * 4`` rows in flight.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any, Final

from smsroute.cache import MemoryCache
from smsroute.carrier import Carrier
from smsroute.cli.answers import open_or_memory
from smsroute.cli.args import add_subcommand, delimiter, positive_float
from smsroute.cli.common import (
    EXIT_FAILED,
    EXIT_GUESSES,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    CommandError,
    Terminated,
)
from smsroute.cli.configfile import (
    add_config_argument,
    add_segments_argument,
    command_settings,
    file_cache,
    from_file,
    require_apikey,
    segment_table,
)
from smsroute.cli.destination import same_file
from smsroute.cli.engines import add_engine_arguments, default_concurrency, make_engine
from smsroute.cli.job import RouteJob
from smsroute.cli.reader import Source, open_source
from smsroute.cli.summary import RouteSummary, print_summary
from smsroute.config import Settings
from smsroute.core.policy import RoutingPolicy
from smsroute.errors import InvalidNumber
from smsroute.numbers import normalize
from smsroute.resilience import Alert
from smsroute.segments import SegmentTable
from smsroute.types import CacheBackend

__all__ = ["ROUTE_DEADLINE", "register", "run"]

ROUTE_DEADLINE: Final = 3.0  # seconds; a bulk job would rather wait than fall back
MAX_WAIT: Final = 300.0  # seconds of retrying rows whose lookup failed, at the end of a run
_VIRTUAL_KEYS: Final = ("virtual", "mvno")

DESCRIPTION: Final = """\
Route a list of numbers to the gateway of each one's current operator.

input: a text list (one number a line; blank lines and # comments skipped), a
  CSV or TSV, or - for stdin. The encoding is detected (UTF-8, UTF-8 or UTF-16
  with a BOM, else GB18030/GBK as Excel saves in China) unless --encoding names
  it. The delimiter (tab, comma, semicolon, pipe) is sniffed from the first
  rows, whatever the file's name, unless --delimiter names it. The first row is
  a header when none of its cells is a valid number and the number column's
  cell (any cell, without a --column index) has a letter: 'phone2' and '手机号'
  are names, '12345' is a bad number; --header or --no-header decide instead.
  Without --column the numbers are in the only column, or in the one whose
  header is like mobile, phone, tel, 手机号 or 号码. Blank rows are skipped; a
  row whose number cell is empty is counted as empty.

output: CSV (or JSON lines) of the input line, every input column as read,
  then number, initial, current, ported, virtual, area, gateway, source (an
  added column named like an input column gets a route_ prefix). A number on
  several lines is routed once, on its first line. Rows that cannot be routed
  (invalid, empty, no gateway) are counted in the summary and, with --rejects
  FILE, all written there with their line, input and reason. A file given to
  -o or --rejects appears whole at the end: until then rows go to a temporary
  file beside it, and a run that stops early keeps them as FILE.partial. CSV
  text cells a spreadsheet would run as a formula (=, +, -, @, tab or CR
  first) get a leading ' (OWASP); plain numbers such as -1 stay as they are.

settings: --config FILE reads the file smsroute serve reads ([vendor],
  [routing], [gateways], [[rules]], [cache]; docs/config.md); a flag given
  here overrides it. --segments FILE (or [routing] segments) replaces the
  built-in segment table, e.g. for segments MIIT allocated since the release.

The summary on stderr counts rows, operators, ports, queries paid and cache
hits. Ctrl-C or SIGTERM stops the run with its summary and the rows done.
"""


def register(sub: Any) -> None:
    """Add the ``route`` subcommand."""
    p = add_subcommand(
        sub,
        "route",
        "route a list of numbers: CSV or JSON lines of decisions",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="a text list, a CSV or TSV, or - for stdin")
    i = p.add_argument_group("input")
    i.add_argument(
        "--column",
        metavar="NAME_OR_INDEX",
        help="the number column: a header name, or an index counting from 1 "
        "(default: see above); makes any FILE a CSV",
    )
    i.add_argument(
        "--header",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the first row is (or is not) a header (default: detected, see above)",
    )
    i.add_argument("--encoding", metavar="CODEC", help="e.g. gbk, utf-8 (default: detected)")
    i.add_argument(
        "--delimiter",
        type=delimiter,
        metavar="CHAR",
        help="a CSV delimiter: one character, or tab (default: sniffed)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="default: csv")
    o.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    o.add_argument(
        "--rejects", metavar="FILE", help="write every row that could not be routed here"
    )
    o.add_argument(
        "--excel",
        action="store_true",
        help="write CSV as UTF-8 with a BOM, so that Excel shows 移动 and 联通",
    )
    o.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    r = p.add_argument_group("routing")
    add_config_argument(r)
    add_segments_argument(r)
    add_engine_arguments(r)
    r.add_argument(
        "--on-failure",
        choices=("retry", "fallback", "fail"),
        default="retry",
        help="when a lookup fails: retry (default: wait out the breaker and ask again at "
        "the end, within --max-wait, then write a guess), fallback (write the guess at "
        "once), fail (stop at the first failure)",
    )
    r.add_argument(
        "--max-wait",
        type=positive_float,
        default=MAX_WAIT,
        metavar="SECONDS",
        help=f"with --on-failure retry: how long to keep retrying failed rows "
        f"(default: {MAX_WAIT:g})",
    )
    r.add_argument(
        "--gateway",
        action="append",
        default=[],
        metavar="OPERATOR=NAME",
        help="gateway name for an operator, e.g. 移动=cmpp (repeatable; default: [gateways] "
        "of --config, else the operator's name); 'virtual=NAME' routes virtual-operator "
        "numbers there",
    )
    r.add_argument(
        "--default-gateway",
        metavar="NAME",
        help="gateway for numbers of no known operator (default: [routing] default)",
    )
    r.add_argument(
        "--deadline",
        type=positive_float,
        default=None,
        help="seconds to wait for the vendor before falling back "
        f"(default: [routing] deadline, else {ROUTE_DEADLINE:g})",
    )
    cache = r.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache-file",
        metavar="PATH",
        help="SQLite cache of answers, so a second run pays nothing again (default: "
        "[cache] of --config when it names a backend, else a file in the user cache "
        "directory, see 'smsroute cache path'); one that cannot be used is a warning, "
        "and answers are kept in memory",
    )
    cache.add_argument("--no-cache", action="store_true", help="keep answers in memory only")
    p.set_defaults(func=run)


def _policy(args: argparse.Namespace, settings: Settings) -> RoutingPolicy:
    """Return the settings' routing policy with --gateway and --default-gateway over it."""
    policy = settings.policy
    gateways: dict[Carrier | str, Any] = dict(policy.gateways)
    virtual = policy.virtual
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
    default = policy.default if args.default_gateway is None else args.default_gateway
    return policy.copy(gateways=gateways, virtual=virtual, default=default)


def _deadline(args: argparse.Namespace, settings: Settings) -> float:
    """Return --deadline, else the file's [routing] deadline, else the bulk run's own."""
    if args.deadline is not None:
        return float(args.deadline)
    return settings.deadline if from_file(settings, "routing.deadline") else ROUTE_DEADLINE


def _cache(args: argparse.Namespace, settings: Settings) -> tuple[CacheBackend, Any]:
    """Return the run's answer cache and how to close it: the flags, the file, the default."""
    if args.no_cache:
        return MemoryCache(policy=settings.cache.policy), lambda: None
    configured = None if args.cache_file is not None else file_cache(settings)
    if configured is not None:
        return configured
    return open_or_memory(args.cache_file, policy=settings.cache.policy)


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse flags that do not go together, before anything is read."""
    if args.excel and args.format != "csv":
        raise CommandError("--excel writes CSV: it cannot go with --format jsonl", EXIT_USAGE)
    if args.rejects == "-" and args.output in (None, "-"):
        raise CommandError("--rejects -: the rows already go to stdout", EXIT_USAGE)


def _check_outputs(args: argparse.Namespace, source: Source) -> None:
    """Refuse outputs that would overwrite the input or each other, before anything is paid."""
    files = [
        (flag, path)
        for flag, path in (("-o", args.output), ("--rejects", args.rejects))
        if path not in (None, "-")
    ]
    for flag, path in files:
        if source.path is not None and same_file(path, source.path):
            raise CommandError(f"{flag} {path}: that is the input file", EXIT_USAGE)
    if len(files) == 2 and same_file(files[0][1], files[1][1]):
        raise CommandError("-o and --rejects name the same file", EXIT_USAGE)


def _scan(source: Source, summary: RouteSummary, table: SegmentTable | None) -> dict[str, int]:
    """Count and check every row; return the line each distinct valid number is first on."""
    first_line: dict[str, int] = {}
    for row in source.rows():
        summary.rows += 1
        if not row.value:
            summary.empty.add(row.line, "", "empty")
            continue
        try:
            mobile = normalize(row.value, table, unknown_segments=True)
        except InvalidNumber as exc:
            summary.invalid.add(row.line, row.value, str(exc))
            continue
        if mobile in first_line:
            summary.duplicates += 1
            continue
        first_line[mobile] = row.line
    return first_line


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into a Terminated (a KeyboardInterrupt) in the main thread, for this block."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        # Once: a second SIGTERM while the rows and the cache are saved is ignored.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    """Route every row of a file: one output row per distinct valid number, rejects apart."""
    with _sigterm_interrupts():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    summary = RouteSummary(source="stdin" if args.file == "-" else args.file)
    settings = command_settings(args)
    policy = _policy(args, settings)
    _check_flags(args)
    table: SegmentTable | None = segment_table(args, settings)
    hard = threading.Event()

    def on_alert(alert: Alert) -> None:
        # Only an account problem stops the run; a "recovered" alert (the
        # breaker closed again) changes nothing, so the summary keeps the
        # one line of the alert that stopped it.
        if alert.kind in ("unauthorized", "balance_exhausted"):
            summary.alert = alert
            hard.set()

    with contextlib.ExitStack() as stack:  # closed last-opened first
        concurrency = args.concurrency or default_concurrency(args)
        source = stack.enter_context(open_source(args))
        _check_outputs(args, source)
        first_line = _scan(source, summary, table)
        summary.unique = len(first_line)
        summary.input = source.describe()
        summary.csv_input = source.delimiter is not None
        require_apikey(settings)
        cache, close_cache = _cache(args, settings)
        stack.callback(close_cache)
        router_kwargs: dict[str, Any] = {
            "cache": cache,
            "deadline": _deadline(args, settings),
            "on_alert": on_alert,
            "segments": table,
        }
        engine, router = make_engine(args, settings, policy, router_kwargs, concurrency, stack)
        job = RouteJob(args, source, summary, first_line, engine, hard, concurrency)
        job.breaker, job.table = router.breaker, table
        job.open()
        finished, error_status = False, EXIT_FAILED
        try:
            job.route_all()
            job.retry_failed()
            finished = True
        except KeyboardInterrupt as exc:
            summary.stopped = "terminated" if isinstance(exc, Terminated) else "interrupted"
        except CommandError as exc:  # a full disk, an input changed under the run
            summary.error, error_status = str(exc), exc.status
        finally:
            # Anything but a run through every row (an error raised on, too)
            # keeps the rows as .partial rather than put them in place.
            job.close(complete=finished and summary.alert is None)
        stats = router.stats()
    print_summary(summary, stats, time.monotonic() - started)
    if summary.stopped == "terminated":
        return EXIT_TERMINATED
    if summary.stopped is not None:
        return EXIT_INTERRUPTED
    if summary.error is not None:
        return error_status
    if summary.alert is not None or summary.no_route.count or summary.lookup_failed:
        return EXIT_FAILED
    if summary.guessed_stale or summary.guessed_table:
        return EXIT_GUESSES
    return EXIT_OK
