"""AsyncFakeCarrierServer: the vendor protocol over HTTP/1.1 keep-alive, on plain asyncio streams.

The same :class:`~smsroute.testing.simulator.VendorSimulator` as
:class:`~smsroute.testing.server.FakeCarrierServer` decides every answer, so
the same seed gives the same bytes; only the carrying differs: one event
loop instead of a thread per connection, so that a benchmark of an asyncio
client at thousands of lookups a second measures the client, not the fake.
Latency is ``await asyncio.sleep``. Three ways to run it::

    async with AsyncFakeCarrierServer(latency=0.01) as server:   # on the running loop
        ...
    with AsyncFakeCarrierServer().in_thread() as server:         # its own loop and thread
        ...
    python -m smsroute.testing.aio_server --port 0               # its own process

Every fault of :data:`~smsroute.testing.faults.FAULTS` and every int code
works as on the threaded server: ``hang`` holds the request until the fault
or the number's pinned answer changes (or the server stops, which closes
the connection), ``reset`` closes with RST (SO_LINGER 0). The threaded
server has no byte-by-byte "drip" fault, so neither has this one.

The HTTP side is deliberately small: request heads end in CRLF CRLF and are
capped, like bodies, at :data:`~smsroute.testing.wire.MAX_BODY` (431 / 413);
chunked bodies get 411; methods other than GET and POST get 501; HTTP/1.0
closes unless it asks for keep-alive; ``Expect: 100-continue`` is honoured.

:meth:`AsyncFakeCarrierServer.cpu_per_request` reports the CPU seconds the
serving thread spent per request answered; it is meaningful when the server
has its loop to itself (``in_thread()`` or the child process), since in a
shared loop the caller's own work is counted too. The child process answers
each line it reads on stdin with one JSON line of these figures.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from types import FrameType, TracebackType
from typing import Any, Final

from smsroute.testing.controls import VendorControls
from smsroute.testing.http11 import (
    CONTINUE,
    HttpDate,
    Refused,
    RequestHead,
    parse_head,
    phrase,
    response_head,
)
from smsroute.testing.simulator import PREPAID, AnswerSpec, VendorSimulator
from smsroute.testing.wire import (
    HOLD_POLL,
    HTML_TYPE,
    MAX_BODY,
    base_url,
    nginx_page,
    refuse_remote,
    request_params,
)

__all__ = ["AsyncFakeCarrierServer", "main"]

_SERVER: Final = "AsyncFakeCarrierServer"
_STOP_WAIT: Final = 1.0  # seconds stop() waits for cancelled handlers and the loop thread
_LINGER: Final = 1.0  # seconds a refused client has to close before the server does


class AsyncFakeCarrierServer(VendorControls):
    """A real HTTP/1.1 server on loopback that speaks the vendor's protocol on asyncio.

    Not thread-safe by itself: start and stop it on one loop. The controls
    (``fault``, ``latency``, ``set_answer()``, ...) live on the simulator,
    which is thread-safe, so they may be changed from any thread while it
    serves.
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
        self._server: asyncio.Server | None = None
        self._address: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._stopped = False
        self._served = 0
        self._cpu_start = 0.0
        self._cpu_total: float | None = None  # frozen by stop()
        self._date = HttpDate()

    def __repr__(self) -> str:
        where = self.url if self._address is not None else "not started"
        return f"<{_SERVER} {where}>"

    # -- where ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """Return the bound TCP port."""
        if self._address is None:
            raise RuntimeError(f"{_SERVER} is not started")
        return self._address[1]

    @property
    def url(self) -> str:
        """Return the base URL, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        if self._address is None:
            raise RuntimeError(f"{_SERVER} is not started")
        return base_url(*self._address)

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> AsyncFakeCarrierServer:
        """Bind and serve on the running loop; return self (a no-op when serving)."""
        if self._stopped:
            raise RuntimeError(f"a stopped {_SERVER} cannot be restarted")
        if self._server is not None:
            return self
        # Bind one socket ourselves: start_server(host=...) would bind every
        # address "localhost" resolves to, each on its own ephemeral port. The
        # explicit IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets
        # whose proto says TCP, and without it every answer waits out the
        # client's delayed ACK (~40 ms).
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            if os.name == "posix":  # elsewhere it lets another socket steal the port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            sock.setblocking(False)
            self._server = await asyncio.start_server(
                self._connection, sock=sock, limit=MAX_BODY, backlog=128
            )
        except BaseException:
            sock.close()
            raise
        host, port = sock.getsockname()[:2]
        self._address = (str(host), int(port))
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._cpu_start = time.thread_time()
        return self

    async def stop(self) -> None:
        """Stop serving, drop held requests, close every connection; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        server, self._server = self._server, None
        if server is None:
            return
        self._cpu_total = time.thread_time() - self._cpu_start
        server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=_STOP_WAIT)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), _STOP_WAIT)

    async def __aenter__(self) -> AsyncFakeCarrierServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[AsyncFakeCarrierServer]:
        """Serve on a new event loop in a daemon thread for the length of a ``with`` block."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_run_loop, args=(loop,), name=_SERVER, daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
            yield self
        finally:
            try:
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=_STOP_WAIT * 5)

    # -- figures -------------------------------------------------------------

    @property
    def served(self) -> int:
        """Return how many requests were answered (vendor answers and refusals alike)."""
        return self._served

    def cpu_seconds(self) -> float:
        """Return the CPU seconds the serving thread used since start() (frozen by stop())."""
        if self._cpu_total is not None:
            return self._cpu_total
        if self._loop is None:
            return 0.0
        if threading.get_ident() == self._loop_thread:
            return time.thread_time() - self._cpu_start
        # time.thread_time() reads the calling thread's clock: ask the loop's own.
        reading: concurrent.futures.Future[float] = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(lambda: reading.set_result(time.thread_time()))
        return reading.result(timeout=5) - self._cpu_start

    def cpu_per_request(self) -> float:
        """Return :meth:`cpu_seconds` divided by the requests served (0.0 before any)."""
        served = self._served
        return self.cpu_seconds() / served if served else 0.0

    # -- serving -------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._stopped or task is None:
            writer.close()  # accepted just before stop(): do not start serving it
            return
        self._handlers.add(task)
        peer = writer.get_extra_info("peername")
        client = (str(peer[0]), int(peer[1])) if peer else None
        try:
            while await self._exchange(reader, writer, client):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request
        except asyncio.CancelledError:
            # stop() cancelled us. End normally: on Python 3.11, start_server's
            # done-callback calls task.exception(), which a cancelled task raises.
            if not self._stopped:
                raise
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: tuple[str, int] | None,
    ) -> bool:
        """Read one request and answer it; return whether the connection stays open."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # closed between requests: the usual end of a keep-alive connection
        except asyncio.LimitOverrunError:
            return await self._refuse(reader, writer, 431)
        try:
            request = parse_head(head)
            if request is None:
                return True  # nothing but blank lines: wait for the request
            body = await self._read_body(reader, writer, request)
            if request.method not in ("GET", "POST"):
                raise Refused(501)
        except Refused as refused:
            return await self._refuse(reader, writer, refused.status)
        method, keep = request.method, request.keep_alive
        # A GET's body is read only to keep the framing; the vendor ignores it.
        path, params = request_params(
            request.target, body if method == "POST" else b"", request.content_type
        )
        reply = self.simulator.handle(method, path, params, request.headers, client)
        if reply.delay > 0:
            await asyncio.sleep(reply.delay)
        while reply.release is not None:
            await asyncio.sleep(HOLD_POLL)
            released = reply.release()
            if released is not None:
                reply = released
        self._served += 1
        if reply.action == "reset":
            _reset(writer)
            return False
        # One write, so that head and body leave in one segment.
        writer.write(
            self._head(reply.status, reply.content_type, len(reply.body), keep) + reply.body
        )
        await writer.drain()
        return keep

    async def _read_body(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: RequestHead
    ) -> bytes:
        length = request.body_length()
        if not length:
            return b""
        if request.expects_continue:
            writer.write(CONTINUE)
        return await reader.readexactly(length)

    def _head(self, status: int, content_type: str, length: int, keep_alive: bool) -> bytes:
        return response_head(
            status,
            content_type,
            length,
            keep_alive=keep_alive,
            server=_SERVER,
            date=self._date(),
        )

    async def _refuse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int
    ) -> bool:
        page = nginx_page(f"{status} {phrase(status)}")
        self._served += 1
        writer.write(self._head(status, HTML_TYPE, len(page), keep_alive=False) + page)
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            await writer.drain()
            # Close gently: closing with unread bytes (the rest of a huge head)
            # would send RST, and the client could lose the answer with it.
            if writer.can_write_eof():
                writer.write_eof()
            await asyncio.wait_for(_discard(reader), _LINGER)
        return False


async def _discard(reader: asyncio.StreamReader) -> None:
    while await reader.read(MAX_BODY):
        pass


def _reset(writer: asyncio.StreamWriter) -> None:
    # SO_LINGER 0 makes close() send RST rather than FIN: the client sees
    # ECONNRESET, as on the threaded server.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# -- the child-process entry ----------------------------------------------------


def _figures(server: AsyncFakeCarrierServer) -> dict[str, Any]:
    # Read in this order so that per-request <= thread <= process holds.
    per_request = server.cpu_per_request()
    thread = server.cpu_seconds()
    return {
        "served": server.served,
        "paid": server.paid,
        "carrier_calls": server.carrier_calls,
        "fault": server.fault,
        "latency": server.latency,
        "cpu": time.process_time(),  # the whole process, as benchmarks/_server.py reports
        "cpu_seconds": thread,
        "cpu_per_request": per_request,
    }


def _control(server: AsyncFakeCarrierServer, line: str) -> dict[str, Any]:
    try:
        command = json.loads(line) if line.strip() else {}
        if not isinstance(command, dict):
            raise TypeError("want a JSON object")
        if "latency" in command:
            server.latency = float(command["latency"])
        if "fault" in command:
            server.fault = command["fault"]
        if "balance" in command:
            server.balance = int(command["balance"])
    except (ValueError, TypeError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return _figures(server)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Unwind through the ``with`` so the server closes its sockets; a second
    # SIGTERM kills as usual.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Serve in this process until stdin closes or SIGTERM; print the URL first.

    Each line read on stdin is a JSON object (``{}``, ``{"latency": 0.01}``,
    ``{"fault": "hang"}``, ``{"balance": 5}``) answered by one JSON line:
    ``served``, ``paid``, ``carrier_calls``, ``fault``, ``latency``, ``cpu``
    (the process's CPU seconds), ``cpu_seconds`` and ``cpu_per_request`` (the
    serving thread's).
    """
    parser = argparse.ArgumentParser(
        prog="python -m smsroute.testing.aio_server",
        description="Serve the fake carrier-lookup vendor on asyncio until stdin closes.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--apikey", default="test-apikey")
    parser.add_argument("--balance", type=int, default=100_000)
    parser.add_argument("--seed", default="0", help="changes which numbers are ported")
    parser.add_argument("--ported-share", type=float, default=0.1)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    server = AsyncFakeCarrierServer(
        apikey=args.apikey,
        balance=args.balance,
        seed=args.seed,
        ported_share=args.ported_share,
        latency=args.latency,
        host=args.host,
        port=args.port,
    )
    signal.signal(signal.SIGTERM, _terminate)
    with server.in_thread():
        print(server.url, flush=True)
        if sys.stdin is None:  # started with stdin closed: serve until SIGTERM
            signal.pause()
        for line in sys.stdin:
            print(json.dumps(_control(server, line)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
