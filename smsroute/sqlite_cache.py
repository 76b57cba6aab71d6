"""SqliteCache: paid answers kept on disk, for one node that restarts.

A table ``answers (number INTEGER PRIMARY KEY, fresh_until INTEGER, answer
TEXT)`` in a standard-library sqlite3 database in WAL mode: the number is the
row id (the cheapest key SQLite has), ``fresh_until`` is wall-clock seconds
and ``answer`` the portable text of :func:`smsroute.codec.dumps` (area ids are
local to a process). Freshness is judged on read with the cache's ``clock``,
exactly as MemoryCache does; rows past their stale window are purged when the
file is opened and then at most once per ``purge_interval``.

Several threads share one connection behind a lock (sqlite3 releases the GIL
while it works, and an answer read is a few microseconds); several processes
on one host share the file through WAL, waiting up to ``busy_timeout`` for
each other's writes. Like every backend it never raises into a send: a
failing database is logged once per run of failures, counted, and reads
answer None.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from smsroute import codec
from smsroute._log import get_logger
from smsroute.cache import CachePolicy
from smsroute.types import Clock

__all__ = ["SqliteCache", "default_cache_path"]

_log = get_logger()

# The number is the row id (no separate index): measured ~33 bytes a row on disk.
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS answers ("
    "number INTEGER PRIMARY KEY, fresh_until INTEGER NOT NULL, answer TEXT NOT NULL)"
)
_MAX_NUMBER: Final = 1 << 62  # within SQLite's 64-bit integer, far beyond any phone number


def default_cache_path() -> Path:
    """Return the default answers file: ``<user cache dir>/smsroute/answers.sqlite3``.

    The user cache directory comes from platformdirs when it is installed,
    else ``$XDG_CACHE_HOME`` or ``~/.cache``. The directory is not created.
    """
    try:
        import platformdirs  # optional: only the default path needs it
    except ImportError:
        base = os.environ.get("XDG_CACHE_HOME") or ""
        root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
        return root / "smsroute" / "answers.sqlite3"
    return platformdirs.user_cache_path("smsroute", appauthor=False) / "answers.sqlite3"


def _key(number: str) -> int:
    # Normalised numbers are digits without a leading zero, so the integer
    # round-trips to the same text; anything else would come back different.
    if not (number.isdigit() and number.isascii() and number[0] != "0"):
        raise ValueError(f"SqliteCache keys are normalised mobile numbers, not {number!r}")
    key = int(number)
    if key >= _MAX_NUMBER:
        raise ValueError("number too long for SqliteCache")
    return key


class SqliteCache:
    """A CacheBackend on a SQLite file (WAL), shared by threads and by processes on one host.

    ``path`` is a file path (its directory is created) or ``":memory:"``.
    ``clock`` is wall-clock time: the file outlives the process.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        ttl: float | None = None,
        negative_ttl: float | None = None,
        stale_ttl: float | None = None,
        policy: CachePolicy | None = None,
        busy_timeout: float = 1.0,
        purge_interval: float = 3600.0,
        clock: Clock = time.time,
    ) -> None:
        self.policy = CachePolicy.resolve(policy, ttl, negative_ttl, stale_ttl)
        self.path = str(path)
        self.purge_interval = float(purge_interval)
        self._clock = clock
        self._lock = threading.Lock()
        self._errors = 0
        self._failing = False
        self._purged = 0
        if self.path != ":memory:" and not self.path.startswith("file:"):
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # One connection for every thread, serialised by self._lock;
        # autocommit (isolation_level=None): each statement is its own short
        # transaction, so no write lock is held between calls.
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.path,
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across a process crash; a power cut may lose
            # the last answers, which only costs a query again.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error:
            self._db.close()
            self._db = None
            raise
        self._next_purge = 0.0
        self.purge()

    # -- CacheBackend ---------------------------------------------------------------

    def get(self, number: str) -> tuple[int, bool] | None:
        """Return ``(answer, fresh)`` or None when nothing usable is stored."""
        key = _key(number)
        try:
            with self._lock:
                row = (
                    self._conn()
                    .execute("SELECT fresh_until, answer FROM answers WHERE number = ?", (key,))
                    .fetchone()
                )
        except sqlite3.Error as exc:
            self._failed("get", exc)
            return None
        self._succeeded()
        if row is None:
            return None
        fresh_until, text = row
        answer = codec.loads(text) if isinstance(text, str) else None
        if answer is None or not isinstance(fresh_until, int):
            return None
        now = self._clock()
        if now < fresh_until:
            return answer, True
        if now < fresh_until + self.policy.stale_ttl and not codec.is_negative(answer):
            return answer, False
        return None  # left for purge(): a read does not write

    def set(self, number: str, answer: int) -> None:
        """Store an answer, fresh for the policy's TTL."""
        key = _key(number)
        now = self._clock()
        # Same rounding as MemoryCache, so the two agree on when an answer turns stale.
        fresh_until = int(now + self.policy.ttl_for(answer)) + 1
        text = codec.dumps(answer)
        try:
            with self._lock:
                self._conn().execute(
                    "INSERT OR REPLACE INTO answers (number, fresh_until, answer) VALUES (?, ?, ?)",
                    (key, fresh_until, text),
                )
        except sqlite3.Error as exc:
            self._failed("set", exc)
            return
        self._succeeded()
        if now >= self._next_purge:
            self.purge()

    def delete(self, number: str) -> None:
        """Forget a number."""
        key = _key(number)
        try:
            with self._lock:
                self._conn().execute("DELETE FROM answers WHERE number = ?", (key,))
        except sqlite3.Error as exc:
            self._failed("delete", exc)
        else:
            self._succeeded()

    # -- housekeeping -------------------------------------------------------------

    def purge(self) -> int:
        """Delete rows past their stale window (negatives past their TTL); return how many."""
        now = self._clock()
        self._next_purge = now + self.purge_interval
        # Positives live until fresh_until + stale_ttl, negatives until fresh_until.
        try:
            with self._lock:
                cursor = self._conn().execute(
                    "DELETE FROM answers"
                    " WHERE fresh_until <= ? AND (answer = 'N' OR fresh_until <= ?)",
                    (now, now - self.policy.stale_ttl),
                )
                removed = max(cursor.rowcount, 0)
        except sqlite3.Error as exc:
            self._failed("purge", exc)
            return 0
        self._succeeded()
        self._purged += removed
        return removed

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("SqliteCache is closed")
        return self._db

    def _failed(self, op: str, exc: BaseException) -> None:
        with self._lock:
            self._errors += 1
            first, self._failing = not self._failing, True
        if first:
            # One warning per run of failures (a locked or broken file), not per send.
            _log.warning(
                "cache.sqlite.error", op=op, error=type(exc).__name__, detail=str(exc)[:120]
            )

    def _succeeded(self) -> None:
        if self._failing:
            self._failing = False
            _log.info("cache.sqlite.ok", errors=self._errors)

    @property
    def errors(self) -> int:
        """Return how many database operations failed since the cache was opened."""
        return self._errors

    def stats(self) -> dict[str, Any]:
        """Return the row count, errors and rows purged."""
        return {"size": len(self), "errors": self._errors, "purged": self._purged}

    def __len__(self) -> int:
        """Return the number of stored rows (expired rows not yet purged included)."""
        try:
            with self._lock:
                row = self._conn().execute("SELECT COUNT(*) FROM answers").fetchone()
        except sqlite3.Error:
            return 0
        return int(row[0])

    def __repr__(self) -> str:
        state = "closed" if self._db is None else "open"
        return f"SqliteCache({self.path!r}, {state}, {self.policy})"

    def close(self) -> None:
        """Close the database; later calls answer None and store nothing; idempotent."""
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            db.close()

    def __enter__(self) -> SqliteCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Python 3.13 warns about unclosed sqlite3 connections; a forgotten
        # cache should be closed quietly, as a file object would be.
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
