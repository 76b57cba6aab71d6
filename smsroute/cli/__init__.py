"""The ``smsroute`` command line: ``main()`` and the parser; each command is a module here.

The only part of smsroute that reads environment variables and files, and the
only one that configures logging (``-v``): it is an application, the rest is
a library. Configuration comes from flags, then the ``--config`` settings
file (``route``, ``lookup``, ``segment``), then the environment
(``SMSROUTE_APIKEY``, ``SMSROUTE_BASE_URL``). Exit statuses are listed in
:mod:`smsroute.cli.common`.

Modules: :mod:`~smsroute.cli.common` (exit statuses, errors, the client),
:mod:`~smsroute.cli.args` (parser helpers), :mod:`~smsroute.cli.answers` (the
answers cache file), :mod:`~smsroute.cli.configfile` (``--config`` and
``--segments``), one per command (``lookup``, ``balance``, ``segment``,
``route``, ``cache``, ``fake_server``, ``demo``), and the parts of ``route``:
``sniff`` and ``reader`` (the input), ``writer`` and ``destination`` (the
output), ``summary`` and ``progress``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import textwrap
import warnings

from smsroute._version import __version__
from smsroute.cli import balance, cache, demo, fake_server, lookup, route, segment
from smsroute.cli.args import Parser, add_global_options
from smsroute.cli.common import (
    ENV_APIKEY,
    ENV_BASE_URL,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_STATUSES,
    EXIT_TERMINATED,
    EXIT_USAGE,
    CommandError,
    Terminated,
    err,
)
from smsroute.errors import ConfigurationError, SmsRouteError
from smsroute.tables import format_table

__all__ = ["ENV_APIKEY", "ENV_BASE_URL", "build_parser", "format_table", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        # The service has its own options (and reads the config file); it is
        # loaded only when asked for, so the other commands never import aiohttp.
        from smsroute.serve import main as serve_main

        return serve_main(argv[1:])
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
                    err(f"warning: {str(w.message).removeprefix('smsroute: ')}")
        return status
    except CommandError as exc:
        err(str(exc))
        return exc.status
    except ConfigurationError as exc:
        err(str(exc))
        return EXIT_USAGE
    except SmsRouteError as exc:
        err(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):
            err("terminated")
            return EXIT_TERMINATED
        err("interrupted")
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
    statuses = "\n".join(
        textwrap.fill(meaning, 76, initial_indent=f"  {code:<4} ", subsequent_indent=" " * 7)
        for code, meaning in EXIT_STATUSES
    )
    parser = Parser(
        prog="smsroute",
        description="Route SMS and top-up sends to a number's current operator after porting.",
        epilog=f"The apikey comes from --apikey or ${ENV_APIKEY}; it is never printed.\n\n"
        f"exit status:\n{statuses}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"smsroute {__version__}")
    add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in (lookup, balance, segment, route, cache, fake_server, demo):
        command.register(sub)
    # Listed for --help; `smsroute serve ...` is handed to smsroute.serve.main by main().
    sub.add_parser(
        "serve",
        help="the HTTP routing service for platforms that are not Python (serve --help)",
        add_help=False,
    )
    return parser


def _configure_logging(verbose: bool) -> logging.Handler | None:
    if not verbose:
        return None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("smsroute")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler
