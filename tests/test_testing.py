"""Tests for smsroute.testing: the fake vendor server, the responses helper, FakeClock."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests
import responses

from smsroute import segments
from smsroute.testing import (
    AREAS,
    DOC_NUMBER,
    FAULTS,
    REASONS,
    FakeCarrierServer,
    FakeClock,
    RecordedRequest,
    VendorSimulator,
    mock_vendor,
)

pytest_plugins = ["pytester"]

APIKEY = "test-apikey"
DOC_BODY = {
    "code": 0,
    "reason": "Succ",
    "result": {
        "res": "1",
        "Mobile": "13972565391",
        "Area": "湖北-宜昌",
        "Init_isp": "移动",
        "Now_isp": "电信",
    },
}
# A regular China Mobile number the default seed does not port, and an MVNO one.
PLAIN = "13800138000"
VIRTUAL = "17001234567"


@pytest.fixture
def server():
    with FakeCarrierServer(apikey=APIKEY) as srv:
        yield srv


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s


def carrier(server, session, mobile, *, method="POST", apikey=APIKEY, **kw):
    params = {"apikey": apikey, "mobile": mobile}
    if method == "POST":
        return session.post(server.url + "/carrier", data=params, timeout=5, **kw)
    return session.get(server.url + "/carrier", params=params, timeout=5, **kw)


def regular_numbers(count):
    """Return `count` numbers in regular (portable) China Mobile segments."""
    return [f"138{i:08d}" for i in range(0, count * 4999, 4999)][:count]


# -- protocol ----------------------------------------------------------------


def test_doc_example_by_post(server, session):
    """The document's example number answers exactly the document's body over POST."""
    r = carrier(server, session, DOC_NUMBER)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert r.json() == DOC_BODY
    assert "湖北-宜昌".encode() in r.content  # UTF-8, not \u escapes


def test_doc_example_by_get(server, session):
    """GET with a query string gives the same answer as POST."""
    assert carrier(server, session, DOC_NUMBER, method="GET").json() == DOC_BODY


def test_post_accepts_query_string_params(server, session):
    """POST with the parameters in the query string is answered like a form POST."""
    url = f"{server.url}/carrier?apikey={APIKEY}&mobile={DOC_NUMBER}"
    assert session.post(url, timeout=5).json() == DOC_BODY


def test_balance_endpoint(server, session):
    """/balance answers the fee type and the balance as a string, by GET and POST."""
    server.balance = 12048
    body = {"code": 0, "reason": "Succ", "result": {"feeType": "预付费", "balance": "12048"}}
    url = server.url + "/balance"
    assert session.get(url, params={"apikey": APIKEY}, timeout=5).json() == body
    assert session.post(url, data={"apikey": APIKEY}, timeout=5).json() == body
    assert server.paid == 0


def test_unknown_path_is_404(server, session):
    """Paths other than /carrier and /balance answer 404."""
    assert session.get(server.url + "/nope", timeout=5).status_code == 404


def test_reasons_cover_the_code_table():
    """REASONS holds the document's text for every code of its table."""
    assert set(REASONS) == {0, 1, -1, -2, -3, -4, -5, -8, -9}
    assert REASONS[-1] == "apikey信息不匹配(用户信息不正确)apikey不正确"
    assert REASONS[-9] == "ip地址鉴权失败"


# -- validation --------------------------------------------------------------


def test_wrong_apikey(server, session):
    """A wrong apikey answers -1 with the vendor's reason and is not charged."""
    body = carrier(server, session, DOC_NUMBER, apikey="nope").json()
    assert body == {"code": -1, "reason": REASONS[-1], "result": None}
    assert server.paid == 0


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"mobile": DOC_NUMBER}, 1),
        ({"apikey": APIKEY}, 1),
        ({"apikey": "", "mobile": DOC_NUMBER}, 1),
        ({"apikey": APIKEY, "mobile": "1397256539"}, -2),
        ({"apikey": APIKEY, "mobile": "+8613972565391"}, -2),
        ({"apikey": APIKEY, "mobile": "1397256539x"}, -3),
        ({"apikey": APIKEY, "mobile": "14200000000"}, -3),  # unallocated segment
        ({"apikey": APIKEY, "mobile": "23972565391"}, -3),
    ],
)
def test_request_validation(server, session, params, code):
    """Missing parameters answer 1, wrong length -2, not a mobile number -3."""
    r = session.post(server.url + "/carrier", data=params, timeout=5)
    assert r.json() == {"code": code, "reason": REASONS[code], "result": None}
    assert server.paid == 0


@pytest.mark.parametrize("code", [c for c in REASONS if c != 0])
def test_pinned_error_code(server, session, code):
    """set_answer(code=...) makes that number answer the code with its reason, uncharged."""
    server.set_answer(PLAIN, code=code)
    assert carrier(server, session, PLAIN).json() == {
        "code": code,
        "reason": REASONS[code],
        "result": None,
    }
    assert carrier(server, session, DOC_NUMBER).json()["code"] == 0
    assert server.paid == 1


@pytest.mark.parametrize("code", [c for c in REASONS if c != 0])
def test_int_fault_answers_every_request(server, session, code):
    """An int fault answers /carrier and /balance with that code, without charging."""
    server.fault = code
    expected = {"code": code, "reason": REASONS[code], "result": None}
    assert carrier(server, session, DOC_NUMBER).json() == expected
    balance = session.get(server.url + "/balance", params={"apikey": APIKEY}, timeout=5)
    assert balance.json() == expected
    assert server.paid == 0


def test_answers_argument_and_partial_override():
    """answers= pins numbers; fields left out keep their computed values."""
    sim = VendorSimulator(answers={PLAIN: {"res": 1}, "13800138001": {"area": "西藏-拉萨"}})
    ported = sim.answer_for(PLAIN)["result"]
    assert ported["res"] == "1"
    assert ported["Init_isp"] == "移动"
    assert ported["Now_isp"] in {"联通", "电信"}
    assert sim.answer_for("13800138001")["result"]["Area"] == "西藏-拉萨"
    sim.clear_answer(PLAIN)
    assert sim.answer_for(PLAIN)["result"]["res"] == "0"


def test_unknown_answer_key_is_rejected():
    """A typo in answers= fails loudly instead of being ignored."""
    with pytest.raises(TypeError):
        VendorSimulator(answers={PLAIN: {"now_isp": "联通"}})  # type: ignore[typeddict-unknown-key]


# -- balance -----------------------------------------------------------------


def test_prepaid_refuses_at_zero(server, session):
    """A prepaid account answers -5 once the balance is spent, and charges nothing more."""
    server.balance = 2
    assert [carrier(server, session, PLAIN).json()["code"] for _ in range(3)] == [0, 0, -5]
    assert carrier(server, session, PLAIN).json()["reason"] == REASONS[-5]
    assert server.balance == 0
    assert server.paid == 2
    balance = session.post(server.url + "/balance", data={"apikey": APIKEY}, timeout=5)
    assert balance.json()["result"]["balance"] == "0"


def test_postpaid_goes_negative(session):
    """A postpaid account keeps answering and its balance goes negative."""
    with FakeCarrierServer(apikey=APIKEY, balance=1, fee_type="后付费") as server:
        assert [carrier(server, session, PLAIN).json()["code"] for _ in range(3)] == [0, 0, 0]
        assert server.balance == -2
        body = session.get(server.url + "/balance", params={"apikey": APIKEY}, timeout=5).json()
        assert body["result"] == {"feeType": "后付费", "balance": "-2"}


def test_concurrent_queries_do_not_overdraw(server):
    """Queries racing on a prepaid balance never charge more than the balance."""
    server.balance = 50

    def spend():
        with requests.Session() as s:
            for _ in range(20):
                carrier(server, s, PLAIN)

    threads = [threading.Thread(target=spend) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.paid == 50
    assert server.balance == 0
    assert sum(r.code == -5 for r in server.requests) == 30


# -- deterministic answers ---------------------------------------------------


def test_same_seed_same_answers(server, session):
    """Two simulators with the same seed agree; the server answers what answer_for says."""
    numbers = [*regular_numbers(50), VIRTUAL, "16612345678", "19212345678"]
    a, b, c = VendorSimulator(seed=7), VendorSimulator(seed=7), VendorSimulator(seed=8)
    assert [a.answer_for(n) for n in numbers] == [b.answer_for(n) for n in numbers]
    assert [a.answer_for(n) for n in numbers] != [c.answer_for(n) for n in numbers]
    for n in numbers[:10]:
        assert carrier(server, session, n).json() == server.answer_for(n)


def test_ported_share_and_answer_shape():
    """About ported_share of regular numbers are ported, each to another big-three operator."""
    sim = VendorSimulator(ported_share=0.1, seed=3)
    results = [sim.answer_for(n)["result"] for n in regular_numbers(2000)]
    ported = [r for r in results if r["res"] == "1"]
    assert 0.07 <= len(ported) / len(results) <= 0.13
    assert all(r["Now_isp"] != r["Init_isp"] for r in ported)
    assert all(r["Now_isp"] in {"联通", "电信"} for r in ported)
    assert all(r["Now_isp"] == r["Init_isp"] == "移动" for r in results if r["res"] == "0")
    assert {r["Area"] for r in results} == set(AREAS)


def test_virtual_numbers_answer_3_or_4():
    """MVNO numbers answer res 3 or 4 with their host network, never ported."""
    sim = VendorSimulator(ported_share=1.0)
    numbers = [f"170{i:08d}" for i in range(0, 10**8, 10**6)]
    results = [sim.answer_for(n)["result"] for n in numbers]
    assert {r["res"] for r in results} == {"3", "4"}
    for n, r in zip(numbers, results, strict=True):
        seg = segments.lookup(n)
        assert seg is not None
        assert seg.host is not None
        assert r["Init_isp"] == r["Now_isp"] == seg.host.value


# -- faults ------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "status"), [("http500", 500), ("http502", 502)])
def test_http_error_faults(server, session, fault, status):
    """http500/http502 answer that status with an HTML body and charge nothing."""
    server.fault = fault
    r = carrier(server, session, DOC_NUMBER)
    assert r.status_code == status
    assert r.headers["Content-Type"].startswith("text/html")
    assert server.paid == 0


def test_html_fault(server, session):
    """The html fault answers 200 with an HTML page."""
    server.fault = "html"
    r = carrier(server, session, DOC_NUMBER)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    with pytest.raises(requests.JSONDecodeError):
        r.json()


def test_truncated_fault(server, session):
    """The truncated fault sends half a JSON body with a matching Content-Length."""
    server.fault = "truncated"
    r = carrier(server, session, DOC_NUMBER)
    assert int(r.headers["Content-Length"]) == len(r.content) > 0
    with pytest.raises(ValueError):
        json.loads(r.content)
    assert json.dumps(DOC_BODY, ensure_ascii=False).encode().startswith(r.content)


def test_trailing_comma_fault(server, session):
    """trailing_comma answers the doc's own JSON style: a valid, charged answer."""
    server.fault = "trailing_comma"
    r = carrier(server, session, DOC_NUMBER)
    assert '"Now_isp": "电信",\n' in r.text
    with pytest.raises(ValueError):
        json.loads(r.text)
    assert server.paid == 1
    assert server.requests[-1].code == 0


def test_unknown_isp_and_missing_field_faults(server, session):
    """unknown_isp names an operator nobody knows; missing_field drops Now_isp."""
    server.fault = "unknown_isp"
    assert carrier(server, session, DOC_NUMBER).json()["result"]["Now_isp"] == "火星移动"
    server.fault = "missing_field"
    result = carrier(server, session, DOC_NUMBER).json()["result"]
    assert "Now_isp" not in result
    assert result["Init_isp"] == "移动"
    assert server.paid == 2


def test_reset_fault(server, session):
    """The reset fault aborts the connection: requests raises ConnectionError."""
    server.fault = "reset"
    with pytest.raises(requests.ConnectionError):
        carrier(server, session, DOC_NUMBER)
    server.fault = None
    assert carrier(server, session, DOC_NUMBER).json() == DOC_BODY


def test_hang_fault_times_out_and_stop_is_quick(session):
    """A hung request times out on the client, and stop() still returns quickly."""
    server = FakeCarrierServer(apikey=APIKEY).start()
    try:
        server.fault = "hang"
        with pytest.raises(requests.ReadTimeout):
            session.post(
                server.url + "/carrier", data={"apikey": APIKEY, "mobile": PLAIN}, timeout=0.3
            )
    finally:
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.0
    assert server.paid == 0


def test_hang_is_released_by_clearing_the_fault(server, session):
    """Clearing the hang fault lets a waiting request get its answer."""
    server.set_fault("hang", for_requests=1)
    timer = threading.Timer(0.2, setattr, (server, "fault", None))
    timer.start()
    try:
        started = time.monotonic()
        assert carrier(server, session, DOC_NUMBER).json() == DOC_BODY
        assert time.monotonic() - started >= 0.15
    finally:
        timer.join()


def test_per_number_hang_is_released_by_set_answer(server, session):
    """A number held by set_answer(fault="hang") is answered once its answer is re-pinned."""
    server.set_answer(PLAIN, fault="hang")
    timer = threading.Timer(0.1, server.set_answer, (PLAIN,), {"res": 1, "now": "联通"})
    timer.start()
    try:
        result = carrier(server, session, PLAIN).json()["result"]
    finally:
        timer.join()
    assert (result["res"], result["Now_isp"]) == ("1", "联通")


def test_slow_fault_and_latency(server, session):
    """slow answers after slow_seconds; latency delays every answer."""
    server.slow_seconds = 0.2
    server.fault = "slow"
    started = time.monotonic()
    assert carrier(server, session, DOC_NUMBER).json() == DOC_BODY
    assert time.monotonic() - started >= 0.2
    server.fault = None
    server.latency = 0.1
    started = time.monotonic()
    carrier(server, session, DOC_NUMBER)
    assert time.monotonic() - started >= 0.1


def test_set_fault_for_requests_reverts(server, session):
    """set_fault(..., for_requests=2) applies to two requests, then reverts to None."""
    server.set_fault("http502", for_requests=2)
    codes = [carrier(server, session, DOC_NUMBER).status_code for _ in range(3)]
    assert codes == [502, 502, 200]
    assert server.fault is None


def test_per_number_fault(server, session):
    """set_answer(fault=...) breaks one number only."""
    server.set_answer(PLAIN, fault="http500")
    assert carrier(server, session, PLAIN).status_code == 500
    assert carrier(server, session, DOC_NUMBER).status_code == 200


def test_bad_fault_is_rejected(server):
    """An unknown fault name raises ValueError."""
    with pytest.raises(ValueError):
        server.fault = "gremlins"
    assert set(FAULTS) >= {"hang", "reset", "slow", "truncated"}


# -- recording and connections ----------------------------------------------


def test_recorded_requests_and_counters(server, session):
    """Requests are recorded with params, fault and code; paid counts charged queries."""
    carrier(server, session, DOC_NUMBER)
    carrier(server, session, DOC_NUMBER, method="GET", apikey="bad")
    server.set_fault("http500", for_requests=1)
    carrier(server, session, PLAIN)
    session.get(server.url + "/balance", params={"apikey": APIKEY}, timeout=5)
    first, second, third, fourth = server.requests
    assert isinstance(first, RecordedRequest)
    assert (first.method, first.path, first.code, first.fault) == ("POST", "/carrier", 0, None)
    assert first.params == {"apikey": APIKEY, "mobile": DOC_NUMBER}
    assert first.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert (second.method, second.code) == ("GET", -1)
    assert (third.fault, third.code) == ("http500", None)
    assert fourth.path == "/balance"
    assert server.paid == 1
    assert server.carrier_calls == 3
    server.clear_requests()
    assert server.requests == []
    assert server.carrier_calls == 3


def test_keep_alive_reuses_one_connection(server, session):
    """Requests on one Session arrive over a single TCP connection."""
    for _ in range(3):
        carrier(server, session, DOC_NUMBER)
    assert len({r.client for r in server.requests}) == 1


def test_lifecycle(session):
    """start() binds an ephemeral loopback port; stop() is idempotent and closes it."""
    server = FakeCarrierServer()
    with pytest.raises(RuntimeError):
        _ = server.url
    assert server.start() is server
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert server.port > 0
    url = server.url
    server.stop()
    server.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(url + "/balance", timeout=1)
    with pytest.raises(RuntimeError):
        server.start()


def test_serve_until_interrupted_returns_on_stop():
    """serve_until_interrupted() returns when another thread stops the server."""
    server = FakeCarrierServer()
    timer = threading.Timer(0.1, server.stop)
    timer.start()
    server.serve_until_interrupted()
    timer.join()
    with pytest.raises(RuntimeError):
        server.start()


def test_serve_until_interrupted_stops_on_ctrl_c(monkeypatch):
    """Ctrl-C while serving in the foreground stops the server instead of propagating."""
    server = FakeCarrierServer()

    def interrupted(timeout=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(server._stopped, "wait", interrupted)
    server.serve_until_interrupted()
    monkeypatch.undo()
    assert server._stopped.is_set()


def test_starts_fast():
    """A server stands up and shuts down in well under 50 ms each."""
    started = time.perf_counter()
    server = FakeCarrierServer().start()
    assert time.perf_counter() - started < 0.05
    server.stop()


def test_refuses_non_loopback_host():
    """Binding anything but loopback needs allow_remote=True."""
    with pytest.raises(ValueError):
        FakeCarrierServer(host="0.0.0.0")


# -- responses helper --------------------------------------------------------


def test_mock_vendor_matches_server(server, session):
    """The responses helper answers byte-for-byte what the server answers."""
    numbers = [DOC_NUMBER, PLAIN, VIRTUAL, "14200000000", "139", *regular_numbers(20)]
    server.set_answer("13800138001", code=-4)
    numbers.append("13800138001")
    cases = [(n, method) for n in numbers for method in ("GET", "POST")]
    live = [carrier(server, session, n, method=m) for n, m in cases]
    live_balance = session.get(server.url + "/balance", params={"apikey": APIKEY}, timeout=5)
    # responses patches every requests adapter, so the live calls come first.
    with responses.RequestsMock() as rsps, requests.Session() as offline:
        mock = mock_vendor(rsps, answers={"13800138001": {"code": -4}})
        url = mock.base_url + "/carrier"
        for (n, method), real in zip(cases, live, strict=True):
            params = {"apikey": APIKEY, "mobile": n}
            if method == "GET":
                fake = offline.get(url, params=params)
            else:
                fake = offline.post(url, data=params)
            assert fake.content == real.content
            assert fake.headers["Content-Type"] == real.headers["Content-Type"]
        assert mock.paid == server.paid
        fake_balance = offline.get(mock.base_url + "/balance", params={"apikey": APIKEY})
        assert fake_balance.content == live_balance.content


def test_mock_vendor_faults():
    """The responses helper raises ReadTimeout for hang and ConnectionError for reset."""
    clock = FakeClock()
    with responses.RequestsMock() as rsps:
        mock = mock_vendor(rsps, base_url="https://vendor.test/api", sleep=clock.sleep)
        url = "https://vendor.test/api/carrier"
        data = {"apikey": APIKEY, "mobile": DOC_NUMBER}
        mock.fault = "hang"
        with pytest.raises(requests.ReadTimeout):
            requests.post(url, data=data)
        mock.fault = "reset"
        with pytest.raises(requests.ConnectionError):
            requests.post(url, data=data)
        mock.fault = "http502"
        assert requests.post(url, data=data).status_code == 502
        mock.fault = None
        mock.latency = 0.5
        assert requests.post(url, data=data).json() == DOC_BODY
        assert clock.sleeps == [0.5]
        assert mock.paid == 1


# -- FakeClock and the pytest plugin ------------------------------------------


def test_fake_clock():
    """FakeClock moves only on advance() and sleep(), and records sleeps."""
    clock = FakeClock(start=10.0)
    assert clock() == 10.0
    assert clock.advance(2.5) == 12.5
    clock.sleep(1.5)
    assert clock() == 14.0
    assert clock.sleeps == [1.5]
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_plugin_fixtures(fake_carrier_server, fake_clock, session):
    """The plugin's fixtures give a running server and a FakeClock at 1000."""
    body = carrier(fake_carrier_server, session, DOC_NUMBER, apikey=fake_carrier_server.apikey)
    assert body.json() == DOC_BODY
    assert fake_clock() == 1000.0


def test_plugin_stops_server(pytester):
    """A suite that installs smsroute gets the fixture, and the server is stopped after."""
    pytester.makepyfile(
        """
        import requests

        seen = []

        def test_a(fake_carrier_server):
            seen.append(fake_carrier_server)
            r = requests.get(fake_carrier_server.url + "/balance",
                             params={"apikey": fake_carrier_server.apikey}, timeout=5)
            assert r.json()["code"] == 0

        def test_b():
            try:
                requests.get(seen[0].url + "/balance", timeout=1)
            except requests.ConnectionError:
                return
            raise AssertionError("server still answering")
        """
    )
    # Hypothesis is not needed inside and its import is most of the run time.
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=2)
