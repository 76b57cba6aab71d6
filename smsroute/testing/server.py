"""FakeCarrierServer: the vendor protocol over real HTTP/1.1 on loopback, served by threads.

A ``ThreadingHTTPServer`` (one thread per connection, keep-alive) in a
background thread carries each request to a
:class:`~smsroute.testing.simulator.VendorSimulator` and sends its
:class:`~smsroute.testing.wire.Reply`: waiting out latency, holding
``"hang"`` requests and resetting connections as the reply says. ``stop()``
wakes every waiting handler, so a test never waits on a held request.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from smsroute.testing.controls import VendorControls
from smsroute.testing.simulator import PREPAID, AnswerSpec, VendorSimulator
from smsroute.testing.wire import HOLD_POLL, MAX_BODY, base_url, refuse_remote, request_params

__all__ = ["FakeCarrierServer"]


class _DroppedError(Exception):
    """Raised inside a handler to close the connection without (further) answer."""


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
        self._serve(b"")

    def do_POST(self) -> None:
        """Answer a POST (form body, plus any parameters in the query string)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.send_error(411)  # the vendor's clients send a Content-Length
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.send_error(400 if length < 0 else 413)
            return
        raw = self.rfile.read(length) if length else b""
        self._serve(raw)

    def _serve(self, body: bytes) -> None:
        path, params = request_params(self.path, body, self.headers.get("Content-Type", ""))
        host, port = self.client_address[:2]
        reply = self.server.simulator.handle(
            self.command, path, params, dict(self.headers.items()), (str(host), int(port))
        )
        stopping = self.server.stopping
        if reply.delay > 0 and stopping.wait(reply.delay):
            self._drop()
        while reply.release is not None:
            if stopping.wait(HOLD_POLL):
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


class FakeCarrierServer(VendorControls):
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
        fee_type: str = PREPAID,
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
        refuse_remote(host, allow_remote=allow_remote)
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
        return base_url(str(self._httpd.server_address[0]), self.port)

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
