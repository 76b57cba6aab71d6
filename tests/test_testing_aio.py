"""Tests for AsyncFakeCarrierServer: the threaded server's answers, asyncio lifecycle, entry."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from smsroute.testing import DOC_NUMBER, AsyncFakeCarrierServer, FakeCarrierServer, VendorSimulator

ROOT = Path(__file__).resolve().parent.parent
APIKEY = "test-apikey"
PLAIN = "13800138000"
PINNED = "13800138001"
NUMBERS = [
    DOC_NUMBER,
    PLAIN,
    PINNED,
    "17001234567",  # MVNO: res 3 or 4
    "14200000000",  # unallocated: -3
    "139",  # too short: -2
    *[f"138{i:08d}" for i in range(0, 60 * 4999, 4999)],
]


def on_both(callback):
    """Run callback(server, session) on a threaded and an asyncio server built alike."""
    results = []
    for build in (
        lambda: FakeCarrierServer(seed=7, answers={PINNED: {"code": -4}}),
        lambda: AsyncFakeCarrierServer(seed=7, answers={PINNED: {"code": -4}}).in_thread(),
    ):
        with build() as server, requests.Session() as session:
            results.append(callback(server, session))
    return results


def async_run(coro, timeout=10.0):
    """Run a coroutine to completion on a fresh loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def http(reader, writer, request: bytes):
    """Send one request on an open connection; return (status line, headers, body)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    body = await reader.readexactly(int(headers.get("Content-Length", "0")))
    return lines[0], headers, body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


# -- the same protocol --------------------------------------------------------


def test_answers_are_byte_identical_to_the_threaded_server():
    """Same seed, same numbers: the same status, type and bytes, by GET and POST, and counts."""

    def answers(server, session):
        out = []
        for number in NUMBERS:
            for method in ("GET", "POST"):
                params = {"apikey": APIKEY, "mobile": number}
                url = server.url + "/carrier"
                if method == "GET":
                    r = session.get(url, params=params, timeout=5)
                else:
                    r = session.post(url, data=params, timeout=5)
                out.append((r.status_code, r.headers["Content-Type"], r.content))
        for path in ("/balance", "/nope", "/carrier/"):
            r = session.post(server.url + path, data={"apikey": "wrong"}, timeout=5)
            out.append((r.status_code, r.headers["Content-Type"], r.content))
        return out, server.paid, server.carrier_calls, server.balance

    threaded, asyncio_ = on_both(answers)
    assert asyncio_ == threaded
    assert threaded[1] > 0


def test_faults_are_byte_identical_to_the_threaded_server():
    """Every answering fault, a pinned per-number fault and int codes give the same bytes."""

    def faulted(server, session):
        server.slow_seconds = 0.01
        out = []
        for fault in ("http500", "http502", "html", "truncated", "trailing_comma",
                      "unknown_isp", "missing_field", "slow", -1, -5, -8, 7):  # fmt: skip
            server.set_fault(fault, for_requests=1)
            r = session.post(server.url + "/carrier", data={"apikey": APIKEY, "mobile": PLAIN})
            out.append((fault, r.status_code, r.content))
        server.set_answer(PLAIN, fault="http502")
        r = session.get(server.url + "/carrier", params={"apikey": APIKEY, "mobile": PLAIN})
        out.append(("pinned", r.status_code, r.content))
        return out, server.paid

    threaded, asyncio_ = on_both(faulted)
    assert asyncio_ == threaded


def test_query_string_params_on_post():
    """POST with the parameters in the query string is answered like a form POST."""
    with AsyncFakeCarrierServer().in_thread() as server, requests.Session() as s:
        r = s.post(f"{server.url}/carrier?apikey={APIKEY}&mobile={DOC_NUMBER}", timeout=5)
        assert r.json()["result"]["Now_isp"] == "电信"
        assert server.requests[-1].params == {"apikey": APIKEY, "mobile": DOC_NUMBER}
        assert server.requests[-1].headers["Content-Length"] == "0"


# -- asyncio use --------------------------------------------------------------


def test_async_with_on_the_running_loop():
    """async with serves on the caller's loop; one connection carries pipelined requests."""

    async def main():
        async with AsyncFakeCarrierServer(latency=0.01) as server:
            url = urlsplit(server.url)
            reader, writer = await asyncio.open_connection(url.hostname, url.port)
            try:
                # Two requests written back to back: answered in order, on one connection.
                writer.write(get(f"/carrier?apikey={APIKEY}&mobile={DOC_NUMBER}"))
                status1, _, body1 = await http(reader, writer, get(f"/balance?apikey={APIKEY}"))
                status2, headers, body2 = await http(reader, writer, b"")
            finally:
                writer.close()
                await writer.wait_closed()
            assert status1 == status2 == "HTTP/1.1 200 OK"
            assert json.loads(body1)["result"]["Now_isp"] == "电信"
            assert json.loads(body2)["result"]["balance"] == "99999"
            assert headers["Server"] == "AsyncFakeCarrierServer"
            assert len({r.client for r in server.requests}) == 1
            assert server.served == 2
            assert server.cpu_per_request() > 0
            return server

    server = async_run(main())
    with pytest.raises(RuntimeError):
        async_run(server.start())


def test_many_concurrent_connections_with_latency():
    """64 connections at 10 ms latency are served concurrently, not one after another."""

    async def one(host, port, count):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in range(count):
                status, _, _ = await http(
                    reader, writer, get(f"/carrier?apikey={APIKEY}&mobile=1380013{i:04d}")
                )
                assert status == "HTTP/1.1 200 OK"
        finally:
            writer.close()

    async def main():
        async with AsyncFakeCarrierServer(latency=0.01) as server:
            url = urlsplit(server.url)
            started = time.monotonic()
            await asyncio.gather(*(one(url.hostname, url.port, 5) for _ in range(64)))
            took = time.monotonic() - started
            assert server.paid == 320
            return took

    assert async_run(main()) < 1.6  # serially it would take 3.2 s


def test_stop_drops_held_and_idle_connections_quickly():
    """stop() returns fast with a hung request and an idle keep-alive connection open."""
    server = AsyncFakeCarrierServer()
    # The session is entered first so that it is still open when the server stops.
    with requests.Session() as idle, server.in_thread():
        idle.get(server.url + "/balance", params={"apikey": APIKEY}, timeout=5)
        server.fault = "hang"
        outcome = []

        def held():
            try:
                requests.get(server.url + "/balance", params={"apikey": APIKEY}, timeout=5)
            except requests.ConnectionError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=held)
        thread.start()
        deadline = time.monotonic() + 5
        while len(server.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
    assert time.monotonic() - started < 1.0
    thread.join(timeout=5)
    assert len(outcome) == 1  # the held request saw its connection close
    assert server.cpu_seconds() > 0
    with pytest.raises(RuntimeError), server.in_thread():
        pass


def test_lifecycle_and_binding():
    """url needs a started server; non-loopback hosts need allow_remote; localhost binds once."""
    server = AsyncFakeCarrierServer(host="localhost")
    with pytest.raises(RuntimeError):
        _ = server.url
    with pytest.raises(ValueError):
        AsyncFakeCarrierServer(host="0.0.0.0")
    assert repr(server) == "<AsyncFakeCarrierServer not started>"
    with server.in_thread():
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert requests.get(server.url + "/balance", timeout=5).json()["code"] == 1
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/balance", timeout=1)


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_ipv6_loopback():
    """::1 is served, with a bracketed URL."""
    try:
        with AsyncFakeCarrierServer(host="::1").in_thread() as server:
            assert server.url.startswith("http://[::1]:")
            r = requests.get(server.url + "/balance", params={"apikey": APIKEY}, timeout=5)
            assert r.json()["code"] == 0
    except OSError as exc:  # IPv6 compiled in but not configured
        pytest.skip(f"cannot bind ::1: {exc}")


def test_shared_simulator_and_controls_from_another_thread():
    """A simulator given in is the one answering; controls set from this thread apply at once."""
    sim = VendorSimulator(balance=3)
    with AsyncFakeCarrierServer(simulator=sim).in_thread() as server:
        assert server.simulator is sim
        server.set_answer(PLAIN, res=1, now="联通")
        r = requests.post(
            server.url + "/carrier", data={"apikey": APIKEY, "mobile": PLAIN}, timeout=5
        )
        assert r.json()["result"]["Now_isp"] == "联通"
        assert sim.balance == 2


# -- HTTP edges ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"PUT /carrier HTTP/1.1\r\nHost: x\r\n\r\n", 501),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"POST /carrier HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
    ],
    ids=["put", "garbage", "http2", "no-colon", "negative-length", "huge-head", "many-headers"],
)
def test_refused_requests_close_the_connection(request_bytes, status):
    """Requests the fake will not carry get a status and Connection: close."""

    async def main():
        async with AsyncFakeCarrierServer() as server:
            url = urlsplit(server.url)
            reader, writer = await asyncio.open_connection(url.hostname, url.port)
            try:
                line, headers, _ = await http(reader, writer, request_bytes)
                assert await reader.read() == b""  # closed after the answer
            finally:
                writer.close()
            assert server.carrier_calls == 0
            return line, headers

    line, headers = async_run(main())
    assert line.startswith(f"HTTP/1.1 {status} ")
    assert headers["Connection"] == "close"


def test_http10_closes_unless_keep_alive_and_expect_continue():
    """HTTP/1.0 closes after the answer unless it asks; Expect: 100-continue is honoured."""

    async def main():
        async with AsyncFakeCarrierServer() as server:
            url = urlsplit(server.url)
            reader, writer = await asyncio.open_connection(url.hostname, url.port)
            await http(reader, writer, b"GET /balance HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            _, headers, _ = await http(reader, writer, b"\r\nGET /balance HTTP/1.0\r\n\r\n")
            assert headers["Connection"] == "close"
            assert await reader.read() == b""
            writer.close()
            reader, writer = await asyncio.open_connection(url.hostname, url.port)
            body = f"apikey={APIKEY}&mobile={DOC_NUMBER}".encode()
            writer.write(
                b"POST /carrier HTTP/1.1\r\nExpect: 100-continue\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
            _, _, answer = await http(reader, writer, body)
            writer.close()
            return json.loads(answer)

    assert async_run(main())["result"]["Now_isp"] == "电信"


# -- the child-process entry ----------------------------------------------------


def spawn(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "smsroute.testing.aio_server", "--port", "0", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def test_child_process_serves_reports_and_stops_at_eof():
    """The first line is the URL; each stdin line is answered with figures; EOF stops it."""
    child = spawn("--latency", "0.001", "--seed", "7")
    try:
        url = child.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        r = requests.post(url + "/carrier", data={"apikey": APIKEY, "mobile": PLAIN}, timeout=5)
        with FakeCarrierServer(seed=7) as local:
            assert r.json() == local.answer_for(PLAIN)
        child.stdin.write('{"fault": "http502"}\n')
        child.stdin.flush()
        figures = json.loads(child.stdout.readline())
        assert figures["served"] == figures["paid"] == figures["carrier_calls"] == 1
        assert figures["fault"] == "http502"
        assert figures["latency"] == 0.001
        assert 0 < figures["cpu_per_request"] <= figures["cpu_seconds"] <= figures["cpu"]
        assert requests.get(url + "/balance", timeout=5).status_code == 502
        child.stdin.write("not json\n")
        child.stdin.flush()
        assert "error" in json.loads(child.stdout.readline())
        child.stdin.close()
        assert child.wait(timeout=10) == 0
        assert child.stderr.read() == ""  # no runpy warning, no traceback
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout, child.stderr):
            stream.close()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is not a signal there")
def test_child_process_stops_on_sigterm():
    """SIGTERM stops the child cleanly, exit status 0."""
    child = spawn()
    try:
        url = child.stdout.readline().strip()
        assert requests.get(url + "/balance", timeout=5).status_code == 200
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=10) == 0
        assert child.stderr.read() == ""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout, child.stderr):
            stream.close()


def test_sync_users_do_not_import_the_asyncio_server():
    """import smsroute.testing leaves aio_server unloaded until AsyncFakeCarrierServer is used."""
    code = (
        "import sys, smsroute.testing as t; "
        "before = 'smsroute.testing.aio_server' in sys.modules; "
        "t.AsyncFakeCarrierServer; "
        "print(before, 'smsroute.testing.aio_server' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.split() == ["False", "True"]
