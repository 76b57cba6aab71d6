"""The purge of SqliteCache: a sweep over the row id in bounded windows, and the row count.

Rows past their stale window are deleted by a sweep over the primary key,
``batch`` rows a step: the whole sweep when the file is opened (or
:meth:`smsroute.SqliteCache.purge` is called), and once per ``interval`` one
window per ``set`` until it has gone round. No step does work that grows
with the table. The rows a sweep keeps become the cache's row count at its
end. A purge never trusts the wall clock alone (see :meth:`Sweep.horizon`).

Not thread-safe: SqliteCache calls it with its write lock held.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from smsroute.types import Clock

__all__ = ["SWEEP_START", "Sweep"]

SWEEP_START: Final = -(1 << 63)  # below every row id SQLite can hold

# One purge step: the rows of a window of the row id past their time
# (positives live until fresh_until + stale_ttl, negatives until fresh_until).
_PURGE_WINDOW: Final = (
    "DELETE FROM answers WHERE number > :start AND number <= :end"
    " AND fresh_until <= :now AND (answer = 'N' OR fresh_until <= :old)"
)

# Why a sweep over the row id and no index on fresh_until, measured on a
# 1,000,000-row file (32 MB, sqlite 3.40, local disk), per call:
#
#   DELETE ... WHERE rowid IN (SELECT rowid ... WHERE <past their time> LIMIT 500)
#     no index, nothing expired:               59 ms (a full scan, every call)
#     index on fresh_until, nothing expired: 1,150 ms (the planner walks the
#       index over fresh_until <= now: every stale-but-kept row)
#   INSERT OR REPLACE of an existing row: 12 us median without the index,
#     22 us with it; and the index grows the file from 32 to 48 MB.
#   This code, set() while a sweep runs (a 500-row window a call): 102 us
#     median with few rows expired, 172 us median / 5 ms p99 when every row
#     has; len() 0 us; opening the file (whole sweep and count) 0.18 s, and
#     0.06 s more for the newest fresh_until (see Sweep.horizon).
#
# So the index is not needed for a cheap batch (and does not give one for
# this predicate): it is not created.


class Sweep:
    """Where the running sweep is, what it kept, when the next starts, and the row count."""

    def __init__(self, *, batch: int, interval: float, monotonic: Clock) -> None:
        if batch < 1:
            raise ValueError("purge_batch must be at least 1")
        self.batch = batch
        self.interval = interval
        self._monotonic = monotonic
        self.start: int | None = None
        """The last row id looked at (None: no sweep running)."""
        self.kept = 0
        """The rows the running sweep kept so far: the count at its end."""
        self.next_at = 0.0
        self.count = 0
        """Approximate rows in the file (see SqliteCache.__len__)."""
        self._trusted = 0.0
        self._trusted_at = monotonic()

    def trust(self, newest_write: float) -> None:
        """Start trusting the wall clock from ``newest_write`` on (see :meth:`horizon`)."""
        self._trusted_at = self._monotonic()
        self._trusted = newest_write

    def horizon(self, now: float) -> float:
        """Return the time a purge judges rows by: ``now``, unless the clock cannot be trusted.

        A purge deletes paid answers for good, so it does not take the wall
        clock's word alone. A clock set weeks ahead (a bad NTP source, a VM
        restored with the wrong time) would otherwise make every row look
        past its stale window: they would all be deleted when the file was
        opened, and stay gone when the clock was fixed. So time is trusted
        only as far as it is seen to pass: from the newest write in the file
        when it was opened (the clock was at least there then), plus what
        the monotonic clock has counted since. Rows that expired by that
        time are certainly expired; a clock jump, forward at start-up or
        during the run, moves nothing. The price: after a real downtime the
        rows that expired during it are purged only as the process runs on
        (they read as misses meanwhile, so only disk is spent), and rows
        written under a clock that was ahead stay longer.
        """
        return min(now, self._trusted + (self._monotonic() - self._trusted_at))

    def restart(self) -> None:
        """Start a sweep from the first row id; the next one is due ``interval`` from now."""
        self.start, self.kept = SWEEP_START, 0
        self.next_at = self._monotonic() + self.interval

    def due(self, tick: float) -> bool:
        """Start a sweep if none runs and one is due at ``tick``; return whether one runs."""
        if self.start is None and tick >= self.next_at:
            self.start, self.kept = SWEEP_START, 0
            self.next_at = tick + self.interval
        return self.start is not None

    def abort(self) -> None:
        """Drop the running sweep (it failed); the next ``set`` starts another."""
        self.start = None
        self.next_at = 0.0

    def step(self, db: sqlite3.Connection, now: float, stale_ttl: float) -> int:
        """Purge the next ``batch`` rows of the running sweep; return how many went.

        Bounded work: a range of the primary key, found and deleted by the
        row id.
        """
        start = self.start
        assert start is not None
        size, end = db.execute(
            "SELECT count(*), max(number) FROM"
            " (SELECT number FROM answers WHERE number > ? ORDER BY number LIMIT ?)",
            (start, self.batch),
        ).fetchone()
        removed = 0
        if size:
            at = self.horizon(now)
            cursor = db.execute(
                _PURGE_WINDOW, {"start": start, "end": end, "now": at, "old": at - stale_ttl}
            )
            removed = max(cursor.rowcount, 0)
        self.kept += size - removed
        self.count = max(self.count - removed, 0)
        if size < self.batch:  # gone round: what it kept is the count
            self.start = None
            self.count = self.kept
        else:
            self.start = end
        return removed

    def counted(self, key: int, change: int) -> None:
        """Count this process's own write (``change`` rows) of row id ``key``."""
        self.count = max(self.count + change, 0)
        # A row behind the running sweep is one the sweep will not see again.
        if self.start is not None and key <= self.start:
            self.kept += change
