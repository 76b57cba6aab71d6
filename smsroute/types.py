"""The seams of smsroute as small protocols: implement these to plug in your own parts."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from smsroute.models import CarrierInfo

__all__ = ["CacheBackend", "Clock", "Gateway", "LookupClient", "SharedFlight", "accepts_timeout"]

Clock = Callable[[], float]
"""A monotonic clock in seconds, like ``time.monotonic``; tests pass a FakeClock."""

Gateway = Any
"""Whatever a router maps an operator to: a callable (for ``send``), a channel, a product code."""


@runtime_checkable
class LookupClient(Protocol):
    """Anything that answers the current operator of a normalised number."""

    def lookup(self, number: str, *, timeout: float | None = None) -> CarrierInfo:
        """Return the answer for ``number`` within ``timeout`` seconds, or raise a LookupFailed.

        ``timeout`` is what is left of the route's deadline: the whole call,
        retries included, must fit in it. A client whose ``lookup`` takes no
        ``timeout`` still works (the router notices the TypeError once and
        stops passing it); the deadline then holds only as well as that
        client's own timeouts.
        """


@runtime_checkable
class CacheBackend(Protocol):
    """Where a router keeps paid answers, keyed by the normalised number.

    Values are *answer codes* from :mod:`smsroute.codec` (a small int; use
    ``codec.dumps``/``codec.loads`` to store them outside the process). The
    backend owns the time-to-live policy: ``set`` keeps an answer fresh for
    its TTL, then stale for ``stale_ttl`` more; ``get`` says which it is.
    A backend never raises into a send: a broken store answers ``None``.
    """

    def get(self, number: str) -> tuple[int, bool] | None:
        """Return ``(answer, fresh)`` or None when nothing usable is stored."""

    def set(self, number: str, answer: int) -> None:
        """Store an answer (``codec.NOT_FOUND`` for a number the vendor does not know)."""

    def delete(self, number: str) -> None:
        """Forget a number (a gateway said the answer is wrong)."""


@runtime_checkable
class SharedFlight(Protocol):
    """Optional on a cache shared by many processes: fleet-wide single-flight.

    When a router's cache also implements this, a miss first ``claim``\\ s the
    number; the worker that gets the claim asks the upstream, the others
    ``wait`` for its answer to appear in the shared cache.

    .. versionchanged:: 0.2.0
       ``claim`` returns a token (or None) and ``release`` takes it.
    """

    def claim(self, number: str, ttl: float) -> str | None:
        """Return a token when this worker should ask the upstream (claim held for ``ttl`` s).

        None: another worker holds the claim, or a fresh answer is already
        stored; :meth:`wait` picks it up. The token is what :meth:`release`
        takes: one thread (or one event loop) may hold many claims at once.
        """

    def wait(self, number: str, timeout: float) -> tuple[int, bool] | None:
        """Wait up to ``timeout`` s for the claim holder's fresh answer; None if none came.

        Return ``(answer, True)`` only: a stale entry is not another worker's answer.
        """

    def release(self, number: str, token: str) -> None:
        """Give up the claim ``token`` (after the answer was stored, or when the lookup failed)."""


def accepts_timeout(client: object) -> bool:
    """Return True when ``client.lookup`` takes a ``timeout`` keyword."""
    try:
        params = inspect.signature(client.lookup).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError, AttributeError):
        return True  # cannot tell: assume it does, and let its TypeError through
    return "timeout" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
