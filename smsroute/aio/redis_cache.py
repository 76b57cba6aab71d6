"""AsyncRedisCache: RedisCache for an event loop, on ``redis.asyncio``; one fleet with it.

The keys, the value format, the Lua scripts, the near tier, the outage
handling (back-off after ``failures`` consecutive failures, one warning per
outage, refused writes held in the near tier) and the counters are
:class:`~smsroute.redis_protocol.BaseRedisCache`'s, shared with the
synchronous :class:`~smsroute.redis_cache.RedisCache`: threaded and asyncio
workers of one fleet read each other's answers and respect each other's
claims. Only the commands differ: here they are awaited.

A fresh near-tier hit awaits nothing slow (no command is sent); the asyncio
router's hot path reads :attr:`AsyncRedisCache.near` directly, without
awaiting at all. One instance belongs to one event loop (redis.asyncio's
connections do); many tasks of that loop share it, each with its own claims.

Needs redis-py: ``pip install 'smsroute[redis]'``. ``cluster=True`` (or a
ready ``redis.asyncio.cluster.RedisCluster``) serves a Redis Cluster, with
the hash-tagged keys of :func:`~smsroute.redis_protocol.keys`.

.. versionadded:: 0.2.0
.. versionchanged:: 0.2.0
   ``cluster=True`` and ``RedisCluster`` clients; hash-tagged keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from smsroute.aio.types import AsyncClosing
from smsroute.core.freshness import CachePolicy
from smsroute.redis_protocol import (
    CLAIM_LUA,
    RELEASE_LUA,
    UNLOCKED,
    BaseRedisCache,
    Poll,
    connect_options,
)
from smsroute.types import Clock

try:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    aioredis = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["UNLOCKED", "AsyncRedisCache"]


class AsyncRedisCache(AsyncClosing, BaseRedisCache):
    """An AsyncCacheBackend and AsyncSharedFlight on Redis, with a MemoryCache near tier in front.

    The keywords are RedisCache's: ``url_or_client`` is a ``redis://`` URL or
    a ready ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``
    (whose timeouts and retries are then the caller's); ``cluster=True`` reads
    the URL as any one node of a Redis Cluster; ``near_maxsize``/``near_ttl``
    the near tier; ``lock_ttl`` caps a fleet claim;
    ``socket_timeout``/``connect_timeout`` bound one command; after
    ``failures`` consecutive failures Redis is left alone for ``backoff``
    seconds; ``clock`` is wall-clock time, ``monotonic`` times the near tier,
    the back-off and :meth:`wait`. Use it as ``async with``, or call
    :meth:`aclose`.
    """

    def __init__(
        self,
        url_or_client: str | aioredis.Redis | RedisCluster,
        *,
        cluster: bool = False,
        prefix: str = "smsroute:",
        ttl: float | None = None,
        negative_ttl: float | None = None,
        stale_ttl: float | None = None,
        policy: CachePolicy | None = None,
        near_maxsize: int = 10_000,
        near_ttl: float = 60.0,
        lock_ttl: float = 5.0,
        socket_timeout: float = 0.05,
        connect_timeout: float | None = None,
        backoff: float = 1.0,
        failures: int = 3,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        if aioredis is None:
            raise ImportError(
                "AsyncRedisCache needs redis-py: install the extra with"
                " pip install 'smsroute[redis]'"
            )
        super().__init__(
            prefix=prefix,
            ttl=ttl,
            negative_ttl=negative_ttl,
            stale_ttl=stale_ttl,
            policy=policy,
            near_maxsize=near_maxsize,
            near_ttl=near_ttl,
            lock_ttl=lock_ttl,
            backoff=backoff,
            failures=failures,
            clock=clock,
            monotonic=monotonic,
        )
        self._client: aioredis.Redis | RedisCluster
        if isinstance(url_or_client, str):
            options = connect_options(socket_timeout, connect_timeout, Retry)
            if cluster:
                # The asyncio RedisCluster reads the slot map on its first
                # command; it follows MOVED/ASK by itself.
                self._client = RedisCluster.from_url(url_or_client, **options)
            else:
                self._client = aioredis.Redis.from_url(url_or_client, **options)
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
        self._claim_script: AsyncScript = self._client.register_script(CLAIM_LUA)
        self._release_script: AsyncScript = self._client.register_script(RELEASE_LUA)

    # -- AsyncCacheBackend ------------------------------------------------------------

    async def get(self, number: str) -> tuple[int, bool] | None:
        """Return ``(answer, fresh)`` or None; a fresh near-tier hit sends no command."""
        hit = self._near_hit(number)
        if hit is not None:
            return hit
        if self._resting():
            return self._outage_answer(number)
        started = self._now()
        try:
            raw = await self._client.get(self._keys(number)[0])
        except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
            return self._get_failed(number, exc, started)
        return self._got(number, raw)

    async def set(self, number: str, answer: int) -> None:
        """Store an answer in both tiers; when Redis cannot take it, the near tier holds it."""
        if self._resting():
            self._skipped(number, answer)
            return
        value, px = self._value(answer)
        error: Exception | None = None
        started = self._now()
        try:
            await self._client.set(self._keys(number)[0], value, px=px)
        except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
            error = exc
        self._set_done(number, answer, error, started)

    async def delete(self, number: str) -> None:
        """Forget a number in both tiers (Redis is asked even during a back-off)."""
        self._tier.forget(number)
        started = self._now()
        try:
            await self._client.delete(self._keys(number)[0])
        except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
            self._failed("delete", exc, started, write=True)
        else:
            self._wrote()

    # -- AsyncSharedFlight ------------------------------------------------------------

    async def claim(self, number: str, ttl: float) -> str | None:
        """Return a token when this task should ask the upstream (fleet lock held for ``ttl`` s).

        None: another worker (or task) holds the lock, or a fresh answer is
        stored. :data:`UNLOCKED` when Redis cannot be asked.
        """
        if self._resting():
            return UNLOCKED
        token, args = self._claim_args(ttl)
        started = self._now()
        try:
            won = await self._claim_script(keys=list(self._keys(number)), args=args)
        except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
            self._failed("claim", exc, started, write=True)
            return UNLOCKED
        return self._claimed(won, token)

    async def wait(self, number: str, timeout: float) -> tuple[int, bool] | None:
        """Poll Redis up to ``timeout`` s for the claim holder's fresh answer; None if none came."""
        key, lock = self._keys(number)
        poll = Poll(timeout, self._monotonic)
        while not self._resting():
            started = self._now()
            try:
                # Both keys carry the number's hash tag: one slot, fine on a cluster.
                raw, held = await self._client.mget(key, lock)
            except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
                self._failed("wait", exc, started, write=False)
                return None
            hit, again = self._polled(number, raw, held)
            if hit is not None:
                return hit
            pause = poll.pause() if again else None
            if pause is None:
                break
            await asyncio.sleep(pause)
        self._unanswered()
        return None

    async def release(self, number: str, token: str) -> None:
        """Drop the lock ``token`` took on ``number`` if it still holds that token."""
        if token == UNLOCKED:
            return
        started = self._now()
        try:
            await self._release_script(keys=[self._keys(number)[1]], args=[token])
        except Exception as exc:  # noqa: BLE001 - the lock expires by itself
            self._failed("release", exc, started, write=True)
        else:
            self._wrote()

    # -- lifetime ---------------------------------------------------------------------

    @property
    def client(self) -> aioredis.Redis | RedisCluster:
        """Return the redis.asyncio client."""
        return self._client

    async def aclose(self) -> None:
        """Close the connections of a client this cache made (a given client is left open)."""
        if self._owns_client:
            with contextlib.suppress(Exception):
                await self._client.aclose()
