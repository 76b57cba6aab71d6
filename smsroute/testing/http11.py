"""HTTP/1.1 framing without I/O for the asyncio server: read a request head, write a response head.

Deliberately small, and strict where being lenient would hide a client bug:
a head ends in CRLF CRLF, a header line has no folding and no space before
its colon, a body is framed by Content-Length only (chunked gets 411). What
is refused raises :class:`Refused` with the status to answer before closing.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

from smsroute.testing.wire import MAX_BODY

__all__ = [
    "CONTINUE",
    "MAX_HEADERS",
    "HttpDate",
    "Refused",
    "RequestHead",
    "parse_head",
    "phrase",
    "response_head",
]

MAX_HEADERS: Final = 100
"""More header lines than this are refused with 431, as ``http.server`` does."""
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
"""The interim answer to ``Expect: 100-continue``."""

_PHRASES: Final = {s.value: s.phrase for s in HTTPStatus}


class Refused(Exception):
    """A request not to be carried to the simulator: answer ``status``, then close."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class RequestHead:
    """A parsed request line and headers, as sent and lower-cased for lookups."""

    method: str
    target: str
    version: str
    headers: dict[str, str]  # the names as the client spelt them, for the record
    lower: dict[str, str]

    @property
    def keep_alive(self) -> bool:
        """Return whether the connection stays open after the answer (HTTP/1.0 must ask)."""
        tokens = {t.strip().lower() for t in self.lower.get("connection", "").split(",")}
        return "keep-alive" in tokens if self.version == "HTTP/1.0" else "close" not in tokens

    @property
    def expects_continue(self) -> bool:
        """Return whether the client waits for ``100 Continue`` before sending its body."""
        return self.lower.get("expect", "").lower() == "100-continue"

    @property
    def content_type(self) -> str:
        """Return the Content-Type header, or an empty string."""
        return self.lower.get("content-type", "")

    def body_length(self) -> int:
        """Return the body's length from Content-Length; raise Refused when it cannot be read."""
        if "chunked" in self.lower.get("transfer-encoding", "").lower():
            raise Refused(411)  # the vendor's clients send a Content-Length
        text = self.lower.get("content-length", "0")
        if not text.isdigit():  # also refuses "+5", " 5" and "-1", which int() would take
            raise Refused(400)
        length = int(text)
        if length > MAX_BODY:
            raise Refused(413)
        return length


def parse_head(data: bytes) -> RequestHead | None:
    """Return the request in ``data`` (up to and with CRLF CRLF); None for blank lines only."""
    # Empty strings: the end of the head, and blank lines before a request (RFC 9112 2.2).
    lines = [line for line in data.decode("latin-1").split("\r\n") if line]
    if not lines:
        return None
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise Refused(400)
    method, target, version = parts
    major, dot, minor = version[5:].partition(".")
    if not (major.isdigit() and dot and minor.isdigit()):
        raise Refused(400)
    if major != "1":
        raise Refused(505)
    if len(lines) - 1 > MAX_HEADERS:
        raise Refused(431)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        # No obsolete line folding and no space before the colon (RFC 9112 5.1).
        if not colon or not name or name != name.strip():
            raise Refused(400)
        headers[name] = value.strip()
    lower = {k.lower(): v for k, v in headers.items()}
    return RequestHead(method, target, version, headers, lower)


def phrase(status: int) -> str:
    """Return the reason phrase of a status code (empty for an unknown one)."""
    return _PHRASES.get(status, "")


def response_head(
    status: int, content_type: str, length: int, *, keep_alive: bool, server: str, date: str
) -> bytes:
    """Return the status line and headers of an answer, through the blank line."""
    head = (
        f"HTTP/1.1 {status} {phrase(status)}\r\n"
        f"Server: {server}\r\nDate: {date}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n"
    )
    if not keep_alive:
        head += "Connection: close\r\n"
    return (head + "\r\n").encode("latin-1")


class HttpDate:
    """The Date header value, formatted at most once a second (it goes on every response)."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def __call__(self) -> str:
        """Return the current time as an HTTP date."""
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, email.utils.formatdate(now, usegmt=True)
        return self._value
