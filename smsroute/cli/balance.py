"""``smsroute balance``: show the account's fee type and the queries left.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from smsroute.cli.args import add_subcommand
from smsroute.cli.common import EXIT_OK, CommandError, make_client
from smsroute.errors import LookupFailed

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``balance`` subcommand."""
    p = add_subcommand(sub, "balance", "show the account's fee type and queries left")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the account's fee type and remaining queries."""
    with make_client(args) as client:
        try:
            balance = client.balance()
        except LookupFailed as exc:
            raise CommandError(f"balance failed: {exc}") from None
    if args.json:
        body = {"fee_type": balance.fee_type, "remaining": balance.remaining}
        print(json.dumps(body, ensure_ascii=False))
    else:
        print(f"fee type:  {balance.fee_type}")
        print(f"remaining: {balance.remaining} queries")
    return EXIT_OK
