"""LoopEngine: an asyncio router behind a thread-safe, futures-based face, for bulk runs.

The ``smsroute route`` command writes rows in input order from a thread; its
lookups are cheaper on asyncio (aiohttp spends a fraction of the CPU per
request that requests on threads does). LoopEngine runs an event loop in a
background thread, builds the AsyncRouter there, and turns each ``submit``
into a ``concurrent.futures.Future``: the same face as
:class:`smsroute.batch.ThreadEngine`.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from smsroute.aio.router import AsyncRouter

__all__ = ["LoopEngine"]


class LoopEngine:
    """Route on an AsyncRouter in a background event loop; at most ``concurrency`` at once.

    ``make_router`` is a coroutine function run on the loop (aiohttp sessions
    and futures belong to the loop that made them); ``aclose`` is awaited on
    it at shutdown (close the client there).
    """

    def __init__(
        self,
        make_router: Callable[[], Awaitable[AsyncRouter]],
        concurrency: int,
        *,
        aclose: Callable[[AsyncRouter], Awaitable[None]] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="smsroute-loop", daemon=True
        )
        self._thread.start()
        self._aclose = aclose
        self._closed = False
        try:
            self.router: AsyncRouter = self._run(make_router())
            self._gate: asyncio.Semaphore = self._run(_semaphore(concurrency))
        except BaseException:
            self._stop()
            raise

    def _run(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(_wrap(coro), self._loop).result()

    def submit(self, mobile: str, *, fallback: bool = True) -> concurrent.futures.Future[Any]:
        """Start routing ``mobile`` on the loop; the future holds its Decision or error."""
        return asyncio.run_coroutine_threadsafe(self._one(mobile, fallback), self._loop)

    async def _one(self, mobile: str, fallback: bool) -> Any:
        async with self._gate:
            return await self.router.route(mobile, fallback=fallback)

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop taking numbers; let lookups in flight land (``wait``), close, stop the loop."""
        if self._closed:
            return
        self._closed = True
        try:
            if wait:
                self._run(self._drain())
            else:
                asyncio.run_coroutine_threadsafe(self._drain(), self._loop)
        finally:
            self._stop()

    async def _drain(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        if tasks:
            await asyncio.wait(tasks)
        await self.router.aclose()
        if self._aclose is not None:
            await self._aclose(self.router)

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()


async def _wrap(coro: Awaitable[Any]) -> Any:
    return await coro


async def _semaphore(n: int) -> asyncio.Semaphore:
    # Made on the loop: before Python 3.10 a Semaphore bound the loop it was made on.
    return asyncio.Semaphore(n)
