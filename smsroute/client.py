"""CarrierClient: the vendor's ``/carrier`` and ``/balance`` over one keep-alive session.

Foreign exceptions (requests, json) are translated to the smsroute tree at
one boundary, :meth:`CarrierClient._call`. The apikey travels only in the
request itself: never in a log line, an exception message or a repr.
"""

from __future__ import annotations

import json
import re
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

from smsroute._log import get_logger, install_urllib3_redaction, redact
from smsroute._version import __version__
from smsroute.carrier import Carrier
from smsroute.errors import ConfigurationError, LookupFailed, TransportError, error_for_code
from smsroute.models import Balance, CarrierInfo
from smsroute.netaddr import is_loopback
from smsroute.numbers import mask, normalize
from smsroute.resilience import default_retrying, is_retryable

__all__ = ["DEFAULT_BASE_URL", "CarrierClient"]

DEFAULT_BASE_URL: Final = "https://isp.qxt800.com"
DEFAULT_TIMEOUT: Final = (2.0, 3.0)  # (connect, read) seconds; the vendor answers in ~10 ms
MAX_BODY: Final = 64 * 1024  # a real answer is ~200 bytes; anything huge is not one
USER_AGENT: Final = f"smsroute/{__version__} python-requests/{requests.__version__}"

_log = get_logger()
# The vendor's own document shows JSON with trailing commas: `"balance": "12048",    }`.
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_RES_VALUES: Final = frozenset({0, 1, 3, 4})
_INT_TEXT: Final = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only, bounded

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
        params = {"apikey": self._apikey, "mobile": mobile}
        return self._call("/carrier", params, mobile, timeout, lambda b: _parse_carrier(b, mobile))

    def balance(self, *, timeout: float | None = None) -> Balance:
        """Return the account's fee type and remaining queries."""
        return self._call("/balance", {"apikey": self._apikey}, "", timeout, _parse_balance)

    # -- the one boundary ---------------------------------------------------

    def _call(
        self,
        endpoint: str,
        params: dict[str, str],
        mobile: str,
        timeout: float | None,
        parse: Callable[[Mapping[str, Any]], _T],
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
        parse: Callable[[Mapping[str, Any]], _T],
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
            body = self._request(endpoint, params, timeout)
            code = _code_of(body, endpoint)
            if code != 0:
                reason = redact(str(body.get("reason", "")), self._apikey)
                raise error_for_code(code, reason, endpoint=endpoint, mobile=masked)
            # Parse inside the attempt, so that an unreadable result is logged as
            # this attempt's error. An unreadable /carrier result is not retried:
            # the vendor answered code 0 and charged for it, and asking again
            # would pay again for the same answer. (/balance is free: retried.)
            try:
                return parse(body)
            except TransportError as exc:
                exc.retryable = endpoint != "/carrier"
                raise
        except LookupFailed as exc:
            error = type(exc).__name__
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
    ) -> Mapping[str, Any]:
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
        return _decode(content, endpoint, self._apikey)

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


def _decode(content: bytes, endpoint: str, apikey: str) -> Mapping[str, Any]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TransportError(f"{endpoint}: body is not UTF-8") from None
    if apikey in text:
        # A vendor that echoes the key (in a reason, an error page) must not
        # put it into our messages: mask it before anything reads the body.
        text = text.replace(apikey, "***")
    try:
        body = json.loads(text, object_pairs_hook=_unique)
    except ValueError:
        try:
            body = json.loads(_TRAILING_COMMA.sub(r"\1", text), object_pairs_hook=_unique)
        except (ValueError, RecursionError):
            snippet = redact(text[:200])[:40]
            raise TransportError(f"{endpoint}: body is not JSON: {snippet!r}") from None
    except RecursionError:
        raise TransportError(f"{endpoint}: body is nested too deeply") from None
    if not isinstance(body, dict):
        raise TransportError(f"{endpoint}: body is not a JSON object")
    return cast("Mapping[str, Any]", body)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of a repeated key: "code" -8 then 0, or two
    # different Now_isp, is an ambiguous answer and must not be cached.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("a key is repeated")
    return obj


def _int(value: object) -> int | None:
    """Return an int or ASCII-digit text as an int, else None (int() takes "٣", "1_0", "²")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value)
    return None


def _code_of(body: Mapping[str, Any], endpoint: str) -> int:
    code = _int(body.get("code"))
    if code is None:
        raise TransportError(f"{endpoint}: answer has no integer code")
    return code


def _text(result: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = result.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise TransportError(f"/carrier: field {key} is missing or not text")
    return value.strip()


def _parse_carrier(body: Mapping[str, Any], mobile: str) -> CarrierInfo:
    result = body.get("result")
    if not isinstance(result, dict):
        raise TransportError("/carrier: answer has no result object")
    res_text = result.get("res")
    if isinstance(res_text, bool) or not isinstance(res_text, (str, int)):
        raise TransportError("/carrier: field res is missing")
    res = _int(res_text)
    if res is None:
        raise TransportError(f"/carrier: field res is not a number: {str(res_text)[:20]!r}")
    if res not in _RES_VALUES:
        raise TransportError(f"/carrier: unknown res {res}")
    echoed = result.get("Mobile")
    if echoed is not None and str(echoed).strip() != mobile:
        raise TransportError("/carrier: the answer is for another number")
    init_text = _text(result, "Init_isp")
    now_text = _text(result, "Now_isp")
    initial = Carrier.parse(init_text)
    current = Carrier.parse(now_text)
    # An operator we cannot name cannot be routed to: treat it as no answer,
    # so it is never cached and the fallback chain takes over.
    if initial is None:
        raise TransportError(f"/carrier: unknown Init_isp {init_text[:20]!r}")
    if current is None:
        raise TransportError(f"/carrier: unknown Now_isp {now_text[:20]!r}")
    area = _text(result, "Area", required=False)
    if len(area) > 64:
        raise TransportError("/carrier: field Area is too long")
    if not area.isprintable():
        # Control characters or lone surrogates: the shared caches' text form
        # (codec.dumps/loads) refuses them, so such an answer could never be kept.
        raise TransportError("/carrier: field Area is not printable text")
    return CarrierInfo(mobile, res, area, initial, current, result)


def _parse_balance(body: Mapping[str, Any]) -> Balance:
    result = body.get("result")
    if not isinstance(result, dict):
        raise TransportError("/balance: answer has no result object")
    fee_type = result.get("feeType")
    value = result.get("balance")
    if not isinstance(fee_type, str):
        raise TransportError("/balance: field feeType is missing")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TransportError("/balance: field balance is missing")
    remaining = _int(value)
    if remaining is None:
        raise TransportError(f"/balance: balance is not a number: {str(value)[:20]!r}")
    return Balance(fee_type.strip(), remaining, result)
