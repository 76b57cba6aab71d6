"""CacheIO: the threaded router's cache calls, bounded by the route's deadline.

A cache that blocks (Redis dripping bytes, a SQLite file locked by another
process) must not hold a send past its deadline, and its per-receive socket
timeouts do not bound a whole call. So every call to a cache that can block
runs on a small pool of worker threads: a read waits for its result at most
until the route's deadline (then it counts as a miss), and a write after the
answer is waited for only while the deadline lasts, then left to land in
the background. MemoryCache never
blocks and is called inline; so is a two-tier cache's in-process tier
when it has a fresh answer.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, Final

from smsroute.cache import MemoryCache

__all__ = ["CacheIO", "CacheTimeout"]

_WORKERS: Final = 8


class CacheTimeout(TimeoutError):
    """A cache call did not finish within what was left of the route's deadline."""


class CacheIO:
    """Run a cache's calls inline (MemoryCache) or on worker threads, within a timeout."""

    def __init__(self, cache: Any, on_error: Callable[[BaseException], None]) -> None:
        self.cache = cache
        self.inline = isinstance(cache, MemoryCache)
        near = getattr(cache, "near", None)
        self.near: MemoryCache | None = near if isinstance(near, MemoryCache) else None
        self._on_error = on_error
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                pool = self._pool
                if pool is None:
                    pool = self._pool = concurrent.futures.ThreadPoolExecutor(
                        _WORKERS, thread_name_prefix="smsroute-cache"
                    )
        return pool

    def get(self, mobile: str, timeout: float) -> tuple[int, bool] | None:
        """Return the cache's hit for ``mobile``; raise CacheTimeout past ``timeout``."""
        if self.inline:
            return self.cache.get(mobile)  # type: ignore[no-any-return]
        near = self.near
        if near is not None:
            hit = near.get(mobile)
            if hit is not None and hit[1]:
                return hit
        return self.call("get", mobile, timeout=timeout)  # type: ignore[no-any-return]

    def call(self, op: str, *args: Any, timeout: float) -> Any:
        """Return ``cache.<op>(*args)``; raise CacheTimeout past ``timeout`` seconds."""
        method = getattr(self.cache, op)
        if self.inline:
            return method(*args)
        if timeout <= 0:
            raise CacheTimeout(f"cache {op}: no time left in the deadline")
        future = self._executor().submit(method, *args)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            # The call goes on in its thread and lands (or fails) there;
            # the send does not wait for it.
            future.add_done_callback(self._landed)
            raise CacheTimeout(f"cache {op}: no answer within {timeout:.3f} s") from None

    def settle(self, op: str, *args: Any, timeout: float) -> None:
        """Run a write, waiting for it at most ``timeout``; past that it lands in the background.

        Waited for while the deadline allows, so that the next send of the
        number finds the answer (and does not pay for it again); never past it.
        """
        if self.inline or timeout <= 0:
            self.later(op, *args)
            return
        future = self._executor().submit(getattr(self.cache, op), *args)
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.add_done_callback(self._landed)
        except Exception as exc:  # noqa: BLE001 - losing a cache write must not fail a send
            self._on_error(exc)

    def later(self, op: str, *args: Any) -> None:
        """Run ``cache.<op>(*args)`` without waiting (a write after the send has its answer)."""
        method = getattr(self.cache, op)
        if self.inline:
            try:
                method(*args)
            except Exception as exc:  # noqa: BLE001 - losing a cache write must not fail a send
                self._on_error(exc)
            return
        self._executor().submit(method, *args).add_done_callback(self._landed)

    def _landed(self, future: concurrent.futures.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._on_error(future.exception())  # type: ignore[arg-type]

    def close(self, *, wait: bool = True) -> None:
        """Let writes in flight finish (``wait``) and stop the worker threads."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait)
