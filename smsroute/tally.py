"""Tally: a counter that many threads bump without a lock, and read exactly."""

from __future__ import annotations

import itertools
import threading

__all__ = ["Tally"]


class Tally:
    """Bumped lock-free from any thread (``itertools.count.__next__`` is atomic in CPython).

    Reading draws one number from the same count and subtracts the draws
    made by reads, so the value is exact without parsing ``repr()`` (or
    relying on itertools' pickling, which Python 3.14 removes). Reads take
    a lock; bumps never do.
    """

    __slots__ = ("_count", "_lock", "_reads", "bump")

    def __init__(self) -> None:
        self._count = itertools.count()
        self._reads = 0
        self._lock = threading.Lock()
        self.bump = self._count.__next__

    @property
    def value(self) -> int:
        """Return how many times bump() was called."""
        with self._lock:
            drawn = next(self._count)
            value = drawn - self._reads
            self._reads += 1
        return value

    def __repr__(self) -> str:
        return f"Tally({self.value})"
