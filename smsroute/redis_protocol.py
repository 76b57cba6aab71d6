"""The Redis side of smsroute's caches, written once: keys, value format, scripts, bookkeeping.

:class:`~smsroute.redis_cache.RedisCache` (redis-py, threads) and
:class:`~smsroute.aio.redis_cache.AsyncRedisCache` (``redis.asyncio``) are
two drivers of :class:`BaseRedisCache`, which holds everything but the
commands: how keys are built (:func:`keys`), how an answer is written and
read back (:func:`dump_value`, :func:`parse_value`), the Lua scripts of the
fleet lock, the near tier, the outage bookkeeping and the counters. So a
synchronous and an asyncio worker of one fleet share answers and
single-flight, and cannot drift apart. ``docs/redis.md`` describes the
protocol for operators.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import math
import secrets
from typing import Any, Final

from smsroute import codec
from smsroute._log import get_logger
from smsroute.cache import MemoryCache
from smsroute.core.freshness import (
    ANSWER_MASK,
    FRESH_SHIFT,
    USED_BIT,
    CachePolicy,
    Hit,
    fresh_until,
)
from smsroute.tiers import Counts, Health, NearTier
from smsroute.types import Clock

try:
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError

    # Errors that are Redis's answer, not a failure to reach it: a refused
    # write (OOM under maxmemory noeviction, READONLY replica, MISCONF) or a
    # key that holds something else (WRONGTYPE).
    _ANSWERED: tuple[type[Exception], ...] = (ResponseError,)
except ImportError:  # pragma: no cover - without redis-py no command is ever sent
    _ANSWERED = ()


def connect_options(
    socket_timeout: float, connect_timeout: float | None, retry_class: Any
) -> dict[str, Any]:
    """Return the ``from_url`` keywords every smsroute Redis client is made with.

    Short timeouts (a send waits on them), and one immediate retry on a
    connection error, so that the first command after a Redis restart
    reconnects instead of failing: redis-py's default (10 attempts with
    back-off) would hold a send for seconds on a dead server. ``retry_class``
    is ``redis.retry.Retry`` or ``redis.asyncio.retry.Retry``.
    """
    timeout = float(socket_timeout)
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout if connect_timeout is None else connect_timeout,
        "retry": retry_class(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        "health_check_interval": 0,
    }


__all__ = [
    "CLAIM_LUA",
    "POLL_MAX",
    "POLL_MIN",
    "RELEASE_LUA",
    "STATS",
    "UNLOCKED",
    "BaseRedisCache",
    "Poll",
    "check_prefix",
    "connect_options",
    "dump_value",
    "expiry",
    "keys",
    "parse_value",
]

_log = get_logger()

UNLOCKED: Final = "unlocked"
"""The token of a claim taken while Redis could not be asked: no lock to release."""
POLL_MIN: Final = 0.005  # first wait() poll: the vendor answers in ~10 ms
POLL_MAX: Final = 0.02
# Whole seconds up to the year 33658 fit in 12 digits; a longer head is not
# ours (and int() refuses strings of more than 4,300 digits with ValueError).
# CLAIM_LUA applies the same bound.
_MAX_HEAD: Final = 12

STATS: Final = (
    "redis_hits",
    "redis_misses",
    "corrupt",
    "errors",
    "refused",
    "skipped",
    "claims_won",
    "claims_lost",
    "waits_answered",
    "waits_unanswered",
)
"""The counters of ``stats()``, in order."""

# claim(): take the lock only when no fresh answer is stored yet. Checking the
# answer in the same atomic step closes the window in which a worker missed,
# the leader stored its answer and released, and the worker then took a new
# lock and paid again. KEYS: answer, lock. ARGV: token, lock PX in ms, now
# (whole wall-clock seconds). Both KEYS carry the number's hash tag, so they
# share a cluster slot (see keys()). The head is read as parse_value reads it
# (ASCII digits, at most 12), so a value that is not ours never looks fresh.
CLAIM_LUA: Final = """
local v = redis.call('GET', KEYS[1])
if v then
    local head = string.match(v, '^(%d+)|')
    if head and #head <= 12 and tonumber(head) > tonumber(ARGV[3]) then
        return 0
    end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return 1
end
return 0
"""

# release(): delete the lock only while it is still ours; it may have expired
# and been taken by another worker since. KEYS: lock. ARGV: token.
RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def keys(prefix: str, number: str) -> tuple[str, str]:
    """Return the answer key and the lock key of ``number`` under ``prefix``.

    The one place keys are built. The number is a Redis Cluster hash tag
    (``smsroute:{13800138000}`` and ``smsroute:{13800138000}:lock``): only the
    part in braces picks the slot, so a number's answer and its lock always
    share a slot, which the claim script (two KEYS) and wait()'s MGET need,
    while different numbers spread over every master.
    """
    tagged = prefix + "{" + number + "}"
    return tagged, tagged + ":lock"


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` when it may head our keys; raise ValueError when it holds a brace.

    Redis Cluster hashes the first ``{...}`` of a key: a brace in the prefix
    would move every key into one slot (or split a number from its lock).
    """
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"prefix must not contain '{{' or '}}' (Redis hash tags): {prefix!r}")
    return prefix


def dump_value(answer: int, until: int) -> str:
    """Return the stored text of ``answer`` fresh until ``until``: ``"<until>|<codec.dumps>"``."""
    return f"{until}|{codec.dumps(answer)}"


def parse_value(raw: object) -> tuple[int, int] | None:
    """Return ``(fresh_until, answer)`` of a stored value, or None when it is not one of ours.

    Never raises: a value written by something else (other bytes, another
    encoding, digits that are not ASCII) is a miss.
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(raw, str):
        return None
    head, sep, tail = raw.partition("|")
    # isascii() too: str.isdigit() accepts "²", which int() refuses, and
    # "١٢", which it reads as 12.
    if not sep or not 0 < len(head) <= _MAX_HEAD or not (head.isascii() and head.isdigit()):
        return None
    answer = codec.loads(tail)
    if answer is None:
        return None
    return int(head), answer


def expiry(policy: CachePolicy, answer: int, now: float) -> tuple[int, int]:
    """Return ``(fresh_until, px)``: when ``answer`` stored at ``now`` turns stale, and its PX.

    Redis keeps an answer for its fresh time plus ``stale_ttl``, a negative
    for ``negative_ttl`` only. Same rounding as every backend, so they agree
    on when an answer turns stale.
    """
    until = fresh_until(now, policy.ttl_for(answer))
    keep = until - now
    if not codec.is_negative(answer):
        keep += policy.stale_ttl
    return until, max(1, math.ceil(keep * 1000))


class Poll:
    """The pauses of one ``wait()``: 5 ms, doubling to 20 ms, never past the timeout."""

    __slots__ = ("_delay", "_end", "_monotonic")

    def __init__(self, timeout: float, monotonic: Clock) -> None:
        self._monotonic = monotonic
        self._end = monotonic() + max(0.0, timeout)
        self._delay = POLL_MIN

    def pause(self) -> float | None:
        """Return how long to sleep before the next poll, or None when the time is up."""
        left = self._end - self._monotonic()
        if left <= 0:
            return None
        delay = min(self._delay, left)
        self._delay = min(self._delay * 2, POLL_MAX)
        return delay


class BaseRedisCache:
    """Everything of a Redis cache but the commands: settings, near tier, health, counters.

    Not for direct use: :class:`~smsroute.redis_cache.RedisCache` and
    :class:`~smsroute.aio.redis_cache.AsyncRedisCache` send the commands and
    hand the outcomes to the ``_…`` methods here.
    """

    def __init__(
        self,
        *,
        prefix: str,
        ttl: float | None,
        negative_ttl: float | None,
        stale_ttl: float | None,
        policy: CachePolicy | None,
        near_maxsize: int,
        near_ttl: float,
        lock_ttl: float,
        backoff: float,
        failures: int,
        clock: Clock,
        monotonic: Clock,
    ) -> None:
        if near_ttl < 0 or lock_ttl <= 0 or backoff < 0 or failures < 1:
            raise ValueError("near_ttl and backoff must be >= 0, lock_ttl > 0, failures >= 1")
        self.policy = CachePolicy.resolve(policy, ttl, negative_ttl, stale_ttl)
        self.prefix = check_prefix(prefix)
        self.near_ttl = float(near_ttl)
        self.lock_ttl = float(lock_ttl)
        self.backoff = float(backoff)
        self.failures = int(failures)
        self._clock = clock
        self._monotonic = monotonic
        self._tier = NearTier(self.policy, maxsize=near_maxsize, ttl=near_ttl, monotonic=monotonic)
        self._near = self._tier.cache
        self._near_data = self._near.entries
        self._counts = Counts()
        # Two judgements of Redis: can it be reached (a failure to reach it
        # starts the back-off, see Health), and does it take writes (a
        # refusal is Redis answering: reads still work, so it never rests).
        self._health = Health(
            backoff=backoff, failures=failures, monotonic=monotonic, counts=self._counts
        )
        self._writes = Health(
            backoff=0.0,
            failures=1,
            monotonic=monotonic,
            counts=self._counts,
            counters=("errors", "refused"),
        )

    # -- what the drivers call ----------------------------------------------------

    def _near_hit(self, number: str) -> Hit | None:
        # The near tier's hit test inlined, as the router's hot path does it:
        # a second method call would cost more than the lookup itself. Entries
        # not yet marked used go through MemoryCache.get, which marks them.
        value = self._near_data.get(number)
        if value is None:
            return None
        if value & USED_BIT and self._monotonic() < value >> FRESH_SHIFT:
            return value & ANSWER_MASK, True
        return self._tier.fresh(number)

    def _keys(self, number: str) -> tuple[str, str]:
        return keys(self.prefix, number)

    def _resting(self) -> bool:
        return self._health.resting()

    def _now(self) -> float:
        # When a command is sent, on the clock Health judges streaks by.
        return self._monotonic()

    def _got(self, number: str, raw: object) -> Hit | None:
        """Return the verdict on a GET's reply; a fresh answer goes to the near tier."""
        self._reached()
        parsed = parse_value(raw) if raw is not None else None
        if parsed is None:
            self._counts.bump("redis_misses" if raw is None else "corrupt")
            self._tier.forget(number)  # the fleet forgot it (or it expired there)
            return None
        self._counts.bump("redis_hits")
        return self._tier.learn(number, *parsed, self._clock())

    def _get_failed(self, number: str, exc: Exception, started: float) -> Hit | None:
        """Return what a get answers when its command failed."""
        if self._failed("get", exc, started, write=False):
            self._tier.forget(number)  # WRONGTYPE: the key is not ours, a miss
            return None
        return self._tier.outage_answer(number)

    def _outage_answer(self, number: str) -> Hit | None:
        return self._tier.outage_answer(number)

    def _value(self, answer: int) -> tuple[str, int]:
        """Return the text to SET for ``answer`` and its PX."""
        until, px = expiry(self.policy, answer, self._clock())
        return dump_value(answer, until), px

    def _skipped(self, number: str, answer: int) -> None:
        """Note a set not sent (back-off): the near tier holds the answer."""
        self._counts.bump("skipped")
        self._tier.hold(number, answer)

    def _set_done(self, number: str, answer: int, exc: Exception | None, started: float) -> None:
        """Note how a SET went: stored, or refused/failed (the near tier then holds it)."""
        if exc is None:
            self._wrote()
            self._tier.stored(number, answer)
        else:
            self._failed("set", exc, started, write=True)
            # The shared tier did not take it: keep it here for its whole TTL,
            # or this worker would pay for it again every near_ttl.
            self._tier.hold(number, answer)

    def _claim_args(self, ttl: float) -> tuple[str, list[Any]]:
        """Return a new token and the claim script's ARGV."""
        token = secrets.token_hex(8)
        px = max(1, math.ceil(min(ttl, self.lock_ttl) * 1000))
        return token, [token, px, int(self._clock())]

    def _claimed(self, won: object, token: str) -> str | None:
        """Return the claim's token when the script took the lock, else None."""
        if won:
            self._wrote()
            self._counts.bump("claims_won")
            return token
        self._reached()
        self._counts.bump("claims_lost")
        return None

    def _polled(self, number: str, raw: object, held: object) -> tuple[Hit | None, bool]:
        """Return a wait poll's fresh hit, and whether to poll again (the lock is still held)."""
        self._reached()
        parsed = parse_value(raw) if raw is not None else None
        if parsed is not None:
            hit = self._tier.learn(number, *parsed, self._clock())
            if hit is not None and hit[1]:
                self._counts.bump("waits_answered")
                return hit, False
        elif raw is not None:
            self._counts.bump("corrupt")
        return None, held is not None

    def _unanswered(self) -> None:
        self._counts.bump("waits_unanswered")

    def _failed(self, op: str, exc: Exception, started: float, *, write: bool) -> bool:
        """Count a failed command; return True when it was Redis's answer, not an outage."""
        if isinstance(exc, _ANSWERED):
            self._reached()
            if not write:
                self._counts.bump("corrupt")
            elif self._writes.failed(started):
                self._log_down(op, exc, 0.0)
            return True
        if self._health.failed(started):
            self._log_down(op, exc, self.backoff)
        return False

    def _reached(self) -> None:
        errors = self._health.succeeded()
        if errors is not None:
            _log.info("cache.redis.up", errors=errors)

    def _wrote(self) -> None:
        self._reached()
        errors = self._writes.succeeded()
        if errors is not None:
            _log.info("cache.redis.up", errors=errors)

    @staticmethod
    def _log_down(op: str, exc: Exception, backoff: float) -> None:
        # One warning per outage: a dead Redis under load would otherwise log
        # once per send. A refused write (backoff 0) is its own outage.
        _log.warning(
            "cache.redis.down",
            op=op,
            error=type(exc).__name__,
            detail=str(exc)[:120],
            backoff=backoff,
        )

    # -- public ---------------------------------------------------------------------

    @property
    def errors(self) -> int:
        """Return how many Redis commands failed (or were refused) since the cache was made."""
        return self._counts["errors"]

    @property
    def available(self) -> bool:
        """Return False during an outage: Redis unreachable, or refusing writes."""
        return self._health.available and self._writes.available

    @property
    def near(self) -> MemoryCache:
        """Return the in-process near tier (a MemoryCache; the router reads it directly)."""
        return self._near

    def stats(self) -> dict[str, Any]:
        """Return counters: Redis hits and misses, corrupt values, errors, refused writes, ..."""
        out: dict[str, Any] = dict(self._counts.snapshot(STATS))
        out["near_size"] = len(self._near)
        out["available"] = self.available
        return out

    def clear_near(self) -> None:
        """Forget the near tier (Redis keeps its answers)."""
        self._near.clear()

    def __len__(self) -> int:
        return len(self._near)

    def __repr__(self) -> str:
        name, state = type(self).__name__, "up" if self.available else "down"
        return f"{name}(prefix={self.prefix!r}, near={len(self._near)}, redis {state})"
