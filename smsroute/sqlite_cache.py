"""SqliteCache: paid answers kept on disk, for one node that restarts.

A table ``answers (number INTEGER PRIMARY KEY, fresh_until INTEGER, answer
TEXT)`` in a standard-library sqlite3 database in WAL mode: the number is the
row id (the cheapest key SQLite has), ``fresh_until`` is wall-clock seconds
and ``answer`` the portable text of :func:`smsroute.codec.dumps` (area ids are
local to a process). Freshness is judged on read with the cache's ``clock``,
exactly as MemoryCache does.

Two tiers, as RedisCache: a small :class:`~smsroute.cache.MemoryCache` (the
*near tier*, on the monotonic clock) answers a hot number without a query
and for ``near_ttl`` seconds at most, so another process's writes and
deletes on the same file show within that time. While the file cannot be
read (locked, broken) the near tier answers; an answer the file could not
take (locked, disk full) is held there for its whole TTL, so a failing file
never costs more queries than a MemoryCache would.

Rows past their stale window are purged by a sweep over the primary key in
windows of ``purge_batch`` rows (:mod:`smsroute.sqlite_sweep`): the whole
sweep when the file is opened (or :meth:`SqliteCache.purge` is called), and
once per ``purge_interval`` one window per ``set`` until the sweep has gone
round. No call on the send path does work that grows with the table. A
purge never trusts the wall clock alone: a clock that jumps forward does not
delete paid answers.

Threads share two connections, one for reads and one for writes, each behind
its own lock (sqlite3 releases the GIL while it works, and an answer read is
a few microseconds), so a read never queues behind a write. Several
processes on one host share the file through WAL: reads are never blocked by
another process's write, and a write on the send path waits at most
``write_timeout`` for another process's write lock (``busy_timeout`` only
when opening and purging). Like every backend it never raises into a send: a
failing database is logged once per run of failures and counted
(:attr:`SqliteCache.errors`, :meth:`SqliteCache.stats`).

.. versionadded:: 0.1.0
.. versionchanged:: 0.2.0
   The near tier (``near_maxsize``, ``near_ttl``, ``monotonic``, :attr:`near`),
   and purges judged against the newest write rather than the wall clock.
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
from smsroute.cache import MemoryCache
from smsroute.core.freshness import ANSWER_MASK, FRESH_SHIFT, USED_BIT, CachePolicy, fresh_until
from smsroute.sqlite_sweep import SWEEP_START, Sweep
from smsroute.tiers import Counts, Health, NearTier
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
    ``clock`` is wall-clock time: the file outlives the process;
    ``monotonic`` times the near tier, the purge schedule and the purge's
    trust in the wall clock. ``near_maxsize`` and ``near_ttl`` size the near
    tier and bound how long it answers without reading the file
    (``near_ttl=0``: every read goes to the file).
    ``write_timeout`` is how long a ``set`` or ``delete`` (on the send path)
    waits for another process's write lock before it gives up (counted and
    logged, never raised); ``busy_timeout`` is the wait when opening the
    file and in :meth:`purge`. ``purge_batch`` is how many rows one purge
    step looks at.
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
        write_timeout: float = 0.05,
        purge_interval: float = 3600.0,
        purge_batch: int = 500,
        near_maxsize: int = 10_000,
        near_ttl: float = 60.0,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.policy = CachePolicy.resolve(policy, ttl, negative_ttl, stale_ttl)
        self.path = str(path)
        self.purge_interval = float(purge_interval)
        self.purge_batch = int(purge_batch)
        self.near_ttl = float(near_ttl)
        self._busy_ms = max(int(busy_timeout * 1000), 0)
        self._write_ms = max(int(write_timeout * 1000), 0)
        self._clock = clock
        self._monotonic = monotonic
        self._tier = NearTier(self.policy, maxsize=near_maxsize, ttl=near_ttl, monotonic=monotonic)
        self._near = self._tier.cache
        self._near_data = self._near.entries
        self._lock = threading.Lock()  # the write connection and the sweep state
        self._counts = Counts()
        # A file is not a network: no back-off (a locked file costs a send at
        # most write_timeout), but one warning per run of failures.
        self._health = Health(backoff=0.0, failures=1, monotonic=monotonic, counts=self._counts)
        # The purge sweep and the approximate row count (see __len__).
        self._sweep = Sweep(
            batch=self.purge_batch, interval=self.purge_interval, monotonic=monotonic
        )
        if self.path != ":memory:" and not self.path.startswith("file:"):
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level=None): each statement is its own short
        # transaction, so no write lock is held between calls.
        self._db: sqlite3.Connection | None = self._connect(busy_timeout)
        self._rdb: sqlite3.Connection | None = None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across a process crash; a power cut may lose
            # the last answers, which only costs a query again.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            if self.path == ":memory:":
                # A second connection would be another, empty database.
                self._rdb, self._rlock = self._db, self._lock
            else:
                # A WAL reader never waits for a writer, only (rarely) for a
                # checkpoint or recovery: the send-path timeout is plenty.
                self._rdb, self._rlock = self._connect(write_timeout), threading.Lock()
        except sqlite3.Error:
            self.close()
            raise
        # What the purge may believe of the wall clock: see Sweep.horizon.
        self._sweep.trust(self._newest_write(clock()))
        self.purge()  # also counts the rows
        with self._lock:
            self._set_timeout(self._write_ms)

    def _newest_write(self, now: float) -> float:
        # A lower bound of when the newest row was written: its fresh_until
        # is write time + TTL (or negative_ttl), rounded up.
        try:
            with self._lock:
                cursor = self._conn().execute("SELECT max(fresh_until) FROM answers")
                newest = cursor.fetchone()[0]
        except sqlite3.Error as exc:
            self._failed("open", exc)
            newest = None
        if not isinstance(newest, int):
            return now
        return min(now, newest - max(self.policy.ttl, self.policy.negative_ttl) - 1)

    def _connect(self, timeout: float) -> sqlite3.Connection:
        return sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )

    # -- CacheBackend ---------------------------------------------------------------

    def get(self, number: str) -> tuple[int, bool] | None:
        """Return ``(answer, fresh)`` or None; a fresh near-tier hit runs no query."""
        # The near tier's hit test inlined, as in RedisCache.get.
        value = self._near_data.get(number)
        if value is not None:
            if value & USED_BIT and self._monotonic() < value >> FRESH_SHIFT:
                return value & ANSWER_MASK, True
            hit = self._tier.fresh(number)
            if hit is not None:
                return hit
        key = _key(number)
        try:
            with self._rlock:
                row = (
                    self._rconn()
                    .execute("SELECT fresh_until, answer FROM answers WHERE number = ?", (key,))
                    .fetchone()
                )
        except sqlite3.Error as exc:
            self._failed("get", exc)
            return self._tier.outage_answer(number)
        self._succeeded()
        if row is None:
            self._tier.forget(number)  # deleted by another process, or purged
            return None
        until, text = row
        answer = codec.loads(text) if isinstance(text, str) else None
        if answer is None or not isinstance(until, int):
            self._counts.bump("corrupt")
            self._tier.forget(number)
            return None
        # A row past its stale window is left for purge(): a read does not write.
        return self._tier.learn(number, until, answer, self._clock())

    def set(self, number: str, answer: int) -> None:
        """Store an answer, fresh for the policy's TTL."""
        key = _key(number)
        now = self._clock()
        # Same rounding as every backend, so they agree on when an answer turns stale.
        until = fresh_until(now, self.policy.ttl_for(answer))
        text = codec.dumps(answer)
        tick = self._monotonic()
        try:
            with self._lock:
                db = self._conn()
                # A read (no lock on the file) to keep the count: a few microseconds.
                new = db.execute("SELECT 1 FROM answers WHERE number = ?", (key,)).fetchone()
                db.execute(
                    "INSERT OR REPLACE INTO answers (number, fresh_until, answer) VALUES (?, ?, ?)",
                    (key, until, text),
                )
                if new is None:
                    self._sweep.counted(key, 1)
                sweeping = self._sweep.due(tick)
        except sqlite3.Error as exc:
            self._failed("set", exc)
            if self._db is not None:
                # The file did not take it (locked, disk full): keep it here
                # for its whole TTL, or every send of the number pays again.
                self._tier.hold(number, answer)
            return
        self._succeeded()
        self._tier.stored(number, answer)
        if sweeping:
            self._purge_step(now)

    def _purge_step(self, now: float) -> None:
        # One window of the running sweep, on the send path (write_timeout):
        # a failure leaves the sweep where it was, for the next set.
        try:
            with self._lock:
                if self._sweep.start is not None:
                    self._sweep_step(now)
        except sqlite3.Error as exc:
            self._failed("purge", exc)
        else:
            self._succeeded()

    def delete(self, number: str) -> None:
        """Forget a number."""
        key = _key(number)
        self._tier.forget(number)
        try:
            with self._lock:
                cursor = self._conn().execute("DELETE FROM answers WHERE number = ?", (key,))
                if cursor.rowcount > 0:
                    self._sweep.counted(key, -1)
        except sqlite3.Error as exc:
            self._failed("delete", exc)
        else:
            self._succeeded()

    # -- housekeeping -------------------------------------------------------------

    def purge(self) -> int:
        """Delete rows past their stale window (negatives past their TTL); return how many.

        The whole table, in windows of ``purge_batch`` rows, each its own
        short transaction with the lock released in between, so sends carry
        on meanwhile. Not for the send path: ``set`` does one window at a time.
        Also recounts the rows (see ``__len__``).
        """
        now = self._clock()
        removed = 0
        start: int | None = SWEEP_START
        try:
            while start is not None:
                with self._lock:
                    self._set_timeout(self._busy_ms)
                    try:
                        if start == SWEEP_START:  # restart the send path's sweep here
                            self._sweep.restart()
                        removed += self._sweep_step(now)
                        start = self._sweep.start
                    finally:
                        self._set_timeout(self._write_ms)
        except sqlite3.Error as exc:
            with self._lock:
                self._sweep.abort()  # try again on the next set
            self._failed("purge", exc)
            return removed
        self._succeeded()
        return removed

    def _sweep_step(self, now: float) -> int:
        """One window of the running sweep (self._lock held); return the rows it purged."""
        removed = self._sweep.step(self._conn(), now, self.policy.stale_ttl)
        self._counts.bump("purged", removed)
        return removed

    def _set_timeout(self, ms: int) -> None:
        if self._db is not None:
            self._db.execute(f"PRAGMA busy_timeout = {int(ms)}")

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("SqliteCache is closed")
        return self._db

    def _rconn(self) -> sqlite3.Connection:
        if self._rdb is None:
            raise sqlite3.ProgrammingError("SqliteCache is closed")
        return self._rdb

    def _failed(self, op: str, exc: BaseException) -> None:
        if self._health.failed(self._monotonic()):
            # One warning per run of failures (a locked or broken file), not per send.
            _log.warning(
                "cache.sqlite.error", op=op, error=type(exc).__name__, detail=str(exc)[:120]
            )

    def _succeeded(self) -> None:
        errors = self._health.succeeded()
        if errors is not None:
            _log.info("cache.sqlite.ok", errors=errors)

    @property
    def errors(self) -> int:
        """Return how many database operations failed since the cache was opened."""
        return self._counts["errors"]

    @property
    def available(self) -> bool:
        """Return False from a failed operation until the next one that works."""
        return self._health.available

    @property
    def near(self) -> MemoryCache:
        """Return the in-process near tier (a MemoryCache; the router reads it directly)."""
        return self._near

    def stats(self) -> dict[str, Any]:
        """Return the row count, errors, rows purged, corrupt rows read and the near tier's size."""
        out: dict[str, Any] = {"size": len(self)}
        out.update(self._counts.snapshot(("errors", "purged", "corrupt")))
        out["near_size"] = len(self._near)
        out["available"] = self._health.available
        return out

    def clear_near(self) -> None:
        """Forget the near tier (the file keeps its answers)."""
        self._near.clear()

    def __len__(self) -> int:
        """Return the approximate number of stored rows (expired rows not yet purged included).

        Costs nothing (no query, no lock: ``router.stats()`` calls it on
        every scrape). Counted when the file is opened and at the end of
        every purge sweep, and kept up to date with this process's own
        writes; other processes' writes show at the next sweep.
        """
        return self._sweep.count

    def __repr__(self) -> str:
        state = "closed" if self._db is None else "open"
        return f"SqliteCache({self.path!r}, {state}, {self.policy})"

    def close(self) -> None:
        """Close the database; later calls answer None and store nothing; idempotent."""
        with self._lock:
            db, self._db = self._db, None
        self._near.clear()
        rlock = getattr(self, "_rlock", None)
        if rlock is not None and rlock is not self._lock:
            with rlock:
                rdb, self._rdb = self._rdb, None
        else:
            rdb, self._rdb = None, None
        for conn in (rdb, db):
            if conn is not None:
                conn.close()

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
        for name in ("_rdb", "_db"):
            conn = getattr(self, name, None)
            if conn is not None:
                conn.close()
