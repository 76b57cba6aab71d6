"""Router: number -> current operator -> gateway, and the send path around it.

The chain for one number::

    fresh cache -> upstream (within the deadline, single-flight, breaker)
                -> stale cache -> segment table (the original operator)

A lookup failure never fails a send: it only changes where the answer came
from (``Decision.source``) and why (``Decision.reason``).
"""

from __future__ import annotations

import bisect
import functools
import inspect
import itertools
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from smsroute import codec, segments
from smsroute._log import get_logger
from smsroute.cache import _ANSWER, _SHIFT, _USED, MemoryCache
from smsroute.carrier import Carrier
from smsroute.errors import (
    CircuitOpen,
    ConfigurationError,
    InvalidNumber,
    LookupFailed,
    NoRoute,
    NumberNotFound,
    SmsRouteError,
    TransportError,
    WrongCarrier,
)
from smsroute.models import CarrierInfo
from smsroute.numbers import mask, mask_numbers, normalize
from smsroute.resilience import Alert, CircuitBreaker
from smsroute.singleflight import SingleFlight
from smsroute.types import CacheBackend, Clock, LookupClient, SharedFlight

__all__ = ["Decision", "Router", "Rule", "Source"]

Source = Literal["cache", "upstream", "stale", "fallback"]
SOURCES: Final[tuple[Source, ...]] = ("cache", "upstream", "stale", "fallback")
DEFAULT_DEADLINE: Final = 0.5  # seconds; the vendor answers in ~10 ms
_HEADROOM: Final = 0.02  # seconds of a deadline kept back from the client; see _ask()

_log = get_logger()
_STDLIB = logging.getLogger("smsroute")  # what _log writes through; see smsroute._log
R = TypeVar("R")


class Decision:
    """Where one send goes: number, operator, gateway, and where the answer came from."""

    __slots__ = ("_answer", "_info", "carrier", "gateway", "mobile", "reason", "source")

    mobile: str
    carrier: Carrier | None
    gateway: Any
    source: Source
    reason: str | None

    def __init__(
        self,
        mobile: str,
        carrier: Carrier | None,
        gateway: Any,
        source: Source,
        info: CarrierInfo | None = None,
        reason: str | None = None,
        answer: int | None = None,
    ) -> None:
        self.mobile = mobile
        self.carrier = carrier
        self.gateway = gateway
        self.source = source
        self.reason = reason
        self._info = info
        self._answer = answer

    @property
    def info(self) -> CarrierInfo | None:
        """Return the lookup answer behind the decision (None for a segment-table fallback)."""
        if self._info is None and self._answer is not None:
            # Rebuilt on demand: a cache hit should not pay for an object nobody reads.
            self._info = codec.decode(self.mobile, self._answer)
        return self._info

    def __repr__(self) -> str:
        return (
            f"Decision(mobile={mask(self.mobile)!r}, carrier={self.carrier}, "
            f"gateway={self.gateway!r}, source={self.source!r}, reason={self.reason!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return (self.mobile, self.carrier, self.gateway, self.source, self.reason) == (
            other.mobile,
            other.carrier,
            other.gateway,
            other.source,
            other.reason,
        )

    __hash__ = None  # type: ignore[assignment]


# Official names of the autonomous regions and SARs, which end in neither 省 nor 市.
_REGION_SUFFIXES: Final = ("壮族自治区", "回族自治区", "维吾尔自治区", "自治区", "特别行政区")


def _province(text: str) -> str:
    text = text.strip().removesuffix("省").removesuffix("市")
    for suffix in _REGION_SUFFIXES:
        if text.endswith(suffix) and len(text) > len(suffix):
            return text[: -len(suffix)]
    return text


@dataclass(frozen=True, slots=True)
class Rule:
    """Pick ``gateway`` when every given condition matches (None matches anything).

    ``carrier`` and ``province`` take one value or a collection. A condition
    the answer cannot tell (a segment-table fallback knows no province and no
    port) does not match.
    """

    gateway: Any
    carrier: Carrier | str | Collection[Carrier | str] | None = None
    province: str | Collection[str] | None = None
    ported: bool | None = None
    virtual: bool | None = None
    _carriers: frozenset[Carrier] | None = field(init=False, repr=False, compare=False)
    _provinces: frozenset[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        carriers = None
        if self.carrier is not None:
            items = [self.carrier] if isinstance(self.carrier, str) else list(self.carrier)
            parsed = [Carrier.parse(c) for c in items]
            bad = [c for c, p in zip(items, parsed, strict=True) if p is None]
            if bad:
                raise ConfigurationError(f"rule names an unknown operator: {bad[0]!r}")
            carriers = frozenset(p for p in parsed if p is not None)
        provinces = None
        if self.province is not None:
            items = [self.province] if isinstance(self.province, str) else list(self.province)
            provinces = frozenset(_province(p) for p in items)
        object.__setattr__(self, "_carriers", carriers)
        object.__setattr__(self, "_provinces", provinces)

    def matches(
        self, carrier: Carrier | None, province: str, ported: bool | None, virtual: bool
    ) -> bool:
        """Return True when the rule applies to an answer with these facts."""
        if self._carriers is not None and carrier not in self._carriers:
            return False
        if self._provinces is not None and (not province or province not in self._provinces):
            return False
        if self.ported is not None and ported != self.ported:
            return False
        return self.virtual is None or virtual == self.virtual


class _Counter:
    """A counter that many threads bump without a lock (itertools.count is atomic in CPython)."""

    __slots__ = ("_c", "bump")

    def __init__(self) -> None:
        self._c = itertools.count()
        self.bump = self._c.__next__

    @property
    def value(self) -> int:
        """Return how many times bump() was called."""
        return int(repr(self._c)[6:-1])


class Histogram:
    """Upstream latency in fixed buckets (seconds), as Prometheus would bucket it."""

    BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = [0] * (len(self.BUCKETS) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        """Record one observation."""
        i = bisect.bisect_left(self.BUCKETS, seconds)
        with self._lock:
            self._counts[i] += 1
            self._sum += seconds

    def snapshot(self) -> dict[str, Any]:
        """Return cumulative bucket counts (``le`` -> count), the sum and the count."""
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        cumulative: dict[str, int] = {}
        running = 0
        for bound, n in zip((*map(str, self.BUCKETS), "+Inf"), counts, strict=True):
            running += n
            cumulative[bound] = running
        return {"buckets": cumulative, "sum": total, "count": running}


class _NoRouteMarker:
    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class Router:
    """Choose the gateway for each number by its current operator.

    ``gateways`` maps a Carrier (or its Chinese name, or any key such as
    ``"mvno"``) to anything: a callable for :meth:`send`, a channel object, a
    product code. One router serves many threads.
    """

    def __init__(
        self,
        client: LookupClient,
        gateways: Mapping[Carrier | str, Any],
        *,
        default: Any = None,
        cache: CacheBackend | None = None,
        virtual: str = "host",
        rules: Iterable[Rule] | None = None,
        deadline: float = DEFAULT_DEADLINE,
        breaker: CircuitBreaker | None = None,
        on_alert: Callable[[Alert], None] | None = None,
        segments: segments.SegmentTable | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if deadline <= 0:
            raise ConfigurationError("deadline must be a positive number of seconds")
        self._client = client
        self._gateways = self._read_gateways(gateways)
        # answer code -> (operator, gateway, routable, hit counter); see _memoize().
        self._memo: dict[int, tuple[Carrier | None, Any, bool, Callable[[], int]]] = {}
        self.default = default
        self.virtual = virtual
        self.rules = tuple(rules or ())
        self.deadline = float(deadline)
        # The default cache keeps time on the router's clock, like the breaker.
        self._cache: CacheBackend = cache if cache is not None else MemoryCache(timer=clock)
        self._clock = clock
        self._segments = segments
        self._on_alert = on_alert
        if breaker is None:
            breaker = CircuitBreaker(clock=clock)
        if on_alert is not None:
            if breaker.on_alert is not None and breaker.on_alert is not on_alert:
                raise ConfigurationError(
                    "on_alert given to both the Router and its breaker: pass it to one"
                )
            breaker.on_alert = on_alert
        self.breaker = breaker
        self._flights: SingleFlight[tuple[CarrierInfo | None, int, Source]] = SingleFlight()
        self._shared = self._cache if isinstance(self._cache, SharedFlight) else None
        self._budgeted = _accepts_timeout(client)
        self._counts = {name: _Counter() for name in ("upstream_calls", "coalesced")}
        # Decisions counted by (source, operator): a hit bumps the counter its
        # memo entry carries, so counting by operator costs the hot path nothing.
        self._by: dict[tuple[str, Carrier | None], _Counter] = {
            (source, carrier): _Counter() for source in SOURCES for carrier in (*Carrier, None)
        }
        self.latency = Histogram()
        near = self._cache if isinstance(self._cache, MemoryCache) else getattr(cache, "near", None)
        # The hot path reads the in-process tier's dict directly (MemoryCache,
        # or the near tier of a two-tier cache such as RedisCache).
        self._hot = near._data if isinstance(near, MemoryCache) else None
        self._hot_timer = near._timer if isinstance(near, MemoryCache) else clock
        self._lock = threading.Lock()
        self._errors: dict[str, int] = {}
        self._reasons: dict[str, int] = {}

    # Routes are memoised per answer code, so every setting _pick() reads is a
    # property whose setter starts a new memo: a change applies to cached
    # answers too. A new table, not clear(): a _memoize() racing the setter
    # then stores its outdated route in the table nobody reads any more.

    @property
    def default(self) -> Any:
        """Return the gateway for an operator with no gateway of its own (None: NoRoute)."""
        return self._default

    @default.setter
    def default(self, gateway: Any) -> None:
        self._default = gateway
        self._memo = {}

    @property
    def virtual(self) -> str:
        """Return the virtual-operator policy: ``"host"``, ``"reject"`` or a gateway key."""
        return self._virtual

    @virtual.setter
    def virtual(self, policy: str) -> None:
        if policy not in ("host", "reject") and policy not in self._gateways:
            raise ConfigurationError(
                f"virtual={policy!r}: not 'host', 'reject' or a key of gateways"
            )
        self._virtual = policy
        self._memo = {}

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Return the routing rules, tried in order before the operator's gateway."""
        return self._rules

    @rules.setter
    def rules(self, rules: Iterable[Rule]) -> None:
        self._rules = tuple(rules)
        self._memo = {}

    @staticmethod
    def _read_gateways(gateways: Mapping[Carrier | str, Any]) -> dict[Carrier | str, Any]:
        out: dict[Carrier | str, Any] = {}
        for key, value in gateways.items():
            carrier = Carrier.parse(key)
            if carrier is None and not isinstance(key, str):
                raise ConfigurationError(f"gateway key {key!r} is not an operator or a name")
            k: Carrier | str = carrier if carrier is not None else key
            if k in out:
                raise ConfigurationError(f"two gateways for {k}")
            out[k] = value
        return out

    # -- routing --------------------------------------------------------------

    def route(self, number: str, *, deadline: float | None = None) -> Decision:
        """Return where a send to ``number`` goes.

        Raises InvalidNumber (before any lookup) for a bad number and NoRoute
        when no gateway fits; never raises because the lookup failed.
        """
        # Hot path: a fresh, recently used answer in the in-process tier. Only
        # validated numbers are ever stored, so a hit needs no normalize();
        # one dict read, one clock read, one memo read, no lock.
        hot = self._hot
        if hot is not None and type(number) is str:
            value = hot.get(number)
            if value is not None and value & _USED and self._hot_timer() < value >> _SHIFT:
                memo = self._memo.get(value & _ANSWER)
                if memo is not None and memo[2]:
                    memo[3]()
                    return Decision(number, memo[0], memo[1], "cache", None, None, value & _ANSWER)
        return self._route(number, deadline)

    def _route(self, number: str, deadline: float | None) -> Decision:
        mobile = normalize(number, self._segments)
        hit = self._cache_get(mobile)
        if hit is not None and hit[1]:
            answer = hit[0]
            if not codec.is_negative(answer):
                return self._counted(self._from_answer(mobile, answer, "cache", None, None))
            return self._fallback(mobile, None, "number not found (cached)")
        return self._resolve(mobile, hit, deadline)

    def _from_answer(
        self,
        mobile: str,
        answer: int,
        source: Source,
        reason: str | None,
        info: CarrierInfo | None,
    ) -> Decision:
        memo = self._memo.get(answer)
        if memo is None:
            memo = self._memoize(answer)
        carrier, gateway, routable, _ = memo
        if not routable:
            raise NoRoute(f"{mask(mobile)}: {gateway.message}")
        return Decision(mobile, carrier, gateway, source, info, reason, answer)

    def _memoize(self, answer: int) -> tuple[Carrier | None, Any, bool, Callable[[], int]]:
        # Routing depends only on the answer code, so the rules run once per
        # distinct (operator, province, port, virtual) and hits reuse it.
        table = self._memo  # read once: see the settings properties
        current, _initial, res, area = codec.fields(answer)
        try:
            gateway = self._pick(
                current, _province(area.partition("-")[0]), res == 1, res in (3, 4)
            )
        except NoRoute as exc:
            gateway = _NoRouteMarker(str(exc))
        if len(table) > 65536:
            table.clear()  # bounded; junk areas must not grow it forever
        routable = type(gateway) is not _NoRouteMarker
        memo = (current, gateway, routable, self._by["cache", current].bump)
        table[answer] = memo
        return memo

    def _pick(
        self, carrier: Carrier | None, province: str, ported: bool | None, virtual: bool
    ) -> Any:
        if virtual and self.virtual == "reject":
            raise NoRoute(f"virtual-operator number ({carrier}) refused by virtual='reject'")
        for rule in self.rules:
            if rule.matches(carrier, province, ported, virtual):
                return rule.gateway
        if virtual and self.virtual != "host":
            return self._gateways[self.virtual]
        if carrier is not None and carrier in self._gateways:
            return self._gateways[carrier]
        if self.default is not None:
            return self.default
        raise NoRoute(f"no gateway for {carrier or 'an unknown operator'} and no default")

    def _resolve(
        self, mobile: str, stale: tuple[int, bool] | None, deadline: float | None
    ) -> Decision:
        budget = self.deadline if deadline is None else deadline
        if self._shared is None and self.breaker.rejecting():
            # No call can be made: skip the flight and its exception (half the
            # cost of a send while the vendor is down). With a shared cache the
            # flight still runs, since another worker may bring the answer.
            return self._fallback(mobile, stale, "circuit open")
        end = self._clock() + budget
        flight, leader = self._flights.join(mobile)
        if not leader:
            self._counts["coalesced"].bump()
            if not flight.wait(max(0.0, end - self._clock())):
                return self._fallback(mobile, stale, "deadline: another lookup of it is slow")
            if flight.result is None:
                return self._fallback(mobile, _usable(stale, flight.error), _reason(flight.error))
            outcome = flight.result
        else:
            try:
                outcome = self._lead(mobile, end)
            except LookupFailed as exc:
                flight.finish(error=exc)
                return self._fallback(mobile, _usable(stale, exc), _reason(exc))
            except BaseException as exc:
                flight.finish(error=exc)
                raise
            finally:
                self._flights.land(mobile, flight)
            flight.finish(result=outcome)
        info, answer, source = outcome
        return self._counted(self._from_answer(mobile, answer, source, None, info))

    def _lead(self, mobile: str, end: float) -> tuple[CarrierInfo | None, int, Source]:
        shared = self._shared
        if shared is None:
            # Look again now that the flight is ours: a thread that missed just
            # before another leader stored its answer and landed its flight
            # would otherwise lead a second flight and pay a second query
            # (measured: 0-7 extra per 20,000 Zipf sends on 16 threads).
            # Best effort: a cache that fails here failed (and was counted) on
            # the read that made this a miss, so the upstream is simply asked.
            hit = self._cache_get(mobile, count=False)
            if hit is not None and hit[1]:
                if codec.is_negative(hit[0]):
                    raise NumberNotFound(-4, "not found (cached)")
                return None, hit[0], "cache"
            return (*self._ask(mobile, end), "upstream")
        # Fleet-wide single-flight: one worker of the fleet pays, the others
        # wait for its answer to land in the shared cache.
        try:
            claimed = shared.claim(mobile, max(end - self._clock(), 0.05))
        except Exception as exc:  # noqa: BLE001 - a broken shared store must not fail a send
            self._count_error("cache", exc)
            claimed = True
        try:
            if not claimed:
                hit = None
                try:
                    hit = shared.wait(mobile, max(0.0, end - self._clock()))
                except Exception as exc:  # noqa: BLE001
                    self._count_error("cache", exc)
                # Only a fresh answer is the holder's: a stale one was there
                # before (it is why this is a miss), so ask or fall back to it.
                if hit is not None and hit[1]:
                    if codec.is_negative(hit[0]):
                        raise NumberNotFound(-4, "not found (answered to another worker)")
                    return None, hit[0], "cache"
                if end <= self._clock():
                    raise TransportError("deadline: another worker's lookup is slow")
                # The holder let go without an answer (its lookup failed or ran
                # out of time). Claim again rather than ask at once: otherwise
                # every waiting worker of the fleet would pay for the number.
                try:
                    claimed = shared.claim(mobile, max(end - self._clock(), 0.05))
                except Exception as exc:  # noqa: BLE001
                    self._count_error("cache", exc)
                    claimed = True
                if not claimed:
                    raise TransportError("another worker's lookup of it failed")
            return (*self._ask(mobile, end), "upstream")
        finally:
            if claimed:
                try:
                    shared.release(mobile)
                except Exception as exc:  # noqa: BLE001
                    self._count_error("cache", exc)

    def _ask(self, mobile: str, end: float) -> tuple[CarrierInfo, int]:
        if not self.breaker.allow():
            raise CircuitOpen("circuit open: upstream not called")
        left = end - self._clock()
        if left <= 0:
            self.breaker.release()
            raise TransportError("deadline: no time left for the upstream")
        # Keep headroom for what follows a timed-out call (unwinding, the
        # fallback, and many threads timing out at once taking turns on the
        # GIL), so that route() returns within its deadline, not just after.
        left -= min(_HEADROOM, 0.1 * left)
        self._counts["upstream_calls"].bump()
        started = time.perf_counter()
        try:
            try:
                if self._budgeted:
                    info = self._client.lookup(mobile, timeout=left)  # type: ignore[call-arg]
                else:
                    info = self._client.lookup(mobile)
            finally:
                self.latency.observe(time.perf_counter() - started)
            if not isinstance(info, CarrierInfo) or info.current is None:
                raise TransportError("the client answered no current operator")
        except NumberNotFound as exc:
            self.breaker.failure(exc)  # a healthy upstream: closes the failure count
            self._count_error(str(exc.code), exc)
            self._cache_set(mobile, codec.NOT_FOUND)
            raise
        except LookupFailed as exc:
            self.breaker.failure(exc)
            self._count_error(str(getattr(exc, "code", type(exc).__name__)), exc)
            raise
        except InvalidNumber as exc:
            # The client refused the number before asking (its segment table is
            # older than the router's): no call was made, the upstream is not at
            # fault, so the breaker only gets its probe back.
            self.breaker.release()
            self._count_error("InvalidNumber", exc)
            raise TransportError(f"the client refused the number: {exc}") from exc
        except Exception as exc:
            err = TransportError(f"the client raised {type(exc).__name__}")
            self.breaker.failure(err)
            self._count_error(type(exc).__name__, exc)
            raise err from exc
        except BaseException:
            # Cancelled mid-call (KeyboardInterrupt, a green-thread timeout): give
            # back a half-open probe, or the breaker would wait for it forever.
            self.breaker.release()
            raise
        self.breaker.success()
        answer = codec.encode(info)
        self._cache_set(mobile, answer)
        return info, answer

    def _cache_get(self, mobile: str, *, count: bool = True) -> tuple[int, bool] | None:
        try:
            return self._cache.get(mobile)
        except Exception as exc:  # noqa: BLE001 - a broken cache must not fail a send
            if count:
                self._count_error("cache", exc)
            return None

    def _cache_set(self, mobile: str, answer: int) -> None:
        try:
            self._cache.set(mobile, answer)
        except Exception as exc:  # noqa: BLE001 - losing a cache write must not fail a send
            self._count_error("cache", exc)

    def _fallback(self, mobile: str, stale: tuple[int, bool] | None, reason: str) -> Decision:
        with self._lock:
            key = reason.partition(":")[0]
            self._reasons[key] = self._reasons.get(key, 0) + 1
        if stale is not None and not codec.is_negative(stale[0]):
            decision = self._from_answer(mobile, stale[0], "stale", reason, None)
        else:
            table = self._segments or segments.default_table()
            row = table.lookup(mobile)
            carrier = row.carrier if row is not None else None
            virtual = row is not None and row.kind == "virtual"
            try:
                gateway = self._pick(carrier, "", None, virtual)
            except NoRoute as exc:
                raise NoRoute(f"{mask(mobile)}: {exc} (fallback after: {reason})") from None
            decision = Decision(mobile, carrier, gateway, "fallback", None, reason)
        self._counted(decision)
        # While the breaker is open every send falls back; the opening itself
        # was the warning, so these stay at debug and the path stays fast. The
        # level is asked first: even a dropped structlog event costs ~3.5 us,
        # a third of an open-breaker route() (benchmarks/, figure 6).
        if not reason.startswith("circuit open"):
            level = _log.warning
        elif _STDLIB.isEnabledFor(logging.DEBUG):
            level = _log.debug
        else:
            return decision
        level(
            "route.fallback",
            mobile=mask(mobile),
            source=decision.source,
            carrier=str(decision.carrier) if decision.carrier else None,
            reason=reason,
        )
        return decision

    def _counted(self, decision: Decision) -> Decision:
        self._by[decision.source, decision.carrier].bump()
        return decision

    def _count_error(self, code: str, exc: BaseException) -> None:
        with self._lock:
            self._errors[code] = self._errors.get(code, 0) + 1
        if code == "cache":
            _log.warning("cache.error", error=type(exc).__name__)

    # -- send path ----------------------------------------------------------------

    def send(self, number: str, *args: Any, **kwargs: Any) -> Any:
        """Route ``number`` and call its gateway with the normalised number and the arguments.

        A gateway's exceptions propagate unchanged, except WrongCarrier: the
        router then asks the upstream again and retries once through the
        gateway of the fresh answer.
        """

        def call(decision: Decision) -> Any:
            gateway = decision.gateway
            if not callable(gateway):
                raise ConfigurationError(
                    f"gateway for {decision.carrier} is not callable; use route() or wrap()"
                )
            return gateway(decision.mobile, *args, **kwargs)

        return self._deliver(self.route(number), call)

    def wrap(self, fn: Callable[..., R]) -> Callable[..., R]:
        """Decorate ``def send(number, ..., route: Decision)`` into a routed function."""

        @functools.wraps(fn)
        def routed(number: str, *args: Any, **kwargs: Any) -> R:
            return self._deliver(
                self.route(number), lambda d: fn(d.mobile, *args, route=d, **kwargs)
            )

        return routed

    def _deliver(self, decision: Decision, call: Callable[[Decision], R]) -> R:
        try:
            return call(decision)
        except WrongCarrier as exc:
            fresh = self._reroute(decision)
            _log.warning(
                "route.wrong_carrier",
                mobile=mask(decision.mobile),
                was=str(decision.carrier),
                now=str(fresh.carrier),
                source=fresh.source,
                message=mask_numbers(str(exc)[:80]),
            )
            if fresh.carrier == decision.carrier:
                raise
            return call(fresh)

    def _reroute(self, refused: Decision) -> Decision:
        # A burst of sends to one ported number all come back WrongCarrier. The
        # first one's refresh pays for the new answer; the others must use it,
        # not delete it and pay again. So: a fresh cached answer other than the
        # refused one is the new answer; only the refused one is dropped.
        mobile = refused.mobile
        hit = self._cache_get(mobile)
        fresh = hit is not None and hit[1] and hit[0] != refused._answer
        if fresh and hit is not None and not codec.is_negative(hit[0]):
            return self._counted(self._from_answer(mobile, hit[0], "cache", None, None))
        return self.refresh(mobile)

    def refresh(self, number: str, *, deadline: float | None = None) -> Decision:
        """Drop the cached answer for ``number`` and ask the upstream again."""
        mobile = normalize(number, self._segments)
        try:
            self._cache.delete(mobile)
        except Exception as exc:  # noqa: BLE001
            self._count_error("cache", exc)
        return self._resolve(mobile, None, deadline)

    def route_many(
        self,
        numbers: Iterable[str],
        *,
        concurrency: int = 8,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Return one Decision per input, in input order.

        Duplicates share one lookup; misses are looked up on a pool of
        ``concurrency`` threads. Invalid numbers raise InvalidNumber before any
        lookup, unless ``return_exceptions`` puts each error in its place.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        mobiles: list[str | SmsRouteError] = []
        for number in numbers:
            try:
                mobiles.append(normalize(number, self._segments))
            except InvalidNumber as exc:
                if not return_exceptions:
                    raise
                mobiles.append(exc)
        unique = list(dict.fromkeys(m for m in mobiles if isinstance(m, str)))
        results: dict[str, Decision | SmsRouteError] = {}
        if unique:
            workers = min(concurrency, len(unique))
            with ThreadPoolExecutor(workers, thread_name_prefix="smsroute") as pool:
                for mobile, outcome in zip(
                    unique, pool.map(self._route_or_error, unique), strict=True
                ):
                    results[mobile] = outcome
        out: list[Any] = []
        for m in mobiles:
            outcome = results[m] if isinstance(m, str) else m
            if isinstance(outcome, SmsRouteError) and not return_exceptions:
                raise outcome
            out.append(outcome)
        return out

    def _route_or_error(self, mobile: str) -> Decision | SmsRouteError:
        try:
            return self.route(mobile)
        except SmsRouteError as exc:
            return exc

    # -- observability --------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Return counters: decisions by source, upstream calls, hits, misses, errors, breaker."""
        c = {name: counter.value for name, counter in self._counts.items()}
        c.update(dict.fromkeys(SOURCES, 0))
        by_carrier: dict[str, dict[str, int]] = {source: {} for source in SOURCES}
        for (source, carrier), counter in self._by.items():
            n = counter.value
            if n:
                by_carrier[source][carrier.value if carrier else "unknown"] = n
            c[source] += n
        with self._lock:
            errors = dict(self._errors)
            reasons = dict(self._reasons)
        decisions = {s: c[s] for s in SOURCES}
        return {
            "decisions": decisions,
            "decisions_by_carrier": by_carrier,
            "hits": c["cache"],
            "misses": sum(decisions.values()) - c["cache"],
            "upstream_calls": c["upstream_calls"],
            "coalesced": c["coalesced"],
            "errors": errors,
            "fallback_reasons": reasons,
            "breaker": self.breaker.state,
            "breaker_opened": self.breaker.opened,
            "cache_size": _size(self._cache),
            "upstream_latency": self.latency.snapshot(),
        }

    @property
    def cache(self) -> CacheBackend:
        """Return the cache backend."""
        return self._cache

    @property
    def client(self) -> LookupClient:
        """Return the lookup client."""
        return self._client


def _size(cache: object) -> int | None:
    try:
        return len(cache)  # type: ignore[arg-type]
    except TypeError:
        return None


def _usable(stale: tuple[int, bool] | None, exc: BaseException | None) -> tuple[int, bool] | None:
    # "Not found" (-4) is an answer, and it replaced the stale entry in the
    # cache: serving the stale answer now would send the next message
    # elsewhere. A number the vendor no longer knows was likely cancelled and
    # reissued, back on its original operator, so the segment table is the guess.
    return None if isinstance(exc, NumberNotFound) else stale


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    if isinstance(exc, CircuitOpen):
        return "circuit open"
    code = getattr(exc, "code", None)
    name = type(exc).__name__
    text = str(exc)
    return f"{name} {code}: {text}" if code is not None else f"{name}: {text}"


def _accepts_timeout(client: object) -> bool:
    try:
        params = inspect.signature(client.lookup).parameters  # type: ignore[attr-defined]
    except (TypeError, ValueError, AttributeError):
        return False
    return "timeout" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
