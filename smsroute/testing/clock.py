"""FakeClock: a clock that moves only when told, for ``clock=`` and ``sleep=`` parameters.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A clock that moves only when told: pass it as ``clock=`` and ``sleep=``; thread-safe."""

    # The default start is not 0 so that code treating a zero timestamp as
    # "never" is not fooled.
    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        """Return the current fake time."""
        with self._lock:
            return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self()})"

    def advance(self, seconds: float) -> float:
        """Move the time forward and return the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += seconds
            return self._now

    def sleep(self, seconds: float) -> None:
        """Record the sleep and advance by it, returning at once."""
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds
