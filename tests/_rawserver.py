"""A byte-level hostile vendor on 127.0.0.1: each request is answered by a script of raw writes.

Imported by the test modules as ``_rawserver``. A script gets the connection
and the request bytes and writes what it likes, as slowly as it likes; every
pause waits on the server's stop event, and no script runs past ``limit``
seconds, so a test against code that does not keep its deadline fails after
``limit``, it does not hang.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

NUMBER = "13800138000"
GOOD = {
    "code": 0,
    "reason": "Succ",
    "result": {
        "res": "1",
        "Mobile": NUMBER,
        "Area": "湖北-宜昌",
        "Init_isp": "移动",
        "Now_isp": "电信",
    },
}


def body_of(answer: dict[str, Any] | None = None) -> bytes:
    """Return a JSON body (the good answer by default)."""
    return json.dumps(GOOD if answer is None else answer, ensure_ascii=False).encode()


def response(body: bytes, *, status: str = "200 OK", extra: bytes = b"") -> bytes:
    """Return a whole HTTP/1.1 response with a Content-Length (and the close the server does)."""
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


class Conn:
    """One accepted connection, as a script sees it."""

    def __init__(self, sock: socket.socket, server: RawServer, request: bytes) -> None:
        self.sock = sock
        self.server = server
        self.request = request
        self._until = time.monotonic() + server.limit

    def send(self, data: bytes) -> bool:
        """Write ``data`` at once; False once the client is gone or time is up."""
        if self.server.stopping.is_set() or time.monotonic() > self._until:
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False once the server stops or the script's time is up."""
        left = self._until - time.monotonic()
        if left <= 0:
            return False
        return not self.server.stopping.wait(min(seconds, left))

    def drip(self, data: bytes, every: float, *, size: int = 1) -> bool:
        """Write ``data`` ``size`` bytes at a time, ``every`` seconds apart."""
        for i in range(0, len(data), size):
            if not (self.send(data[i : i + size]) and self.pause(every)):
                return False
        return True

    def reset(self) -> None:
        """Close with RST instead of FIN (the client sees ECONNRESET)."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


Script = Callable[[Conn], Any]


class RawServer:
    """A loopback TCP server answering each request with ``script``; one request per connection.

    ``requests`` counts the complete requests that arrived (what a vendor would
    bill), ``paths`` their paths.
    """

    def __init__(self, script: Script, *, limit: float = 3.0, keep_alive: bool = False) -> None:
        self.script = script
        self.limit = limit
        self.keep_alive = keep_alive
        self.stopping = threading.Event()
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)

    @property
    def requests(self) -> int:
        """Return how many complete requests arrived."""
        with self._lock:
            return len(self.paths)

    def __enter__(self) -> RawServer:
        self._accept.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._accept.join(timeout=5)
        for t in self._threads:
            t.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(sock,), daemon=True)
            self._threads.append(t)
            t.start()

    def _handle(self, sock: socket.socket) -> None:
        with sock:
            sock.settimeout(0.1)
            buf = b""
            while not self.stopping.is_set():
                request, buf = self._read_request(sock, buf)
                if request is None:
                    return
                with self._lock:
                    self.paths.append(request.split(b" ", 2)[1].decode("latin-1"))
                self.script(Conn(sock, self, request))
                if not self.keep_alive:
                    return

    def _read_request(self, sock: socket.socket, buf: bytes) -> tuple[bytes | None, bytes]:
        until = time.monotonic() + self.limit
        while b"\r\n\r\n" not in buf:
            more = self._recv(sock, until)
            if more is None:
                return None, b""
            buf += more
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            more = self._recv(sock, until)
            if more is None:
                return None, b""
            rest += more
        return head + b"\r\n\r\n" + rest[:length], rest[length:]

    def _recv(self, sock: socket.socket, until: float) -> bytes | None:
        while not self.stopping.is_set() and time.monotonic() < until:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return None
            return data or None
        return None


@contextlib.contextmanager
def serving(script: Script, **kwargs: Any) -> Iterator[RawServer]:
    """Run a RawServer for the ``with`` block."""
    with RawServer(script, **kwargs) as server:
        yield server
