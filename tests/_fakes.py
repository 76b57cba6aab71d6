"""Test doubles for the router-layer tests: scripted lookup clients, gateways, a shared cache.

Imported by the test modules as ``_fakes`` (pytest puts ``tests/`` on the path).
Nothing here sleeps: clients block on events and barriers, time is a FakeClock.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from smsroute.cache import MemoryCache
from smsroute.carrier import Carrier
from smsroute.errors import error_for_code
from smsroute.models import CarrierInfo
from smsroute.segments import default_table

M, U, T, B = Carrier.MOBILE, Carrier.UNICOM, Carrier.TELECOM, Carrier.BROADNET

# Numbers by the segment they were allocated in (the segment-table fallback's answer).
MOBILE_NO = "13900000001"  # 139: 移动
UNICOM_NO = "18600000002"  # 186: 联通
TELECOM_NO = "13300000003"  # 133: 电信
BROADNET_NO = "19200000004"  # 192: 广电
VIRTUAL_NO = "16500000005"  # 165: virtual, hosted by 移动
SATELLITE_NO = "13490000006"  # 1349: satellite, not one of the four as a mobile network


def info(
    mobile: str,
    now: Carrier | str,
    *,
    initial: Carrier | str | None = None,
    res: int | None = None,
    area: str = "湖北-宜昌",
) -> CarrierInfo:
    """Return a vendor answer; ``initial`` defaults to the operator of the number's segment."""
    current = Carrier.parse(now)
    first = (
        Carrier.parse(initial) if initial is not None else default_table().initial_carrier(mobile)
    )
    if res is None:
        res = 1 if first is not None and first != current else 0
    return CarrierInfo(mobile, res, area, first, current)


def api_error(code: int) -> Exception:
    """Return the exception the real client raises for a vendor code."""
    return error_for_code(code, f"vendor says {code}", endpoint="/carrier")


Item = CarrierInfo | BaseException


class FakeClient:
    """A lookup client answering from a script, then a table, then "not ported".

    ``script`` items are consumed one per call (an exception is raised);
    ``answers`` holds per-number answers (a callable gets the number).
    Records every number asked in ``calls``.
    """

    def __init__(
        self,
        answers: Mapping[str, Item | Callable[[str], Item]] | None = None,
        script: Iterable[Item] = (),
    ) -> None:
        self.answers: dict[str, Item | Callable[[str], Item]] = dict(answers or {})
        self.script: deque[Item] = deque(script)
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def lookup(self, number: str) -> CarrierInfo:
        """Return the scripted answer for ``number`` or raise the scripted error."""
        with self._lock:
            self.calls.append(number)
            item: Any = self.script.popleft() if self.script else self.answers.get(number)
        if callable(item) and not isinstance(item, BaseException):
            item = item(number)
        if item is None:
            carrier = default_table().initial_carrier(number)
            item = info(number, carrier or M)
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[no-any-return]


class BudgetedClient(FakeClient):
    """A FakeClient that accepts ``timeout=`` like CarrierClient and records it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeouts: list[float | None] = []

    def lookup(self, number: str, *, timeout: float | None = None) -> CarrierInfo:
        """Record the budget the router passed, then answer like FakeClient."""
        self.timeouts.append(timeout)
        return super().lookup(number)


class BlockingClient(FakeClient):
    """A FakeClient whose lookups wait for ``gate`` to open (or ``limit`` seconds).

    With ``only``, just those numbers block; the others answer at once.
    """

    def __init__(
        self, *args: Any, limit: float = 5.0, only: Iterable[str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.limit = limit
        self.only = None if only is None else frozenset(only)

    def lookup(self, number: str) -> CarrierInfo:
        """Block until the test opens the gate, then answer."""
        if self.only is None or number in self.only:
            self.entered.set()
            if not self.gate.wait(self.limit):
                raise AssertionError("BlockingClient: the test never opened the gate")
        return super().lookup(number)


class CountingClient(FakeClient):
    """A FakeClient that counts concurrent lookups; each lookup meets ``parties`` others."""

    def __init__(self, parties: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.barrier = threading.Barrier(parties, timeout=5.0)
        self.active = 0
        self.max_active = 0
        self._count_lock = threading.Lock()

    def lookup(self, number: str) -> CarrierInfo:
        """Count this call as active while it waits for the others of its round."""
        with self._count_lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.barrier.wait()
            return super().lookup(number)
        finally:
            with self._count_lock:
                self.active -= 1


class Gateway:
    """A recording gateway callable: returns ``(name, mobile, args, kwargs)`` or raises."""

    def __init__(self, name: str, raises: BaseException | None = None) -> None:
        self.name = name
        self.raises = raises
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, mobile: str, *args: Any, **kwargs: Any) -> Any:
        """Record the call and answer (or raise ``raises``)."""
        self.calls.append((mobile, args, kwargs))
        if self.raises is not None:
            raise self.raises
        return (self.name, mobile, args, kwargs)

    def __repr__(self) -> str:
        return f"Gateway({self.name!r})"


def gateways() -> dict[Carrier | str, Gateway]:
    """Return one recording gateway per operator."""
    return {c: Gateway(c.name.lower()) for c in Carrier}


class SharedCache(MemoryCache):
    """A MemoryCache that also implements SharedFlight, as a fleet's shared store would.

    ``claims`` is what claim() answers; ``other_answer`` is what another
    worker stores while this one waits (None: it never answers). After a wait
    that brought no fresh answer the holder has let go, so a new claim wins,
    unless ``reclaimable`` is False (another worker claimed it first).
    """

    def __init__(
        self, *args: Any, claims: bool = False, reclaimable: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.claims = claims
        self.reclaimable = reclaimable
        self._holder_gone = False
        self.other_answer: int | None = None
        self.other_fresh = True
        self.log: list[tuple[str, str, float | None]] = []
        self.raise_on: set[str] = set()

    def claim(self, number: str, ttl: float) -> str | None:
        """Record the claim and answer a token when ``claims`` (None otherwise)."""
        self.log.append(("claim", number, ttl))
        if "claim" in self.raise_on:
            raise ConnectionError("shared store down")
        won = self.claims or (self._holder_gone and self.reclaimable)
        return f"token-{len(self.log)}" if won else None

    def wait(self, number: str, timeout: float) -> tuple[int, bool] | None:
        """Store the other worker's answer (if any) and return what the store now holds."""
        self.log.append(("wait", number, timeout))
        if "wait" in self.raise_on:
            self._holder_gone = True
            raise ConnectionError("shared store down")
        if self.other_answer is None:
            self._holder_gone = True
            return None
        if self.other_fresh:
            self.set(number, self.other_answer)
            return self.get(number)
        self._holder_gone = True
        return (self.other_answer, False)

    def release(self, number: str, token: str) -> None:
        """Record the release (of a token this cache handed out)."""
        assert token.startswith("token-"), token
        self.log.append(("release", number, None))

    def ops(self) -> list[str]:
        """Return the names of the SharedFlight calls made, in order."""
        return [op for op, _n, _t in self.log]
