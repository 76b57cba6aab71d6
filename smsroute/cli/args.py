"""Argument parsing helpers: the parser class, global options, and value types for flags.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import math
from typing import Any, NoReturn

from smsroute.cli.common import ENV_APIKEY, ENV_BASE_URL, EXIT_USAGE
from smsroute.client import DEFAULT_BASE_URL

__all__ = [
    "Parser",
    "add_global_options",
    "add_subcommand",
    "delimiter",
    "non_negative_float",
    "port",
    "positive_float",
    "positive_int",
    "share",
]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        """Print one line (not the whole usage) and exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def add_subcommand(
    sub: Any, name: str, help_text: str, *, connection: bool = True, **kwargs: Any
) -> argparse.ArgumentParser:
    """Add a subcommand that also accepts the global options after its name."""
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=kwargs.pop("description", help_text), **kwargs
    )
    # Global options are accepted after the subcommand too; SUPPRESS keeps the
    # values given before it when they are not repeated.
    add_global_options(p, suppress=True, connection=connection)
    return p


def add_global_options(
    parser: argparse.ArgumentParser, *, suppress: bool, connection: bool = True
) -> None:
    """Add ``-v`` and, unless ``connection`` is false, the vendor connection options."""

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
        "--method", type=str.upper, choices=("POST", "GET"), default=default(None),
        help="default: POST, or [vendor] method of --config",
    )  # fmt: skip
    g.add_argument(
        "--timeout",
        type=positive_float,
        default=default(None),
        metavar="SECONDS",
        help="per request (default: 2 s to connect, 3 s to read)",
    )


_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


def delimiter(text: str) -> str:
    """Parse a CSV delimiter: one character, or ``tab`` (also ``\\t``), ``comma``, ``semicolon``."""
    value = _DELIMITER_NAMES.get(text.lower(), text)
    if len(value) != 1 or value in '"\r\n' or value.isalnum():
        raise argparse.ArgumentTypeError(
            f"one character, or tab, comma, semicolon, pipe; not {text!r}"
        )
    return value


def positive_int(text: str) -> int:
    """Parse a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def port(text: str) -> int:
    """Parse a TCP port number (0 asks the system for a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {value}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def positive_float(text: str) -> float:
    """Parse a finite number above 0."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def non_negative_float(text: str) -> float:
    """Parse a finite number of at least 0."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def share(text: str) -> float:
    """Parse a fraction within 0 and 1."""
    value = _finite(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be within 0 and 1, not {text}")
    return value
