"""``smsroute demo``: the command that prints the walk-through of :mod:`smsroute.demo`.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from smsroute.cli.args import add_subcommand
from smsroute.demo import run_demo

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = add_subcommand(sub, "demo", "walk through the whole path against an in-process fake vendor")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Walk through the routing path against an in-process fake vendor."""
    return run_demo(sys.stdout)
