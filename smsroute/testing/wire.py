"""What the fake vendor's front ends share on the wire: reasons, replies, bodies, forms, limits.

Nothing here does I/O. :mod:`~smsroute.testing.simulator` builds its
:class:`Reply` objects from these pieces; the two HTTP servers and the
``responses`` mock read requests with :func:`request_params` and send what a
:class:`Reply` says, so no front end parses or renders on its own.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlsplit

from smsroute.core.vendor import REASONS
from smsroute.netaddr import is_loopback

__all__ = [
    "HOLD_POLL",
    "HTML_TYPE",
    "JSON_TYPE",
    "MAX_BODY",
    "REASONS",
    "Reply",
    "base_url",
    "error_body",
    "nginx_page",
    "parse_form",
    "refuse_remote",
    "render_body",
    "request_params",
]


JSON_TYPE: Final = "application/json; charset=utf-8"
HTML_TYPE: Final = "text/html; charset=utf-8"
MAX_BODY: Final = 64 * 1024
"""The largest request body (and, on the asyncio server, request head) a fake accepts."""
HOLD_POLL: Final = 0.02
"""How often a server holding a ``"hang"`` request asks :attr:`Reply.release` again."""

_UNKNOWN_REASON: Final = "未知错误"
_FORM_TYPES: Final = ("", "application/x-www-form-urlencoded")


@dataclass(frozen=True)
class Reply:
    """What the simulator wants sent: status, content type, body, and how to send it."""

    status: int
    content_type: str
    body: bytes
    delay: float = 0.0
    # "hang": hold the request, polling ``release`` until it returns the reply to send;
    # "reset": close the connection abruptly without answering.
    action: Literal["hang", "reset"] | None = None
    release: Callable[[], Reply | None] | None = field(default=None, compare=False, repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """Return the response headers (Content-Type and Content-Length)."""
        return {"Content-Type": self.content_type, "Content-Length": str(len(self.body))}


def nginx_page(status: str) -> bytes:
    """Return the HTML error page nginx sends for ``status`` (e.g. ``"502 Bad Gateway"``)."""
    return (
        f"<html>\r\n<head><title>{status}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


def error_body(code: int, reason: str | None = None) -> dict[str, Any]:
    """Return the vendor's answer for an error ``code`` (its own reason unless one is given)."""
    # The document shows no error body; a ``null`` result keeps all three keys present.
    return {
        "code": code,
        "reason": REASONS.get(code, _UNKNOWN_REASON) if reason is None else reason,
        "result": None,
    }


def render_body(body: Mapping[str, Any], *, trailing_comma: bool = False) -> bytes:
    """Return a vendor answer as UTF-8 JSON, or in the document's trailing-comma style."""
    if not trailing_comma or not isinstance(body.get("result"), Mapping):
        return json.dumps(body, ensure_ascii=False).encode()
    # The document's own sample: pretty-printed, a comma after the last result member.
    members = "".join(
        f"            {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},\n"
        for k, v in body["result"].items()
    )
    return (
        "{\n"
        f'    "code": {json.dumps(body["code"])},\n'
        f'    "reason": {json.dumps(body["reason"], ensure_ascii=False)},\n'
        '    "result": \n'
        "        {\n"
        f"{members}"
        "        }\n"
        "}\n"
    ).encode()


def parse_form(text: str) -> dict[str, str]:
    """Return the fields of a query string or form body, the first value of each name."""
    if "%" not in text and "+" not in text:
        # Nothing to unquote (the usual apikey=...&mobile=... form): the same
        # result as parse_qs below at a fraction of its cost, which the asyncio
        # server pays on every request.
        fields: dict[str, str] = {}
        for field in text.split("&"):
            if field:
                name, _, value = field.partition("=")
                fields.setdefault(name, value)
        return fields
    # First value wins for a repeated name; blanks are kept so "apikey=" reads as empty.
    parsed = parse_qs(text, keep_blank_values=True, encoding="utf-8", errors="replace")
    return {k: v[0] for k, v in parsed.items()}


def request_params(
    target: str, body: bytes | str = b"", content_type: str = ""
) -> tuple[str, dict[str, str]]:
    """Return the path and parameters of a request: the query string, a form body over it."""
    url = urlsplit(target)
    params = parse_form(url.query)
    ctype = content_type.split(";")[0].strip().lower()
    # A body of another type (JSON, say) is read but not understood, as at the vendor.
    if body and ctype in _FORM_TYPES:
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        params.update(parse_form(text))
    return url.path, params


def refuse_remote(host: str, *, allow_remote: bool) -> None:
    """Raise ValueError unless ``host`` is loopback or ``allow_remote`` is set."""
    if not allow_remote and not is_loopback(host):
        raise ValueError(
            f"refusing to bind {host!r}: a test server listens on loopback only"
            " (pass allow_remote=True to override)"
        )


def base_url(host: str, port: int) -> str:
    """Return ``http://host:port``, bracketing an IPv6 literal."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
