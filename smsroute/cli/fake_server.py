"""``smsroute fake-server``: run the fake vendor in the foreground, for trying a gateway by hand.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
from typing import Any, Final

from smsroute.cli.args import add_subcommand, non_negative_float, port, share
from smsroute.cli.common import EXIT_OK, CommandError

__all__ = ["FAKE_PORT", "register", "run"]

FAKE_PORT: Final = 8800


def register(sub: Any) -> None:
    """Add the ``fake-server`` subcommand."""
    p = add_subcommand(
        sub, "fake-server", "run the fake vendor in the foreground (Ctrl-C stops)", connection=False
    )
    p.add_argument(
        "--port", type=port, default=FAKE_PORT, help=f"port on 127.0.0.1 (default: {FAKE_PORT})"
    )
    p.add_argument(
        "--apikey",
        dest="fake_apikey",
        metavar="KEY",
        help="the key it accepts (default: test-apikey)",
    )
    p.add_argument("--ported-share", type=share, default=0.1, help="default: 0.1")
    p.add_argument("--latency", type=non_negative_float, default=0.0, help="seconds per answer")
    p.add_argument("--balance", type=int, default=100_000, help="queries on the account")
    p.add_argument("--seed", default="0", help="changes which numbers are ported")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the fake vendor in the foreground until Ctrl-C."""
    # Imported here: the test doubles are not needed by any other command.
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
        raise CommandError(
            f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}"
        ) from None
    print(f"fake vendor listening on {server.url}", flush=True)
    print(f"apikey: {server.apikey}  (a test key; the fake accepts only this one)")
    print(f"try:    smsroute --base-url {server.url} --apikey {server.apikey} lookup 13972565391")
    print("Ctrl-C stops it.", flush=True)
    server.serve_until_interrupted()
    print(f"stopped; {server.paid} queries were paid", flush=True)
    return EXIT_OK
