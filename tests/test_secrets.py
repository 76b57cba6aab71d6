"""Secrets and transport: the apikey never leaks; plain http warns; TLS verification is on.

Every logger (root, smsroute, urllib3, tenacity, requests) is captured at
DEBUG while a real CarrierClient talks to FakeCarrierServer on 127.0.0.1 by
GET and POST, through answers, every error code, timeouts, resets and a
refused connection; no log line, exception message, repr or formatted
traceback may hold any part of the key. TLS runs against a local HTTPS
server with a certificate signed by a CA made at test time (openssl CLI).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
import traceback
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import _rawserver
import pytest
import responses
from _rawserver import body_of, response
from tenacity import before_sleep_log

import smsroute
from smsroute import Alert, CarrierClient, InvalidNumber, Router, SmsRouteError, TransportError
from smsroute.testing import FakeCarrierServer, VendorSimulator, mock_vendor

# URL-special characters, so that the encoded forms differ from the raw one;
# a leak of any part shows as its head or its tail.
KEY_SPECIAL = "SECRETk3y+Zq/9=&x~TAIL9"
KEY_HEX = "7c11272au708345c834b8ue81ac78972"
NUMBER = "13800138000"
LOGGERS = ("", "smsroute", "urllib3", "tenacity", "requests")


def needles(key: str) -> list[str]:
    """Return the forms and fragments of ``key`` that must never appear."""
    return sorted({key, quote_plus(key), quote(key, safe=""), key[:9], key[-5:]})


def assert_clean(texts: list[str], key: str) -> None:
    """Fail if any text holds the key or a fragment of it."""
    for text in texts:
        for needle in needles(key):
            assert needle not in text, f"{needle!r} leaked in: {text[:300]!r}"


class Capture(logging.Handler):
    """Keep every record fully formatted, exception and stack included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Format and keep the record."""
        self.lines.append(self.format(record))


@pytest.fixture
def logs() -> Iterator[Capture]:
    """Capture every logger of interest at DEBUG for the test."""
    capture = Capture()
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    root.addHandler(capture)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def closed_port() -> int:
    """Return a loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exception_texts(exc: BaseException) -> list[str]:
    """Return everything a host might print of an exception."""
    texts = [str(exc), repr(exc), repr(exc.args)]
    texts += traceback.format_exception(type(exc), exc, exc.__traceback__)
    for attr in ("reason", "endpoint", "mobile", "text"):
        texts.append(repr(getattr(exc, attr, None)))
    return texts


SCENARIOS: list[int | str | None] = [
    None,
    1,
    -1,
    -2,
    -3,
    -4,
    -5,
    -8,
    -9,
    "http500",
    "html",
    "truncated",
    "hang",
    "reset",
    "refused",
    "echo",
]


@pytest.mark.parametrize("key", [KEY_SPECIAL, KEY_HEX], ids=["special", "hex"])
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_apikey_never_leaks(logs, key, method, scenario):
    """No log line at any level, exception, repr or traceback holds any part of the apikey."""
    texts: list[str] = []
    alerts: list[Alert] = []
    with FakeCarrierServer(apikey=key) as server:
        url = server.url
        if scenario == "refused":
            url = f"http://127.0.0.1:{closed_port()}"
        elif scenario == "echo":
            # A vendor echoing the key back in its reason, the way many do.
            server.set_answer(NUMBER, code=-1, reason=f"apikey={key} 不正确 ({key})")
        elif scenario is not None:
            server.set_fault(scenario)
        client = CarrierClient(
            key,
            base_url=url,
            method=method,
            # A host's retry policy that logs each retry, traceback included.
            retry=smsroute.default_retrying(attempts=2, sleep=lambda _s: None).copy(
                before_sleep=before_sleep_log(logging.getLogger("tenacity"), logging.INFO, True)
            ),
        )
        try:
            for call in (
                lambda: client.lookup(NUMBER, timeout=0.15),
                lambda: client.balance(timeout=0.15),
                lambda: client.lookup("+86 138 0013 800", timeout=0.15),  # InvalidNumber
            ):
                try:
                    texts.append(repr(call()))
                except SmsRouteError as exc:
                    texts += exception_texts(exc)

            router = Router(client, {"移动": "m"}, deadline=0.15, on_alert=alerts.append)
            decision = router.route(NUMBER)
            texts += [repr(decision), str(decision.reason), repr(decision.info)]
            texts += [repr(router), repr(router.breaker), repr(client), str(router.stats())]
            # No gateway at all: the NoRoute message quotes the fallback's reason.
            bare = Router(client, {}, deadline=0.15)
            with pytest.raises((smsroute.NoRoute, InvalidNumber)) as info:
                bare.route("13300133000")
            texts += exception_texts(info.value)
        finally:
            server.set_fault(None)
            client.close()
    texts += [repr(a) for a in alerts] + [a.reason for a in alerts]
    assert logs.lines, "nothing was logged: the capture is not working"
    assert_clean(texts + logs.lines, key)
    if scenario in (-8, "http500", "reset"):
        assert any(line.startswith("tenacity") for line in logs.lines)
    if method == "GET" and scenario is None:
        # The URL lines urllib3 logs were seen, with the key masked.
        assert any("apikey=***" in line for line in logs.lines)


def test_masked_number_only_in_logs(logs):
    """Log lines carry the masked number, never the full one."""
    with FakeCarrierServer() as server, CarrierClient(server.apikey, base_url=server.url) as c:
        server.set_fault(-8)
        Router(c, {"移动": "m"}, deadline=0.15).route(NUMBER)
    smsroute_lines = [line for line in logs.lines if line.startswith("smsroute")]
    assert any("138****8000" in line for line in smsroute_lines)
    assert not any(NUMBER in line for line in smsroute_lines)


# -- plain http ---------------------------------------------------------------


def test_plain_http_to_a_remote_host_works_and_warns_once_per_client(logs):
    """http:// to a non-loopback host warns once at construction, then works without warning."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        mock_vendor(rsps, base_url="http://isp.example.test", apikey=KEY_HEX)
        for _ in range(2):  # each client warns once, however often it is used
            with pytest.warns(UserWarning, match="plain http") as record:
                client = CarrierClient(KEY_HEX, base_url="http://isp.example.test")
            assert len(record) == 1
            assert_clean([str(w.message) for w in record], KEY_HEX)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                assert client.lookup(NUMBER).mobile == NUMBER
                assert client.balance().remaining > 0
            client.close()
    events = [line for line in logs.lines if "client.insecure_transport" in line]
    assert len(events) == 2
    assert_clean(logs.lines, KEY_HEX)


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8080", "http://127.9.9.9", "http://localhost:1", "http://[::1]:80"],
)
def test_plain_http_to_loopback_does_not_warn(base_url):
    """A loopback http:// base URL (the test servers) does not warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CarrierClient(KEY_HEX, base_url=base_url).close()


def test_https_does_not_warn():
    """An https:// base URL does not warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CarrierClient(KEY_HEX, base_url="https://isp.example.test").close()


# -- TLS ------------------------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    """Run the openssl CLI, failing the test with its output on error."""
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """Make a CA and two server certificates it signs: for 127.0.0.1, and for another name."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=smsroute test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
        cwd=d,
    )  # fmt: skip
    for name, san in (("ip", "IP:127.0.0.1"), ("other", "DNS:isp.example.test")):
        (d / f"{name}.ext").write_text(
            f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        )
        openssl(
            "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
            cwd=d,
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d,
        )  # fmt: skip
    return {
        "ca": d / "ca.pem",
        "ip": d / "ip.pem",
        "ip.key": d / "ip.key",
        "other": d / "other.pem",
        "other.key": d / "other.key",
    }


class _VendorHandler(BaseHTTPRequestHandler):
    """Answer like the vendor, through the shared VendorSimulator core."""

    protocol_version = "HTTP/1.1"
    timeout = 5  # a client that stalls mid-handshake or mid-request is dropped
    server: _HttpsServer

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent."""

    def do_GET(self) -> None:
        """Answer a GET."""
        self._serve({})

    def do_POST(self) -> None:
        """Answer a form POST."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        self._serve({k: v[0] for k, v in parse_qs(body).items()})

    def _serve(self, form: dict[str, str]) -> None:
        url = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()} | form
        reply = self.server.simulator.handle(self.command, url.path, params, dict(self.headers))
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)


class _HttpsServer(ThreadingHTTPServer):
    """A small HTTPS front end over a VendorSimulator, on 127.0.0.1."""

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext, simulator: VendorSimulator) -> None:
        self.context = context
        self.simulator = simulator
        self.handshake_failures = 0
        super().__init__(("127.0.0.1", 0), _VendorHandler)

    def server_bind(self) -> None:
        """Bind without a reverse-DNS lookup."""
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Do the TLS handshake in the handler thread, then serve."""
        request.settimeout(5)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshake_failures += 1
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that went away."""


@pytest.fixture
def https_server(pki) -> Iterator[Any]:
    """Yield a factory starting an HTTPS vendor with the named certificate."""
    servers: list[tuple[_HttpsServer, threading.Thread]] = []

    def start(cert: str) -> _HttpsServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki[cert], pki[f"{cert}.key"])
        server = _HttpsServer(context, VendorSimulator(apikey=KEY_HEX))
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def url_of(server: _HttpsServer) -> str:
    """Return the https base URL of a server."""
    return f"https://127.0.0.1:{server.server_address[1]}"


def test_tls_verification_is_on_by_default(https_server, logs):
    """A self-signed vendor certificate is refused by default: no request, no key sent."""
    server = https_server("ip")
    with CarrierClient(KEY_HEX, base_url=url_of(server)) as client:
        with pytest.raises(TransportError, match=r"SSL|certificate") as info:
            client.lookup(NUMBER)
        with pytest.raises(TransportError):
            client.balance()
    assert server.simulator.requests == []  # the apikey never went out
    assert server.handshake_failures >= 1
    assert_clean(exception_texts(info.value) + logs.lines, KEY_HEX)


def test_tls_with_the_ca_is_accepted(https_server, pki):
    """With verify=<the CA's file> the same server is trusted, for lookups and balance."""
    server = https_server("ip")
    with CarrierClient(KEY_HEX, base_url=url_of(server), verify=str(pki["ca"])) as client:
        info = client.lookup(NUMBER)
        assert info.mobile == NUMBER
        assert client.balance().remaining > 0
        with client.copy(method="GET") as copy:  # a copy keeps the trust setting
            assert copy.lookup(NUMBER).current == info.current
    assert [r.path for r in server.simulator.requests] == ["/carrier", "/balance", "/carrier"]


def test_tls_checks_the_host_name(https_server, pki):
    """A certificate from the right CA but for another host name is refused."""
    server = https_server("other")
    with (
        CarrierClient(KEY_HEX, base_url=url_of(server), verify=str(pki["ca"])) as client,
        pytest.raises(TransportError, match=r"SSL|certificate|hostname|match"),
    ):
        client.lookup(NUMBER)
    assert server.simulator.requests == []


def test_router_falls_back_when_tls_is_refused(https_server):
    """A refused certificate is a lookup failure like any other: the send still routes."""
    server = https_server("ip")
    with CarrierClient(KEY_HEX, base_url=url_of(server)) as client:
        decision = Router(client, {"移动": "m"}, deadline=1.0).route(NUMBER)
    assert (decision.source, decision.gateway) == ("fallback", "m")
    assert "TransportError" in (decision.reason or "")


class _DripProxy:
    """A loopback TCP proxy that passes the server's bytes on one at a time, 20 ms apart."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            server = socket.create_connection(self.upstream, timeout=5)
            self.socks += [client, server]
            for src, dst, drip in ((client, server, False), (server, client, True)):
                t = threading.Thread(target=self._pump, args=(src, dst, drip), daemon=True)
                self.threads.append(t)
                t.start()

    def _pump(self, src: socket.socket, dst: socket.socket, drip: bool) -> None:
        src.settimeout(0.05)
        with contextlib.suppress(OSError):
            while not self.stopping.is_set():
                try:
                    data = src.recv(4096)
                except TimeoutError:
                    continue
                if not data:
                    return
                for i in range(0, len(data), 1 if drip else len(data)):
                    dst.sendall(data[i : i + 1] if drip else data)
                    if drip and self.stopping.wait(0.02):
                        return

    def close(self) -> None:
        """Stop pumping and wait for the threads."""
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=5)
        for sock in self.socks:
            sock.close()
        self.listener.close()


def test_a_dripping_tls_handshake_keeps_the_deadline(https_server, pki):
    """A TLS handshake sent a byte at a time ends at the deadline, like a dripping body.

    CPython bounds a handshake by the socket's timeout as a whole; this keeps
    the client's own connect path (DNS inside the budget) and the watchdog so.
    """
    server = https_server("ip")
    proxy = _DripProxy(("127.0.0.1", server.server_address[1]))
    try:
        with CarrierClient(
            KEY_HEX, base_url=f"https://127.0.0.1:{proxy.port}", verify=str(pki["ca"])
        ) as client:
            started = time.monotonic()
            with pytest.raises(TransportError, match="timed out"):
                client.lookup(NUMBER, timeout=0.4)
            assert time.monotonic() - started < 0.4 + 0.35
    finally:
        proxy.close()
    assert server.simulator.requests == []  # cut before the request went out


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_apikey_not_in_traceback_locals(method):
    """A traceback that captures local variables (as Sentry does) shows no apikey."""
    with FakeCarrierServer(apikey=KEY_HEX) as server:
        server.fault = "http500"
        client = CarrierClient(
            KEY_HEX,
            base_url=server.url,
            method=method,
            retry=smsroute.default_retrying(attempts=1),
        )
        with client, pytest.raises(TransportError) as caught:
            client.lookup("13972565391")
    te = traceback.TracebackException.from_exception(caught.value, capture_locals=True)
    text = "".join(te.format())
    assert "params" in text  # the locals were captured...
    assert KEY_HEX not in text  # ...and the key is not among them


def test_huge_body_from_a_real_server_is_refused_unread():
    """A body over the size limit is a TransportError, read no further than the limit."""
    big = "x" * (smsroute.client.MAX_BODY * 4)
    with FakeCarrierServer() as server:
        server.set_answer("13972565391", area=big)
        with CarrierClient(server.apikey, base_url=server.url) as client:
            with pytest.raises(TransportError, match="over"):
                client.lookup("13972565391")
            # The connection was dropped; the next call still works.
            assert client.lookup("13800138000").current is not None


# -- byte-level faults: every logger requests and urllib3 use ---------------------


def _faults(key: str) -> dict[str, bytes | Any]:
    """Return raw answers and scripts that each make a library log or raise something."""
    echo = f"apikey={key} mobile={NUMBER} {key} {NUMBER}".encode()
    body = body_of()
    return {
        # urllib3.connection warns "Failed to parse headers (url=...)" with the
        # full URL (GET: apikey and number) and the vendor's header bytes.
        "header without colon": b"HTTP/1.1 200 OK\r\nX: 1\r\nBad " + echo + b"\r\n\r\n" + body,
        "folded first header": b"HTTP/1.1 200 OK\r\n  " + echo + b"\r\n\r\n" + body,
        "echoing header": response(body, extra=b"X-Echo: " + echo + b"\r\n"),
        "bad status line": b"HTTP/1.1 2x0 " + echo + b"\r\n\r\n",
        "bad chunk length": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz" + echo,
        "bad json": response(b"error: " + echo),
        "echoing 500": response(echo, status="500 Internal Server Error"),
        "echoing reason": response(
            body_of({"code": -1, "reason": "\x1b[2J\x07" + echo.decode() + "\x1b]0;x\x07"})
        ),
        "drip": lambda c: c.drip(response(body), 0.05),
        "reset": _rawserver.Conn.reset,
    }


FAULT_NAMES = list(_faults(KEY_HEX))


@pytest.mark.parametrize("key", [KEY_SPECIAL, KEY_HEX], ids=["special", "hex"])
@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("fault", FAULT_NAMES)
def test_no_logger_shows_the_apikey_or_the_number(logs, key, method, fault):
    """Root captured at DEBUG: no record of any library, nor any exception, holds key or number."""
    script = _faults(key)[fault]
    if isinstance(script, bytes):
        script = (lambda raw: lambda c: c.send(raw))(script)
    texts: list[str] = []
    with (
        _rawserver.serving(script) as server,
        CarrierClient(
            key,
            base_url=server.url,
            method=method,
            retry=smsroute.default_retrying(attempts=2, sleep=lambda _s: None),
        ) as client,
    ):
        for call in (
            lambda: client.lookup(NUMBER, timeout=0.3),
            lambda: client.balance(timeout=0.3),
        ):
            try:
                call()
            except SmsRouteError as exc:
                texts += exception_texts(exc)
        decision = Router(client, {"移动": "m"}, default="d", deadline=0.3).route(NUMBER)
        texts += [str(decision.reason), repr(decision)]
    assert server.requests, "the fault server was never asked"
    assert logs.lines, "nothing was logged: the capture is not working"
    assert_clean(texts + logs.lines, key)
    for text in texts + logs.lines:
        assert NUMBER not in text, f"the full number leaked in: {text[:300]!r}"
        assert "\x1b" not in text, f"ESC in: {text!r}"
        assert "\x07" not in text, f"BEL in: {text!r}"
