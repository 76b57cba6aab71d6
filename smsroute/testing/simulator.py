"""The fake vendor without any I/O: :class:`VendorSimulator` decides every answer.

It holds the account (apikey, balance, fee type), the deterministic answers
and the pinned ones, the current fault and the record of requests, and turns
one request into one :class:`~smsroute.testing.wire.Reply`. Every front end
(the threaded server, the asyncio server, the ``responses`` mock) only
carries requests to :meth:`VendorSimulator.handle` and sends what it returns,
so they cannot disagree.

Answers are deterministic: a hash of ``(seed, number)`` decides whether a
number is ported (``ported_share`` of them), where it is and what it ported
to. ``set_answer()`` pins the answer for a number.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypedDict

from smsroute import segments
from smsroute.carrier import Carrier
from smsroute.testing.faults import HTTP_FAULTS, Fault, check_fault, spoil
from smsroute.testing.wire import (
    HTML_TYPE,
    JSON_TYPE,
    REASONS,
    Reply,
    error_body,
    nginx_page,
    render_body,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "AREAS",
    "DOC_NUMBER",
    "POSTPAID",
    "PREPAID",
    "AnswerSpec",
    "RecordedRequest",
    "VendorSimulator",
]

AREAS: Final[tuple[str, ...]] = (
    "湖北-宜昌",
    "北京-北京",
    "上海-上海",
    "广东-广州",
    "广东-深圳",
    "浙江-杭州",
    "江苏-南京",
    "四川-成都",
    "湖南-长沙",
    "山东-济南",
    "河南-郑州",
    "福建-厦门",
    "陕西-西安",
    "重庆-重庆",
    "天津-天津",
    "辽宁-沈阳",
    "云南-昆明",
    "安徽-合肥",
    "江西-南昌",
    "广西-南宁",
)
"""The "省-市" strings a number's ``Area`` is drawn from."""

DOC_NUMBER: Final = "13972565391"
"""The vendor document's example: ported from 移动 to 电信, in 湖北-宜昌."""

PREPAID: Final = "预付费"
"""The prepaid fee type: the vendor refuses with -5 once the balance is spent."""
POSTPAID: Final = "后付费"
"""The postpaid fee type: the balance goes negative."""

_PORT_TARGETS: Final = (Carrier.MOBILE.value, Carrier.UNICOM.value, Carrier.TELECOM.value)


class AnswerSpec(TypedDict, total=False):
    """The keyword arguments of ``set_answer()``, and the values of ``answers=``.

    A field left out (or None) keeps the value computed from the seed.
    """

    res: int | str | None
    init: str | None
    now: str | None
    area: str | None
    code: int | None
    reason: str | None
    fault: Fault | None


# The one definition of set_answer()'s keywords: checked at run time as well,
# because ``**spec`` alone would let a misspelt one through silently.
_ANSWER_FIELDS: Final = AnswerSpec.__optional_keys__


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake vendor saw, and what it did with it."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    fault: Fault | None
    code: int | None  # the vendor code decided; None when no JSON answer was given
    time: float
    client: tuple[str, int] | None = None  # (host, port) of the TCP peer; None without a socket


@dataclass(frozen=True)
class _Override:
    res: str | None = None
    init: str | None = None
    now: str | None = None
    area: str | None = None
    code: int | None = None
    reason: str | None = None
    fault: Fault | None = None


def _check_fee_type(fee_type: str) -> str:
    if fee_type not in (PREPAID, POSTPAID):
        raise ValueError(f"fee_type must be {PREPAID!r} or {POSTPAID!r}, not {fee_type!r}")
    return fee_type


def _carrier_name(value: str) -> str:
    return value.value if isinstance(value, Carrier) else value


class VendorSimulator:
    """The vendor's behaviour without any I/O: ``handle(request) -> Reply``; thread-safe.

    Holds the account (apikey, balance, fee type), the pinned answers, the
    current fault and the record of requests. :class:`FakeCarrierServer`,
    :class:`AsyncFakeCarrierServer` and :class:`VendorMock` are thin front
    ends over one of these.
    """

    def __init__(
        self,
        *,
        apikey: str = "test-apikey",
        balance: int = 100_000,
        fee_type: str = PREPAID,
        ported_share: float = 0.1,
        seed: int | str = 0,
        latency: float = 0.0,
        slow_seconds: float = 1.0,
        answers: Mapping[str, AnswerSpec] | None = None,
        clock: Callable[[], float] = time.time,
        record_limit: int | None = 100_000,
    ) -> None:
        if not 0.0 <= ported_share <= 1.0:
            raise ValueError(f"ported_share must be within [0, 1], not {ported_share!r}")
        self.apikey = apikey
        self.ported_share = ported_share
        self.seed = seed
        self._clock = clock
        self._lock = threading.Lock()
        self._balance = int(balance)
        self._fee_type = _check_fee_type(fee_type)
        self._latency = 0.0
        self._slow_seconds = 1.0
        self.latency = latency
        self.slow_seconds = slow_seconds
        self._fault: Fault | None = None
        self._fault_left: int | None = None
        # Bumped whenever a fault or a pinned answer changes: held requests
        # compare it with the value they saw to know they were released. An
        # automatic revert after ``for_requests`` does not bump it.
        self._release_epoch = 0
        self._overrides: dict[str, _Override] = {
            DOC_NUMBER: _Override(res="1", init="移动", now="电信", area="湖北-宜昌")
        }
        # Bounded so that a server left running from the CLI does not grow forever.
        self._records: deque[RecordedRequest] = deque(maxlen=record_limit)
        self._paid = 0
        self._carrier_calls = 0
        for number, spec in (answers or {}).items():
            self.set_answer(number, **spec)

    # -- account -----------------------------------------------------------

    @property
    def balance(self) -> int:
        """Return the queries left (negative on a postpaid account that overran)."""
        with self._lock:
            return self._balance

    @balance.setter
    def balance(self, value: int) -> None:
        with self._lock:
            self._balance = int(value)

    @property
    def fee_type(self) -> str:
        """Return ``"预付费"`` (refuses with -5 at zero) or ``"后付费"`` (goes negative)."""
        return self._fee_type

    @fee_type.setter
    def fee_type(self, value: str) -> None:
        self._fee_type = _check_fee_type(value)

    @property
    def paid(self) -> int:
        """Return how many queries were charged."""
        with self._lock:
            return self._paid

    @property
    def carrier_calls(self) -> int:
        """Return how many ``/carrier`` requests arrived (answered or not)."""
        with self._lock:
            return self._carrier_calls

    # -- faults and timing -------------------------------------------------

    @property
    def latency(self) -> float:
        """Return the seconds added before every answer."""
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must not be negative")
        self._latency = float(seconds)

    @property
    def slow_seconds(self) -> float:
        """Return the extra seconds the ``"slow"`` fault waits before answering."""
        return self._slow_seconds

    @slow_seconds.setter
    def slow_seconds(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("slow_seconds must not be negative")
        self._slow_seconds = float(seconds)

    @property
    def fault(self) -> Fault | None:
        """Return the fault applied to every ``/carrier`` and ``/balance`` request, or None."""
        with self._lock:
            return self._fault

    @fault.setter
    def fault(self, fault: Fault | None) -> None:
        self.set_fault(fault)

    def set_fault(self, fault: Fault | None, *, for_requests: int | None = None) -> None:
        """Apply a fault to all requests, or only to the next ``for_requests`` of them.

        ==================  =========================================================
        an int code         JSON ``{"code": c, "reason": REASONS[c], "result": null}``
        ``http500/502``     that status, an nginx HTML page
        ``html``            status 200, ``text/html`` maintenance page
        ``truncated``       the first half of the JSON bytes (charged if code 0)
        ``trailing_comma``  the document's own style, ``"Now_isp": "电信",`` (charged)
        ``unknown_isp``     ``Now_isp`` is ``火星移动`` (charged)
        ``missing_field``   no ``Now_isp`` (``balance`` on /balance) (charged)
        ``hang``            no answer until the fault is changed (then the normal
                            answer) or the server stops (then the connection closes)
        ``reset``           the connection is closed with RST (SO_LINGER 0)
        ``slow``            the normal answer after ``slow_seconds`` (charged)
        ==================  =========================================================

        Only faults that still deliver a code-0 answer charge the account.
        """
        fault = check_fault(fault)
        if for_requests is not None and for_requests < 1:
            raise ValueError("for_requests must be at least 1")
        with self._lock:
            self._fault = fault
            self._fault_left = None if fault is None else for_requests
            if fault != "hang":
                self._release_epoch += 1

    def _take_fault(self) -> Fault | None:
        # Caller holds the lock.
        fault = self._fault
        if fault is not None and self._fault_left is not None:
            self._fault_left -= 1
            if self._fault_left <= 0:
                self._fault, self._fault_left = None, None
        return fault

    # -- answers -----------------------------------------------------------

    def set_answer(self, number: str, **spec: Unpack[AnswerSpec]) -> None:
        """Pin the answer for one number; fields left out keep their computed values."""
        unknown = spec.keys() - _ANSWER_FIELDS
        if unknown:
            raise TypeError(f"set_answer() got unexpected keyword arguments {sorted(unknown)}")
        res, init, now = spec.get("res"), spec.get("init"), spec.get("now")
        fault = check_fault(spec.get("fault"))
        override = _Override(
            res=None if res is None else str(res),
            init=None if init is None else _carrier_name(init),
            now=None if now is None else _carrier_name(now),
            area=spec.get("area"),
            code=spec.get("code"),
            reason=spec.get("reason"),
            fault=fault,
        )
        with self._lock:
            self._overrides[number] = override
            if fault != "hang":
                self._release_epoch += 1

    def clear_answer(self, number: str) -> None:
        """Forget a pinned answer (the doc's example number included)."""
        with self._lock:
            self._overrides.pop(number, None)
            self._release_epoch += 1

    def answer_for(self, number: str) -> dict[str, Any]:
        """Return the body a well-formed query for ``number`` gets: no charge, no fault."""
        with self._lock:
            override = self._overrides.get(number)
        return self._result_for(number, override)

    def _result_for(self, number: str, override: _Override | None) -> dict[str, Any]:
        if len(number) != 11:
            return error_body(-2)
        if not (number.isascii() and number.isdigit()):
            return error_body(-3)
        seg = segments.lookup(number)
        initial = segments.initial_carrier(number)
        if seg is None or initial is None or seg.length not in (None, 11):
            return error_body(-3)  # not a mobile number: unallocated, or a 13-digit IoT segment
        if override is not None and override.code not in (None, 0):
            return error_body(override.code, override.reason)
        h = hashlib.sha256(f"{self.seed}\x00{number}".encode()).digest()
        init = initial.value
        if seg.kind == "virtual":
            # MVNO numbers do not port; the vendor flags them with res 3 or 4.
            host = (seg.host or initial).value
            res, init, now = ("3" if h[11] % 2 == 0 else "4"), host, host
        elif seg.kind == "regular" and int.from_bytes(h[:8], "big") < self.ported_share * 2**64:
            res, now = "1", self._port_target(init, h)
        else:
            res, now = "0", init
        area = AREAS[int.from_bytes(h[9:11], "big") % len(AREAS)]
        if override is not None:
            init = override.init or init
            area = override.area or area
            if override.res is not None:
                res = override.res
                if res == "1" and now == init:
                    now = self._port_target(init, h)
                elif res != "1":
                    now = init
            now = override.now or now
        result = {"res": res, "Mobile": number, "Area": area, "Init_isp": init, "Now_isp": now}
        return {"code": 0, "reason": REASONS[0], "result": result}

    @staticmethod
    def _port_target(init: str, h: bytes) -> str:
        choices = [c for c in _PORT_TARGETS if c != init]
        return choices[h[8] % len(choices)]

    # -- requests ----------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Return a copy of the recorded requests, oldest first."""
        with self._lock:
            return list(self._records)

    def clear_requests(self) -> None:
        """Forget the recorded requests (the counters are kept)."""
        with self._lock:
            self._records.clear()

    def handle(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
        client: tuple[str, int] | None = None,
    ) -> Reply:
        """Answer one request as the vendor would, charging and recording it."""
        arrived = self._clock()
        route = path.rstrip("/")
        params = dict(params)
        fault: Fault | None = None
        code: int | None = None
        try:
            if route not in ("/carrier", "/balance"):
                return Reply(404, HTML_TYPE, nginx_page("404 Not Found"))
            with self._lock:
                fault = self._take_fault()
                if route == "/carrier":
                    self._carrier_calls += 1
                    pinned = self._overrides.get(params.get("mobile", ""))
                    if fault is None and pinned is not None:
                        fault = pinned.fault
                epoch = self._release_epoch
            delay = self._latency + (self._slow_seconds if fault == "slow" else 0.0)
            if fault == "hang":
                return Reply(
                    0, "", b"", action="hang", release=self._releaser(epoch, route, params)
                )
            if fault == "reset":
                return Reply(0, "", b"", delay=delay, action="reset")
            if isinstance(fault, str) and fault in HTTP_FAULTS:
                status, page = HTTP_FAULTS[fault]
                return Reply(status, HTML_TYPE, page, delay=delay)
            if isinstance(fault, int):
                body = error_body(fault)
            else:
                body = self._answer(route, params)
                if body["code"] == 0 and fault in ("unknown_isp", "missing_field"):
                    body["result"] = spoil(body["result"], fault)
            code = body["code"]
            data = render_body(body, trailing_comma=fault == "trailing_comma")
            if fault == "truncated":
                # Cut mid-body (maybe mid-character); Content-Length matches what is sent.
                data = data[: len(data) // 2]
            return Reply(200, JSON_TYPE, data, delay=delay)
        finally:
            record = RecordedRequest(
                method, path, params, dict(headers or {}), fault, code, arrived, client
            )
            with self._lock:
                self._records.append(record)

    def _releaser(
        self, epoch: int, route: str, params: Mapping[str, str]
    ) -> Callable[[], Reply | None]:
        def release() -> Reply | None:
            if self._release_epoch == epoch:
                return None
            return Reply(200, JSON_TYPE, render_body(self._answer(route, params)))

        return release

    def _answer(self, route: str, params: Mapping[str, str]) -> dict[str, Any]:
        apikey = params.get("apikey", "")
        mobile = params.get("mobile", "")
        if not apikey or (route == "/carrier" and not mobile):
            return error_body(1)
        if apikey != self.apikey:
            return error_body(-1)
        if route == "/balance":
            with self._lock:
                balance = self._balance
            result = {"feeType": self._fee_type, "balance": str(balance)}
            return {"code": 0, "reason": REASONS[0], "result": result}
        with self._lock:
            override = self._overrides.get(mobile)
        body = self._result_for(mobile, override)
        if body["code"] in (-2, -3):
            return body  # the number is checked before the account
        # Check and charge under one lock so concurrent queries cannot overdraw.
        with self._lock:
            if self._fee_type == PREPAID and self._balance <= 0:
                return error_body(-5)
            if body["code"] != 0:
                return body  # a pinned error code: answered, not charged
            self._balance -= 1
            self._paid += 1
        return body
