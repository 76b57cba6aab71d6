"""One contract, two servers: FakeCarrierServer and AsyncFakeCarrierServer answer alike."""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from smsroute.testing import (
    DOC_NUMBER,
    FAULTS,
    REASONS,
    AsyncFakeCarrierServer,
    FakeCarrierServer,
)

APIKEY = "test-apikey"
PLAIN = "13800138000"
DOC_BODY = {
    "code": 0,
    "reason": "Succ",
    "result": {
        "res": "1",
        "Mobile": DOC_NUMBER,
        "Area": "湖北-宜昌",
        "Init_isp": "移动",
        "Now_isp": "电信",
    },
}


@pytest.fixture(params=["threaded", "asyncio"])
def server(request):
    if request.param == "threaded":
        with FakeCarrierServer(apikey=APIKEY, slow_seconds=0.05) as srv:
            yield srv
    else:
        with AsyncFakeCarrierServer(apikey=APIKEY, slow_seconds=0.05).in_thread() as srv:
            yield srv


@pytest.fixture
def session():
    with requests.Session() as s:
        yield s


def carrier(server, session, mobile=DOC_NUMBER, *, method="POST", timeout=5.0):
    params = {"apikey": APIKEY, "mobile": mobile}
    if method == "POST":
        return session.post(server.url + "/carrier", data=params, timeout=timeout)
    return session.get(server.url + "/carrier", params=params, timeout=timeout)


def raw_exchange(server, data: bytes) -> bytes:
    """Send raw bytes on a fresh connection; return everything read until the server closes."""
    url = urlsplit(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_doc_example_both_methods(server, session):
    """The document's example answers the document's body over GET and POST."""
    for method in ("GET", "POST"):
        r = carrier(server, session, method=method)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/json; charset=utf-8"
        assert r.json() == DOC_BODY


def test_balance_and_unknown_path(server, session):
    """/balance answers the account, other paths 404, neither is charged."""
    balance = session.get(server.url + "/balance", params={"apikey": APIKEY}, timeout=5)
    assert balance.json()["result"] == {"feeType": "预付费", "balance": "100000"}
    assert session.get(server.url + "/nope", timeout=5).status_code == 404
    assert server.paid == 0


@pytest.mark.parametrize("fault", [f for f in FAULTS if f not in ("hang", "reset")])
def test_every_answering_fault(server, session, fault):
    """Each fault that still answers gives the status and body type it promises."""
    server.fault = fault
    r = carrier(server, session)
    if fault in ("http500", "http502"):
        assert (r.status_code, r.headers["Content-Type"]) == (
            int(fault[4:]),
            "text/html; charset=utf-8",
        )
    elif fault == "html":
        assert (r.status_code, r.headers["Content-Type"]) == (200, "text/html; charset=utf-8")
    else:
        assert r.status_code == 200
        assert int(r.headers["Content-Length"]) == len(r.content)
    assert server.requests[-1].fault == fault


def test_int_code_fault(server, session):
    """An int fault answers that code with the vendor's reason, uncharged."""
    server.set_fault(-8, for_requests=1)
    assert carrier(server, session).json() == {"code": -8, "reason": REASONS[-8], "result": None}
    assert carrier(server, session).json() == DOC_BODY
    assert server.paid == 1


def test_reset_fault(server, session):
    """reset aborts the connection, and the next request is answered again."""
    server.set_fault("reset", for_requests=1)
    with pytest.raises(requests.ConnectionError):
        carrier(server, session)
    assert carrier(server, session).json() == DOC_BODY


def test_hang_times_out_then_is_released(server, session):
    """hang holds the request past the client's timeout; clearing it lets the next one through."""
    server.fault = "hang"
    with pytest.raises(requests.ReadTimeout):
        carrier(server, session, timeout=0.2)
    timer = threading.Timer(0.1, setattr, (server, "fault", None))
    timer.start()
    try:
        with requests.Session() as fresh:
            assert carrier(server, fresh).json() == DOC_BODY
    finally:
        timer.join()


def test_latency_delays_answers(server, session):
    """latency holds every answer at least that long."""
    server.latency = 0.1
    started = time.monotonic()
    carrier(server, session)
    assert time.monotonic() - started >= 0.1


def test_keep_alive_and_counts(server, session):
    """One Session is one connection; paid, carrier_calls and the record add up."""
    for number in (DOC_NUMBER, PLAIN, "139"):
        carrier(server, session, number)
    session.get(server.url + "/balance", params={"apikey": APIKEY}, timeout=5)
    assert len({r.client for r in server.requests}) == 1
    assert [r.code for r in server.requests] == [0, 0, -2, 0]
    assert (server.paid, server.carrier_calls) == (2, 3)


def test_prepaid_balance_runs_out(server, session):
    """A spent prepaid account answers -5 and stops charging."""
    server.balance = 1
    assert [carrier(server, session, PLAIN).json()["code"] for _ in range(2)] == [0, -5]
    assert (server.paid, server.balance) == (1, 0)


def test_body_over_the_cap_is_refused(server):
    """A body over 64 KiB answers 413 without being read; a chunked one answers 411."""
    big = b"POST /carrier HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n"
    assert raw_exchange(server, big).startswith(b"HTTP/1.1 413 ")
    chunked = b"POST /carrier HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert raw_exchange(server, chunked).startswith(b"HTTP/1.1 411 ")
    assert server.carrier_calls == 0


def test_post_form_at_the_cap_is_answered(server, session):
    """A form body of exactly 64 KiB is read and answered."""
    data = f"apikey={APIKEY}&mobile={DOC_NUMBER}&pad=".encode()
    data += b"x" * (64 * 1024 - len(data))
    r = session.post(
        server.url + "/carrier",
        data=data,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=5,
    )
    assert r.json() == DOC_BODY


def test_connection_close_is_honoured(server):
    """A request with Connection: close is answered, then the server closes."""
    reply = raw_exchange(
        server,
        f"GET /carrier?apikey={APIKEY}&mobile={DOC_NUMBER} HTTP/1.1\r\n"
        "Host: x\r\nConnection: close\r\n\r\n".encode(),
    )
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert reply.endswith('电信"}}'.encode())
