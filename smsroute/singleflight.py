"""Single-flight: concurrent misses for one key make one upstream call."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

__all__ = ["Flight", "SingleFlight"]

T = TypeVar("T")


class Flight(Generic[T]):
    """One call in progress; followers wait for its outcome."""

    __slots__ = ("_done", "error", "followers", "result")

    def __init__(self) -> None:
        self._done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None
        self.followers = 0

    def wait(self, timeout: float | None) -> bool:
        """Return True when the leader finished within ``timeout`` seconds."""
        return self._done.wait(timeout)

    def finish(self, result: T | None = None, error: BaseException | None = None) -> None:
        """Publish the outcome to every follower."""
        self.result = result
        self.error = error
        self._done.set()


class SingleFlight(Generic[T]):
    """A table of flights in progress, keyed by number."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, Flight[T]] = {}

    def join(self, key: str) -> tuple[Flight[T], bool]:
        """Return the flight for ``key`` and whether the caller leads it."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                flight.followers += 1
                return flight, False
            flight = self._flights[key] = Flight()
            return flight, True

    def land(self, key: str, flight: Flight[T]) -> None:
        """Remove a finished flight so that the next miss starts a new one."""
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]

    def __len__(self) -> int:
        return len(self._flights)
