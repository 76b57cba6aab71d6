"""CarrierClient: the vendor's ``/carrier`` and ``/balance`` over one keep-alive session.

Foreign exceptions (requests, json) are translated to the smsroute tree at
one boundary, :meth:`CarrierClient._call`. The apikey travels only in the
request itself: never in a log line, an exception message or a repr.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlencode, urlsplit

import requests
import requests.adapters
import requests.utils
import urllib3
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_any,
    stop_before_delay,
)
from tenacity.stop import stop_base

from smsroute._log import get_logger, install_urllib3_redaction
from smsroute._version import __version__
from smsroute.core import vendor
from smsroute.core.vendor import MAX_BODY, redact
from smsroute.errors import ConfigurationError, LookupFailed, TransportError
from smsroute.models import Balance, CarrierInfo
from smsroute.netaddr import is_loopback
from smsroute.numbers import mask, normalize
from smsroute.resilience import default_retrying, is_retryable

__all__ = ["DEFAULT_BASE_URL", "MAX_BODY", "CarrierClient"]

DEFAULT_BASE_URL: Final = "https://isp.qxt800.com"
DEFAULT_TIMEOUT: Final = (2.0, 3.0)  # (connect, read) seconds; the vendor answers in ~10 ms
USER_AGENT: Final = f"smsroute/{__version__} python-requests/{requests.__version__}"

_log = get_logger()

Timeout = float | tuple[float, float]
_T = TypeVar("_T")


class CarrierClient:
    """A thread-safe client of the vendor's carrier-lookup API.

    One ``requests.Session`` per client (keep-alive); POST form-encoded by
    default, GET on request. Retries (tenacity) only on ServiceError and
    TransportError, bounded by attempts and a total time budget.
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
    ) -> None:
        if not isinstance(apikey, str) or not apikey.strip():
            raise ConfigurationError("apikey is empty: pass the key the vendor issued")
        method = method.upper()
        if method not in ("POST", "GET"):
            raise ConfigurationError(f"method must be POST or GET, not {method!r}")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"base_url must be an http(s) URL, not {base_url!r}")
        self._apikey = _Secret(apikey.strip())
        self.base_url = base_url.rstrip("/")
        self.method = method
        self.timeout = timeout
        self._clock = clock
        self._urls = {
            "/carrier": self.base_url + "/carrier",
            "/balance": self.base_url + "/balance",
        }
        if session is None:
            session = requests.Session()
            # One retry layer: tenacity owns retries, urllib3 does none.
            adapter = requests.adapters.HTTPAdapter(
                pool_connections=1, pool_maxsize=pool_maxsize, max_retries=0
            )
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
        if method == "GET":
            install_urllib3_redaction()  # urllib3 logs request URLs, apikey included
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            warnings.warn(
                f"smsroute: plain http:// to {parts.hostname}: the apikey travels in clear; "
                "use https://",
                UserWarning,
                stacklevel=2,
            )
            _log.warning("client.insecure_transport", host=parts.hostname)

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
        mobile = normalize(number)
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
        deadline: float | None = None
        retrying = self._retrying
        if timeout is not None:
            end = deadline = self._clock() + timeout

            def out_of_time(state: RetryCallState) -> bool:
                # On the client's clock, so that the vendor's last error is what
                # surfaces, not a "no time left" attempt that never went out.
                return self._clock() + state.upcoming_sleep >= end

            stop = stop_any(
                cast("stop_base", retrying.stop),
                stop_before_delay(timeout),
                cast("stop_base", out_of_time),
            )
            retrying = retrying.copy(stop=stop)
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
        try:
            timeout: Timeout | urllib3.Timeout = self.timeout
            if deadline is not None:
                left = deadline - self._clock()
                if left <= 0:
                    raise TransportError(f"{endpoint}: no time left in the deadline")
                timeout = _cap(self.timeout, left)
            content = self._request(endpoint, params, timeout)
            # Parsed inside the attempt, so that an unreadable result is logged
            # as this attempt's error (and, for /carrier, not retried: see
            # vendor.read_carrier).
            result = parse(content, masked)
            code = 0
            return result
        except LookupFailed as exc:
            error = type(exc).__name__
            code = getattr(exc, "code", None)
            raise
        finally:
            _log.debug(
                "client.call",
                endpoint=endpoint,
                mobile=masked or None,
                code=code,
                error=error,
                ms=round((time.perf_counter() - started) * 1000, 2),
                attempt=attempt,
            )

    def _template(self, endpoint: str) -> requests.PreparedRequest:
        headers = {}
        if self.method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = requests.Request(self.method, self._urls[endpoint], headers=headers)
        return self._session.prepare_request(request)

    def _request(
        self, endpoint: str, params: dict[str, str], timeout: Timeout | urllib3.Timeout
    ) -> bytes:
        url = self._urls[endpoint]
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
            status = resp.status_code
            content = _read_capped(resp)
            failure = None
        except requests.Timeout as exc:
            failure = f"{endpoint}: timed out ({_describe(exc, self._apikey)})"
        except requests.RequestException as exc:
            failure = f"{endpoint}: {_describe(exc, self._apikey)}"
        if failure is not None:
            # Raised outside the except block, so that the requests exception is
            # not even the suppressed __context__: its message carries the URL,
            # apikey included for GET.
            raise TransportError(failure)
        if status != 200:
            raise TransportError(f"{endpoint}: HTTP {status}")
        if content is None:
            raise TransportError(f"{endpoint}: body of over {MAX_BODY} bytes is not an answer")
        return content

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
        }
        kwargs.update(changes)
        return CarrierClient(**kwargs)


class _Secret(str):
    """The apikey: its value goes on the wire, its repr shows in tracebacks' locals."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


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


def _describe(exc: BaseException, apikey: str) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {redact(text, apikey)}" if text else type(exc).__name__
