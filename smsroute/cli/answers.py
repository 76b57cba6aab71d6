"""Opening the SQLite answer cache for a command, or memory when the file cannot be used.

``route`` and ``lookup`` share one file of paid answers (``--cache-file``,
default :func:`smsroute.sqlite_cache.default_cache_path`). A file that cannot
be used (not a database, a directory, read-only, on a full disk) must not cost
the run: one warning on stderr, then answers are kept in memory.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from smsroute.cache import MemoryCache
from smsroute.cli.common import EXIT_USAGE, CommandError, err
from smsroute.types import CacheBackend

if TYPE_CHECKING:
    from smsroute.core.freshness import CachePolicy
    from smsroute.sqlite_cache import SqliteCache

__all__ = ["cache_path", "open_or_memory", "open_sqlite"]


def cache_path(cache_file: str | None) -> Path:
    """Return ``--cache-file`` as a path, or the default answers file."""
    # Imported here: the commands without a cache need neither sqlite3 nor platformdirs.
    from smsroute.sqlite_cache import default_cache_path

    return Path(cache_file) if cache_file else default_cache_path()


def open_sqlite(path: Path, *, policy: CachePolicy | None = None) -> SqliteCache:
    """Return a SqliteCache on ``path``; a file it cannot use raises CommandError (exit 2)."""
    import sqlite3

    from smsroute.sqlite_cache import SqliteCache

    if path.is_dir():
        raise CommandError(f"cannot open the cache file {path}: it is a directory", EXIT_USAGE)
    for parent in path.parents:  # SqliteCache creates missing directories, not over a file
        if parent.exists():
            if not parent.is_dir():
                raise CommandError(
                    f"cannot open the cache file {path}: {parent} is not a directory", EXIT_USAGE
                )
            break
    try:
        cache = SqliteCache(path) if policy is None else SqliteCache(path, policy=policy)
    except (OSError, sqlite3.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CommandError(f"cannot open the cache file {path}: {reason}", EXIT_USAGE) from None
    if cache.errors:
        # It opened but could not write (a read-only file already in WAL mode):
        # every answer paid for would be lost again.
        cache.close()
        raise CommandError(f"cannot open the cache file {path}: it cannot be written", EXIT_USAGE)
    return cache


def open_or_memory(
    cache_file: str | None, *, policy: CachePolicy | None = None
) -> tuple[CacheBackend, Callable[[], None]]:
    """Return the answer cache and how to close it: the SQLite file, else memory with a warning.

    ``policy`` (``[cache]`` ttl and the rest, from ``--config``) is the cache's freshness.
    """
    try:
        path = cache_path(cache_file)
        cache = open_sqlite(path, policy=policy)
    except ImportError:
        err("note: no persistent cache available; answers are kept in memory only")
        return MemoryCache(), lambda: None
    except CommandError as exc:
        reason = str(exc).removeprefix("cannot open ")
        err(f"warning: cannot use {reason}; answers are kept in memory for this run")
        return (MemoryCache() if policy is None else MemoryCache(policy=policy)), lambda: None
    return cache, cache.close
