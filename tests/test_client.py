"""Tests for CarrierClient against the vendor API, mocked with `responses` (no network)."""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import matchers

import smsroute
from smsroute import (
    Balance,
    BalanceExhausted,
    Carrier,
    CarrierClient,
    CarrierInfo,
    ConfigurationError,
    InvalidNumber,
    LookupFailed,
    NumberNotFound,
    RequestRejected,
    ServiceError,
    TransportError,
    Unauthorized,
)
from smsroute.client import MAX_BODY

# The vendor document's sample key.
APIKEY = "7c11272au708345c834b8ue81ac78972"
BASE = "https://isp.qxt800.com"
CARRIER_URL = BASE + "/carrier"
BALANCE_URL = BASE + "/balance"
NUMBER = "13972565391"

# The vendor document's examples, verbatim (the balance one has a trailing comma;
# \x20 keeps the document's trailing spaces).
DOC_CARRIER = """{
    "code": 0,
    "reason": "Succ",
    "result":\x20
        {
            "res": "1",
            "Mobile": "13972565391",
            "Area": "湖北-宜昌",
            "Init_isp": "移动",
            "Now_isp": "电信"
        }
}"""
DOC_BALANCE = """{
    "code": 0,
    "reason": "Succ",
    "result":\x20
        {
            "feeType": "预付费",
            "balance": "12048",\x20\x20\x20\x20
        }
}"""


def answer(**changes: object) -> dict[str, object]:
    """Return a /carrier success body with some result fields changed (None drops one)."""
    result: dict[str, object] = {
        "res": "0",
        "Mobile": NUMBER,
        "Area": "湖北-宜昌",
        "Init_isp": "移动",
        "Now_isp": "移动",
    }
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return {"code": 0, "reason": "Succ", "result": result}


@pytest.fixture
def rsps():
    """Yield a RequestsMock that fails the test on any unregistered request."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def client(fast_retry):
    """Yield a POST client with three non-sleeping attempts."""
    with CarrierClient(APIKEY, retry=fast_retry) as c:
        yield c


# -- request shape -----------------------------------------------------------


def test_post_is_form_encoded(rsps, client):
    """The default request is a form-encoded POST with apikey and mobile in the body."""
    rsps.post(CARRIER_URL, json=answer())
    client.lookup("+86 139 7256 5391")
    (call,) = rsps.calls
    assert call.request.method == "POST"
    assert call.request.url == CARRIER_URL
    assert call.request.body in (
        f"apikey={APIKEY}&mobile={NUMBER}",
        f"apikey={APIKEY}&mobile={NUMBER}".encode(),
    )
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_get_puts_params_in_query(rsps, fast_retry):
    """method="GET" sends the parameters in the query string and no body."""
    rsps.get(
        CARRIER_URL,
        json=answer(),
        match=[matchers.query_param_matcher({"apikey": APIKEY, "mobile": NUMBER})],
    )
    with CarrierClient(APIKEY, method="get", retry=fast_retry) as c:
        assert c.lookup(NUMBER).mobile == NUMBER
    (call,) = rsps.calls
    assert call.request.method == "GET"
    assert not call.request.body
    assert parse_qs(urlsplit(call.request.url).query) == {"apikey": [APIKEY], "mobile": [NUMBER]}


def test_user_agent_names_smsroute_and_version(rsps, client):
    """Every request carries a User-Agent naming smsroute and its version."""
    rsps.post(CARRIER_URL, json=answer())
    rsps.post(BALANCE_URL, body=DOC_BALANCE)
    client.lookup(NUMBER)
    client.balance()
    for call in rsps.calls:
        assert call.request.headers["User-Agent"].startswith(f"smsroute/{smsroute.__version__}")


def test_balance_request_has_no_mobile(rsps, client):
    """The balance call sends the apikey only."""
    rsps.post(BALANCE_URL, body=DOC_BALANCE)
    client.balance()
    body = rsps.calls[0].request.body
    assert parse_qs(body if isinstance(body, str) else body.decode()) == {"apikey": [APIKEY]}


def test_timeout_verify_and_base_url_pass_through(rsps, fast_retry):
    """The per-request timeout, verify and a custom base_url reach the transport."""
    rsps.post("https://vendor.example/api/carrier", json=answer())
    with CarrierClient(
        APIKEY,
        base_url="https://vendor.example/api/",
        timeout=1.5,
        verify="/etc/ssl/ca.pem",
        retry=fast_retry,
    ) as c:
        c.lookup(NUMBER)
    kwargs = rsps.calls[0].request.req_kwargs
    assert kwargs["timeout"] == 1.5
    assert kwargs["verify"] == "/etc/ssl/ca.pem"


def test_verify_is_on_by_default(rsps, client):
    """Certificates are verified unless the caller says otherwise."""
    rsps.post(CARRIER_URL, json=answer())
    client.lookup(NUMBER)
    assert rsps.calls[0].request.req_kwargs["verify"] is True


# -- parsing answers ----------------------------------------------------------


def test_document_example(rsps, client):
    """The document's own example parses to 湖北-宜昌, 移动 → 电信, ported."""
    rsps.post(CARRIER_URL, body=DOC_CARRIER.encode())
    info = client.lookup(NUMBER)
    assert isinstance(info, CarrierInfo)
    assert info.mobile == NUMBER
    assert info.area == "湖北-宜昌"
    assert info.province == "湖北"
    assert info.city == "宜昌"
    assert info.initial is Carrier.MOBILE
    assert info.current is Carrier.TELECOM
    assert info.res == 1
    assert info.ported
    assert not info.virtual
    assert info.raw["Now_isp"] == "电信"


def test_document_example_with_trailing_comma(rsps, client):
    """The trailing comma the document shows in its JSON is tolerated in /carrier too."""
    rsps.post(CARRIER_URL, body=DOC_CARRIER.replace('"电信"', '"电信",'))
    assert client.lookup(NUMBER).current is Carrier.TELECOM


@pytest.mark.parametrize(
    ("res", "ported", "virtual"),
    [
        ("0", False, False),
        ("1", True, False),
        ("3", False, True),
        ("4", False, True),
        (1, True, False),
    ],
)
def test_res_values(rsps, client, res, ported, virtual):
    """res 0 is not ported, 1 is ported, 3 and 4 are virtual operators."""
    rsps.post(CARRIER_URL, json=answer(res=res, Now_isp="联通虚拟运营商"))
    info = client.lookup(NUMBER)
    assert (info.res, info.ported, info.virtual) == (int(res), ported, virtual)
    assert info.current is Carrier.UNICOM


def test_info_is_frozen_and_slotted(rsps, client):
    """CarrierInfo is an immutable value object."""
    rsps.post(CARRIER_URL, json=answer())
    info = client.lookup(NUMBER)
    with pytest.raises(AttributeError):
        info.res = 1  # type: ignore[misc]
    assert not hasattr(info, "__dict__")


def test_area_without_city(rsps, client):
    """An area without a city part gives the province and an empty city."""
    rsps.post(CARRIER_URL, json=answer(Area="北京"))
    info = client.lookup(NUMBER)
    assert (info.province, info.city) == ("北京", "")


def test_string_code_is_accepted(rsps, client):
    """A code sent as a string ("0") is read like the integer."""
    body = answer()
    body["code"] = "0"
    rsps.post(CARRIER_URL, json=body)
    assert client.lookup(NUMBER).mobile == NUMBER


# -- vendor error codes -------------------------------------------------------

CODES = [
    (1, RequestRejected, "请求参数缺失"),
    (-1, Unauthorized, "apikey不正确"),
    (-2, RequestRejected, "查询的手机号码长度不对"),
    (-3, RequestRejected, "请填写正确的手机号码"),
    (-4, NumberNotFound, "未查询到相关信息"),
    (-5, BalanceExhausted, "当前余额不足"),
    (-8, ServiceError, "系统错误,请稍候再试"),
    (-9, Unauthorized, "ip地址鉴权失败"),
]


@pytest.mark.parametrize(("code", "cls", "reason"), CODES)
def test_error_codes(rsps, client, code, cls, reason):
    """Each vendor code raises its class with .code and .reason; only -8 is retried."""
    rsps.post(CARRIER_URL, json={"code": code, "reason": reason})
    with pytest.raises(cls) as info:
        client.lookup(NUMBER)
    assert type(info.value) is cls
    assert info.value.code == code
    assert info.value.reason == reason
    assert len(rsps.calls) == (3 if cls is ServiceError else 1)


@pytest.mark.parametrize(("code", "cls", "reason"), CODES)
def test_balance_error_codes(rsps, client, code, cls, reason):
    """The balance endpoint maps the same codes the same way."""
    rsps.post(BALANCE_URL, json={"code": str(code), "reason": reason})
    with pytest.raises(cls) as info:
        client.balance()
    assert (info.value.code, info.value.reason) == (code, reason)


def test_code_zero_is_success(rsps, client):
    """Code 0 is the only success code."""
    rsps.post(CARRIER_URL, json=answer(res="1", Now_isp="联通"))
    assert client.lookup(NUMBER).current is Carrier.UNICOM


# -- malformed answers --------------------------------------------------------

GOOD = json.dumps(answer())
MALFORMED = {
    "html page": b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    "truncated json": DOC_CARRIER[:60].encode(),
    "empty body": b"",
    "whitespace body": b"  \r\n",
    "json array": b"[]",
    "json array of answer": ("[" + GOOD + "]").encode(),
    "json string": b'"Succ"',
    "json null": b"null",
    "json number": b"0",
    "missing code": json.dumps({"reason": "Succ", "result": answer()["result"]}).encode(),
    "code null": b'{"code": null}',
    "code bool": b'{"code": true}',
    "code float": b'{"code": 0.0, "result": {}}',
    "code text": b'{"code": "Succ"}',
    "code superscript": '{"code": "²"}'.encode(),
    "code arabic digit": '{"code": "٣"}'.encode(),
    "missing result": b'{"code": 0, "reason": "Succ"}',
    "result string": b'{"code": 0, "reason": "Succ", "result": "ok"}',
    "result array": b'{"code": 0, "reason": "Succ", "result": []}',
    "missing Init_isp": json.dumps(answer(Init_isp=None)).encode(),
    "missing Now_isp": json.dumps(answer(Now_isp=None)).encode(),
    "unknown Init_isp": json.dumps(answer(Init_isp="铁通")).encode(),
    "unknown Now_isp": json.dumps(answer(Now_isp="未知")).encode(),
    "empty Now_isp": json.dumps(answer(Now_isp="")).encode(),
    "Init_isp number": json.dumps(answer(Init_isp=1)).encode(),
    "missing res": json.dumps(answer(res=None)).encode(),
    "res 2": json.dumps(answer(res="2")).encode(),
    "res 5": json.dumps(answer(res=5)).encode(),
    "res -1": json.dumps(answer(res="-1")).encode(),
    "res text": json.dumps(answer(res="yes")).encode(),
    "res list": json.dumps(answer(res=[1])).encode(),
    "res bool": json.dumps(answer(res=True)).encode(),
    "res float": json.dumps(answer(res=1.0)).encode(),
    "res arabic digit": json.dumps(answer(res="٣"), ensure_ascii=False).encode(),
    "res huge": json.dumps(answer(res="1" * 5000)).encode(),
    "area number": json.dumps(answer(Area=42)).encode(),
    "area too long": json.dumps(answer(Area="湖" * 100)).encode(),
    "other number": json.dumps(answer(Mobile="13972565392")).encode(),
    "non-utf8 bytes": b'{"code": 0, "reason": "\xff\xfe"}',
    "gbk document": DOC_CARRIER.encode("gbk"),
    "huge body": GOOD.encode() + b" " * MAX_BODY,
    "deeply nested array": b"[" * 50000,
    "deeply nested object": b'{"a":' * 10000 + b"1" + b"}" * 10000,
}


def _charged_answer(body: bytes) -> bool:
    """Return True for a readable JSON body with code 0 (the vendor charged for it)."""
    if len(body) > MAX_BODY:
        return False
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    return isinstance(parsed, dict) and type(parsed.get("code")) is int and parsed["code"] == 0


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_answers_are_transport_errors(rsps, client, body):
    """Every unreadable answer raises TransportError; only unreadable bodies are retried."""
    rsps.post(CARRIER_URL, body=body)
    with pytest.raises(TransportError) as caught:
        client.lookup(NUMBER)
    if _charged_answer(body):
        # A code-0 answer was paid for: asking again would pay again.
        assert len(rsps.calls) == 1
        assert caught.value.retryable is False
    else:
        assert len(rsps.calls) == 3


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_http_5xx_is_transport_error(rsps, client, status):
    """An HTTP 5xx, even with a JSON success body, is a retried TransportError."""
    rsps.post(CARRIER_URL, json=answer(), status=status)
    with pytest.raises(TransportError, match=str(status)):
        client.lookup(NUMBER)
    assert len(rsps.calls) == 3


@pytest.mark.parametrize(
    "exc",
    [
        requests.ConnectionError("connection refused"),
        requests.ConnectTimeout("connect timed out"),
        requests.ReadTimeout("read timed out"),
        requests.exceptions.ChunkedEncodingError("broken"),
        requests.exceptions.SSLError("certificate verify failed"),
    ],
    ids=type,
)
def test_network_failures_are_transport_errors(rsps, client, exc):
    """Connection errors and timeouts become TransportError without the requests cause.

    All are retried but a read timeout: the request went out, so it may be
    billed, and is not bought again.
    """
    rsps.post(CARRIER_URL, body=exc)
    with pytest.raises(TransportError) as info:
        client.lookup(NUMBER)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None  # its message may hold the URL, apikey included
    sent = isinstance(exc, requests.ReadTimeout)
    assert len(rsps.calls) == (1 if sent else 3)
    assert info.value.maybe_billed is sent


@pytest.mark.parametrize(
    "result",
    [
        None,
        [],
        {"balance": "1"},
        {"feeType": "预付费"},
        {"feeType": 1, "balance": "1"},
        *(
            {"feeType": "预付费", "balance": bad}
            for bad in ("1.5", "1_000", "٣", "", True, 1.5, None)
        ),
    ],
)
def test_malformed_balance_answers(rsps, client, result):
    """Unreadable balance answers raise TransportError, after the retry budget."""
    rsps.post(BALANCE_URL, json={"code": 0, "reason": "Succ", "result": result})
    with pytest.raises(TransportError):
        client.balance()
    assert len(rsps.calls) == 3


# -- retries and budget -------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        {"json": {"code": -8, "reason": "系统错误"}},
        {"body": requests.ConnectionError("reset")},
        {"body": b"<html>busy</html>"},
        {"status": 502, "body": b"Bad Gateway"},
    ],
    ids=["service error", "connection", "html", "502"],
)
def test_retries_then_succeeds(rsps, client, first):
    """A ServiceError or TransportError is retried and the next good answer is returned."""
    rsps.post(CARRIER_URL, **first)
    rsps.post(CARRIER_URL, json=answer(res="1", Now_isp="电信"))
    assert client.lookup(NUMBER).current is Carrier.TELECOM
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("code", [1, -1, -2, -3, -4, -5, -9])
def test_no_retry_on_caller_or_account_errors(rsps, client, code):
    """Rejections, auth, not-found and balance errors are raised after a single call."""
    rsps.post(CARRIER_URL, json={"code": code, "reason": "x"})
    rsps.post(CARRIER_URL, json=answer())
    with pytest.raises(LookupFailed):
        client.lookup(NUMBER)
    assert len(rsps.calls) == 1


def test_custom_retry_policy_cannot_retry_api_errors(rsps):
    """A caller's retry policy that retries everything still never retries NumberNotFound."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

    policy = Retrying(
        stop=stop_after_attempt(5),
        retry=retry_if_exception_type(Exception),
        reraise=True,
        sleep=lambda _s: None,
    )
    rsps.post(CARRIER_URL, json={"code": -4, "reason": "未查询到相关信息"})
    with CarrierClient(APIKEY, retry=policy) as c, pytest.raises(NumberNotFound):
        c.lookup(NUMBER)
    assert len(rsps.calls) == 1


def test_attempts_bound_retries(rsps):
    """The attempts of the retry policy bound the number of calls."""
    rsps.post(CARRIER_URL, json={"code": -8, "reason": "系统错误"})
    retry = smsroute.default_retrying(attempts=5, sleep=lambda _s: None)
    with CarrierClient(APIKEY, retry=retry) as c, pytest.raises(ServiceError):
        c.lookup(NUMBER)
    assert len(rsps.calls) == 5


def test_retry_waits_are_jittered_and_short(rsps):
    """The default policy sleeps between attempts, briefly, with jitter."""
    slept: list[float] = []
    rsps.post(CARRIER_URL, json={"code": -8, "reason": "系统错误"})
    retry = smsroute.default_retrying(attempts=4, sleep=slept.append)
    with CarrierClient(APIKEY, retry=retry) as c, pytest.raises(ServiceError):
        c.lookup(NUMBER)
    assert len(slept) == 3
    assert all(0 <= s <= 1.0 for s in slept)


def test_total_budget_with_fake_clock(rsps):
    """lookup(timeout=...) caps each attempt and stops when spent, raising the last error."""
    now = [100.0]

    def slow_failure(request):
        now[0] += 1.0  # each call takes a second of the fake clock
        return (200, {}, json.dumps({"code": -8, "reason": "系统错误"}))

    rsps.add_callback(responses.POST, CARRIER_URL, callback=slow_failure)
    retry = smsroute.default_retrying(attempts=10, budget=100.0, sleep=lambda _s: None)
    client = CarrierClient(APIKEY, retry=retry, clock=lambda: now[0])
    with client as c, pytest.raises(ServiceError):  # not "no time left"
        c.lookup(NUMBER, timeout=2.5)
    timeouts = [call.request.req_kwargs["timeout"] for call in rsps.calls]
    # (connect, read, total): total bounds connect, write and read together.
    caps = [(t.connect_timeout, t.read_timeout, t.total) for t in timeouts]
    assert caps == [(2.0, 2.5, 2.5), (1.5, 1.5, 1.5), (0.5, 0.5, 0.5)]


def test_total_budget_in_real_time(rsps):
    """A slow failing upstream is abandoned when the call's time budget runs out."""

    def slow_failure(request):
        time.sleep(0.05)
        return (200, {}, json.dumps({"code": -8, "reason": "系统错误"}))

    rsps.add_callback(responses.POST, CARRIER_URL, callback=slow_failure)
    retry = smsroute.default_retrying(attempts=50, budget=100.0, sleep=lambda _s: None)
    started = time.monotonic()
    with CarrierClient(APIKEY, retry=retry) as c, pytest.raises(LookupFailed):
        c.lookup(NUMBER, timeout=0.2)
    assert time.monotonic() - started < 1.0
    assert 1 <= len(rsps.calls) <= 5


def test_invalid_number_spends_nothing(rsps, client):
    """An invalid number raises InvalidNumber before any HTTP request."""
    for bad in ("1397256539", "23972565391", "12012345678", "hello"):
        with pytest.raises(InvalidNumber):
            client.lookup(bad)
    assert len(rsps.calls) == 0


# -- balance ------------------------------------------------------------------


def test_balance_document_example(rsps, client):
    """The document's balance example, trailing comma included, parses."""
    rsps.post(BALANCE_URL, body=DOC_BALANCE.encode())
    balance = client.balance()
    assert isinstance(balance, Balance)
    assert (balance.fee_type, balance.postpaid, balance.remaining) == ("预付费", False, 12048)


@pytest.mark.parametrize("value", ["-35", -35, " -35 "])
def test_balance_postpaid_negative(rsps, client, value):
    """A postpaid account may report a negative balance."""
    rsps.post(BALANCE_URL, json={"code": 0, "result": {"feeType": "后付费", "balance": value}})
    balance = client.balance()
    assert (balance.fee_type, balance.postpaid, balance.remaining) == ("后付费", True, -35)


# -- construction -------------------------------------------------------------


def test_repr_hides_apikey(client):
    """repr() and str() of a client never show the apikey."""
    assert APIKEY not in repr(client)
    assert APIKEY not in str(client)
    assert "isp.qxt800.com" in repr(client)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"apikey": ""},
        {"apikey": "   "},
        {"apikey": None},
        {"apikey": APIKEY, "method": "PUT"},
        {"apikey": APIKEY, "method": ""},
        {"apikey": APIKEY, "base_url": "ftp://isp.qxt800.com"},
        {"apikey": APIKEY, "base_url": "isp.qxt800.com"},
        {"apikey": APIKEY, "base_url": "https://"},
        {"apikey": APIKEY, "base_url": ""},
    ],
)
def test_bad_configuration(kwargs):
    """An empty apikey, an unknown method or a non-http(s) base_url is a ConfigurationError."""
    with pytest.raises(ConfigurationError) as info:
        CarrierClient(**kwargs)
    assert APIKEY not in str(info.value)


def test_proxies_read_once_from_environment(rsps, monkeypatch):
    """Proxy settings come from the environment once, at construction, not per request."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    session = requests.Session()
    rsps.post(CARRIER_URL, json=answer())
    with CarrierClient(APIKEY, session=session) as c:
        assert session.proxies.get("https") == "http://proxy.example:3128"
        assert session.trust_env is False
        monkeypatch.setenv("HTTPS_PROXY", "http://other.example:8080")
        c.lookup(NUMBER)
    assert rsps.calls[0].request.req_kwargs["proxies"].get("https") == "http://proxy.example:3128"


def test_no_proxy_environment_is_honoured(monkeypatch):
    """NO_PROXY naming the vendor host keeps the client off the proxy."""
    for name in ("no_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "isp.qxt800.com")
    session = requests.Session()
    with CarrierClient(APIKEY, session=session):
        assert "https" not in session.proxies
        assert session.trust_env is False


def test_explicit_proxies_pass_through(monkeypatch):
    """Proxies given to the constructor win over the environment."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    session = requests.Session()
    proxies = {"https": "http://mine.example:1080"}
    with CarrierClient(APIKEY, session=session, proxies=proxies):
        assert session.proxies == proxies
        assert session.trust_env is False


def test_plain_http_to_remote_host_warns():
    """Plain http:// to a non-loopback host warns that the apikey travels in clear."""
    with pytest.warns(UserWarning, match="plain http") as record:
        CarrierClient(APIKEY, base_url="http://isp.qxt800.com").close()
    assert APIKEY not in str(record[0].message)


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8080", "http://localhost", "http://[::1]:9000", "https://isp.qxt800.com"],
)
def test_loopback_or_https_does_not_warn(base_url):
    """Loopback http (test servers) and https construct without a warning."""
    CarrierClient(APIKEY, base_url=base_url).close()  # filterwarnings=error fails on any warning


def test_copy_keeps_key_and_changes_settings(rsps, client):
    """copy() makes a variant that still authenticates with the same key."""
    rsps.get(
        CARRIER_URL,
        json=answer(),
        match=[matchers.query_param_matcher({"apikey": APIKEY, "mobile": NUMBER})],
    )
    with client.copy(method="GET") as variant:
        assert variant.method == "GET"
        assert variant.lookup(NUMBER).mobile == NUMBER


def test_one_client_serves_many_threads(rsps, client):
    """Concurrent lookups through one client all succeed with their own answers."""
    numbers = [f"1390000{n:04d}" for n in range(16)]

    def echo(request):
        mobile = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())[
            "mobile"
        ][0]
        return (200, {}, json.dumps(answer(Mobile=mobile)))

    rsps.add_callback(responses.POST, CARRIER_URL, callback=echo)
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def work(number: str) -> None:
        try:
            for _ in range(5):
                results[number] = client.lookup(number).mobile
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == {n: n for n in numbers}
    assert len(rsps.calls) == 16 * 5
