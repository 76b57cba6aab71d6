"""Test doubles for code that talks to the carrier-lookup vendor (isp.qxt800.com).

:class:`FakeCarrierServer` is a real HTTP/1.1 server on 127.0.0.1 speaking the
vendor protocol (``/carrier`` and ``/balance``, GET or POST), with switchable
faults; :func:`mock_vendor` serves the same answers through ``responses``
without a socket; :class:`FakeClock` is an injectable clock. Both doubles
share one sans-I/O core, :class:`VendorSimulator`, so they cannot disagree.

::

    from smsroute.testing import FakeCarrierServer

    with FakeCarrierServer(balance=10) as server:
        r = requests.post(server.url + "/carrier",
                          data={"apikey": server.apikey, "mobile": "13972565391"})
        assert r.json()["result"]["Now_isp"] == "电信"
        server.fault = "http502"          # every request now fails
        server.set_fault(-8, for_requests=2)  # the next two answer code -8
        assert server.paid == 1

Answers are deterministic: a hash of ``(seed, number)`` decides whether a
number is ported (``ported_share`` of them), where it is and what it ported
to. ``set_answer()`` pins the answer for a number. Nothing here imports pytest
or responses at import time; the fixtures live in :mod:`smsroute.pytest_plugin`.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import selectors
import socket
import socketserver
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypedDict
from urllib.parse import parse_qs, urlsplit

from smsroute import segments
from smsroute.carrier import Carrier
from smsroute.netaddr import is_loopback

if TYPE_CHECKING:
    import responses
    from requests import PreparedRequest

__all__ = [
    "AREAS",
    "DOC_NUMBER",
    "FAULTS",
    "REASONS",
    "AnswerSpec",
    "FakeCarrierServer",
    "FakeClock",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "Reply",
    "VendorMock",
    "VendorSimulator",
    "mock_vendor",
]

REASONS: Final[Mapping[int, str]] = {
    0: "Succ",
    1: "请求参数缺失,apikey长度不对,查询的手机号码长度不对,查询的手机号码有误",
    -1: "apikey信息不匹配(用户信息不正确)apikey不正确",
    -2: "查询的手机号码长度不对",
    -3: "请填写正确的手机号码",
    -4: "未查询到相关信息或填写正确的手机号码再查询",
    -5: "当前余额不足发起本次查询请求,请与供应商联系",
    -8: "系统错误,请稍候再试",
    -9: "ip地址鉴权失败",
}
"""The vendor's reason text for every code in its code table."""

FaultKind = Literal[
    "http500",
    "http502",
    "html",
    "truncated",
    "trailing_comma",
    "unknown_isp",
    "missing_field",
    "hang",
    "reset",
    "slow",
]
Fault = int | FaultKind
"""A vendor error code to answer with, or the name of a transport-level fault."""

FAULTS: Final[tuple[FaultKind, ...]] = (
    "http500",
    "http502",
    "html",
    "truncated",
    "trailing_comma",
    "unknown_isp",
    "missing_field",
    "hang",
    "reset",
    "slow",
)

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

_PREPAID: Final = "预付费"
_POSTPAID: Final = "后付费"
_UNKNOWN_REASON: Final = "未知错误"
_PORT_TARGETS: Final = (Carrier.MOBILE.value, Carrier.UNICOM.value, Carrier.TELECOM.value)
_JSON_TYPE: Final = "application/json; charset=utf-8"
_HTML_TYPE: Final = "text/html; charset=utf-8"
_MAX_BODY: Final = 64 * 1024
_HOLD_POLL: Final = 0.02  # how often a held ("hang") request checks for release


def _nginx_page(status: str) -> bytes:
    return (
        f"<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


_HTTP_FAULTS: Final[Mapping[str, tuple[int, bytes]]] = {
    "http500": (500, _nginx_page("500 Internal Server Error")),
    "http502": (502, _nginx_page("502 Bad Gateway")),
    # A captive portal or a maintenance page: status 200, but not JSON.
    "html": (
        200,
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>系统维护</title></head>"
        "<body><h1>系统维护中,请稍后访问</h1></body></html>".encode(),
    ),
}


class AnswerSpec(TypedDict, total=False):
    """The keyword arguments of :meth:`VendorSimulator.set_answer`, for ``answers=``."""

    res: int | str
    init: str
    now: str
    area: str
    code: int
    reason: str
    fault: Fault | None


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
class Reply:
    """What the simulator wants sent: status, content type, body, and how to send it."""

    status: int
    content_type: str
    body: bytes
    delay: float = 0.0
    # "hang": hold the request, polling ``release`` until it returns the reply to send;
    # "reset": close the connection abruptly without answering.
    action: Literal["hang", "reset"] | None = None
    release: Callable[[], Reply | None] | None = field(default=None, compare=False, repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """Return the response headers (Content-Type and Content-Length)."""
        return {"Content-Type": self.content_type, "Content-Length": str(len(self.body))}


@dataclass(frozen=True)
class _Override:
    res: str | None = None
    init: str | None = None
    now: str | None = None
    area: str | None = None
    code: int | None = None
    reason: str | None = None
    fault: Fault | None = None


def _check_fault(fault: object) -> Fault | None:
    if fault is None or fault in FAULTS:
        return fault
    if isinstance(fault, int) and not isinstance(fault, bool):
        return fault
    raise ValueError(f"unknown fault {fault!r}: want None, an int code or one of {FAULTS}")


def _check_fee_type(fee_type: str) -> str:
    if fee_type not in (_PREPAID, _POSTPAID):
        raise ValueError(f"fee_type must be {_PREPAID!r} or {_POSTPAID!r}, not {fee_type!r}")
    return fee_type


def _carrier_name(value: str) -> str:
    return value.value if isinstance(value, Carrier) else value


def _error(code: int, reason: str | None = None) -> dict[str, Any]:
    # The document shows no error body; a ``null`` result keeps all three keys present.
    return {
        "code": code,
        "reason": REASONS.get(code, _UNKNOWN_REASON) if reason is None else reason,
        "result": None,
    }


def _render(body: Mapping[str, Any], *, trailing_comma: bool = False) -> bytes:
    if not trailing_comma or not isinstance(body.get("result"), Mapping):
        return json.dumps(body, ensure_ascii=False).encode()
    # The document's own sample: pretty-printed, a comma after the last result member.
    members = "".join(
        f"            {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},\n"
        for k, v in body["result"].items()
    )
    return (
        "{\n"
        f'    "code": {json.dumps(body["code"])},\n'
        f'    "reason": {json.dumps(body["reason"], ensure_ascii=False)},\n'
        '    "result": \n'
        "        {\n"
        f"{members}"
        "        }\n"
        "}\n"
    ).encode()


class VendorSimulator:
    """The vendor's behaviour without any I/O: ``handle(request) -> Reply``; thread-safe.

    Holds the account (apikey, balance, fee type), the pinned answers, the
    current fault and the record of requests. :class:`FakeCarrierServer` and
    :class:`VendorMock` are thin front ends over one of these.
    """

    def __init__(
        self,
        *,
        apikey: str = "test-apikey",
        balance: int = 100_000,
        fee_type: str = _PREPAID,
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
        fault = _check_fault(fault)
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

    def set_answer(
        self,
        number: str,
        *,
        res: int | str | None = None,
        init: str | None = None,
        now: str | None = None,
        area: str | None = None,
        code: int | None = None,
        reason: str | None = None,
        fault: Fault | None = None,
    ) -> None:
        """Pin the answer for one number; fields left out keep their computed values."""
        override = _Override(
            res=None if res is None else str(res),
            init=None if init is None else _carrier_name(init),
            now=None if now is None else _carrier_name(now),
            area=area,
            code=code,
            reason=reason,
            fault=_check_fault(fault),
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
            return _error(-2)
        if not (number.isascii() and number.isdigit()):
            return _error(-3)
        seg = segments.lookup(number)
        initial = segments.initial_carrier(number)
        if seg is None or initial is None or seg.length not in (None, 11):
            return _error(-3)  # not a mobile number: unallocated, or a 13-digit IoT segment
        if override is not None and override.code not in (None, 0):
            return _error(override.code, override.reason)
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
                return Reply(404, _HTML_TYPE, _nginx_page("404 Not Found"))
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
            if isinstance(fault, str) and fault in _HTTP_FAULTS:
                status, page = _HTTP_FAULTS[fault]
                return Reply(status, _HTML_TYPE, page, delay=delay)
            if isinstance(fault, int):
                body = _error(fault)
            else:
                body = self._answer(route, params)
                if body["code"] == 0 and fault in ("unknown_isp", "missing_field"):
                    body["result"] = self._spoil(body["result"], fault)
            code = body["code"]
            data = _render(body, trailing_comma=fault == "trailing_comma")
            if fault == "truncated":
                # Cut mid-body (maybe mid-character); Content-Length matches what is sent.
                data = data[: len(data) // 2]
            return Reply(200, _JSON_TYPE, data, delay=delay)
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
            return Reply(200, _JSON_TYPE, _render(self._answer(route, params)))

        return release

    def _answer(self, route: str, params: Mapping[str, str]) -> dict[str, Any]:
        apikey = params.get("apikey", "")
        mobile = params.get("mobile", "")
        if not apikey or (route == "/carrier" and not mobile):
            return _error(1)
        if apikey != self.apikey:
            return _error(-1)
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
            if self._fee_type == _PREPAID and self._balance <= 0:
                return _error(-5)
            if body["code"] != 0:
                return body  # a pinned error code: answered, not charged
            self._balance -= 1
            self._paid += 1
        return body

    @staticmethod
    def _spoil(result: Mapping[str, Any], fault: Fault) -> dict[str, Any]:
        spoiled = dict(result)
        if fault == "unknown_isp":
            if "Now_isp" in spoiled:
                spoiled["Now_isp"] = "火星移动"
        else:
            spoiled.pop("Now_isp" if "Now_isp" in spoiled else "balance", None)
        return spoiled


class _Facade:
    """Pass-through of the simulator's controls, shared by the server and the mock."""

    simulator: VendorSimulator

    @property
    def apikey(self) -> str:
        """Return the apikey the fake vendor accepts."""
        return self.simulator.apikey

    @property
    def balance(self) -> int:
        """Return the queries left on the account."""
        return self.simulator.balance

    @balance.setter
    def balance(self, value: int) -> None:
        self.simulator.balance = value

    @property
    def fee_type(self) -> str:
        """Return ``"预付费"`` or ``"后付费"``."""
        return self.simulator.fee_type

    @fee_type.setter
    def fee_type(self, value: str) -> None:
        self.simulator.fee_type = value

    @property
    def fault(self) -> Fault | None:
        """Return the fault applied to every request, or None."""
        return self.simulator.fault

    @fault.setter
    def fault(self, fault: Fault | None) -> None:
        self.simulator.set_fault(fault)

    @property
    def latency(self) -> float:
        """Return the seconds added before every answer."""
        return self.simulator.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.simulator.latency = seconds

    @property
    def slow_seconds(self) -> float:
        """Return the extra seconds the ``"slow"`` fault waits."""
        return self.simulator.slow_seconds

    @slow_seconds.setter
    def slow_seconds(self, seconds: float) -> None:
        self.simulator.slow_seconds = seconds

    @property
    def requests(self) -> list[RecordedRequest]:
        """Return a copy of the recorded requests, oldest first."""
        return self.simulator.requests

    @property
    def paid(self) -> int:
        """Return how many queries were charged."""
        return self.simulator.paid

    @property
    def carrier_calls(self) -> int:
        """Return how many ``/carrier`` requests arrived."""
        return self.simulator.carrier_calls

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self.simulator.clear_requests()

    def set_fault(self, fault: Fault | None, *, for_requests: int | None = None) -> None:
        """Apply a fault to all requests, or only to the next ``for_requests`` of them."""
        self.simulator.set_fault(fault, for_requests=for_requests)

    def set_answer(
        self,
        number: str,
        *,
        res: int | str | None = None,
        init: str | None = None,
        now: str | None = None,
        area: str | None = None,
        code: int | None = None,
        reason: str | None = None,
        fault: Fault | None = None,
    ) -> None:
        """Pin the answer for one number; fields left out keep their computed values."""
        self.simulator.set_answer(
            number, res=res, init=init, now=now, area=area, code=code, reason=reason, fault=fault
        )

    def clear_answer(self, number: str) -> None:
        """Forget a pinned answer."""
        self.simulator.clear_answer(number)

    def answer_for(self, number: str) -> dict[str, Any]:
        """Return the body a well-formed query for ``number`` gets: no charge, no fault."""
        return self.simulator.answer_for(number)


# -- the HTTP front end -------------------------------------------------------


class _DroppedError(Exception):
    """Raised inside a handler to close the connection without (further) answer."""


def _form(text: str) -> dict[str, str]:
    # First value wins for a repeated name; blanks are kept so "apikey=" reads as empty.
    parsed = parse_qs(text, keep_blank_values=True, encoding="utf-8", errors="replace")
    return {k: v[0] for k, v in parsed.items()}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeCarrierServer"
    # Buffered writes send status line, headers and body in one segment, and
    # TCP_NODELAY keeps that segment from waiting on the client's delayed ACK.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: _HTTPServer

    def version_string(self) -> str:
        """Return the Server header value."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: a test server should not write to stderr per request."""

    def setup(self) -> None:
        """Register the connection so that stop() can close it."""
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        """Unregister the connection."""
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def handle(self) -> None:
        """Serve requests on the connection until it closes or is dropped."""
        with contextlib.suppress(_DroppedError):
            super().handle()

    def do_GET(self) -> None:
        """Answer a GET (parameters in the query string)."""
        self._serve({})

    def do_POST(self) -> None:
        """Answer a POST (form body, plus any parameters in the query string)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.send_error(411)  # the vendor's clients send a Content-Length
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self.send_error(400 if length < 0 else 413)
            return
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        form = {}
        if ctype in ("", "application/x-www-form-urlencoded"):
            form = _form(raw.decode("utf-8", errors="replace"))
        self._serve(form)

    def _serve(self, form: Mapping[str, str]) -> None:
        url = urlsplit(self.path)
        params = _form(url.query)
        params.update(form)
        host, port = self.client_address[:2]
        reply = self.server.simulator.handle(
            self.command, url.path, params, dict(self.headers.items()), (str(host), int(port))
        )
        stopping = self.server.stopping
        if reply.delay > 0 and stopping.wait(reply.delay):
            self._drop()
        while reply.release is not None:
            if stopping.wait(_HOLD_POLL):
                self._drop()
            released = reply.release()
            if released is not None:
                reply = released
        if reply.action == "reset":
            self._reset()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def _drop(self) -> None:
        self.close_connection = True
        raise _DroppedError

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST rather than FIN: the client sees
        # ECONNRESET. Close the files too, or the socket stays open behind them.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.wfile.close()
        self.rfile.close()
        self.connection.close()
        raise _DroppedError


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    # handle_request() is called only once the selector saw a pending
    # connection; a zero timeout keeps it from blocking should the client
    # have given up in between.
    timeout = 0.0

    def __init__(self, address: tuple[str, int], simulator: VendorSimulator) -> None:
        self.simulator = simulator
        self.stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_changed = threading.Condition()
        # A socket pair wakes the accept loop at once on stop(); socketserver's
        # own shutdown() waits up to a whole poll interval.
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            super().__init__(address, _Handler)
        except BaseException:
            self._wake_r.close()
            self._wake_w.close()
            raise

    def serve_until_stopped(self) -> None:
        """Accept connections until stop_serving() is called."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self.stopping.is_set():
                ready = selector.select()
                if self.stopping.is_set():
                    break
                if any(key.fileobj is self.socket for key, _ in ready):
                    self.handle_request()  # accepts without blocking: see ``timeout``

    def stop_serving(self) -> None:
        """Make serve_until_stopped() return and held handlers let go."""
        self.stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def server_close(self) -> None:
        """Close the listening socket and the wake-up pair."""
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup, which can take seconds."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def track(self, conn: socket.socket) -> None:
        """Remember an open connection (or close it at once if stopping)."""
        with self._conns_changed:
            self._conns.add(conn)
        if self.stopping.is_set():
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def untrack(self, conn: socket.socket) -> None:
        """Forget a closed connection."""
        with self._conns_changed:
            self._conns.discard(conn)
            self._conns_changed.notify_all()

    def close_connections(self, timeout: float) -> None:
        """Wake every handler blocked on a read, then wait for them to finish."""
        with self._conns_changed:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        with self._conns_changed:
            self._conns_changed.wait_for(lambda: not self._conns, timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that went away; report anything else."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class FakeCarrierServer(_Facade):
    """A real HTTP/1.1 server on loopback that speaks the vendor's protocol.

    Runs in a background thread; ``with FakeCarrierServer() as server:``
    starts and stops it. Every control (``fault``, ``latency``, ``balance``,
    ``set_answer()``, ``set_fault()``) may be changed while it serves.
    """

    def __init__(
        self,
        *,
        apikey: str = "test-apikey",
        balance: int = 100_000,
        fee_type: str = _PREPAID,
        ported_share: float = 0.1,
        seed: int | str = 0,
        latency: float = 0.0,
        answers: Mapping[str, AnswerSpec] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        slow_seconds: float = 1.0,
        allow_remote: bool = False,
        simulator: VendorSimulator | None = None,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"refusing to bind {host!r}: a test server listens on loopback only"
                " (pass allow_remote=True to override)"
            )
        self.simulator = simulator or VendorSimulator(
            apikey=apikey,
            balance=balance,
            fee_type=fee_type,
            ported_share=ported_share,
            seed=seed,
            latency=latency,
            slow_seconds=slow_seconds,
            answers=answers,
        )
        self._host = host
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._stopped = threading.Event()

    def __repr__(self) -> str:
        where = self.url if self._httpd is not None else "not started"
        return f"<FakeCarrierServer {where}>"

    @property
    def port(self) -> int:
        """Return the bound TCP port."""
        if self._httpd is None:
            raise RuntimeError("FakeCarrierServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Return the base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        if self._httpd is None:
            raise RuntimeError("FakeCarrierServer is not started")
        host = str(self._httpd.server_address[0])
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> FakeCarrierServer:
        """Bind and serve in a background thread; return self (a no-op when running)."""
        with self._state_lock:
            if self._stopped.is_set():
                raise RuntimeError("a stopped FakeCarrierServer cannot be restarted")
            if self._httpd is not None:
                return self
            cls = _HTTPServer6 if ":" in self._host else _HTTPServer
            httpd = cls((self._host, self._port), self.simulator)
            self._thread = threading.Thread(
                target=httpd.serve_until_stopped,
                name=f"FakeCarrierServer:{httpd.server_address[1]}",
                daemon=True,
            )
            self._httpd = httpd
            self._thread.start()
            return self

    def stop(self) -> None:
        """Stop serving, drop held requests, close every socket; idempotent."""
        with self._state_lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
            httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        httpd.stop_serving()
        thread.join(timeout=1.0)
        httpd.server_close()
        httpd.close_connections(timeout=1.0)

    def serve_until_interrupted(self) -> None:
        """Serve in the foreground until Ctrl-C (or stop() from another thread), then stop."""
        self.start()
        try:
            while not self._stopped.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> FakeCarrierServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- the responses front end --------------------------------------------------


class VendorMock(_Facade):
    """Serve the vendor's answers through a ``responses.RequestsMock``: no socket.

    Registers one stub matching GET and POST on ``{base_url}/carrier`` and
    ``{base_url}/balance``. Latency and the ``"slow"`` fault call ``sleep``
    when one is given (e.g. ``FakeClock.sleep``) and are skipped otherwise;
    ``"hang"`` raises ``requests.ReadTimeout``, ``"reset"`` raises
    ``requests.ConnectionError``. With ``assert_all_requests_are_fired=True``
    the stub counts as fired after any one call.
    """

    def __init__(
        self,
        rsps: responses.RequestsMock,
        *,
        base_url: str = "https://isp.qxt800.com",
        simulator: VendorSimulator | None = None,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.simulator = simulator if simulator is not None else VendorSimulator()
        self.base_url = base_url.rstrip("/")
        self._base_path = urlsplit(self.base_url).path
        self._sleep = sleep
        self.stub = _vendor_response_class()(
            method="POST",
            url=re.compile(re.escape(self.base_url) + r"/(?:carrier|balance)/?(?:\?.*)?\Z"),
            callback=self._callback,
            content_type=None,
        )
        rsps.add(self.stub)

    def _callback(self, request: PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        import requests

        url = urlsplit(str(request.url))
        params = _form(url.query)
        if request.method == "POST" and request.body:
            ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype in ("", "application/x-www-form-urlencoded"):
                body = request.body
                text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
                params.update(_form(text))
        path = url.path[len(self._base_path) :] if self._base_path else url.path
        reply = self.simulator.handle(
            str(request.method), path, params, dict(request.headers.items())
        )
        if reply.action == "hang":
            raise requests.ReadTimeout("FakeCarrier: the vendor did not answer (hang fault)")
        if reply.delay and self._sleep is not None:
            self._sleep(reply.delay)
        if reply.action == "reset":
            raise requests.ConnectionError(ConnectionResetError(104, "Connection reset by peer"))
        return reply.status, reply.headers, reply.body


def _vendor_response_class() -> type[responses.CallbackResponse]:
    import responses

    class _VendorResponse(responses.CallbackResponse):
        # One stub for both methods and both paths, so that a test using only
        # POST /carrier does not trip assert_all_requests_are_fired.
        def matches(self, request: PreparedRequest) -> tuple[bool, str]:
            if request.method not in ("GET", "POST"):
                return False, "Method does not match"
            if not isinstance(self.url, re.Pattern) or not self.url.match(str(request.url)):
                return False, "URL does not match"
            return True, ""

    return _VendorResponse


def mock_vendor(
    rsps: responses.RequestsMock,
    *,
    base_url: str = "https://isp.qxt800.com",
    answers: Mapping[str, AnswerSpec] | None = None,
    balance: int = 100_000,
    apikey: str = "test-apikey",
    fee_type: str = _PREPAID,
    ported_share: float = 0.1,
    seed: int | str = 0,
    simulator: VendorSimulator | None = None,
    sleep: Callable[[float], object] | None = None,
) -> VendorMock:
    """Register the fake vendor on ``rsps`` and return its controls."""
    if simulator is None:
        simulator = VendorSimulator(
            apikey=apikey,
            balance=balance,
            fee_type=fee_type,
            ported_share=ported_share,
            seed=seed,
            answers=answers,
        )
    return VendorMock(rsps, base_url=base_url, simulator=simulator, sleep=sleep)


# -- time ---------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when told: pass it as ``clock=`` and ``sleep=``; thread-safe."""

    # The default start is not 0 so that code treating a zero timestamp as
    # "never" is not fooled.
    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        """Return the current fake time."""
        with self._lock:
            return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self()})"

    def advance(self, seconds: float) -> float:
        """Move the time forward and return the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += seconds
            return self._now

    def sleep(self, seconds: float) -> None:
        """Record the sleep and advance by it, returning at once."""
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds
