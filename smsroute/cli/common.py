"""What every command shares: exit statuses, the one-line error, the vendor client from flags.

Exit statuses of the ``smsroute`` command (the one place they are defined):

====  ==========================================================================
0     done
1     a lookup failed, or a route run stopped on a rejected key or an empty
      account, or a number had no gateway
2     a usage error: missing apikey, bad option or value, unreadable input
130   interrupted (Ctrl-C)
====  ==========================================================================

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
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandError",
    "carrier_name",
    "err",
    "make_client",
    "yes_no",
]

ENV_APIKEY: Final = "SMSROUTE_APIKEY"
ENV_BASE_URL: Final = "SMSROUTE_BASE_URL"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class CommandError(Exception):
    """Stop the command with one line on stderr and an exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


def err(message: str) -> None:
    """Print one line on stderr, prefixed with ``smsroute:``."""
    print(f"smsroute: {message}", file=sys.stderr, flush=True)


def make_client(args: argparse.Namespace, *, pool_maxsize: int = 32) -> CarrierClient:
    """Return the vendor client of the connection flags, then the environment."""
    apikey = args.apikey if args.apikey is not None else os.environ.get(ENV_APIKEY, "")
    if not apikey.strip():
        raise CommandError(f"no apikey: pass --apikey KEY or set {ENV_APIKEY}", EXIT_USAGE)
    base_url = args.base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    kwargs: dict[str, Any] = {"base_url": base_url, "method": args.method}
    if args.timeout is not None:
        kwargs["timeout"] = args.timeout
    return CarrierClient(apikey, pool_maxsize=pool_maxsize, **kwargs)


def yes_no(flag: bool | None) -> str:
    """Return ``yes``, ``no`` or an empty string for an unknown flag."""
    return "" if flag is None else "yes" if flag else "no"


def carrier_name(carrier: Carrier | None) -> str:
    """Return the operator's Chinese name, or an empty string for none."""
    return "" if carrier is None else carrier.value
