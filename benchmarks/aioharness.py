"""What the asyncio figures share: an async in-process client and a vendor that drips.

harness.py has what every figure uses (the shapes, the numbers, both fake
vendors through ``Env``); this module adds what only figures 8-11 need:
whether the asyncio front end can run here (``aiohttp_missing()``), an
``AsyncSimClient`` for an AsyncRouter with no socket, and ``DripServer``, a
vendor that sends every answer right but one byte every 100 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qs

from harness import BENCH_APIKEY, SimClient, optional

from smsroute import CarrierInfo
from smsroute.testing import VendorSimulator

__all__ = ["AsyncSimClient", "DripServer", "aiohttp_missing"]

_STOP_WAIT: Final = 2.0  # seconds stop() waits for cancelled connections and the loop thread
_MAX_REQUEST: Final = 64 * 1024  # a request head or body larger than this is not a lookup


def aiohttp_missing() -> str | None:
    """Return why the asyncio front end cannot run here, or None when it can."""
    if optional("aiohttp") is None:
        return "aiohttp not installed: pip install -e '.[async]'"
    return None


class AsyncSimClient:
    """SimClient behind ``async def lookup``: an AsyncRouter's client with no socket."""

    def __init__(self) -> None:
        self._sim = SimClient()

    async def lookup(self, number: str, *, timeout: float | None = None) -> CarrierInfo:
        """Return the simulator's answer for a valid number (no await inside: no I/O)."""
        return self._sim.lookup(number, timeout=timeout)

    @property
    def calls(self) -> int:
        """Return how many lookups were made."""
        return self._sim.calls


class DripServer:
    """A vendor on 127.0.0.1 that answers every request right, but one byte at a time.

    It reads the request (head, then a ``Content-Length`` body, or the query
    of a GET), renders the answer VendorSimulator gives the number, and
    writes head and body one byte every ``interval`` seconds: the vendor
    behind a sick proxy. Each read the client makes gets a byte well within
    any per-read timeout, so only a deadline over the whole response ends
    the wait; a full answer takes ~26 s. Whatever was sent, a connection is
    closed after ``cap`` seconds, so that nothing waits on it longer.

    Runs its own event loop on a daemon thread for the length of a ``with``
    block; ``url`` is its address. ``served`` counts responses begun and
    ``completed`` those written to the end: a client that holds its
    deadline goes away first.
    """

    def __init__(
        self, *, interval: float = 0.1, cap: float = 30.0, apikey: str = BENCH_APIKEY
    ) -> None:
        self.interval = interval
        self.cap = cap
        self.apikey = apikey
        self._sim = VendorSimulator(apikey=apikey, balance=10**12)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.url = ""
        self.served = 0
        self.completed = 0

    def __enter__(self) -> DripServer:
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="DripServer", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout=10)
        except BaseException:
            self._stop_loop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._loop is not None
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(
                timeout=_STOP_WAIT * 3
            )
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        assert self._loop is not None
        assert self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_STOP_WAIT * 3)
        if not self._thread.is_alive():
            self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, host="127.0.0.1", port=0, limit=_MAX_REQUEST
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=_STOP_WAIT)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), _STOP_WAIT)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await asyncio.wait_for(self._drip(reader, writer), self.cap)
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # capped, or the client went away, or it sent no lookup
        except asyncio.CancelledError:
            # Stopping: end normally (on 3.11 start_server's callback reads the
            # exception of a cancelled task, which raises).
            if not self._stopping:
                raise
        finally:
            if task is not None:
                self._handlers.discard(task)
            writer.close()

    async def _drip(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read one request and write its answer a byte per ``interval``; then close."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        target = request_line.split(" ")[1] if request_line.count(" ") >= 2 else "/"
        length = 0
        for line in lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if not 0 <= length <= _MAX_REQUEST:
            raise ValueError("not a lookup")
        body = await reader.readexactly(length) if length else b""
        query = target.partition("?")[2] + "&" + body.decode("ascii", "replace")
        mobile = parse_qs(query).get("mobile", [""])[0]
        payload = json.dumps(self._sim.answer_for(mobile), ensure_ascii=False).encode()
        response = (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(payload)
        ) + payload
        self.served += 1
        for i in range(len(response)):  # bounded by the response's length and by cap
            if i:
                await asyncio.sleep(self.interval)
            if reader.at_eof() or writer.is_closing():
                return  # the client gave up
            writer.write(response[i : i + 1])
            await writer.drain()
        self.completed += 1
