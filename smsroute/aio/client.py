"""AsyncCarrierClient: the vendor's ``/carrier`` and ``/balance`` on aiohttp.

The asyncio twin of :class:`~smsroute.CarrierClient`: the same settings
(checked by :mod:`smsroute.clientconf`), the same wire protocol
(:mod:`smsroute.core.vendor` builds the form and reads the body), the same
exceptions, the same redaction and the same retry rules (tenacity's
``AsyncRetrying``). aiohttp, not httpx: measured here and in httpx's own open
issue #3215, httpx's async client is 10-30x slower per request at
concurrency.

One budget covers an attempt's connect (DNS included), request, headers and
body (aiohttp's ``total`` timeout), and the retries and rate-limit waits of
a call are bounded by the call's ``timeout``: a vendor that drips its body a
byte at a time costs a lookup its budget, not minutes.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Final, TypeVar
from urllib.parse import urlencode

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception
from yarl import URL

from smsroute._log import debug_enabled, get_logger
from smsroute._version import __version__
from smsroute.aio.types import AsyncClosing
from smsroute.clientconf import DEFAULT_BASE_URL, DEFAULT_TIMEOUT, client_settings, warn_plain_http
from smsroute.core import outcome, vendor
from smsroute.core.outcome import is_retryable
from smsroute.core.vendor import MAX_BODY, redact
from smsroute.errors import LookupFailed, TransportError
from smsroute.models import Balance, CarrierInfo
from smsroute.numbers import mask, normalize
from smsroute.ratelimit import RateLimiter, turn
from smsroute.resilience import default_async_retrying, within_budget
from smsroute.types import Clock

__all__ = ["AsyncCarrierClient"]

USER_AGENT: Final = f"smsroute/{__version__} aiohttp/{aiohttp.__version__}"
_FORM: Final = {"Content-Type": "application/x-www-form-urlencoded"}
_log = get_logger()
_T = TypeVar("_T")


class AsyncCarrierClient(AsyncClosing):
    """An asyncio client of the vendor's carrier-lookup API (one aiohttp session, keep-alive).

    ``timeout`` is ``(connect, read)`` seconds (or one number for both) for a
    call given no budget; ``lookup(..., timeout=t)`` bounds the whole call,
    retries included. ``max_connections`` caps the pooled connections (more
    concurrent calls queue for one, inside their budget). ``rate_limit`` is a
    :class:`~smsroute.RateLimit` (or any ``reserve(max_wait)`` limiter).
    The session is made on first use, inside the running loop; ``async
    with`` or :meth:`aclose` closes it. One client belongs to one event loop.
    """

    def __init__(
        self,
        apikey: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        method: str = "POST",
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        retry: AsyncRetrying | None = None,
        verify: bool | str = True,
        proxies: Mapping[str, str] | None = None,
        rate_limit: RateLimiter | None = None,
        max_connections: int = 100,
        clock: Clock = time.monotonic,
    ) -> None:
        self._settings = client_settings(apikey, method, base_url)
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.base_url = self._settings.base_url
        self.method = self._settings.method
        self.timeout = timeout
        self.verify = verify
        # aiohttp takes one proxy per request: the one for the vendor's scheme.
        scheme = "https" if self.base_url.startswith("https") else "http"
        self._proxy = dict(proxies or {}).get(scheme)
        self.rate_limit = rate_limit
        self.max_connections = max_connections
        self._clock = clock
        base = retry if retry is not None else default_async_retrying()
        # Never retry a caller's or an account's problem, whatever policy is passed in.
        self._retrying = base.copy(retry=retry_if_exception(is_retryable) & base.retry)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        warn_plain_http(self._settings, _log)

    def __repr__(self) -> str:
        return (
            f"AsyncCarrierClient(base_url={self.base_url!r}, method={self.method!r}, apikey='***')"
        )

    async def aclose(self) -> None:
        """Close the session and its pooled connections."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise TransportError("the client is closed")
        session = self._session
        if session is None:
            tls: bool | ssl.SSLContext = self.verify is not False
            if isinstance(self.verify, str):  # a CA bundle, as requests' verify= takes
                tls = ssl.create_default_context(cafile=self.verify)
            connector = aiohttp.TCPConnector(limit=self.max_connections, ssl=tls)
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                trust_env=False,
                auto_decompress=True,
            )
        return session

    # -- public calls ---------------------------------------------------------------

    async def lookup(self, number: str, *, timeout: float | None = None) -> CarrierInfo:
        """Return the vendor's answer for one number, within ``timeout`` seconds if given.

        Raises InvalidNumber before any query for a number that fails
        :func:`smsroute.normalize`, and the smsroute exception of a vendor
        error code or a transport failure otherwise.
        """
        # A segment the table does not know yet is asked: the vendor answers -3
        # (free) for a bad number, and MIIT keeps allocating new segments.
        mobile = normalize(number, unknown_segments=True)
        key = self._settings.apikey
        return await self._call(
            vendor.CARRIER,
            vendor.carrier_form(key, mobile),
            mask(mobile),
            timeout,
            lambda body, masked: vendor.read_carrier(body, mobile, key, masked=masked),
        )

    async def balance(self, *, timeout: float | None = None) -> Balance:
        """Return the account's fee type and remaining queries."""
        key = self._settings.apikey
        return await self._call(
            vendor.BALANCE,
            vendor.balance_form(key),
            "",
            timeout,
            lambda body, _masked: vendor.read_balance(body, key),
        )

    # -- the one boundary -----------------------------------------------------------

    async def _call(
        self,
        endpoint: str,
        params: dict[str, str],
        masked: str,
        timeout: float | None,
        parse: Callable[[bytes, str], _T],
    ) -> _T:
        # The first attempt runs outside tenacity: most calls need only one,
        # and an AsyncRetrying loop costs ~170 us of CPU a call, measured: a
        # third of a cold lookup (benchmarks/, figure 9). A retryable failure
        # is then fed to tenacity as attempt 1, which judges it (retry, stop,
        # wait, before_sleep) exactly as if it had made the call, its clock
        # started when the call did; only its ``before`` hook runs after that
        # attempt instead of before it.
        end = None if timeout is None else self._clock() + timeout
        started = time.monotonic()  # tenacity's clock, for its stop_after_delay
        try:
            return await self._once(endpoint, params, masked, 1, end, parse)
        except LookupFailed as exc:
            if not is_retryable(exc):
                raise
            first: LookupFailed | None = exc
        left = None if end is None else end - self._clock()
        retrying, end = within_budget(_started_at(self._retrying, started), left, self._clock)
        attempt = 0
        async for try_ in retrying:
            with try_:
                attempt += 1
                if first is not None:
                    failed, first = first, None
                    raise failed
                return await self._once(endpoint, params, masked, attempt, end, parse)
        raise AssertionError("unreachable: tenacity re-raises")  # pragma: no cover

    async def _once(
        self,
        endpoint: str,
        params: dict[str, str],
        masked: str,
        attempt: int,
        end: float | None,
        parse: Callable[[bytes, str], _T],
    ) -> _T:
        started = time.perf_counter()
        code: int | None = None
        error: str | None = None
        try:
            if end is not None and end - self._clock() <= 0:
                raise outcome.busy_error(f"{endpoint}: no time left in the deadline")
            if self.rate_limit is not None:
                await self._throttle(end)
            content = await self._request(endpoint, params, self._timeouts(end))
            result = parse(content, masked)
            code = 0
            return result
        except LookupFailed as exc:
            error = type(exc).__name__
            code = getattr(exc, "code", None)
            raise
        finally:
            if debug_enabled():
                _log.debug(
                    "client.call",
                    endpoint=endpoint,
                    mobile=masked or None,
                    code=code,
                    error=error,
                    ms=round((time.perf_counter() - started) * 1000, 2),
                    attempt=attempt,
                )

    async def _throttle(self, end: float | None) -> None:
        limiter = self.rate_limit
        assert limiter is not None
        budget = end - self._clock() if end is not None else self._connect_read()[0]
        wait = turn(limiter, max(0.0, budget), "rate limit")
        if wait > 0:
            await asyncio.sleep(wait)

    def _connect_read(self) -> tuple[float, float]:
        t = self.timeout
        return t if isinstance(t, tuple) else (float(t), float(t))

    def _timeouts(self, end: float | None) -> aiohttp.ClientTimeout:
        connect, read = self._connect_read()
        if end is None:
            return aiohttp.ClientTimeout(total=connect + read, connect=connect, sock_read=read)
        # ``total`` bounds the whole attempt: pool wait, DNS, connect, request,
        # headers and body, however the bytes come.
        left = max(0.001, end - self._clock())
        return aiohttp.ClientTimeout(
            total=left, connect=min(connect, left), sock_read=min(read, left)
        )

    async def _request(
        self, endpoint: str, params: dict[str, str], timeout: aiohttp.ClientTimeout
    ) -> bytes:
        session = self._open()
        url = self._settings.url(endpoint)
        budget = timeout.total or 0.0
        # Lateness is judged on the loop's clock, which aiohttp's timers run on
        # (not the injected clock= of budgets, which a test may freeze).
        loop = asyncio.get_running_loop()
        expires = loop.time() + budget
        failure: str | None = None
        timed_out = False
        note = ""
        status = 0
        content: bytes | None = None
        try:
            # The form is encoded here, not by aiohttp's FormData: measured, that
            # is a sixth of the client's CPU per lookup.
            if self.method == "POST":
                request = session.post(
                    url,
                    data=urlencode(params).encode("ascii"),
                    headers=_FORM,
                    timeout=timeout,
                    allow_redirects=False,
                    proxy=self._proxy,
                )
            else:
                request = session.get(
                    URL(f"{url}?{urlencode(params)}", encoded=True),
                    timeout=timeout,
                    allow_redirects=False,
                    proxy=self._proxy,
                )
            async with request as resp:
                status = resp.status
                content = await _read_capped(resp)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            note = outcome.overload_note(loop.time() - expires, budget)
            failure, timed_out = f"{endpoint}: timed out{note}", True
        except aiohttp.ClientError as exc:
            failure = f"{endpoint}: {_describe(exc, self._settings.apikey)}"
        if failure is not None:
            # Raised outside the except block, so that aiohttp's exception is not
            # even the suppressed __context__: its message may carry the URL,
            # apikey included for GET.
            if timed_out and endpoint == vendor.CARRIER:
                # aiohttp does not tell whether the request was written before
                # the budget ran out: count it as maybe billed, and do not retry
                # it into more charges (as CarrierClient does for a timeout
                # after sending). /balance is free: retried.
                error = vendor.mark(
                    TransportError(failure), maybe_billed=True, timed_out=True, retryable=False
                )
            else:
                error = TransportError(failure)
            error.overloaded = bool(note)
            raise error
        if status != 200:
            raise TransportError(f"{endpoint}: HTTP {status}")
        if content is None:
            raise TransportError(f"{endpoint}: body of over {MAX_BODY} bytes is not an answer")
        return content


def _started_at(retrying: AsyncRetrying, started: float) -> AsyncRetrying:
    """Return ``retrying`` with its clock started at ``started`` (time.monotonic()).

    The first attempt ran before tenacity's loop began: without this, a
    ``stop_after_delay`` would count from the second attempt and allow one
    more than it should. Its ``before`` hook sets the call's start on
    attempt 1, then runs the policy's own.
    """
    own = retrying.before

    async def before(state: RetryCallState) -> None:
        if state.attempt_number == 1:
            state.start_time = started
        result = own(state)
        if inspect.isawaitable(result):
            await result

    return retrying.copy(before=before)


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes | None:
    """Return the body, or None (connection dropped) once it passes MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await resp.content.read(MAX_BODY + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY:
            resp.close()
            return None
        chunks.append(chunk)


def _describe(exc: BaseException, apikey: str) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {redact(text, apikey)}" if text else type(exc).__name__
