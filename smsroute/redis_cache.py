"""RedisCache: paid answers shared by a fleet of gateway workers, with an in-process tier.

Two tiers. A small :class:`~smsroute.cache.MemoryCache` (the *near tier*)
sits in front of Redis, so the hit path of a hot number never leaves the
process; its entries stay fresh for only ``near_ttl`` seconds, so a worker
sees what the fleet changed (a new answer, a deletion after WrongCarrier)
within that time. Behind it, Redis keeps every answer under
``prefix + number`` as compact text::

    "1767225600|113湖北-宜昌"    fresh-until (wall-clock seconds) | codec.dumps(answer)

and expires it by its own TTL: fresh time plus ``stale_ttl`` for answers,
``negative_ttl`` only for numbers the vendor does not know. The fresh/stale
verdict is computed on read from fresh-until and the cache's ``clock``, so
the semantics are those of MemoryCache. Text, not answer codes: area ids are
local to a process (see :mod:`smsroute.codec`).

Redis is never allowed to fail a send. When it is down, slow or restarting,
``get`` answers from the near tier (or None), ``set`` and ``delete`` keep the
near tier up to date and drop the Redis half; each failure is counted
(:attr:`RedisCache.errors`, :meth:`RedisCache.stats`) and logged once per
outage. After a failure Redis is left alone for ``backoff`` seconds, so a dead
server costs one short timeout per second rather than one per send; redis-py
reconnects by itself on the first command after that.

Fleet-wide single-flight (:class:`~smsroute.types.SharedFlight`): the worker
that misses first takes a short lock (``prefix + "lock:" + number``, ``SET NX
PX``) and asks the upstream; the others poll Redis for its answer within
their deadline.

Needs redis-py: ``pip install 'smsroute[redis]'``. A single Redis server (or
a primary with replicas) is assumed; Redis Cluster is not supported, since
the lock script touches two keys.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import math
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from smsroute import codec
from smsroute._log import get_logger
from smsroute.cache import MemoryCache
from smsroute.core.freshness import ANSWER_MASK, FRESH_SHIFT, USED_BIT, CachePolicy, fresh_until
from smsroute.types import Clock

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    redis = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from redis.commands.core import Script

__all__ = ["RedisCache"]

_log = get_logger()

UNLOCKED: Final = "unlocked"
"""The token of a claim taken while Redis could not be asked: no lock to release."""
_POLL_MIN: Final = 0.005  # first wait() poll: the vendor answers in ~10 ms
_POLL_MAX: Final = 0.02

# claim(): take the lock only when no fresh answer is stored yet. Checking the
# answer in the same atomic step closes the window in which a worker missed,
# the leader stored its answer and released, and the worker then took a new
# lock and paid again. ARGV: token, lock PX in ms, now (whole seconds).
_CLAIM_LUA: Final = """
local v = redis.call('GET', KEYS[1])
if v then
    local fresh_until = tonumber(string.match(v, '^(%d+)|'))
    if fresh_until and fresh_until > tonumber(ARGV[3]) then
        return 0
    end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return 1
end
return 0
"""

# release(): delete the lock only while it is still ours; it may have expired
# and been taken by another worker since.
_RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def _parse(raw: object) -> tuple[int, int] | None:
    """Return ``(fresh_until, answer)`` of a stored value, or None when it is not one."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(raw, str):
        return None
    head, sep, tail = raw.partition("|")
    if not sep or not head.isdigit():
        return None
    answer = codec.loads(tail)
    if answer is None:
        return None
    return int(head), answer


class RedisCache:
    """A CacheBackend and SharedFlight on Redis, with a MemoryCache near tier in front.

    ``url_or_client`` is a ``redis://`` URL or a ready ``redis.Redis`` (whose
    timeouts and retries are then the caller's: keep them short, a send waits
    on them). ``ttl``, ``negative_ttl``, ``stale_ttl`` and ``policy`` mean what
    they mean for MemoryCache. ``near_maxsize`` and ``near_ttl`` size the
    near tier and bound how long it answers without asking Redis
    (``near_ttl=0``: every read goes to Redis). ``lock_ttl`` caps how long a
    fleet claim outlives a worker that died holding it. ``socket_timeout``
    (and ``connect_timeout``, default the same) bound one Redis command;
    ``backoff`` is how long Redis is left alone after a failure. ``clock`` is
    wall-clock time (answers are shared between hosts); ``monotonic`` and
    ``sleep`` time the back-off and the single-flight wait. Thread-safe; one
    instance per process is enough.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
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
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if redis is None:
            raise ImportError(
                "RedisCache needs redis-py: install the extra with pip install 'smsroute[redis]'"
            )
        if near_ttl < 0 or lock_ttl <= 0 or backoff < 0:
            raise ValueError("near_ttl and backoff must be >= 0, lock_ttl > 0")
        self.policy = CachePolicy.resolve(policy, ttl, negative_ttl, stale_ttl)
        self.prefix = prefix
        self.near_ttl = float(near_ttl)
        self.lock_ttl = float(lock_ttl)
        self.backoff = float(backoff)
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        # The near tier is fresh for near_ttl at most, and never longer than
        # the shared policy. Its stale window (one full ttl) matters only
        # while Redis cannot be asked: the answers it holds are then served as
        # fresh, about as long as a plain MemoryCache would have served them,
        # rather than paying the vendor again for every hot number once per
        # near_ttl until Redis is back.
        self._near = MemoryCache(
            near_maxsize,
            policy=CachePolicy(
                ttl=min(self.near_ttl, self.policy.ttl),
                negative_ttl=min(self.near_ttl, self.policy.negative_ttl),
                stale_ttl=self.policy.ttl,
            ),
            clock=clock,
        )
        self._near_get = self._near.get
        self._near_data = self._near.entries
        if isinstance(url_or_client, str):
            timeout = float(socket_timeout)
            # from_url does not connect: a cache built while Redis is down is fine.
            # redis-py's default retry (10 attempts with back-off) would hold a
            # send for seconds on a dead server; one immediate retry on a
            # connection error is kept, so that the first command after a
            # Redis restart reconnects instead of failing.
            self._client: redis.Redis = redis.Redis.from_url(
                url_or_client,
                socket_timeout=timeout,
                socket_connect_timeout=timeout if connect_timeout is None else connect_timeout,
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
                health_check_interval=0,
            )
            self._owns_client = True
        else:
            self._client = url_or_client
            self._owns_client = False
        self._claim_script: Script = self._client.register_script(_CLAIM_LUA)
        self._release_script: Script = self._client.register_script(_RELEASE_LUA)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._down_until = 0.0
        self._outage = False

    # -- CacheBackend ---------------------------------------------------------------

    def get(self, number: str) -> tuple[int, bool] | None:
        """Return ``(answer, fresh)`` or None; a fresh near-tier hit does not touch Redis."""
        # The near tier's hit test, inlined as the router's hot path does it:
        # a second method call would cost more than the lookup itself. Entries
        # not yet marked used go through MemoryCache.get, which marks them.
        value = self._near_data.get(number)
        if value is not None and value & USED_BIT and self._clock() < value >> FRESH_SHIFT:
            return value & ANSWER_MASK, True
        hit = self._near_get(number)
        if hit is not None and hit[1]:
            return hit
        return self._get_far(number, hit)

    def _get_far(self, number: str, near: tuple[int, bool] | None) -> tuple[int, bool] | None:
        if self._resting():
            return self._outage_answer(near)
        try:
            raw = self._client.get(self.prefix + number)
        except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
            self._failed("get", exc)
            return self._outage_answer(near)
        self._succeeded()
        parsed = _parse(raw) if raw is not None else None
        if parsed is None:
            self._bump("redis_misses" if raw is None else "corrupt")
            if near is not None:
                self._near.delete(number)  # the fleet forgot it (or it expired there)
            return None
        self._bump("redis_hits")
        return self._judge(number, *parsed)

    def _judge(self, number: str, until: int, answer: int) -> tuple[int, bool] | None:
        # The verdict every backend gives, on the shared fresh-until.
        now = self._clock()
        hit = self.policy.hit(until, answer, now)
        if (
            hit is not None
            and hit[1]
            and self.near_ttl > 0
            and until - now >= self._near.policy.ttl_for(answer)
        ):
            self._near.set(number, answer)
        return hit

    @staticmethod
    def _outage_answer(near: tuple[int, bool] | None) -> tuple[int, bool] | None:
        # Redis cannot be asked. The near tier's stale window holds only
        # positive answers that were fresh when it learned them; see __init__.
        if near is None:
            return None
        return near[0], True

    def set(self, number: str, answer: int) -> None:
        """Store an answer in both tiers; a Redis failure only drops the shared copy."""
        if self.near_ttl > 0:
            self._near.set(number, answer)
        if self._resting():
            self._bump("skipped")
            return
        now = self._clock()
        # Same rounding as every backend, so they agree on when an answer turns stale.
        until = fresh_until(now, self.policy.ttl_for(answer))
        keep = until - now
        if not codec.is_negative(answer):
            keep += self.policy.stale_ttl
        value = f"{until}|{codec.dumps(answer)}"
        try:
            self._client.set(self.prefix + number, value, px=max(1, math.ceil(keep * 1000)))
        except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
            self._failed("set", exc)
        else:
            self._succeeded()

    def delete(self, number: str) -> None:
        """Forget a number in both tiers."""
        # Redis is asked even during a back-off: deletes are rare, and a lost
        # one leaves the fleet serving an answer a gateway just refused.
        self._near.delete(number)
        try:
            self._client.delete(self.prefix + number)
        except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
            self._failed("delete", exc)
        else:
            self._succeeded()

    # -- SharedFlight ---------------------------------------------------------------

    def claim(self, number: str, ttl: float) -> str | None:
        """Return a token when this worker should ask the upstream (fleet lock held for ``ttl`` s).

        None means another worker holds the lock or a fresh answer is already
        stored: :meth:`wait` picks it up. With Redis unreachable every worker
        claims (a token that holds no lock), as it would without a shared cache.
        """
        if self._resting():
            return UNLOCKED
        token = secrets.token_hex(8)
        px = max(1, math.ceil(min(ttl, self.lock_ttl) * 1000))
        try:
            won = self._claim_script(
                keys=[self.prefix + number, self.prefix + "lock:" + number],
                args=[token, px, int(self._clock())],
            )
        except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
            self._failed("claim", exc)
            return UNLOCKED
        self._succeeded()
        if won:
            self._bump("claims_won")
            return token
        self._bump("claims_lost")
        return None

    def wait(self, number: str, timeout: float) -> tuple[int, bool] | None:
        """Poll Redis up to ``timeout`` s for the claim holder's fresh answer; None if none came.

        Returns early (None) when the lock disappears without an answer: the
        holder's lookup failed, and this worker may ask for itself.
        """
        key, lock = self.prefix + number, self.prefix + "lock:" + number
        end = self._monotonic() + max(0.0, timeout)
        delay = _POLL_MIN
        while not self._resting():
            try:
                raw, held = self._client.mget(key, lock)
            except Exception as exc:  # noqa: BLE001 - Redis must never fail a send
                self._failed("wait", exc)
                return None
            self._succeeded()
            parsed = _parse(raw) if raw is not None else None
            if parsed is not None:
                hit = self._judge(number, *parsed)
                if hit is not None and hit[1]:
                    self._bump("waits_answered")
                    return hit
            if held is None:
                break
            left = end - self._monotonic()
            if left <= 0:
                break
            self._sleep(min(delay, left))
            delay = min(delay * 2, _POLL_MAX)
        self._bump("waits_unanswered")
        return None

    def release(self, number: str, token: str) -> None:
        """Drop the lock ``token`` took on ``number`` if it is still held; a no-op otherwise.

        The lock is deleted only while it still holds this token: a claim that
        expired and was retaken by another worker (or another task of this
        process) is left alone.
        """
        if token == UNLOCKED:
            return
        try:
            self._release_script(keys=[self.prefix + "lock:" + number], args=[token])
        except Exception as exc:  # noqa: BLE001 - the lock expires by itself
            self._failed("release", exc)
        else:
            self._succeeded()

    # -- health -------------------------------------------------------------------

    def _resting(self) -> bool:
        # True during the back-off after a failure: Redis is not asked.
        return self._down_until > 0.0 and self._monotonic() < self._down_until

    def _failed(self, op: str, exc: BaseException) -> None:
        with self._lock:
            self._counts["errors"] += 1
            self._down_until = self._monotonic() + self.backoff
            first = not self._outage
            self._outage = True
        if first:
            # One warning per outage: a dead Redis under load would otherwise
            # log once per send.
            _log.warning(
                "cache.redis.down",
                op=op,
                error=type(exc).__name__,
                detail=str(exc)[:120],
                backoff=self.backoff,
            )

    def _succeeded(self) -> None:
        if not self._outage:
            return
        with self._lock:
            was, self._outage = self._outage, False
            self._down_until = 0.0
            errors = self._counts["errors"]
        if was:
            _log.info("cache.redis.up", errors=errors)

    def _bump(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    @property
    def errors(self) -> int:
        """Return how many Redis commands failed since the cache was made."""
        return self._counts["errors"]

    @property
    def available(self) -> bool:
        """Return False while the cache believes Redis is unreachable (after a failure)."""
        return not self._outage

    @property
    def near(self) -> MemoryCache:
        """Return the in-process near tier (a MemoryCache; the router reads it directly)."""
        return self._near

    @property
    def client(self) -> redis.Redis:
        """Return the redis-py client."""
        return self._client

    def stats(self) -> dict[str, Any]:
        """Return counters: Redis hits and misses, errors, skipped writes, claims, waits, sizes."""
        with self._lock:
            counts = dict(self._counts)
        out: dict[str, Any] = {
            name: counts.get(name, 0)
            for name in (
                "redis_hits",
                "redis_misses",
                "corrupt",
                "errors",
                "skipped",
                "claims_won",
                "claims_lost",
                "waits_answered",
                "waits_unanswered",
            )
        }
        out["near_size"] = len(self._near)
        out["available"] = not self._outage
        return out

    def __len__(self) -> int:
        return len(self._near)

    def __repr__(self) -> str:
        state = "up" if not self._outage else "down"
        return f"RedisCache(prefix={self.prefix!r}, near={len(self._near)}, redis {state})"

    def clear_near(self) -> None:
        """Forget the near tier (Redis keeps its answers)."""
        self._near.clear()

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
