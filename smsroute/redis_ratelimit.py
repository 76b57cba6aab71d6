"""RedisRateLimit: one vendor rate limit for a whole fleet, a token bucket kept in Redis.

A :class:`~smsroute.ratelimit.RateLimit` keeps one process under ``qps``;
ten workers with one each would send ten times that to the vendor, whose
limit is per key. :class:`RedisRateLimit` keeps the bucket in one Redis hash
(``key``, default ``smsroute:{ratelimit}``) and takes a token with one Lua
script, one round trip per token. The script reads the time from Redis
(``TIME``), so the hosts' clocks do not matter, only Redis's own. One key,
so it runs as it is on a Redis Cluster.

Redis must not fail a send here either. When it cannot be reached (or
answers with an error) the limiter falls back to a local RateLimit of
``qps * local_share`` tokens a second, logs one warning for the outage
(``cache.redis.down`` with ``op="ratelimit"``) and asks Redis again after
``backoff`` seconds; the first success logs ``cache.redis.up``. Set ``local_share`` to about
1 / the number of workers: the fleet then stays near its limit during an
outage (the default, 1/4, suits four workers; fewer under-use it).

Needs redis-py: ``pip install 'smsroute[redis]'``.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Final

from smsroute._log import get_logger
from smsroute.ratelimit import RateLimit, turn
from smsroute.redis_protocol import connect_options
from smsroute.tiers import Counts, Health
from smsroute.types import Clock

try:
    import redis
    from redis.cluster import RedisCluster
    from redis.retry import Retry
except ImportError:  # pragma: no cover - without redis-py the class refuses to build
    redis = None  # type: ignore[assignment]

__all__ = ["TAKE_LUA", "RedisRateLimit"]

_log = get_logger()

# Take one token. KEYS: the bucket (a hash of tokens and stamp). ARGV: qps,
# burst, max_wait (seconds). The same arithmetic as core.ratelimit.TokenBucket,
# on Redis's clock: a token now (0), a token reserved after a wait (the bucket
# goes negative, so later callers queue behind), or nil when the wait would
# pass max_wait (nothing taken). Numbers leave as strings: Redis truncates a
# Lua number reply to an integer. The hash expires once it would be full
# again, so an idle fleet leaves nothing behind.
TAKE_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local qps, burst, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens, stamp = tonumber(state[1]), tonumber(state[2])
if tokens == nil or stamp == nil then
    tokens, stamp = burst, now
end
if now > stamp then
    tokens = math.min(burst, tokens + (now - stamp) * qps)
    stamp = now
end
local wait = 0
if tokens < 1 then
    wait = (1 - tokens) / qps
    if wait > max_wait then
        return false
    end
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'stamp', string.format('%.6f', stamp))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / qps * 1000) + 1000)
return string.format('%.6f', wait)
"""


class RedisRateLimit:
    """A RateLimiter shared by every worker on one Redis key: ``qps`` a second, ``burst`` saved.

    ``url_or_client`` is a ``redis://`` URL (``cluster=True``: any node of a
    Redis Cluster) or a ready ``redis.Redis``/``RedisCluster``. ``burst``
    defaults to qps/10 (at least 1), as for RateLimit. Every worker of one
    ``key`` must use the same ``qps`` and ``burst``. ``socket_timeout`` bounds
    one round trip; when it fails, a local RateLimit of ``qps * local_share``
    answers for ``backoff`` seconds. ``monotonic`` times the back-off and the
    local bucket. Thread-safe; :meth:`reserve` blocks for one round trip, so
    from asyncio it costs the loop that much (the RateLimiter protocol is
    synchronous).
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis | RedisCluster,
        qps: float,
        *,
        burst: float | None = None,
        key: str = "smsroute:{ratelimit}",
        cluster: bool = False,
        local_share: float = 0.25,
        socket_timeout: float = 0.05,
        backoff: float = 1.0,
        monotonic: Clock = time.monotonic,
    ) -> None:
        if redis is None:
            raise ImportError(
                "RedisRateLimit needs redis-py: install the extra with"
                " pip install 'smsroute[redis]'"
            )
        if not 0 < local_share <= 1:
            raise ValueError("local_share must be in (0, 1]")
        # The local bucket validates qps and burst, and is the outage answer.
        self._local = RateLimit(qps * local_share, burst, clock=monotonic)
        self.qps = float(qps)
        self.burst = max(1.0, self.qps / 10) if burst is None else float(burst)
        if not math.isfinite(self.burst) or self.burst < 1:
            raise ValueError("burst must be at least 1")
        self.key = key
        self.local_share = float(local_share)
        self._monotonic = monotonic
        self._counts = Counts()
        self._health = Health(backoff=backoff, failures=1, monotonic=monotonic, counts=self._counts)
        self._client: redis.Redis | RedisCluster
        if isinstance(url_or_client, str):
            factory = RedisCluster if cluster else redis.Redis
            self._client = factory.from_url(
                url_or_client, **connect_options(socket_timeout, None, Retry)
            )
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
        self._take = self._client.register_script(TAKE_LUA)

    @property
    def local(self) -> RateLimit:
        """Return the local RateLimit that answers while Redis cannot be asked."""
        return self._local

    @property
    def available(self) -> bool:
        """Return False during an outage of Redis (the local limit answers)."""
        return self._health.available

    def reserve(self, max_wait: float) -> float | None:
        """Return the seconds to wait for a fleet token (reserving it), or None if too late."""
        if self._health.resting():
            self._counts.bump("local")
            return self._local.reserve(max_wait)
        started = self._monotonic()
        try:
            reply = self._take(keys=[self.key], args=[self.qps, self.burst, max(0.0, max_wait)])
        except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
            if self._health.failed(started):
                # The caches' event with op="ratelimit": an outage of Redis is
                # one event for operators, whichever user of Redis saw it.
                _log.warning(
                    "cache.redis.down",
                    op="ratelimit",
                    error=type(exc).__name__,
                    detail=str(exc)[:120],
                    backoff=self._health.backoff,
                )
            self._counts.bump("local")
            return self._local.reserve(max_wait)
        errors = self._health.succeeded()
        if errors is not None:
            _log.info("cache.redis.up", op="ratelimit", errors=errors)
        if reply is None:
            self._counts.bump("refused")
            return None
        self._counts.bump("granted")
        return float(reply)

    def acquire(self, max_wait: float, *, sleep: object = time.sleep) -> None:
        """Wait for a token; raise Throttled when none can come within ``max_wait`` seconds."""
        wait = turn(self, max_wait, f"fleet rate limit of {self.qps:g}/s")
        if wait > 0:
            sleep(wait)  # type: ignore[operator]

    async def aacquire(self, max_wait: float) -> None:
        """Await a token (the reserving round trip itself blocks); raise Throttled if none comes."""
        wait = turn(self, max_wait, f"fleet rate limit of {self.qps:g}/s")
        if wait > 0:
            await asyncio.sleep(wait)

    def stats(self) -> dict[str, int]:
        """Return counters: tokens granted by Redis, refused, answered locally, errors."""
        return self._counts.snapshot(("granted", "refused", "local", "errors"))

    def close(self) -> None:
        """Close the connections of a client this limiter made (a given client is left open)."""
        if self._owns_client:
            with contextlib.suppress(Exception):
                self._client.close()

    def __repr__(self) -> str:
        state = "up" if self.available else "down"
        return f"RedisRateLimit(qps={self.qps:g}, burst={self.burst:g}, key={self.key!r}, {state})"
