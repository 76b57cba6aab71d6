"""Hostile input: junk numbers never cost a query, odd vendor bodies never crash or get cached.

Junk goes through normalize -> route -> send with hypothesis; odd bodies are
served to a real CarrierClient by an in-process requests adapter (no socket,
no global patching), and, for a few, by FakeCarrierServer over loopback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import requests.adapters
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import smsroute
import smsroute.core.vendor
from smsroute import (
    Carrier,
    CarrierClient,
    CarrierInfo,
    InvalidNumber,
    LookupFailed,
    MemoryCache,
    Router,
    TransportError,
    codec,
    normalize,
)
from smsroute.client import MAX_BODY
from smsroute.testing import FakeCarrierServer, FakeClock

NUMBER = "13800138000"
BASE = "https://vendor.test"
GOOD_RESULT = {
    "res": "1",
    "Mobile": NUMBER,
    "Area": "湖北-宜昌",
    "Init_isp": "移动",
    "Now_isp": "电信",
}
HYPOTHESIS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def good_body(*, escaped: bool = False, **result: Any) -> bytes:
    """Return a well-formed /carrier answer, with some result fields replaced."""
    return json.dumps(
        {"code": 0, "reason": "Succ", "result": {**GOOD_RESULT, **result}}, ensure_ascii=escaped
    ).encode()


# -- junk numbers ---------------------------------------------------------------


class CountingClient:
    """A lookup client that answers the segment's operator and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def lookup(self, number: str, *, timeout: float | None = None) -> CarrierInfo:
        """Return the segment table's operator for ``number``."""
        with self._lock:
            self.calls += 1
        carrier = smsroute.initial_carrier(number) or Carrier.MOBILE
        return CarrierInfo(number, 0, "北京-北京", carrier, carrier)


class Sink:
    """A gateway counting its deliveries."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    def __call__(self, mobile: str, message: object) -> None:
        self.sent.append((mobile, message))


JUNK = st.one_of(
    st.text(),
    st.text(alphabet="0123456789 +-().\u3000＋０１２３４５６７８９（）", max_size=30),
    st.from_regex(r"\A(\+?86|0086)?[ -]?1[3-9][0-9]{9}[ x]?\Z"),
    st.integers(),
    st.integers(min_value=10_000_000_000, max_value=19_999_999_999),
    st.binary(max_size=20),
    st.floats(),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.just("1" * 1_000_000),
    st.just("13800138000" * 10_000),
    st.just(b"13800138000"),
    st.just(bytearray(b"13800138000")),
    st.just(memoryview(b"13800138000")),
)


@pytest.fixture(scope="module")
def junk_router() -> tuple[Router, CountingClient, Sink]:
    """Return a router over a counting client with one catch-all gateway."""
    client = CountingClient()
    sink = Sink()
    return Router(client, {}, default=sink), client, sink


@HYPOTHESIS
@given(JUNK)
@example("１３８ ００１３ ８０００")
@example("+86 (138) 0013-8000")
@example("\x00" * 11)
@example("13800138000\n")
@example("1380013800０")
@example("¹³⁸⁰⁰¹³⁸⁰⁰⁰")
@example("٣٨٠٠١٣٨٠٠٠١")
@example(-13800138000)
@example(13800138000.0)
def test_junk_numbers_raise_only_invalid_number_and_spend_nothing(junk_router, junk):
    """Whatever the input, route() and send() either route it or raise InvalidNumber, free."""
    router, client, sink = junk_router
    try:
        # The router asks for segments its table does not know as allocated.
        expected: str | None = normalize(junk, unknown_segments=True)
    except InvalidNumber:
        expected = None
    calls, sent = client.calls, len(sink.sent)
    for attempt in (router.route, lambda n: router.send(n, "hello")):
        if expected is None:
            with pytest.raises(InvalidNumber):
                attempt(junk)
            assert client.calls == calls  # no query spent on it
        else:
            attempt(junk)
    if expected is None:
        assert len(sink.sent) == sent
    else:
        assert sink.sent[sent:] == [(expected, "hello")]


@HYPOTHESIS
@given(st.lists(JUNK, max_size=8))
def test_route_many_puts_only_invalid_number_in_place(junk_router, items):
    """route_many(return_exceptions=True) returns a Decision or an InvalidNumber per item."""
    router, client, _ = junk_router
    calls = client.calls
    out = router.route_many(items, return_exceptions=True)
    assert len(out) == len(items)
    for item, result in zip(items, out, strict=True):
        if isinstance(result, InvalidNumber):
            with pytest.raises(InvalidNumber):
                normalize(item, unknown_segments=True)
        else:
            assert result.mobile == normalize(item, unknown_segments=True)
    valid = {r.mobile for r in out if not isinstance(r, InvalidNumber)}
    assert client.calls - calls <= len(valid)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeCarrierServer]:
    """Yield one fake vendor on 127.0.0.1 for the module."""
    with FakeCarrierServer() as s:
        yield s


@settings(max_examples=60, deadline=None, database=None)
@given(JUNK)
def test_real_client_spends_no_query_on_junk(server, junk):
    """CarrierClient.lookup raises InvalidNumber on junk before any request reaches the vendor."""
    try:
        normalize(junk, unknown_segments=True)  # what the client accepts (the vendor is asked)
    except InvalidNumber:
        pass
    else:
        return
    requests_before = len(server.requests)
    with CarrierClient(server.apikey, base_url=server.url) as client, pytest.raises(InvalidNumber):
        client.lookup(junk)
    assert len(server.requests) == requests_before


# -- odd vendor bodies ------------------------------------------------------------


class BodyAdapter(requests.adapters.BaseAdapter):
    """A requests transport answering every request with the current ``body``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = good_body()
        self.status = 200
        self.calls = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Return a response carrying the current body."""
        self.calls += 1
        resp = requests.Response()
        resp.status_code = self.status
        resp._content = self.body
        resp.headers["Content-Type"] = "application/json"
        resp.url = str(request.url)
        resp.request = request
        return resp

    def close(self) -> None:
        """Nothing to close."""


@pytest.fixture
def vendor() -> Iterator[tuple[CarrierClient, BodyAdapter]]:
    """Yield a client whose every request is answered by a BodyAdapter."""
    adapter = BodyAdapter()
    session = requests.Session()
    session.mount(BASE, adapter)
    client = CarrierClient(
        "k",
        base_url=BASE,
        session=session,
        retry=smsroute.default_retrying(attempts=1, sleep=lambda _s: None),
    )
    yield client, adapter
    client.close()


def deep(n: int) -> bytes:
    """Return a /carrier answer whose result is nested ``n`` objects deep."""
    return ('{"code":0,"reason":"Succ","result":' + '{"a":' * n + "1" + "}" * n + "}").encode()


NAN = float("nan")
ODD_BODIES: dict[str, bytes] = {
    "empty": b"",
    "null": b"null",
    "list": b"[]",
    "number": b"0",
    "string": b'"Succ"',
    "huge": good_body(Area="湖" * MAX_BODY),
    "huge padding": good_body() + b" " * MAX_BODY,
    "deep array": b"[" * 30_000 + b"]" * 30_000,
    "deep object": deep(10_000),
    "deep with trailing comma": b'{"code":0,"x":' + b"[" * 20_000 + b"1," + b"]" * 20_000 + b"}",
    "null result": b'{"code":0,"reason":"Succ","result":null}',
    "result list": b'{"code":0,"reason":"Succ","result":[]}',
    "result text": b'{"code":0,"reason":"Succ","result":"ok"}',
    "no code": json.dumps({"reason": "Succ", "result": GOOD_RESULT}).encode(),
    "code NaN": b'{"code":NaN,"reason":"Succ","result":{}}',
    "code Infinity": b'{"code":Infinity,"reason":"Succ","result":{}}',
    "code float": b'{"code":0.0,"reason":"Succ","result":{}}',
    "code true": b'{"code":true,"reason":"Succ","result":{}}',
    "code non-ascii digit": '{"code":"٠","reason":"Succ","result":{}}'.encode(),
    "res NaN": good_body(res=NAN),
    "res -Infinity": good_body(res=-math.inf),
    "res huge": good_body(res=10**40),
    "res superscript": good_body(res="¹"),
    "gbk": good_body().decode().encode("gbk"),
    "utf-16": good_body().decode().encode("utf-16"),
    "latin-1 junk": b'{"code":0,"reason":"\xff\xfe","result":{}}',
    "lone surrogate Now_isp": good_body(Now_isp="\ud800", escaped=True),
    "lone surrogate Area": good_body(Area="湖北-\ud800", escaped=True),
    "control char Area": good_body(Area="湖北\n宜昌"),
    "nul Area": good_body(Area="\x00"),
    "duplicated Now_isp": good_body()[:-2] + ', "Now_isp": "联通"}}'.encode(),
    "duplicated code": b'{"code":-8,"code":0,' + good_body()[1:],
    "other number": good_body(Mobile="13900139000"),
    "unknown operator": good_body(Now_isp="火星移动"),
    "empty operator": good_body(Init_isp=""),
    "res 2": good_body(res="2"),
    "formula Area": good_body(Area="=cmd|' /C calc'!A0"),
}
WRONG_TYPES: list[object] = [None, True, 1.5, NAN, math.inf, [], {}, [1, "2"], {"a": {}}, ""]
# Fields the parser does not need, or may lack: these values still make an answer.
HARMLESS = {("reason", v) for v in map(repr, WRONG_TYPES)} | {
    ("Mobile", "None"),
    ("Area", "None"),
    ("Area", "''"),
}


def assert_rejected_and_not_cached(client: CarrierClient, adapter: BodyAdapter) -> None:
    """Check the client raises TransportError only, and a router caches nothing but good answers.

    A charged answer that cannot be used is remembered as a brief negative
    (like a -4), so it is not bought again; it is never cached as an answer.
    """
    with pytest.raises(TransportError) as raised:
        client.lookup(NUMBER)
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    router = Router(client, {}, default="gw", cache=cache, clock=clock)
    decision = router.route(NUMBER)
    assert decision.source == "fallback"
    hit = cache.get(NUMBER)
    if smsroute.core.vendor.unusable(raised.value):
        assert hit is not None
        assert codec.is_negative(hit[0])
        clock.advance(cache.policy.negative_ttl + 1)
    else:
        assert hit is None
    adapter.body = good_body()
    assert router.route(NUMBER).source == "upstream"
    assert len(cache) == 1


@pytest.mark.parametrize("name", list(ODD_BODIES))
def test_odd_body_is_a_transport_error_never_cached(vendor, name):
    """An odd /carrier body raises TransportError only and never enters the cache."""
    client, adapter = vendor
    adapter.body = ODD_BODIES[name]
    assert_rejected_and_not_cached(client, adapter)


@pytest.mark.parametrize("value", WRONG_TYPES, ids=repr)
@pytest.mark.parametrize("field", ["code", "reason", "result", *GOOD_RESULT])
def test_wrong_type_in_every_field(vendor, field, value):
    """A wrong type in any field is a TransportError, unless the parser does not need the field."""
    client, adapter = vendor
    body: dict[str, Any] = {"code": 0, "reason": "Succ", "result": dict(GOOD_RESULT)}
    if field in GOOD_RESULT:
        if value is None:
            del body["result"][field]
        else:
            body["result"][field] = value
    else:
        body[field] = value
    adapter.body = json.dumps(body).encode()
    if (field, repr(value)) in HARMLESS:
        info = client.lookup(NUMBER)
        assert info.current is Carrier.TELECOM
        return
    assert_rejected_and_not_cached(client, adapter)


@pytest.mark.parametrize("status", [201, 204, 301, 302, 400, 403, 404, 429, 500, 503])
def test_non_200_status_is_a_transport_error(vendor, status):
    """A good body under a status other than 200 is not an answer."""
    client, adapter = vendor
    adapter.status = status
    with pytest.raises(TransportError):
        client.lookup(NUMBER)


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_VALUES = st.one_of(
    JSON,
    st.sampled_from(["0", "1", "3", "4", "移动", "联通", "电信", "广电", NUMBER, " 电信 "]),
)


@HYPOTHESIS
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "code": st.one_of(st.just(0), st.just("0"), JSON),
            "reason": JSON,
            "result": st.one_of(
                JSON,
                st.fixed_dictionaries(
                    {}, optional=dict.fromkeys((*GOOD_RESULT, "extra"), FIELD_VALUES)
                ),
            ),
        },
    )
)
@example({"code": 0, "result": {**GOOD_RESULT, "Area": "湖北\t宜昌"}})
@example({"code": "0", "result": {**GOOD_RESULT, "res": 4, "Mobile": int(NUMBER)}})
def test_fuzzed_bodies_answer_or_raise_lookup_failed(vendor, body):
    """Any JSON body gives a well-formed answer or a LookupFailed; an answer survives the codec."""
    client, adapter = vendor
    adapter.body = json.dumps(body).encode()
    try:
        info = client.lookup(NUMBER)
    except LookupFailed:
        return
    assert isinstance(info.current, Carrier)
    assert isinstance(info.initial, Carrier)
    assert info.res in (0, 1, 3, 4)
    assert isinstance(info.area, str)
    answer = codec.encode(info)
    # Shared stores (Redis, SQLite) keep the text form: a paid answer must survive it.
    assert codec.loads(codec.dumps(answer)) == answer


@HYPOTHESIS
@given(st.binary(max_size=300))
@example(b"\xef\xbb\xbf" + good_body())
def test_fuzzed_bytes_never_crash_the_client(vendor, raw):
    """Arbitrary bytes as a body give an answer or a LookupFailed, nothing else."""
    client, adapter = vendor
    adapter.body = raw
    with contextlib.suppress(LookupFailed):
        client.lookup(NUMBER)


@HYPOTHESIS
@given(st.dictionaries(st.sampled_from(["feeType", "balance", "x"]), FIELD_VALUES, max_size=3))
def test_fuzzed_balance_bodies(vendor, result):
    """Any /balance result gives a Balance with an int, or a LookupFailed."""
    client, adapter = vendor
    adapter.body = json.dumps({"code": 0, "reason": "Succ", "result": result}).encode()
    try:
        balance = client.balance()
    except LookupFailed:
        return
    assert isinstance(balance.remaining, int)
    assert isinstance(balance.fee_type, str)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"now": "火星移动"}, "unknown Now_isp"),
        ({"init": "火星移动"}, "unknown Init_isp"),
        ({"res": "9"}, "unknown res"),
        ({"res": "x"}, "res is not a number"),
        ({"area": "湖北-" + "宜" * 80}, "Area is too long"),
    ],
)
def test_odd_answers_over_loopback_are_not_cached(server, spec, match):
    """Per-number odd answers are TransportErrors, cached only as a brief negative, not rebought."""
    number = "13800139999"
    server.set_answer(number, **spec)
    try:
        with CarrierClient(
            server.apikey,
            base_url=server.url,
            retry=smsroute.default_retrying(attempts=1, sleep=lambda _s: None),
        ) as client:
            with pytest.raises(TransportError, match=match):
                client.lookup(number)
            cache = MemoryCache()
            router = Router(client, {}, default="gw", cache=cache)
            paid = server.paid
            decision = router.route(number)
            assert decision.source == "fallback"
            hit = cache.get(number)
            assert hit is not None
            assert codec.is_negative(hit[0])  # remembered as "not found", never as an answer
            assert router.route(number).source == "fallback"
            assert server.paid == paid + 1  # bought once, not on every send
    finally:
        server.clear_answer(number)


# -- untrusted vendor text ----------------------------------------------------------

TERMINAL_TRICKS = "\x1b[2J\x1b[H\x07\x1b]0;pwned\x07\u202etxt.exe\r\n\x00\x7f\x9b31m"


@pytest.mark.parametrize("code", [-1, -4, -8, 1])
def test_vendor_reason_is_stripped_of_controls_and_capped(vendor, caplog, code):
    """ESC, BEL, bidi overrides and 60 KB of reason never reach an exception or a log line raw."""
    client, adapter = vendor
    reason = TERMINAL_TRICKS + "系统错误" + "x" * 60_000
    adapter.body = json.dumps({"code": code, "reason": reason}).encode()
    with pytest.raises(LookupFailed) as caught:
        client.lookup(NUMBER)
    exc = caught.value
    assert len(exc.reason) <= smsroute.core.vendor.REASON_LIMIT  # type: ignore[attr-defined]
    assert "系统错误" in exc.reason  # type: ignore[attr-defined]
    with caplog.at_level(logging.DEBUG, logger="smsroute"):
        decision = Router(client, {}, default="gw").route(NUMBER)
    texts = [str(exc), exc.reason, decision.reason or "", *caplog.messages]  # type: ignore[attr-defined]
    assert any("系统错误" in t for t in caplog.messages)  # the fallback was logged
    for text in texts:
        assert len(text) < 1000
        assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text), repr(text)


GOOD_AREAS = [
    "湖北-宜昌",
    "北京-北京",
    "广西-南宁",
    "内蒙古-呼和浩特",
    "北京",
    "广西壮族自治区-南宁市",
    "新疆-克孜勒苏柯尔克孜自治州",
    "",
]
BAD_AREAS = [
    "=cmd|' /C calc'!A0",
    "+SUM(1+1)",
    "@SUM(A1)",
    "-2+3",
    "湖北-宜昌;rm -rf",
    "Hubei-Yichang",
    "湖北--宜昌",
    "-宜昌",
    "湖北-宜昌-西陵",
    "湖北 宜昌",
    "<script>",
    "湖北-\u202e昌宜",
    "湖",
    "湖北-宜昌\u200b",
]


@pytest.mark.parametrize("area", GOOD_AREAS)
def test_place_name_areas_are_answers(vendor, area):
    """An empty Area or a 省-市 pair of CJK place names (or a province alone) is accepted."""
    client, adapter = vendor
    adapter.body = good_body(Area=area)
    assert client.lookup(NUMBER).area == area


@pytest.mark.parametrize("area", BAD_AREAS)
def test_other_areas_are_unusable_paid_answers(vendor, area):
    """Any other Area is no answer: not cached, not bought again, marked unusable and billed."""
    client, adapter = vendor
    adapter.body = good_body(Area=area)
    with pytest.raises(TransportError) as caught:
        client.lookup(NUMBER)
    assert adapter.calls == 1  # paid for once, not asked again
    assert smsroute.core.vendor.unusable(caught.value) == "Area"
    assert caught.value.maybe_billed is True
    assert caught.value.retryable is False
    assert "calc" not in str(caught.value)  # the vendor's text is not quoted back
    assert_rejected_and_not_cached(client, adapter)
