"""The ``smsroute`` command line: look numbers up, route lists, run the test server and a demo.

The only module of smsroute that reads environment variables and files, and
the only one that configures logging (``-v``): it is an application, the rest
is a library. Configuration comes from flags, then the environment
(``SMSROUTE_APIKEY``, ``SMSROUTE_BASE_URL``). Exit status: 0 on success, 1
when a lookup failed, 2 for a usage error, 130 after Ctrl-C.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import sys
import threading
import time
import unicodedata
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, NoReturn, TextIO

from smsroute import segments
from smsroute._version import __version__
from smsroute.cache import MemoryCache
from smsroute.carrier import Carrier
from smsroute.client import DEFAULT_BASE_URL, CarrierClient
from smsroute.core.stats import RouterStats
from smsroute.errors import (
    BalanceExhausted,
    ConfigurationError,
    InvalidNumber,
    LookupFailed,
    NoRoute,
    SmsRouteError,
    Unauthorized,
)
from smsroute.models import CarrierInfo
from smsroute.numbers import digits, normalize
from smsroute.resilience import Alert
from smsroute.routing import Decision, Router
from smsroute.types import CacheBackend

__all__ = ["ENV_APIKEY", "ENV_BASE_URL", "format_table", "main"]

ENV_APIKEY: Final = "SMSROUTE_APIKEY"
ENV_BASE_URL: Final = "SMSROUTE_BASE_URL"
ROUTE_COLUMNS: Final = (
    "number",
    "initial",
    "current",
    "ported",
    "virtual",
    "area",
    "gateway",
    "source",
)
FAKE_PORT: Final = 8800
ROUTE_DEADLINE: Final = 3.0  # seconds; a bulk job would rather wait than fall back
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_FLUSH_EVERY: Final = 0.5  # seconds between flushes of route output
_MAX_LISTED: Final = 20  # invalid rows listed one by one in the summary
_VIRTUAL_KEYS: Final = ("virtual", "mvno")
# Header names a CSV without --column may use for its number column.
_NUMBER_COLUMNS: Final = frozenset(
    {"mobile", "phone", "number", "msisdn", "tel", "手机", "手机号", "手机号码", "号码", "电话"}
)


class _Exit(Exception):
    """Stop the command with one line on stderr and an exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Print one line (not the whole usage) and exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# -- entry point ----------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handler = _configure_logging(args.verbose)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            try:
                status: int = args.func(args)
            finally:
                for w in caught:
                    _err(f"warning: {str(w.message).removeprefix('smsroute: ')}")
        return status
    except _Exit as exc:
        _err(str(exc))
        return exc.status
    except ConfigurationError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except SmsRouteError as exc:
        _err(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`smsroute route big.csv | head`): stop quietly.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    finally:
        if handler is not None:
            logger = logging.getLogger("smsroute")
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``smsroute`` command."""
    parser = _Parser(
        prog="smsroute",
        description="Route SMS and top-up sends to a number's current operator after porting.",
        epilog=f"The apikey comes from --apikey or ${ENV_APIKEY}; it is never printed.",
    )
    parser.add_argument("--version", action="version", version=f"smsroute {__version__}")
    _add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _subcommand(sub, "lookup", "ask the vendor for the current operator of numbers")
    p.add_argument("numbers", nargs="+", metavar="NUMBER")
    p.add_argument("--json", action="store_true", help="one JSON object per line per number")
    p.set_defaults(func=cmd_lookup)

    p = _subcommand(sub, "balance", "show the account's fee type and queries left")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_balance)

    p = _subcommand(sub, "segment", "the offline answer of the segment table (no key needed)")
    p.add_argument("numbers", nargs="+", metavar="NUMBER")
    p.add_argument("--json", action="store_true", help="one JSON object per line per number")
    p.set_defaults(func=cmd_segment)

    p = _subcommand(sub, "route", "route a list of numbers: CSV or JSON lines of decisions")
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
        "--concurrency", type=_positive_int, default=8, help="lookups in flight (default: 8)"
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
        type=_positive_float,
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
    p.set_defaults(func=cmd_route)

    p = _subcommand(
        sub, "fake-server", "run the fake vendor in the foreground (Ctrl-C stops)", connection=False
    )
    p.add_argument(
        "--port", type=_port, default=FAKE_PORT, help=f"port on 127.0.0.1 (default: {FAKE_PORT})"
    )
    p.add_argument(
        "--apikey",
        dest="fake_apikey",
        metavar="KEY",
        help="the key it accepts (default: test-apikey)",
    )
    p.add_argument("--ported-share", type=_share, default=0.1, help="default: 0.1")
    p.add_argument("--latency", type=_non_negative_float, default=0.0, help="seconds per answer")
    p.add_argument("--balance", type=int, default=100_000, help="queries on the account")
    p.add_argument("--seed", default="0", help="changes which numbers are ported")
    p.set_defaults(func=cmd_fake_server)

    p = _subcommand(sub, "demo", "walk through the whole path against an in-process fake vendor")
    p.set_defaults(func=cmd_demo)
    return parser


def _subcommand(
    sub: Any, name: str, help_text: str, *, connection: bool = True
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    # Global options are accepted after the subcommand too; SUPPRESS keeps the
    # values given before it when they are not repeated.
    _add_global_options(p, suppress=True, connection=connection)
    return p


def _add_global_options(
    parser: argparse.ArgumentParser, *, suppress: bool, connection: bool = True
) -> None:
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="log smsroute's debug events to stderr",
    )
    if not connection:
        return
    g = parser.add_argument_group("vendor connection")
    g.add_argument("--apikey", default=default(None), metavar="KEY", help=f"default: ${ENV_APIKEY}")
    g.add_argument(
        "--base-url",
        default=default(None),
        metavar="URL",
        help=f"default: ${ENV_BASE_URL}, else {DEFAULT_BASE_URL}",
    )
    g.add_argument(
        "--method", type=str.upper, choices=("POST", "GET"), default=default("POST"),
        help="default: POST",
    )  # fmt: skip
    g.add_argument(
        "--timeout",
        type=_positive_float,
        default=default(None),
        metavar="SECONDS",
        help="per request (default: 2 s to connect, 3 s to read)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {value}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _share(text: str) -> float:
    value = _float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be within 0 and 1, not {text}")
    return value


def _configure_logging(verbose: bool) -> logging.Handler | None:
    if not verbose:
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("smsroute")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler


def _err(message: str) -> None:
    print(f"smsroute: {message}", file=sys.stderr, flush=True)


# -- shared helpers ---------------------------------------------------------------


def _client(args: argparse.Namespace, *, pool_maxsize: int = 32) -> CarrierClient:
    apikey = args.apikey if args.apikey is not None else os.environ.get(ENV_APIKEY, "")
    if not apikey.strip():
        raise _Exit(f"no apikey: pass --apikey KEY or set {ENV_APIKEY}", EXIT_USAGE)
    base_url = args.base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    kwargs: dict[str, Any] = {"base_url": base_url, "method": args.method}
    if args.timeout is not None:
        kwargs["timeout"] = args.timeout
    return CarrierClient(apikey, pool_maxsize=pool_maxsize, **kwargs)


def _text_width(text: str) -> int:
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Return rows as aligned columns under a header; wide (CJK) characters count twice."""
    cells = [[str(h) for h in headers]] + [
        ["" if c is None else str(c) for c in row] for row in rows
    ]
    widths = [max(_text_width(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c + " " * (w - _text_width(c)) for c, w in zip(row, widths, strict=True)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def _yes_no(flag: bool | None) -> str:
    return "" if flag is None else "yes" if flag else "no"


def _name(carrier: Carrier | None) -> str:
    return "" if carrier is None else carrier.value


def _answer_json(info: CarrierInfo) -> dict[str, Any]:
    return {
        "number": info.mobile,
        "initial": _name(info.initial),
        "current": _name(info.current),
        "ported": info.ported,
        "virtual": info.virtual,
        "area": info.area,
        "res": info.res,
    }


def _hard_failure(exc: LookupFailed) -> bool:
    return isinstance(exc, (Unauthorized, BalanceExhausted))


# -- lookup, balance, segment ---------------------------------------------------


def cmd_lookup(args: argparse.Namespace) -> int:
    """Look each number up at the vendor; print a table or JSON lines."""
    valid: list[str] = []
    failed = False
    for text in args.numbers:
        try:
            valid.append(normalize(text))
        except InvalidNumber as exc:
            _err(f"{text}: invalid number: {exc}")
            failed = True
    answers: list[CarrierInfo] = []
    if valid:
        with _client(args) as client:
            for mobile in valid:
                try:
                    info = client.lookup(mobile)
                except LookupFailed as exc:
                    _err(f"{mobile}: lookup failed: {exc}")
                    failed = True
                    if _hard_failure(exc):
                        break  # every further query would fail the same way
                    continue
                answers.append(info)
                if args.json:
                    print(json.dumps(_answer_json(info), ensure_ascii=False), flush=True)
    if answers and not args.json:
        headers = ("number", "initial", "current", "ported", "virtual", "area")
        rows = [
            (
                i.mobile,
                _name(i.initial),
                _name(i.current),
                _yes_no(i.ported),
                _yes_no(i.virtual),
                i.area,
            )
            for i in answers
        ]
        print(format_table(headers, rows))
    return EXIT_FAILED if failed else EXIT_OK


def cmd_balance(args: argparse.Namespace) -> int:
    """Print the account's fee type and remaining queries."""
    with _client(args) as client:
        try:
            balance = client.balance()
        except LookupFailed as exc:
            raise _Exit(f"balance failed: {exc}") from None
    if args.json:
        body = {"fee_type": balance.fee_type, "remaining": balance.remaining}
        print(json.dumps(body, ensure_ascii=False))
    else:
        print(f"fee type:  {balance.fee_type}")
        print(f"remaining: {balance.remaining} queries")
    return EXIT_OK


def cmd_segment(args: argparse.Namespace) -> int:
    """Print the segment table's row for each number; no key, no network."""
    rows: list[segments.Segment] = []
    numbers: list[str] = []
    failed = False
    for text in args.numbers:
        try:
            d = digits(text)
        except InvalidNumber as exc:
            _err(f"{text}: invalid number: {exc}")
            failed = True
            continue
        row = segments.lookup(d)
        if row is None:
            _err(f"{text}: not a mobile segment: {d[:3]}")
            failed = True
            continue
        numbers.append(d)
        rows.append(row)
        if args.json:
            body = {
                "number": d,
                "segment": row.prefix,
                "operator": _name(row.carrier),
                "kind": row.kind,
                "host": _name(row.host),
                "holder": row.holder,
            }
            print(json.dumps(body, ensure_ascii=False))
    if rows and not args.json:
        headers = ("number", "segment", "operator", "kind", "holder")
        table = [
            (n, r.prefix, _name(r.carrier), r.kind, r.holder)
            for n, r in zip(numbers, rows, strict=True)
        ]
        print(format_table(headers, table))
    return EXIT_FAILED if failed else EXIT_OK


# -- route ------------------------------------------------------------------------


@dataclass
class _RouteSummary:
    """What a route run did, for the summary on stderr."""

    rows: int = 0
    duplicates: int = 0
    invalid: list[tuple[int, str, str]] = field(default_factory=list)
    no_route: list[tuple[int, str, str]] = field(default_factory=list)
    unique: int = 0
    written: int = 0
    operators: Counter[str] = field(default_factory=Counter)
    answered: int = 0
    ported: int = 0
    interrupted: bool = False
    alert: Alert | None = None


def _read_numbers(args: argparse.Namespace) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for every non-blank input row."""
    path: str = args.file
    as_csv = args.column is not None or path.lower().endswith(".csv")
    try:
        stream: IO[str] = (
            sys.stdin if path == "-" else open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
        )
    except OSError as exc:
        raise _Exit(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    try:
        if not as_csv:
            for lineno, line in enumerate(stream, 1):
                text = line.strip()
                if text and not text.startswith("#"):
                    yield lineno, text
        else:
            yield from _read_csv(stream, args.column, path)
    except UnicodeDecodeError:
        raise _Exit(f"cannot read {path}: not UTF-8 text", EXIT_USAGE) from None
    except csv.Error as exc:
        # A malformed CSV (a cell over the csv module's field limit, ...) is bad
        # input: one line and exit 2, not a traceback.
        raise _Exit(f"cannot read {path}: not a readable CSV: {exc}", EXIT_USAGE) from None
    finally:
        if stream is not sys.stdin:
            stream.close()


def _has_digit(text: str) -> bool:
    return any(ch.isdigit() for ch in text)


def _read_csv(stream: IO[str], column: str | None, path: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, cell)`` of one CSV column (see ``--column``)."""
    reader = csv.reader(stream)
    first = next(reader, None)
    if first is None:
        return
    cells = [c.strip() for c in first]
    # A first row with no digit anywhere is a header, not bad data.
    header = cells if not any(_has_digit(c) for c in cells) else None
    if column is not None and column.isdigit():
        index = int(column) - 1
        if index < 0:
            raise _Exit("--column: indexes count from 1", EXIT_USAGE)
    elif column is not None:
        if header is None or column not in header:
            have = ", ".join(header) if header else "no header row"
            raise _Exit(f"{path}: no column {column!r} (columns: {have})", EXIT_USAGE)
        index = header.index(column)
    elif len(cells) == 1:
        index = 0
    else:
        found = [i for i, name in enumerate(header or ()) if name.lower() in _NUMBER_COLUMNS]
        if len(found) != 1:
            have = ", ".join(header) if header else f"{len(cells)} columns, no header row"
            raise _Exit(
                f"{path}: which column holds the numbers? pass --column NAME_OR_INDEX "
                f"(columns: {have})",
                EXIT_USAGE,
            )
        index = found[0]
    if header is None and index < len(cells) and cells[index]:
        yield reader.line_num, cells[index]
    for row in reader:
        if index < len(row) and row[index].strip():
            yield reader.line_num, row[index].strip()


def _gateways(args: argparse.Namespace) -> tuple[dict[Carrier | str, Any], str]:
    gateways: dict[Carrier | str, Any] = {c: c.value for c in Carrier}
    virtual = "host"
    for item in args.gateway:
        key, sep, name = item.partition("=")
        key, name = key.strip(), name.strip()
        if not sep or not key or not name:
            raise _Exit(f"--gateway {item!r}: expected OPERATOR=NAME, e.g. 移动=cmpp", EXIT_USAGE)
        carrier = Carrier.parse(key)
        if carrier is not None:
            gateways[carrier] = name
        elif key.lower() in _VIRTUAL_KEYS:
            gateways["virtual"] = name
            virtual = "virtual"
        else:
            raise _Exit(
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
        _err("note: no persistent cache available; answers are kept in memory only")
        return MemoryCache(), lambda: None
    path = Path(args.cache_file) if args.cache_file else default_cache_path()
    try:
        cache = SqliteCache(path)
    except (OSError, sqlite3.Error) as exc:
        raise _Exit(f"cannot open the cache file {path}: {exc}") from None
    return cache, cache.close


class _Output:
    """Writes route rows as CSV or JSON lines, flushing at most every half second."""

    def __init__(self, stream: TextIO, fmt: str) -> None:
        self._stream = stream
        self._csv = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
        self._last_flush = time.monotonic()
        if self._csv is not None:
            self._csv.writerow(ROUTE_COLUMNS)

    def write(self, row: dict[str, Any]) -> None:
        """Write one row."""
        if self._csv is not None:
            self._csv.writerow(_csv_cell(row[c]) for c in ROUTE_COLUMNS)
        else:
            self._stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        now = time.monotonic()
        if now - self._last_flush >= _FLUSH_EVERY:
            self._stream.flush()
            self._last_flush = now

    def flush(self) -> None:
        """Flush what was written."""
        self._stream.flush()


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _decision_row(decision: Decision) -> dict[str, Any]:
    info = decision.info
    ported: bool | None
    virtual: bool | None
    if info is not None:
        initial, ported, virtual, area = info.initial, info.ported, info.virtual, info.area
    else:  # a segment-table fallback: the original operator, no port, no area
        seg = segments.lookup(decision.mobile)
        initial = seg.carrier if seg is not None else None
        ported, virtual, area = None, (seg.virtual if seg is not None else None), ""
    return {
        "number": decision.mobile,
        "initial": _name(initial),
        "current": _name(decision.carrier),
        "ported": ported,
        "virtual": virtual,
        "area": area,
        "gateway": decision.gateway,
        "source": decision.source,
    }


class _Progress:
    """A progress bar on stderr once a run takes over a second: tqdm if installed."""

    def __init__(
        self, total: int, enabled: bool, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._bar: Any = None
        self._enabled = enabled
        self._total = total
        self._done = 0
        self._clock = clock
        self._started = clock()
        self._last = self._started
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=total, unit="number", file=sys.stderr, delay=1.0, leave=False)

    def update(self) -> None:
        """Count one routed number."""
        self._done += 1
        if self._bar is not None:
            self._bar.update()
            return
        if not self._enabled:
            return
        now = self._clock()
        if now - self._started >= 1.0 and now - self._last >= 2.0:
            self._last = now
            share = 100.0 * self._done / self._total if self._total else 100.0
            _err(f"{self._done:,}/{self._total:,} numbers routed ({share:.0f}%)")

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()


def _collect(args: argparse.Namespace, summary: _RouteSummary) -> tuple[list[str], dict[str, int]]:
    """Return the unique valid numbers in input order and the line each first appeared on."""
    first_line: dict[str, int] = {}
    unique: list[str] = []
    for lineno, text in _read_numbers(args):
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


def cmd_route(args: argparse.Namespace) -> int:
    """Route every number of a file: one output row per unique valid number."""
    started = time.monotonic()
    summary = _RouteSummary()
    gateways, virtual = _gateways(args)
    target = "stdout" if args.output in (None, "-") else args.output
    hard = threading.Event()

    def on_alert(alert: Alert) -> None:
        if alert.kind in ("unauthorized", "balance_exhausted"):
            summary.alert = alert
            hard.set()

    with contextlib.ExitStack() as stack:  # closed last-opened first
        client = _client(args, pool_maxsize=max(32, args.concurrency))
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
                raise _Exit(f"cannot write {target}: {exc.strerror or exc}", EXIT_USAGE) from None
        out = _Output(stream, args.format)
        progress = _Progress(len(unique), sys.stderr.isatty() and not args.no_progress)
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
    _print_summary(summary, stats, args.file, target, time.monotonic() - started)
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
    out: _Output,
    progress: _Progress,
    summary: _RouteSummary,
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
            row = _decision_row(decision)
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


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _print_summary(
    s: _RouteSummary, stats: RouterStats, source: str, target: str, seconds: float
) -> None:
    lines: list[str] = []
    name = "stdin" if source == "-" else source
    if s.interrupted:
        lines.append(f"interrupted: {s.written:,} of {s.unique:,} numbers written to {target}")
    lines.append(
        f"routed {_count(s.written, 'number')} from {name} to {target} in {seconds:.1f} s "
        f"({_count(s.rows, 'row')}: {_count(s.duplicates, 'duplicate')}, "
        f"{len(s.invalid):,} invalid)"
    )
    if s.operators:
        ops = ", ".join(f"{op} {n:,}" for op, n in s.operators.most_common())
        lines.append(f"  operators: {ops}")
    if s.answered:
        lines.append(
            f"  ported: {s.ported:,} of {s.answered:,} answered "
            f"({100.0 * s.ported / s.answered:.1f}%)"
        )
    decisions = stats["decisions"]
    lines.append(
        f"  queries paid: {decisions['upstream']:,} (upstream calls: {stats['upstream_calls']:,}); "
        f"cache hits: {decisions['cache']:,}; stale: {decisions['stale']:,}; "
        f"fallbacks: {decisions['fallback']:,}"
    )
    if stats["fallback_reasons"]:
        reasons = ", ".join(f"{k} ({v:,})" for k, v in stats["fallback_reasons"].items())
        lines.append(f"  fallback reasons: {reasons}")
    if stats["breaker_opened"]:
        lines.append(f"  breaker opened {stats['breaker_opened']} time(s); now {stats['breaker']}")
    if s.alert is not None:
        code = f" (code {s.alert.code})" if s.alert.code is not None else ""
        lines.append(f"  stopped: {s.alert.kind}{code}: {s.alert.reason}")
    for title, items in (("invalid rows", s.invalid), ("no gateway", s.no_route)):
        if not items:
            continue
        lines.append(f"  {title}: {len(items):,}")
        for lineno, text, reason in items[:_MAX_LISTED]:
            lines.append(f"    line {lineno}: {text[:40]!r}: {reason}")
        if len(items) > _MAX_LISTED:
            lines.append(f"    ... and {len(items) - _MAX_LISTED:,} more")
    for line in lines:
        _err(line)


# -- fake-server, demo ------------------------------------------------------------


def cmd_fake_server(args: argparse.Namespace) -> int:
    """Run the fake vendor in the foreground until Ctrl-C."""
    from smsroute.testing import FakeCarrierServer

    # Only a key given on the command line: $SMSROUTE_APIKEY may be a real one,
    # and this command prints the key it accepts.
    apikey = args.fake_apikey or getattr(args, "apikey", None) or "test-apikey"
    server = FakeCarrierServer(
        apikey=apikey,
        balance=args.balance,
        ported_share=args.ported_share,
        seed=args.seed,
        latency=args.latency,
        port=args.port,
    )
    try:
        server.start()
    except OSError as exc:
        raise _Exit(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}") from None
    print(f"fake vendor listening on {server.url}", flush=True)
    print(f"apikey: {server.apikey}  (a test key; the fake accepts only this one)")
    print(f"try:    smsroute --base-url {server.url} --apikey {server.apikey} lookup 13972565391")
    print("Ctrl-C stops it.", flush=True)
    server.serve_until_interrupted()
    print(f"stopped; {server.paid} queries were paid", flush=True)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Walk through the routing path against an in-process fake vendor."""
    from smsroute.demo import run_demo

    return run_demo(sys.stdout)
