"""``smsroute cache path|stats|purge``: the SQLite file of paid answers that route and lookup share.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from smsroute.cli.answers import cache_path, open_sqlite
from smsroute.cli.args import add_subcommand
from smsroute.cli.common import EXIT_OK, EXIT_USAGE, CommandError

__all__ = ["register", "run"]

_ACTIONS = ("path", "stats", "purge")


def register(sub: Any) -> None:
    """Add the ``cache`` subcommand."""
    p = add_subcommand(
        sub,
        "cache",
        "the SQLite cache of paid answers: where it is, what it holds, purge it",
        connection=False,
        description="The SQLite file of paid answers that route and lookup share. "
        "path: print where it is; stats: its size and rows; purge: delete the rows "
        "past their stale window (30 days after their 7-day ttl; 'not found' answers "
        "after an hour). Opening the file also purges.",
    )
    p.add_argument("action", nargs="?", metavar="{path,stats,purge}")
    p.add_argument(
        "--cache-file", metavar="PATH", help="the cache file (default: the one route uses)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the cache file's path, its stats, or purge it."""
    if args.action is None:
        raise CommandError("cache: name an action: path, stats or purge", EXIT_USAGE)
    if args.action not in _ACTIONS:
        raise CommandError(
            f"cache: unknown action {args.action!r} (path, stats or purge)", EXIT_USAGE
        )
    path = cache_path(args.cache_file)
    if args.action == "path":
        print(path)
        return EXIT_OK
    if not path.exists():
        # Opening would create it: say there is none instead.
        print(f"file:  {path}\nno cache file yet (smsroute route and lookup --cache create it)")
        return EXIT_OK
    cache = open_sqlite(path)
    try:
        if args.action == "purge":
            cache.purge()
            purged = cache.stats()["purged"]  # opening purged too: count both
            rows = len(cache)
            print(
                f"purged {purged:,} expired row{'s' if purged != 1 else ''} from {path}; "
                f"{rows:,} row{'s' if rows != 1 else ''} kept"
            )
        else:
            print(f"file:  {path}")
            print(f"size:  {_size(path)} on disk")
            print(f"rows:  {len(cache):,}")
            purged = cache.stats()["purged"]
            if purged:
                print(f"       ({purged:,} expired rows were purged on opening)")
    finally:
        cache.close()
    return EXIT_OK


def _size(path: Path) -> str:
    total = 0
    for suffix in ("", "-wal", "-shm"):  # SQLite's WAL files belong to the database
        try:
            total += Path(str(path) + suffix).stat().st_size
        except OSError:
            continue
    if total < 1024 * 1024:
        return f"{total / 1024:.1f} KiB"
    return f"{total / (1024 * 1024):.1f} MiB"
