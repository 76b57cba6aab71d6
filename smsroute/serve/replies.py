"""The service's HTTP plumbing: JSON replies, error bodies, and reading a request within its limits.

Every reply is UTF-8 JSON. An error is ``{"error": slug, "message": text}``
with its HTTP status; :class:`Refusal` carries one out of a handler. A body
is read within ``read_timeout`` (a client that trickles bytes is cut off
with 408, so it cannot hold the connection's task) and ``max_body`` (413,
enforced by aiohttp's ``client_max_size``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl

from aiohttp import web

__all__ = [
    "JSON_TYPE",
    "Refusal",
    "error_reply",
    "json_reply",
    "read_body",
    "read_params",
]

JSON_TYPE: Final = "application/json; charset=utf-8"
_FORM: Final = ("", "application/x-www-form-urlencoded")


class Refusal(Exception):
    """Raised in a handler to answer an error: status, slug, message and extra headers."""

    def __init__(
        self, status: int, error: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = dict(headers or {})

    def reply(self) -> web.Response:
        """Return the error reply."""
        return error_reply(self.status, self.error, self.message, headers=self.headers)


def json_reply(
    body: Any,
    status: int = 200,
    *,
    headers: Mapping[str, str] | None = None,
    compact: bool = True,
) -> web.Response:
    """Return ``body`` as UTF-8 JSON (``compact=False``: the vendor's ``", "`` separators)."""
    text = (
        json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        if compact
        else json.dumps(body, ensure_ascii=False)
    )
    out = {"Content-Type": JSON_TYPE}
    if headers:
        out.update(headers)
    return web.Response(body=text.encode("utf-8"), status=status, headers=out)


def error_reply(
    status: int, error: str, message: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Return the error body ``{"error": ..., "message": ...}`` with ``status``."""
    return json_reply({"error": error, "message": message}, status, headers=headers)


async def read_body(request: web.Request, timeout: float) -> bytes:
    """Return the request body, read within ``timeout`` seconds (else Refusal 408)."""
    if not request.can_read_body:
        return b""
    try:
        return await asyncio.wait_for(request.read(), timeout)
    except asyncio.TimeoutError:
        raise Refusal(
            408, "request_timeout", f"the body did not arrive within {timeout:g} s"
        ) from None


async def read_params(request: web.Request, timeout: float, *, json_ok: bool) -> Mapping[str, Any]:
    """Return the query parameters with the form body (or, if ``json_ok``, a JSON object) over them.

    A form field repeated keeps its first value, as the vendor reads it.
    """
    if request.method != "POST":
        # The query as it is (a repeated name answers its first value): a GET
        # is the hot path, and copying it costs more than the rest of a hit.
        return request.query
    params: dict[str, Any] = {}
    for name, value in request.query.items():
        params.setdefault(name, value)
    body = await read_body(request, timeout)
    if not body:
        return params
    # The raw header: aiohttp reads a missing one as application/octet-stream,
    # where the vendor (and its clients) take a bare body as a form.
    ctype = request.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if json_ok and ctype == "application/json":
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise Refusal(400, "bad_request", "the body is not JSON") from None
        if not isinstance(data, dict):
            raise Refusal(400, "bad_request", "the body must be a JSON object")
        params.update(data)
    elif ctype in _FORM:
        text = body.decode("utf-8", errors="replace")
        form: dict[str, str] = {}
        for name, value in parse_qsl(text, keep_blank_values=True):
            form.setdefault(name, value)
        params.update(form)
    elif json_ok:
        raise Refusal(
            415, "unsupported_media_type", "send JSON or a form (application/x-www-form-urlencoded)"
        )
    return params
