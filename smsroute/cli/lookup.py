"""``smsroute lookup``: ask the vendor for the current operator of the numbers given.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from smsroute.cli.args import add_subcommand
from smsroute.cli.common import EXIT_FAILED, EXIT_OK, carrier_name, err, make_client, yes_no
from smsroute.errors import BalanceExhausted, InvalidNumber, LookupFailed, Unauthorized
from smsroute.models import CarrierInfo
from smsroute.numbers import normalize
from smsroute.tables import format_table

__all__ = ["answer_json", "register", "run"]


def register(sub: Any) -> None:
    """Add the ``lookup`` subcommand."""
    p = add_subcommand(sub, "lookup", "ask the vendor for the current operator of numbers")
    p.add_argument("numbers", nargs="+", metavar="NUMBER")
    p.add_argument("--json", action="store_true", help="one JSON object per line per number")
    p.set_defaults(func=run)


def answer_json(info: CarrierInfo) -> dict[str, Any]:
    """Return a vendor answer as the JSON object ``lookup --json`` prints."""
    return {
        "number": info.mobile,
        "initial": carrier_name(info.initial),
        "current": carrier_name(info.current),
        "ported": info.ported,
        "virtual": info.virtual,
        "area": info.area,
        "res": info.res,
    }


def run(args: argparse.Namespace) -> int:
    """Look each number up at the vendor; print a table or JSON lines."""
    valid: list[str] = []
    failed = False
    for text in args.numbers:
        try:
            valid.append(normalize(text))
        except InvalidNumber as exc:
            err(f"{text}: invalid number: {exc}")
            failed = True
    answers: list[CarrierInfo] = []
    if valid:
        with make_client(args) as client:
            for mobile in valid:
                try:
                    info = client.lookup(mobile)
                except LookupFailed as exc:
                    err(f"{mobile}: lookup failed: {exc}")
                    failed = True
                    if isinstance(exc, (Unauthorized, BalanceExhausted)):
                        break  # every further query would fail the same way
                    continue
                answers.append(info)
                if args.json:
                    print(json.dumps(answer_json(info), ensure_ascii=False), flush=True)
    if answers and not args.json:
        headers = ("number", "initial", "current", "ported", "virtual", "area")
        rows = [
            (
                i.mobile,
                carrier_name(i.initial),
                carrier_name(i.current),
                yes_no(i.ported),
                yes_no(i.virtual),
                i.area,
            )
            for i in answers
        ]
        print(format_table(headers, rows))
    return EXIT_FAILED if failed else EXIT_OK
