"""CarrierClient: the vendor's ``/carrier`` and ``/balance`` over one keep-alive session.

Foreign exceptions (requests, json) are translated to the smsroute tree at
one boundary, :meth:`CarrierClient._request`. The apikey travels only in the
request itself: never in a log line, an exception message or a repr. Each
attempt runs under a :mod:`smsroute.watchdog` guard, so that its deadline
holds whatever the vendor or the resolver do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlencode

import requests
import requests.adapters
import requests.utils
import urllib3
from tenacity import (
    Retrying,
    retry_if_exception,
)

from smsroute._log import debug_enabled, get_logger, install_redaction
from smsroute._version import __version__
from smsroute.clientconf import DEFAULT_BASE_URL, DEFAULT_TIMEOUT, client_settings, warn_plain_http
from smsroute.core import vendor
from smsroute.core.outcome import busy_error, overload_note
from smsroute.core.vendor import MAX_BODY, mark, safe_text
from smsroute.errors import LookupFailed, TransportError
from smsroute.models import Balance, CarrierInfo
from smsroute.numbers import mask, normalize
from smsroute.ratelimit import RateLimiter, turn
from smsroute.resilience import default_retrying, is_retryable, within_budget
from smsroute.watchdog import WATCHDOG, DeadlineAdapter, Resolver

__all__ = ["DEFAULT_BASE_URL", "MAX_BODY", "CarrierClient"]

USER_AGENT: Final = f"smsroute/{__version__} python-requests/{requests.__version__}"

_log = get_logger()

Timeout = float | tuple[float, float]
_T = TypeVar("_T")
# What the transport raises: requests' tree, plus what urllib3 or the socket
# might let through when the watchdog cuts a read in an odd place.
_TRANSPORT_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


class CarrierClient:
    """A thread-safe client of the vendor's carrier-lookup API.

    One ``requests.Session`` per client (keep-alive); POST form-encoded by
    default, GET on request. Retries (tenacity) only on ServiceError and
    TransportError, bounded by attempts and a total time budget.

    Deadline: ``lookup(number, timeout=t)`` returns or raises within ``t``
    (plus scheduling), retries included, whatever the vendor sends and
    however slow DNS is; without ``timeout`` each attempt is bounded by
    connect + read of ``timeout=`` given here. An answer complete only after
    the deadline is a timeout. This holds for the session the client builds;
    a ``session`` passed in keeps it only if its adapters are
    :class:`smsroute.watchdog.DeadlineAdapter` (otherwise a late answer is
    still refused, but the call may run past the deadline).

    Billing: a ``/carrier`` TransportError raised after the request was
    written has ``maybe_billed`` True (and ``timed_out`` when the deadline
    was the cause): the vendor may have charged for it (see
    :mod:`smsroute.core.vendor`). Retried: connect and DNS errors, HTTP 5xx,
    code -8, and a connection dropped before the answer's headers came (the
    usual stale keep-alive race). Not retried: a timeout after the request
    was written (unless ``retry_timeouts=True``: each retry may be billed),
    an answer whose body broke off, and a charged code-0 answer that cannot
    be used (``unusable`` names the field). ``/balance`` is free: its
    timeouts are retried.
    """

    def __init__(
        self,
        apikey: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        method: str = "POST",
        timeout: Timeout = DEFAULT_TIMEOUT,
        session: requests.Session | None = None,
        retry: Retrying | None = None,
        verify: bool | str = True,
        proxies: Mapping[str, str] | None = None,
        pool_maxsize: int = 32,
        clock: Callable[[], float] = time.monotonic,
        retry_timeouts: bool = False,
        rate_limit: RateLimiter | None = None,
    ) -> None:
        settings = client_settings(apikey, method, base_url)
        self._apikey = settings.apikey
        self.base_url = settings.base_url
        self.method = method = settings.method
        self.rate_limit = rate_limit
        self.timeout = timeout
        self.retry_timeouts = retry_timeouts
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        self._attempt_budget = connect + read
        self._resolver = Resolver()
        self._clock = clock
        self._urls = {
            "/carrier": self.base_url + "/carrier",
            "/balance": self.base_url + "/balance",
        }
        if session is None:
            session = requests.Session()
            # One retry layer: tenacity owns retries, urllib3 does none.
            # DeadlineAdapter: connections that obey the attempt's watchdog guard.
            adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        session.headers["User-Agent"] = USER_AGENT
        session.headers["Accept"] = "application/json"
        if proxies is None:
            # Read proxy settings once, here, instead of on every request:
            # requests consults the environment per call when trust_env is on.
            proxies = requests.utils.get_environ_proxies(self.base_url) if session.trust_env else {}
        session.trust_env = False
        session.proxies = dict(proxies)
        session.verify = verify
        self._session = session
        # Prepared once per endpoint: Session.request() re-parses the URL and
        # re-merges settings on every call. The client sits in a send path,
        # so each call only copies the template and fills in body or query.
        self._templates = {path: self._template(path) for path in self._urls}
        base = retry if retry is not None else default_retrying()
        # Never retry a caller's or an account's problem, whatever policy is passed in.
        self._retrying = base.copy(retry=retry_if_exception(is_retryable) & base.retry)
        self._closed = False
        self._lock = threading.Lock()
        # urllib3 logs request URLs (apikey and number included, for GET) and
        # vendor header bytes; POST too, should the vendor echo either back.
        install_redaction(self._apikey)
        warn_plain_http(settings, _log)

    def __repr__(self) -> str:
        return f"CarrierClient(base_url={self.base_url!r}, method={self.method!r}, apikey='***')"

    def __enter__(self) -> CarrierClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session's pooled connections."""
        self._closed = True
        self._session.close()

    # -- public calls -------------------------------------------------------

    def lookup(self, number: str, *, timeout: float | None = None) -> CarrierInfo:
        """Return the vendor's answer for one number.

        ``timeout`` bounds the whole call, retries included (the router passes
        what is left of its deadline). Raises InvalidNumber before any query
        for a number that fails :func:`smsroute.normalize`.
        """
        # A segment the table does not know yet is asked: the vendor answers -3
        # (free) for a bad number, and MIIT keeps allocating new segments.
        mobile = normalize(number, unknown_segments=True)
        key = self._apikey
        return self._call(
            vendor.CARRIER,
            vendor.carrier_form(key, mobile),
            mobile,
            timeout,
            lambda body, masked: vendor.read_carrier(body, mobile, key, masked=masked),
        )

    def balance(self, *, timeout: float | None = None) -> Balance:
        """Return the account's fee type and remaining queries."""
        key = self._apikey
        return self._call(
            vendor.BALANCE,
            vendor.balance_form(key),
            "",
            timeout,
            lambda body, _masked: vendor.read_balance(body, key),
        )

    # -- the one boundary ---------------------------------------------------

    def _call(
        self,
        endpoint: str,
        params: dict[str, str],
        mobile: str,
        timeout: float | None,
        parse: Callable[[bytes, str], _T],
    ) -> _T:
        retrying, deadline = within_budget(self._retrying, timeout, self._clock)
        masked = mask(mobile) if mobile else ""
        attempt = 0
        for try_ in retrying:
            with try_:
                attempt += 1
                return self._once(endpoint, params, masked, attempt, deadline, parse)
        raise AssertionError("unreachable: tenacity re-raises")  # pragma: no cover

    def _once(
        self,
        endpoint: str,
        params: dict[str, str],
        masked: str,
        attempt: int,
        deadline: float | None,
        parse: Callable[[bytes, str], _T],
    ) -> _T:
        started = time.perf_counter()
        code: int | None = None
        error: str | None = None
        billed: dict[str, bool] = {}
        try:
            timeout: Timeout | urllib3.Timeout = self.timeout
            budget = self._attempt_budget
            if deadline is not None:
                left = deadline - self._clock()
                if left <= 0:
                    # Spent before the attempt could start: no call, not the vendor's fault.
                    raise busy_error(f"{endpoint}: no time left in the deadline")
                timeout = _cap(self.timeout, left)
                budget = min(budget, left)
            if self.rate_limit is not None:
                # A turn within the budget, or Throttled now: no call is made
                # that could not be finished in time.
                wait = turn(self.rate_limit, budget, f"{endpoint}: rate limit")
                if wait > 0:
                    time.sleep(wait)
                    if deadline is not None:
                        left = deadline - self._clock()
                        timeout, budget = _cap(self.timeout, left), min(budget, left)
            content = self._request(endpoint, params, timeout, budget)
            # Parsed inside the attempt, so that an unreadable result is logged
            # as this attempt's error (and, for /carrier, not retried: see
            # vendor.read_carrier).
            result = parse(content, masked)
            code = 0
            return result
        except LookupFailed as exc:
            error = type(exc).__name__
            code = getattr(exc, "code", None)
            if vendor.maybe_billed(exc):
                billed["maybe_billed"] = True
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
                    **billed,
                )

    def _template(self, endpoint: str) -> requests.PreparedRequest:
        headers = {}
        if self.method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = requests.Request(self.method, self._urls[endpoint], headers=headers)
        return self._session.prepare_request(request)

    def _request(
        self,
        endpoint: str,
        params: dict[str, str],
        timeout: Timeout | urllib3.Timeout,
        budget: float,
    ) -> bytes:
        url = self._urls[endpoint]
        failure: str | None = None
        timed_out = read_timeout = answered = False
        status = 0
        content: bytes | None = None
        # The watchdog shuts the attempt's sockets down once ``budget`` is
        # spent; urllib3's own timeouts bound single socket operations only.
        guard = WATCHDOG.arm(budget, self._resolver)
        with guard:
            try:
                prepared = self._templates[endpoint].copy()
                # The encoded form is never held in a local: tracebacks that capture
                # locals (Sentry and the like) would show the apikey.
                if self.method == "POST":
                    prepared.body = urlencode(params).encode("ascii")
                    prepared.headers["Content-Length"] = str(len(prepared.body))
                else:
                    prepared.url = f"{url}?{urlencode(params)}"
                # requests takes a urllib3 Timeout too, though its stubs do not say so.
                resp = self._session.send(
                    prepared, timeout=cast(Any, timeout), allow_redirects=False, stream=True
                )
                answered = True
                status = resp.status_code
                if status == 200:
                    content = _read_capped(resp)
                elif resp.raw is not None:  # (a test double's response has no stream)
                    resp.close()  # a 5xx page is not worth its bytes: drop the connection
            except _TRANSPORT_ERRORS as exc:
                # Only text and flags leave this block: the exception's message
                # carries the URL, apikey included for GET.
                read_timeout = _is_read_timeout(exc)
                timed_out = read_timeout or isinstance(exc, requests.Timeout)
                failure = _describe(exc, self._apikey)
        if answered and status != 200:
            raise TransportError(f"{endpoint}: HTTP {status}")  # the vendor said no: not billed
        if guard.fired or (failure is None and guard.expired()):
            # Cut by the watchdog, or complete only after the deadline: either
            # way a timeout, so that the breaker learns of the slow vendor.
            timed_out = True
            detail = f"no complete answer within {budget:.3f} s"
            failure = f"{detail}; {failure}" if failure else detail
        if failure is not None:
            # Without the adapter's hooks (a session passed in, a mocked
            # transport) a read timeout or a started answer shows it was sent.
            sent = guard.sent if guard.hooked else answered or read_timeout
            # With the adapter's hooks the watchdog cuts a slow vendor at the
            # deadline, so a timeout noticed far past it means this process's
            # threads could not run. Without them (a session passed in) a slow
            # answer completes late by itself: that is the vendor's.
            judged = timed_out and guard.hooked
            note = overload_note(time.monotonic() - guard.deadline, budget) if judged else ""
            raise self._failure(
                endpoint, failure, sent=sent, timed_out=timed_out, answered=answered, note=note
            )
        if content is None:
            raise TransportError(f"{endpoint}: body of over {MAX_BODY} bytes is not an answer")
        return content

    def _failure(
        self,
        endpoint: str,
        text: str,
        *,
        sent: bool,
        timed_out: bool,
        answered: bool,
        note: str = "",
    ) -> TransportError:
        """Return the TransportError of a failure, marked maybe-billed once /carrier was sent.

        ``note`` is :func:`~smsroute.core.outcome.overload_note`'s: not empty, the
        error is this process's (``overloaded``), not the vendor's.
        """
        message = f"{endpoint}: timed out ({text}){note}" if timed_out else f"{endpoint}: {text}"
        exc = TransportError(message)
        exc.overloaded = bool(note)
        if endpoint != vendor.CARRIER or not sent:
            return mark(exc, maybe_billed=False, timed_out=timed_out)
        # A timeout after sending is not bought again by default, nor is an
        # answer whose headers came; a connection dropped before them is most
        # often the stale keep-alive race (the vendor closed it idle as we
        # wrote), and is retried.
        retryable = self.retry_timeouts if timed_out else not answered
        return mark(exc, maybe_billed=True, timed_out=timed_out, retryable=retryable)

    # -- variants -----------------------------------------------------------

    def copy(self, **changes: Any) -> CarrierClient:
        """Return a new client with some constructor arguments changed (not the session)."""
        kwargs: dict[str, Any] = {
            "apikey": self._apikey,
            "base_url": self.base_url,
            "method": self.method,
            "timeout": self.timeout,
            "retry": self._retrying,
            "verify": self._session.verify,
            "proxies": self._session.proxies,
            "clock": self._clock,
            "retry_timeouts": self.retry_timeouts,
            "rate_limit": self.rate_limit,
        }
        kwargs.update(changes)
        return CarrierClient(**kwargs)


def _read_capped(resp: requests.Response) -> bytes | None:
    """Return the body, or None (connection dropped) once it passes MAX_BODY."""
    # A real answer is ~200 bytes: never read a hostile body into memory
    # whole. Reading to the end keeps the connection for keep-alive.
    if resp.raw is None:  # a response built by hand (test doubles) has no stream
        content = resp.content or b""
        return content if len(content) <= MAX_BODY else None
    chunks = []
    size = 0
    for chunk in resp.iter_content(MAX_BODY // 4):
        size += len(chunk)
        if size > MAX_BODY:
            resp.close()
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _cap(timeout: Timeout, left: float) -> urllib3.Timeout:
    # `total` bounds connect, write and read together: a (connect, read)
    # pair alone starts the read clock only after the request was written.
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    return urllib3.Timeout(connect=min(connect, left), read=min(read, left), total=left)


def _is_read_timeout(exc: BaseException) -> bool:
    # requests raises ReadTimeout while it waits for the headers, but wraps a
    # timeout while it reads the body in a plain ConnectionError.
    if isinstance(exc, requests.ReadTimeout):
        return True
    inner = exc.args[0] if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(
        inner, urllib3.exceptions.ReadTimeoutError
    )


def _describe(exc: BaseException, apikey: str) -> str:
    # urllib3's messages quote what the vendor sent (a status line, a chunk
    # size): the vendor's text is untrusted, like its reason.
    text = safe_text(str(exc), apikey, limit=300)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
