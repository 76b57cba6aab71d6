"""Kannel pass-through: smsbox's ``/cgi-bin/sendsms``, sent to the SMSC of each number's operator.

Applications keep speaking Kannel's sendsms API and point at smsroute
instead of smsbox. For each request smsroute routes ``to`` with an
:class:`~smsroute.AsyncRouter` (or anything whose ``async route(number)``
returns a Decision: :class:`NumberRouter`), sets ``smsc=`` to the decision's
gateway (a Kannel ``smsc-id``) and forwards everything else to smsbox byte
for byte; Kannel's answer comes back unchanged::

    app = web.Application()
    setup_kannel(app, router, "http://127.0.0.1:13013/cgi-bin/sendsms")
    # or: app = kannel_app(router, url); or add kannel_routes(...) and
    # kannel_session to an app of your own (see kannel_routes)

The rules (docs/kannel.md says why, and what to set in Kannel):

* GET: the raw query is edited, never decoded and re-encoded (GBK text sent
  with ``charset=GBK`` would not survive ``str``); parameters are found by
  their decoded names as smsbox finds them, every ``smsc=`` is replaced by
  ours (smsbox reads the first), and every other byte stays.
* POST (text in the body, ``X-Kannel-*`` headers): the body goes on unread,
  ``X-Kannel-SMSC`` is replaced, and only ``Content-Type`` and
  ``X-Kannel-*`` go on. POST-XML is refused (415): its ``to`` is in the XML.
* Several recipients in ``to``: one request to Kannel per gateway, sent
  together; :func:`merge_answers` makes one answer of theirs.
* An invalid ``to``: a Kannel-style 400, no lookup paid, Kannel not called.
  A missing one goes to Kannel as it came. A number with no gateway goes
  without our ``smsc=``, so Kannel's own routing decides.
* Kannel unreachable or slower than ``timeout``: 503 ``Temporal failure, try
  again later.``, smsbox's own answer for a temporary failure.

The query and the headers carry Kannel's password: neither is logged.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import quote, unquote_plus, unquote_to_bytes

import aiohttp
import yarl
from aiohttp import web

from smsroute._log import get_logger
from smsroute._version import __version__
from smsroute.core.policy import RoutingPolicy
from smsroute.decision import Decision
from smsroute.errors import ConfigurationError, InvalidNumber, NoRoute
from smsroute.numbers import mask, normalize

__all__ = [
    "KANNEL_SESSION",
    "SENDSMS_PATH",
    "KannelAnswer",
    "NumberRouter",
    "kannel_app",
    "kannel_routes",
    "kannel_session",
    "merge_answers",
    "rewrite_headers",
    "rewrite_query",
    "setup_kannel",
    "split_recipients",
]

SENDSMS_PATH: Final = "/cgi-bin/sendsms"
KANNEL_SESSION: Final = web.AppKey("smsroute.kannel.session", aiohttp.ClientSession)
USER_AGENT: Final = f"smsroute/{__version__} aiohttp/{aiohttp.__version__}"

# The content types smsbox reads X-Kannel-* headers for (smsbox_sendsms_post()).
_HEADER_TYPES: Final = frozenset(
    {"text/plain", "application/octet-stream", "text/html", "text/vnd.wap.wml"}
)
_PASSED_HEADERS: Final = ("Pragma", "Cache-Control")  # of Kannel's answer, with Content-Type
_TEMPORAL: Final = b"Temporal failure, try again later."  # smsbox's 503 body
_HTML: Final = "text/html"  # smsbox answers every sendsms request as text/html
_CONCURRENCY: Final = 64  # lookups in flight for one request's recipients
_log = get_logger()
_Request = tuple[str, dict[str, Any]]  # method, aiohttp request arguments
_Builder = Callable[[str | None, Sequence[str] | None], _Request]  # (smsc, to) -> request


class NumberRouter(Protocol):
    """What the pass-through needs of a router: AsyncRouter, or a view of one."""

    async def route(self, number: str) -> Decision:
        """Return where a send to ``number`` goes; InvalidNumber or NoRoute otherwise."""
        ...


@dataclass(frozen=True)
class KannelAnswer:
    """One answer to a sendsms request: status, body bytes and content type."""

    status: int
    body: bytes
    content_type: str | None = _HTML
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """Return whether Kannel took the message (2xx: accepted or queued)."""
        return 200 <= self.status < 300


# -- the request, without I/O -------------------------------------------------------


def _name(piece: str) -> str:
    # Decoded as smsbox decodes a CGI name (parse_cgivars: %XX and '+'), so
    # "%74o=" is "to" to us as it is to Kannel.
    return unquote_plus(piece.partition("=")[0], errors="surrogateescape")


def _value(piece: str) -> bytes:
    return unquote_to_bytes(piece.partition("=")[2].replace("+", " "))


def _find_param(pieces: Sequence[str], name: str) -> int | None:
    """Return the index of the first ``name=`` piece (smsbox reads the first), or None."""
    for i, piece in enumerate(pieces):
        if _name(piece) == name:
            return i
    return None


def split_recipients(value: bytes) -> list[str]:
    """Return the recipients of a decoded ``to`` value, split on whitespace as smsbox splits it.

    Raises InvalidNumber for a recipient that is not ASCII text (no phone
    number is).
    """
    out = []
    for token in value.split():
        try:
            out.append(token.decode("ascii"))
        except UnicodeDecodeError:
            raise InvalidNumber("not a phone number: bytes that are not ASCII", token) from None
    return out


def rewrite_query(
    pieces: Sequence[str], smsc: str | None, *, to_index: int, to: Sequence[str] | None = None
) -> str:
    """Return the raw query with ``smsc=`` set (None: left alone) and, if given, ``to`` replaced.

    Every other piece is kept byte for byte and in its place.
    """
    out: list[str] = []
    placed = smsc is None
    for i, piece in enumerate(pieces):
        if smsc is not None and _name(piece) == "smsc":
            if not placed:  # ours takes the first one's place; the others go
                out.append("smsc=" + quote(smsc, safe=""))
                placed = True
            continue
        if i == to_index and to is not None:
            raw_name = piece.partition("=")[0]
            out.append(raw_name + "=" + "+".join(quote(t, safe="") for t in to))
            continue
        out.append(piece)
    if not placed:
        out.append("smsc=" + quote(smsc or "", safe=""))
    return "&".join(out)


def _is(name: str, header: str) -> bool:
    return name.lower() == header.lower()


def rewrite_headers(
    headers: Iterable[tuple[str, str]], smsc: str | None, *, to: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """Return POST headers with ``X-Kannel-SMSC`` (None: left alone) and ``X-Kannel-To`` set.

    Keeps only ``Content-Type`` and ``X-Kannel-*`` (what smsbox reads), in order.
    """
    out = []
    for name, value in headers:
        if not (_is(name, "Content-Type") or name.lower().startswith("x-kannel-")):
            continue
        if smsc is not None and _is(name, "X-Kannel-SMSC"):
            continue
        if to is not None and _is(name, "X-Kannel-To"):
            continue
        out.append((name, value))
    if to is not None:
        out.append(("X-Kannel-To", " ".join(to)))
    if smsc is not None:
        out.append(("X-Kannel-SMSC", smsc))
    return out


def _post_recipients(headers: Iterable[tuple[str, str]]) -> str | None:
    """Return the ``X-Kannel-To`` value smsbox would read (the last one), or None."""
    found = None
    for name, value in headers:
        if _is(name, "X-Kannel-To"):
            found = value
    return found


def _media_type(headers: Iterable[tuple[str, str]]) -> str:
    """Return the request's media type as smsbox reads it (none is application/octet-stream)."""
    for name, value in headers:
        if _is(name, "Content-Type"):
            return value.partition(";")[0].strip().lower()
    return "application/octet-stream"


def _smsc_id(gateway: object) -> str:
    """Return ``gateway`` as a Kannel smsc-id, or raise ConfigurationError."""
    if (
        not isinstance(gateway, str)
        or not gateway
        or not gateway.isascii()
        or not gateway.isprintable()
        or any(c.isspace() or c == ";" for c in gateway)
    ):
        # Kannel's smsc-id lists are ';'-separated: such an id could never be matched.
        raise ConfigurationError(
            f"gateway {gateway!r} is not a Kannel smsc-id (ASCII text without spaces or ';')"
        )
    return gateway


def _group_by_smsc(
    recipients: Sequence[str], smscs: Sequence[str | None]
) -> list[tuple[str | None, list[str]]]:
    """Return ``(smsc, recipients)`` groups in the order each smsc is first needed."""
    groups: dict[str | None, list[str]] = {}
    for recipient, smsc in zip(recipients, smscs, strict=True):
        groups.setdefault(smsc, []).append(recipient)
    return list(groups.items())


def merge_answers(parts: Sequence[tuple[Sequence[str], KannelAnswer]]) -> KannelAnswer:
    """Return one answer for a request split per SMSC, from ``(recipients, answer)`` parts.

    Equal answers give that answer. Otherwise the worst one wins (a refusal
    over an acceptance, then the higher status, then a body other than
    ``0: ...``), and if some parts were accepted its body ends, as smsbox's
    for a partly failed multi-cast, with `` Failed receivers are: ...``.
    """
    first = parts[0][1]
    if all((a.status, a.body) == (first.status, first.body) for _r, a in parts):
        return first

    def rank(part: tuple[Sequence[str], KannelAnswer]) -> tuple[bool, int, bool]:
        answer = part[1]
        return (not answer.ok, answer.status, not answer.body.startswith(b"0:"))

    worst = max(parts, key=rank)[1]
    failed = [r for recipients, a in parts if not a.ok for r in recipients]
    if worst.ok or len(failed) == sum(len(r) for r, _a in parts):
        return worst
    listed = " ".join(failed).encode("ascii")
    return KannelAnswer(
        worst.status, worst.body + b" Failed receivers are: " + listed, worst.content_type
    )


def _refusal(status: int, text: str) -> KannelAnswer:
    return KannelAnswer(status, text.encode("utf-8"))


# -- the I/O ------------------------------------------------------------------------


async def kannel_session(app: web.Application) -> AsyncIterator[None]:
    """Open the session that talks to Kannel on startup and close it on cleanup (a cleanup_ctx)."""
    connector = aiohttp.TCPConnector(limit=100)
    session = aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": USER_AGENT},
        trust_env=False,  # Kannel is a neighbour: never through an environment proxy
        auto_decompress=False,  # its body goes back to the client as it came
    )
    app[KANNEL_SESSION] = session
    try:
        yield
    finally:
        await session.close()


def _check_url(sendsms_url: str) -> yarl.URL:
    url = yarl.URL(sendsms_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"kannel sendsms_url {sendsms_url!r}: not an http(s) URL")
    if url.raw_query_string or url.raw_fragment:
        raise ConfigurationError(f"kannel sendsms_url {sendsms_url!r}: must not have a query")
    return url


def _check_policy(router: NumberRouter) -> None:
    policy = getattr(router, "policy", None)
    if not isinstance(policy, RoutingPolicy):
        return  # a router of another kind: its gateways are checked as they come
    gateways = [*policy.gateways.values(), *(rule.gateway for rule in policy.rules)]
    if policy.default is not None:
        gateways.append(policy.default)
    for gateway in gateways:
        _smsc_id(gateway)


class _PassThrough:
    """The two handlers and what they share: the router, Kannel's URL, the timeout."""

    def __init__(self, router: NumberRouter, url: yarl.URL, timeout: float) -> None:
        self.router = router
        self.url = url
        self.base = str(url)
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def get(self, request: web.Request) -> web.StreamResponse:
        """Route and forward a GET sendsms request (parameters in the query string)."""
        _path, _, query = request.raw_path.partition("?")
        pieces = query.split("&") if query else []
        at = _find_param(pieces, "to")
        raw_to = _value(pieces[at]) if at is not None else b""

        def build(smsc: str | None, to: Sequence[str] | None) -> _Request:
            new = rewrite_query(pieces, smsc, to_index=at, to=to) if at is not None else query
            return "GET", {"url": self._target(new)}

        return await self._handle(request, raw_to, build)

    async def post(self, request: web.Request) -> web.StreamResponse:
        """Route and forward a POST sendsms request (text in the body, X-Kannel-* headers)."""
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
        kind = _media_type(headers)
        if kind == "text/xml":
            return _respond(_refusal(415, "POST-XML is not routed by smsroute, rejected"), ())
        body = await request.read()
        to = _post_recipients(headers) if kind in _HEADER_TYPES else None
        raw_to = to.encode("latin-1") if to is not None else b""
        try:
            # aiohttp writes header values as UTF-8: bytes that are not UTF-8
            # would change on the way, so they are refused rather than garbled.
            sent = [(k, v.encode("latin-1").decode("utf-8")) for k, v in headers]
        except UnicodeDecodeError:
            return _respond(_refusal(400, "X-Kannel-* headers must be UTF-8, rejected"), ())

        def build(smsc: str | None, to: Sequence[str] | None) -> _Request:
            forwarded = rewrite_headers(sent, smsc if kind in _HEADER_TYPES else None, to=to)
            url = self._target(request.raw_path.partition("?")[2])  # smsbox ignores it on POST
            return "POST", {"url": url, "data": body, "headers": forwarded}

        return await self._handle(request, raw_to, build)

    def _target(self, query: str) -> yarl.URL:
        # The query is ASCII (aiohttp refuses other bytes in a request target);
        # encoded=True keeps yarl from requoting a byte of it.
        return yarl.URL(self.base + ("?" + query if query else ""), encoded=True)

    async def _handle(
        self, request: web.Request, raw_to: bytes, build: _Builder
    ) -> web.StreamResponse:
        started = time.perf_counter()
        session = request.config_dict.get(KANNEL_SESSION)
        if session is None:
            raise RuntimeError("no Kannel session: add kannel_session to app.cleanup_ctx")
        try:
            recipients = split_recipients(raw_to)
        except InvalidNumber as exc:
            return _respond(_refusal(400, f"Invalid receiver number ({exc}), rejected"), ())
        if not recipients:  # Kannel answers a missing or empty 'to' itself
            answer = await self._send(session, *build(None, None))
            return _respond(answer, ())
        try:
            decisions = await self._route(recipients)
        except InvalidNumber as exc:
            _log.debug("kannel.invalid_to", recipients=len(recipients), error=str(exc))
            return _respond(_refusal(400, f"Invalid receiver number ({exc}), rejected"), ())
        try:
            smscs = [None if d is None else _smsc_id(d.gateway) for d in decisions]
        except ConfigurationError as exc:
            _log.error("kannel.bad_gateway", error=str(exc))
            return _respond(_refusal(500, "smsroute: a gateway is not a Kannel smsc-id"), ())
        groups = _group_by_smsc(recipients, smscs)
        single = len(groups) == 1
        answers = await asyncio.gather(
            *(self._send(session, *build(smsc, None if single else to)) for smsc, to in groups)
        )
        answer = merge_answers([(to, a) for (_s, to), a in zip(groups, answers, strict=True)])
        sources = list(dict.fromkeys(d.source if d else "kannel" for d in decisions))
        marks = (
            ("X-Smsroute-Smsc", ",".join(s or "" for s, _to in groups)),
            ("X-Smsroute-Source", ",".join(sources)),
        )
        _log.debug(
            "kannel.sendsms",
            method=request.method,
            mobile=mask(decisions[0].mobile) if len(decisions) == 1 and decisions[0] else None,
            recipients=len(recipients),
            smsc=marks[0][1],
            source=marks[1][1],
            status=answer.status,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return _respond(answer, marks)

    async def _route(self, recipients: list[str]) -> list[Decision | None]:
        """Return a Decision per recipient (None: no route); InvalidNumber before any lookup."""
        # Every number is checked before any is looked up, so a list with one
        # bad number costs nothing. (Against the installed segment table: a
        # router given a table of its own still checks with that one.)
        mobiles = [normalize(r) for r in recipients]
        unique = list(dict.fromkeys(mobiles))
        gate = asyncio.Semaphore(_CONCURRENCY)

        async def one(mobile: str) -> Decision | None:
            async with gate:
                try:
                    return await self.router.route(mobile)
                except NoRoute as exc:
                    _log.warning("kannel.no_route", mobile=mask(mobile), error=str(exc))
                    return None

        found = await asyncio.gather(*(one(m) for m in unique))
        decided = dict(zip(unique, found, strict=True))
        return [decided[m] for m in mobiles]

    async def _send(
        self, session: aiohttp.ClientSession, method: str, args: dict[str, Any]
    ) -> KannelAnswer:
        try:
            async with session.request(
                method, timeout=self.timeout, allow_redirects=False, **args
            ) as resp:
                body = await resp.read()
                kept = tuple((h, resp.headers[h]) for h in _PASSED_HEADERS if h in resp.headers)
                return KannelAnswer(resp.status, body, resp.headers.get("Content-Type"), kept)
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            # The exception's text may hold the URL, and the URL the password.
            _log.warning("kannel.unreachable", error=type(exc).__name__, host=self.url.host)
            return KannelAnswer(503, _TEMPORAL)


def _respond(answer: KannelAnswer, marks: Iterable[tuple[str, str]]) -> web.Response:
    response = web.Response(status=answer.status, body=answer.body)
    if answer.content_type is not None:
        response.headers["Content-Type"] = answer.content_type
    for name, value in (*answer.headers, *marks):
        response.headers[name] = value
    return response


def kannel_routes(
    router: NumberRouter, sendsms_url: str, *, timeout: float = 5.0, path: str = SENDSMS_PATH
) -> list[web.RouteDef]:
    """Return the GET and POST routes of the pass-through to Kannel's ``sendsms_url``.

    The handlers send through the session :func:`kannel_session` opens, so
    an app taking these routes also takes that::

        app.add_routes(kannel_routes(router, url))
        app.cleanup_ctx.append(kannel_session)

    :func:`setup_kannel` does both. ``timeout`` bounds each request to
    Kannel (the router's deadline bounds the lookup). Raises
    ConfigurationError for a URL that is not http(s) and for a gateway of
    the router's policy that is not a Kannel smsc-id.
    """
    if not timeout > 0:
        raise ValueError("timeout must be positive")
    _check_policy(router)
    handler = _PassThrough(router, _check_url(sendsms_url), float(timeout))
    return [
        web.get(path, handler.get, allow_head=False),  # a HEAD would send an SMS
        web.post(path, handler.post),
    ]


def setup_kannel(
    app: web.Application,
    router: NumberRouter,
    sendsms_url: str,
    *,
    timeout: float = 5.0,
    path: str = SENDSMS_PATH,
) -> None:
    """Add the pass-through's routes and its Kannel session to ``app``."""
    app.add_routes(kannel_routes(router, sendsms_url, timeout=timeout, path=path))
    app.cleanup_ctx.append(kannel_session)


def kannel_app(
    router: NumberRouter, sendsms_url: str, *, timeout: float = 5.0, path: str = SENDSMS_PATH
) -> web.Application:
    """Return an application serving only the pass-through (the router stays the caller's)."""
    app = web.Application()
    setup_kannel(app, router, sendsms_url, timeout=timeout, path=path)
    return app
