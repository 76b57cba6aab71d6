"""The asyncio seams: CacheBackend and SharedFlight with methods to await.

The asyncio router detects these on its cache. ``runtime_checkable`` checks
only that the methods exist, so a synchronous cache (a MemoryCache) passes
``isinstance`` too: :func:`is_async` tells the two apart.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import inspect
from types import TracebackType
from typing import Protocol, TypeVar, runtime_checkable

__all__ = ["AsyncCacheBackend", "AsyncClosing", "AsyncSharedFlight", "is_async"]

_C = TypeVar("_C", bound="AsyncClosing")


class AsyncClosing:
    """``async with`` for anything with an ``aclose()``: the asyncio front end's objects."""

    async def aclose(self) -> None:
        """Release what the object holds (overridden)."""

    async def __aenter__(self: _C) -> _C:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@runtime_checkable
class AsyncCacheBackend(Protocol):
    """:class:`~smsroute.types.CacheBackend` for stores that wait (Redis): the same, awaited.

    A backend never raises into a send: a broken store answers ``None``.
    One that keeps an in-process tier exposes it as a synchronous ``near``
    property (a MemoryCache), so the router's hit path need not await.
    """

    async def get(self, number: str) -> tuple[int, bool] | None:
        """Return ``(answer, fresh)`` or None when nothing usable is stored."""

    async def set(self, number: str, answer: int) -> None:
        """Store an answer (``codec.NOT_FOUND`` for a number the vendor does not know)."""

    async def delete(self, number: str) -> None:
        """Forget a number (a gateway said the answer is wrong)."""


@runtime_checkable
class AsyncSharedFlight(Protocol):
    """:class:`~smsroute.types.SharedFlight`, awaited: fleet-wide single-flight.

    One event loop holds many claims at once (one per task), told apart by
    the token :meth:`claim` returns and :meth:`release` takes.
    """

    async def claim(self, number: str, ttl: float) -> str | None:
        """Return a token when this task should ask the upstream; None to :meth:`wait`."""

    async def wait(self, number: str, timeout: float) -> tuple[int, bool] | None:
        """Wait up to ``timeout`` s for the claim holder's fresh answer; None if none came."""

    async def release(self, number: str, token: str) -> None:
        """Give up the claim ``token``."""


def is_async(cache: object) -> bool:
    """Return True when ``cache.get`` is a coroutine function (an AsyncCacheBackend to await)."""
    return isinstance(cache, AsyncCacheBackend) and inspect.iscoroutinefunction(cache.get)
