"""Cache freshness, written once: the TTL policy, ``fresh_until`` rounding and the verdict.

Every backend (MemoryCache, SqliteCache, RedisCache) stores an answer with a
*fresh-until* time and judges it on read with :func:`judge`, so they agree to
the second on when an answer turns stale and when it is gone.

Default TTLs, and why:

* ``ttl`` = 7 days. Porting takes days and a number can be ported again only
  120 days after its last port, so an answer rarely changes within a week;
  the exception (a cancelled number reissued to a new subscriber, back on
  its original operator) is healed by the router when a gateway raises
  WrongCarrier. A week keeps the paid-query bill near one query per number
  per week for a steady audience.
* ``negative_ttl`` = 1 hour. "Vendor does not know this number" (-4) is often
  a number that is being activated or moved: ask again soon.
* ``stale_ttl`` = 30 days. An expired answer is still a far better guess
  than the segment table (it knows about ports): it is kept this much longer
  and served only when the upstream fails.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Final

from smsroute import codec

__all__ = [
    "ANSWER_MASK",
    "DAY",
    "FRESH_SHIFT",
    "USED_BIT",
    "CachePolicy",
    "Hit",
    "Verdict",
    "fresh_until",
    "is_fresh_answer",
    "judge",
    "pack",
]

DAY: Final = 86400.0

Hit = tuple[int, bool]
"""What a backend's ``get`` answers: ``(answer code, fresh)``; None is a miss."""


class Verdict(enum.Enum):
    """What a stored answer is worth now."""

    FRESH = "fresh"
    """Serve it: no query."""
    NEGATIVE = "negative"
    """The vendor recently said it does not know the number: no query, fall back."""
    STALE = "stale"
    """Past its TTL: ask the vendor, and serve it only if the vendor fails."""
    MISS = "miss"
    """Nothing usable: ask the vendor."""


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How long answers stay fresh, how long negatives live, how long stale ones are kept."""

    ttl: float = 7 * DAY
    negative_ttl: float = 3600.0
    stale_ttl: float = 30 * DAY

    def __post_init__(self) -> None:
        for name in ("ttl", "negative_ttl", "stale_ttl"):
            value = getattr(self, name)
            # Not infinite or NaN either: expiry times are stored as whole
            # seconds, and a set() that cannot store would silently cache nothing.
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number of seconds, not negative")

    def ttl_for(self, answer: int) -> float:
        """Return how long ``answer`` stays fresh."""
        return self.negative_ttl if codec.is_negative(answer) else self.ttl

    def keep_for(self, answer: int) -> float:
        """Return how long ``answer`` is kept at all (fresh plus stale)."""
        return self.negative_ttl if codec.is_negative(answer) else self.ttl + self.stale_ttl

    def fresh_until(self, answer: int, now: float) -> int:
        """Return the whole second until which ``answer``, stored at ``now``, is fresh."""
        return fresh_until(now, self.ttl_for(answer))

    def judge(self, fresh_until: float, answer: int, now: float) -> Verdict:
        """Return the verdict on ``answer`` stored fresh until ``fresh_until``, at ``now``."""
        return judge(fresh_until, answer, now, self.stale_ttl)

    def hit(self, fresh_until: float, answer: int, now: float) -> Hit | None:
        """Return what a backend's ``get`` answers for a stored entry (None when it is gone)."""
        if now < fresh_until:
            return answer, True
        if now < fresh_until + self.stale_ttl and not codec.is_negative(answer):
            return answer, False
        return None

    @classmethod
    def resolve(
        cls,
        policy: CachePolicy | None,
        ttl: float | None = None,
        negative_ttl: float | None = None,
        stale_ttl: float | None = None,
    ) -> CachePolicy:
        """Return ``policy`` (or the defaults) with the durations given as keywords."""
        base = policy or cls()
        changes = {
            name: value
            for name, value in (
                ("ttl", ttl),
                ("negative_ttl", negative_ttl),
                ("stale_ttl", stale_ttl),
            )
            if value is not None
        }
        return base.copy(**changes) if changes else base

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CachePolicy:
        """Build a policy from plain data: ``ttl``, ``negative_ttl``, ``stale_ttl`` (seconds)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown cache policy key: {unknown[0]!r}")
        values: dict[str, float] = {}
        for name, value in data.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number of seconds, not {value!r}")
            values[name] = float(value)
        return cls(**values)

    def copy(self, **changes: Any) -> CachePolicy:
        """Return a copy with some fields changed."""
        return replace(self, **changes)


def fresh_until(now: float, ttl: float) -> int:
    """Return the whole second until which an answer stored at ``now`` stays fresh for ``ttl``.

    Rounded up past ``now + ttl`` (never down), so that every backend, whole
    seconds or not, keeps an answer at least its full TTL.
    """
    return int(now + ttl) + 1


def judge(fresh_until: float, answer: int, now: float, stale_ttl: float) -> Verdict:
    """Return what a stored answer is worth at ``now``."""
    if now < fresh_until:
        return Verdict.NEGATIVE if codec.is_negative(answer) else Verdict.FRESH
    if now < fresh_until + stale_ttl and not codec.is_negative(answer):
        return Verdict.STALE
    return Verdict.MISS


def is_fresh_answer(hit: Hit | None) -> bool:
    """Return True for a hit that is served as it is: fresh and not a negative."""
    return hit is not None and hit[1] and not codec.is_negative(hit[0])


# The packed entry of MemoryCache (and of every near tier): one int per number,
#
#     fresh_until << FRESH_SHIFT | USED_BIT (recently used) | answer code
#
# Public, because the routers' hit path reads MemoryCache.entries directly:
# measured on this machine, a method call there (even a closure) costs
# ~110 ns, a fifth of a whole warm route().
FRESH_SHIFT: Final = 32
USED_BIT: Final = 1 << 31
ANSWER_MASK: Final = USED_BIT - 1


def pack(answer: int, fresh_until: int, *, used: bool = False) -> int:
    """Return the packed entry for ``answer`` fresh until ``fresh_until``."""
    return fresh_until << FRESH_SHIFT | (USED_BIT if used else 0) | (answer & ANSWER_MASK)
