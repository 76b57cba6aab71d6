"""What every command shares: exit statuses, the one-line error, the vendor client from flags.

Exit statuses are defined here and only here (``EXIT_STATUSES`` feeds the
``--help`` text; the README mirrors it).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Final

from smsroute.carrier import Carrier
from smsroute.client import DEFAULT_BASE_URL, CarrierClient

__all__ = [
    "ENV_APIKEY",
    "ENV_BASE_URL",
    "EXIT_FAILED",
    "EXIT_GUESSES",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STATUSES",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "CommandError",
    "Terminated",
    "carrier_name",
    "client_kwargs",
    "err",
    "make_client",
    "yes_no",
]

ENV_APIKEY: Final = "SMSROUTE_APIKEY"
ENV_BASE_URL: Final = "SMSROUTE_BASE_URL"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_GUESSES: Final = 3
EXIT_INTERRUPTED: Final = 130
EXIT_TERMINATED: Final = 143  # 128 + SIGTERM, as a shell reports a process killed by it
EXIT_STATUSES: Final = (
    (EXIT_OK, "done"),
    (
        EXIT_FAILED,
        "a lookup or a write failed, a route run stopped on a rejected key or an empty "
        "account, or a number had no gateway",
    ),
    (EXIT_USAGE, "a usage error: missing apikey, bad option, unreadable input or output"),
    (
        EXIT_GUESSES,
        "route finished, but some rows are guesses (a stale answer or the segment table, "
        "marked in their source column): rerun to retry them",
    ),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C); route keeps the rows done in FILE.partial"),
    (EXIT_TERMINATED, "terminated (SIGTERM); route does as for Ctrl-C"),
)
"""Every exit status of the ``smsroute`` command, with what it means."""


class CommandError(Exception):
    """Stop the command with one line on stderr and an exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where Ctrl-C raises KeyboardInterrupt."""


def err(message: str) -> None:
    """Print one line on stderr, prefixed with ``smsroute:``."""
    print(f"smsroute: {message}", file=sys.stderr, flush=True)


def client_kwargs(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """Return the apikey and client keywords of the connection flags, then the environment."""
    apikey = args.apikey if args.apikey is not None else os.environ.get(ENV_APIKEY, "")
    if not apikey.strip():
        raise CommandError(f"no apikey: pass --apikey KEY or set {ENV_APIKEY}", EXIT_USAGE)
    base_url = args.base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    kwargs: dict[str, Any] = {"base_url": base_url, "method": args.method or "POST"}
    if args.timeout is not None:
        kwargs["timeout"] = args.timeout
    return apikey, kwargs


def make_client(
    args: argparse.Namespace, *, pool_maxsize: int = 32, rate_limit: Any = None
) -> CarrierClient:
    """Return the vendor client of the connection flags, then the environment."""
    apikey, kwargs = client_kwargs(args)
    return CarrierClient(apikey, pool_maxsize=pool_maxsize, rate_limit=rate_limit, **kwargs)


def yes_no(flag: bool | None) -> str:
    """Return ``yes``, ``no`` or an empty string for an unknown flag."""
    return "" if flag is None else "yes" if flag else "no"


def carrier_name(carrier: Carrier | None) -> str:
    """Return the operator's Chinese name, or an empty string for none."""
    return "" if carrier is None else carrier.value
