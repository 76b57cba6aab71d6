"""RedisCache: paid answers shared by a fleet of gateway workers, with an in-process tier.

Two tiers. A small :class:`~smsroute.cache.MemoryCache` (the *near tier*)
sits in front of Redis, so the hit path of a hot number never leaves the
process; its entries stay fresh for only ``near_ttl`` seconds (on the
monotonic clock), so a worker sees what the fleet changed (a new answer, a
deletion after WrongCarrier) within that time. Behind it, Redis keeps every
answer under ``prefix + "{" + number + "}"`` as compact text::

    "1767225600|113湖北-宜昌"    fresh-until (wall-clock seconds) | codec.dumps(answer)

and expires it by its own TTL: fresh time plus ``stale_ttl`` for answers,
``negative_ttl`` only for numbers the vendor does not know. The fresh/stale
verdict is computed on read from fresh-until and the cache's ``clock``, so
the semantics are those of MemoryCache. Text, not answer codes: area ids are
local to a process (see :mod:`smsroute.codec`). Keys, values and scripts are
:mod:`smsroute.redis_protocol`'s, shared with the asyncio
:class:`~smsroute.aio.redis_cache.AsyncRedisCache`: the two serve one fleet.

Redis is never allowed to fail a send. When it is down, slow or restarting,
``get`` answers from the near tier (or None), ``set`` and ``delete`` keep the
near tier up to date and drop the Redis half; each failure is counted
(:attr:`RedisCache.errors`, :meth:`RedisCache.stats`) and logged once per
outage. After ``failures`` consecutive failures (a sick Redis, not one slow
reply of a busy one) Redis is left alone for ``backoff`` seconds, so a dead
server costs one short timeout per second rather than one per send; redis-py
reconnects by itself on the first command after that. A Redis that answers
but refuses writes (a READONLY replica, OOM under ``noeviction``, MISCONF)
is no outage of reads: the near tier then holds this worker's answers for
their whole TTL, so it pays no more than it would with a MemoryCache.

Fleet-wide single-flight (:class:`~smsroute.types.SharedFlight`): the worker
that misses first takes a short lock (``prefix + "{" + number + "}:lock"``,
``SET NX PX``) and asks the upstream; the others poll Redis for its answer within
their deadline. ``docs/redis.md`` has the whole protocol.

Needs redis-py: ``pip install 'smsroute[redis]'``. One Redis server (or a
primary with replicas), or a Redis Cluster: ``RedisCache(url, cluster=True)``
with the URL of any node, or a ready ``redis.cluster.RedisCluster``. Keys are
hash-tagged by number (``prefix + "{" + number + "}"``, the lock that plus
``":lock"``), so a number's answer and lock share a slot and no command ever
spans two slots.

.. versionadded:: 0.1.0
.. versionchanged:: 0.2.0
   ``failures``; the near tier runs on ``monotonic``; refused writes are held
   in the near tier; values that are not ours read as misses (``corrupt``).
.. versionchanged:: 0.2.0
   ``cluster=True`` and ``RedisCluster`` clients; hash-tagged keys (keys of
   0.2 are ignored: see docs/redis.md, "Upgrading to hash-tagged keys").
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

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
    import redis
    from redis.cluster import RedisCluster
    from redis.retry import Retry
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    redis = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from redis.commands.core import Script

__all__ = ["UNLOCKED", "RedisCache"]


class RedisCache(BaseRedisCache):
    """A CacheBackend and SharedFlight on Redis, with a MemoryCache near tier in front.

    ``url_or_client`` is a ``redis://`` URL or a ready ``redis.Redis`` or
    ``redis.cluster.RedisCluster`` (whose timeouts and retries are then the
    caller's: keep them short, a send waits on them). ``cluster=True`` reads
    the URL as any one node of a Redis Cluster. ``ttl``, ``negative_ttl``,
    ``stale_ttl`` and ``policy`` mean what they mean for MemoryCache.
    ``near_maxsize`` and ``near_ttl`` size the near tier and bound how long it
    answers without asking Redis (``near_ttl=0``: every read goes to Redis).
    ``lock_ttl`` caps how long a fleet claim outlives a worker that died
    holding it. ``socket_timeout`` (and ``connect_timeout``, default the same)
    bound one Redis command; after ``failures`` consecutive failures Redis is
    left alone for ``backoff`` seconds. ``clock`` is wall-clock time (answers
    are shared between hosts); ``monotonic`` times the near tier, the back-off
    and the single-flight wait, and ``sleep`` is that wait's pause.
    Thread-safe; one instance per process is enough.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis | RedisCluster,
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
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if redis is None:
            raise ImportError(
                "RedisCache needs redis-py: install the extra with pip install 'smsroute[redis]'"
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
        self._sleep = sleep
        self._client: redis.Redis | RedisCluster
        if isinstance(url_or_client, str):
            options = connect_options(socket_timeout, connect_timeout, Retry)
            if cluster:
                # RedisCluster asks the node for the slot map now (and raises if
                # it cannot); it follows MOVED/ASK by itself and, on a
                # connection error, refreshes the map and retries once.
                self._client = RedisCluster.from_url(url_or_client, **options)
            else:
                # from_url does not connect: a cache built while Redis is down is fine.
                self._client = redis.Redis.from_url(url_or_client, **options)
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
        self._claim_script: Script = self._client.register_script(CLAIM_LUA)
        self._release_script: Script = self._client.register_script(RELEASE_LUA)

    # -- CacheBackend ---------------------------------------------------------------

    def get(self, number: str) -> tuple[int, bool] | None:
        """Return ``(answer, fresh)`` or None; a fresh near-tier hit does not touch Redis."""
        hit = self._near_hit(number)
        if hit is not None:
            return hit
        if self._resting():
            return self._outage_answer(number)
        started = self._now()
        try:
            raw = self._client.get(self._keys(number)[0])
        except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
            return self._get_failed(number, exc, started)
        return self._got(number, raw)

    def set(self, number: str, answer: int) -> None:
        """Store an answer in both tiers; when Redis cannot take it, the near tier holds it."""
        if self._resting():
            self._skipped(number, answer)
            return
        value, px = self._value(answer)
        error: Exception | None = None
        started = self._now()
        try:
            self._client.set(self._keys(number)[0], value, px=px)
        except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
            error = exc
        self._set_done(number, answer, error, started)

    def delete(self, number: str) -> None:
        """Forget a number in both tiers."""
        # Redis is asked even during a back-off: deletes are rare, and a lost
        # one leaves the fleet serving an answer a gateway just refused.
        self._tier.forget(number)
        started = self._now()
        try:
            self._client.delete(self._keys(number)[0])
        except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
            self._failed("delete", exc, started, write=True)
        else:
            self._wrote()

    # -- SharedFlight ---------------------------------------------------------------

    def claim(self, number: str, ttl: float) -> str | None:
        """Return a token when this worker should ask the upstream (fleet lock held for ``ttl`` s).

        None means another worker holds the lock or a fresh answer is already
        stored: :meth:`wait` picks it up. With Redis unreachable (or refusing
        writes) every worker claims (:data:`UNLOCKED`, a token that holds no
        lock), as it would without a shared cache.
        """
        if self._resting():
            return UNLOCKED
        token, args = self._claim_args(ttl)
        started = self._now()
        try:
            won = self._claim_script(keys=list(self._keys(number)), args=args)
        except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
            self._failed("claim", exc, started, write=True)
            return UNLOCKED
        return self._claimed(won, token)

    def wait(self, number: str, timeout: float) -> tuple[int, bool] | None:
        """Poll Redis up to ``timeout`` s for the claim holder's fresh answer; None if none came.

        Returns early (None) when the lock disappears without an answer: the
        holder's lookup failed, and this worker may ask for itself.
        """
        key, lock = self._keys(number)
        poll = Poll(timeout, self._monotonic)
        while not self._resting():
            started = self._now()
            try:
                # One MGET of two keys is fine on a cluster: both carry the
                # number's hash tag, so they share a slot (keys()).
                raw, held = self._client.mget(key, lock)
            except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
                self._failed("wait", exc, started, write=False)
                return None
            hit, again = self._polled(number, raw, held)
            if hit is not None:
                return hit
            pause = poll.pause() if again else None
            if pause is None:
                break
            self._sleep(pause)
        self._unanswered()
        return None

    def release(self, number: str, token: str) -> None:
        """Drop the lock ``token`` took on ``number`` if it is still held; a no-op otherwise.

        The lock is deleted only while it still holds this token: a claim that
        expired and was retaken by another worker (or another task of this
        process) is left alone.
        """
        if token == UNLOCKED:
            return
        started = self._now()
        try:
            self._release_script(keys=[self._keys(number)[1]], args=[token])
        except Exception as exc:  # noqa: BLE001 - the lock expires by itself
            self._failed("release", exc, started, write=True)
        else:
            self._wrote()

    # -- lifetime ---------------------------------------------------------------------

    @property
    def client(self) -> redis.Redis | RedisCluster:
        """Return the redis-py client."""
        return self._client

    def close(self) -> None:
        """Close the connections of a client this cache made (a given client is left open)."""
        if self._owns_client:
            with contextlib.suppress(Exception):
                self._client.close()

    def __enter__(self) -> RedisCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
