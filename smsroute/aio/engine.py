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

    ``concurrency`` worker coroutines take the numbers from a queue, and a
    submit only wakes the loop when it is not already awake to take them: a
    task, a semaphore and a self-pipe write per number (what
    ``run_coroutine_threadsafe`` costs) measured a third of the command's
    CPU per row.
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
        self._inbox: list[_Job] = []
        self._lock = threading.Lock()
        self._awake = False  # a _take is scheduled and has not run yet
        try:
            self.router: AsyncRouter = self._run(make_router())
            self._queue: asyncio.Queue[_Job] = self._run(_queue())
            self._workers: list[asyncio.Task[None]] = self._run(self._start(concurrency))
        except BaseException:
            self._stop()
            raise

    def _run(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(_wrap(coro), self._loop).result()

    def submit(self, mobile: str, *, fallback: bool = True) -> concurrent.futures.Future[Any]:
        """Start routing ``mobile`` on the loop; the future holds its Decision or error."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the engine is shut down")
            self._inbox.append((mobile, fallback, future))
            wake = not self._awake
            self._awake = True
        if wake:
            self._loop.call_soon_threadsafe(self._take)
        return future

    def _take(self) -> None:
        """On the loop: move what was submitted since the last wake-up to the workers' queue."""
        with self._lock:
            jobs, self._inbox = self._inbox, []
            self._awake = False
        for job in jobs:
            self._queue.put_nowait(job)

    async def _start(self, concurrency: int) -> list[asyncio.Task[None]]:
        return [asyncio.ensure_future(self._work()) for _ in range(concurrency)]

    async def _work(self) -> None:
        queue, route = self._queue, self.router.route
        while True:
            mobile, fallback, future = await queue.get()
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        decision = await route(mobile, fallback=fallback)
                    except Exception as exc:  # noqa: BLE001 - the caller's future carries it
                        future.set_exception(exc)
                    else:
                        future.set_result(decision)
            finally:
                queue.task_done()

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop taking numbers; let lookups in flight land (``wait``), close, stop the loop."""
        with self._lock:
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
        self._take()  # anything submitted since the last wake-up
        await self._queue.join()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        if tasks:  # the router's background cache writes
            await asyncio.wait(tasks)
        await self.router.aclose()
        if self._aclose is not None:
            await self._aclose(self.router)

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()


_Job = tuple[str, bool, "concurrent.futures.Future[Any]"]


async def _wrap(coro: Awaitable[Any]) -> Any:
    return await coro


async def _queue() -> asyncio.Queue[_Job]:
    # Made on the loop: before Python 3.10 a Queue bound the loop it was made on.
    return asyncio.Queue()
