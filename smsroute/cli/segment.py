"""``smsroute segment``: the offline segment table's answer for numbers; no key, no network.

``--segments FILE`` (or ``[routing] segments`` of ``--config FILE``) asks a
table of the user's instead of the built-in one, e.g. to check a newer one.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from smsroute import segments
from smsroute.cli.args import add_subcommand
from smsroute.cli.common import EXIT_FAILED, EXIT_OK, carrier_name, err
from smsroute.cli.configfile import (
    add_config_argument,
    add_segments_argument,
    command_settings,
    segment_table,
)
from smsroute.errors import InvalidNumber
from smsroute.numbers import digits
from smsroute.tables import format_table

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``segment`` subcommand."""
    p = add_subcommand(sub, "segment", "the offline answer of the segment table (no key needed)")
    p.add_argument("numbers", nargs="+", metavar="NUMBER")
    p.add_argument("--json", action="store_true", help="one JSON object per line per number")
    s = p.add_argument_group("settings")
    add_config_argument(s)
    add_segments_argument(s)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the segment table's row for each number; no key, no network."""
    lookup = (segment_table(args, command_settings(args)) or segments.default_table()).lookup
    rows: list[segments.Segment] = []
    numbers: list[str] = []
    failed = False
    for text in args.numbers:
        try:
            d = digits(text)
        except InvalidNumber as exc:
            err(f"{text}: invalid number: {exc}")
            failed = True
            continue
        row = lookup(d)
        if row is None:
            err(f"{text}: not a mobile segment: {d[:3]}")
            failed = True
            continue
        numbers.append(d)
        rows.append(row)
        if args.json:
            body = {
                "number": d,
                "segment": row.prefix,
                "operator": carrier_name(row.carrier),
                "kind": row.kind,
                "host": carrier_name(row.host),
                "holder": row.holder,
            }
            print(json.dumps(body, ensure_ascii=False))
    if rows and not args.json:
        headers = ("number", "segment", "operator", "kind", "holder")
        table = [
            (n, r.prefix, carrier_name(r.carrier), r.kind, r.holder)
            for n, r in zip(numbers, rows, strict=True)
        ]
        print(format_table(headers, table))
    return EXIT_FAILED if failed else EXIT_OK
