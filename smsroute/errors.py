"""The exception tree of smsroute.

::

    SmsRouteError
    +-- InvalidNumber (also ValueError)  caught locally; no query is spent
    +-- LookupFailed                     no answer from the lookup
    |   +-- ApiError                     vendor answered code != 0
    |   |   +-- RequestRejected          1, -2, -3   no retry; fall back
    |   |   +-- Unauthorized             -1, -9      no retry; open breaker; alert
    |   |   +-- NumberNotFound           -4          no retry; cache briefly; fall back
    |   |   +-- BalanceExhausted         -5          no retry; open breaker; alert
    |   |   +-- ServiceError             -8          retry within budget
    |   +-- TransportError               timeout, connect, HTTP 5xx, unreadable body
    |   +-- CircuitOpen                  breaker open; no call was made
    |   +-- Throttled                    rate limit: no token within the deadline; no call made
    +-- NoRoute                          no gateway for the carrier, no default
    +-- ConfigurationError               bad segment table or routing map
    +-- WrongCarrier                     raised by a gateway: the operator refused the number

No exception carries the apikey: messages are built from the vendor's code and
reason, the endpoint and a masked number only.
"""

from __future__ import annotations

__all__ = [
    "ApiError",
    "BalanceExhausted",
    "CircuitOpen",
    "ConfigurationError",
    "InvalidNumber",
    "LookupFailed",
    "NoRoute",
    "NumberNotFound",
    "RequestRejected",
    "ServiceError",
    "SmsRouteError",
    "Throttled",
    "TransportError",
    "Unauthorized",
    "WrongCarrier",
    "error_for_code",
]


class SmsRouteError(Exception):
    """Base class of every exception smsroute raises on purpose."""


class InvalidNumber(SmsRouteError, ValueError):
    """The text is not a valid mainland-China mobile number; no query was spent."""

    def __init__(self, message: str, text: object = None) -> None:
        super().__init__(message)
        self.text = text


class LookupFailed(SmsRouteError):
    """The carrier lookup produced no answer."""


class ApiError(LookupFailed):
    """The vendor answered with a non-zero ``code``."""

    def __init__(self, code: int, reason: str, *, endpoint: str = "", mobile: str = "") -> None:
        self.code = code
        self.reason = reason
        self.endpoint = endpoint
        self.mobile = mobile  # masked, never the full number
        where = f" ({endpoint}{' ' + mobile if mobile else ''})" if endpoint else ""
        super().__init__(f"vendor code {code}: {reason}{where}")

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments do not survive the default pickling.
        return (
            _rebuild_api_error,
            (type(self), self.code, self.reason, self.endpoint, self.mobile),
        )


def _rebuild_api_error(
    cls: type[ApiError], code: int, reason: str, endpoint: str, mobile: str
) -> ApiError:
    return cls(code, reason, endpoint=endpoint, mobile=mobile)


class RequestRejected(ApiError):
    """Codes 1, -2, -3: the vendor refused the request's parameters."""


class Unauthorized(ApiError):
    """Codes -1, -9: wrong apikey or the caller's IP is not allowed."""


class NumberNotFound(ApiError):
    """Code -4: the vendor has no information on this number."""


class BalanceExhausted(ApiError):
    """Code -5: the account has no queries left."""


class ServiceError(ApiError):
    """Code -8: the vendor's system failed; worth a retry."""


class TransportError(LookupFailed):
    """Timeout, connection failure, HTTP 5xx or a body that cannot be read."""

    retryable: bool = True
    """False for a code-0 answer that could not be read: asking again would pay again."""
    maybe_billed: bool = False
    """True when the request went out before it failed: the vendor may have charged for it."""
    timed_out: bool = False
    """True for a timeout (the budget ran out), False for a refusal, a reset, a bad body."""
    unusable: str = ""
    """The field that made a charged code-0 answer unusable (``Area``, ``Now_isp``), or ""."""
    overloaded: bool = False
    """True for a timeout that fired far too late: this process, not the vendor, was too busy.

    .. versionadded:: 0.2.0
    """


class CircuitOpen(LookupFailed):
    """The circuit breaker is open: no upstream call was made."""


class Throttled(LookupFailed):
    """The client's rate limit had no token within the call's time budget: no call was made.

    .. versionadded:: 0.2.0
    """


class NoRoute(SmsRouteError):
    """No gateway matches the number's carrier and no default is set."""


class ConfigurationError(SmsRouteError):
    """A segment table or routing map is malformed."""


class WrongCarrier(SmsRouteError):
    """Raised by a gateway when the operator refuses the number as not its own.

    The router then drops the cached answer, asks the upstream again and
    retries the send once through the gateway of the fresh answer.
    """


_CODES: dict[int, type[ApiError]] = {
    1: RequestRejected,
    -2: RequestRejected,
    -3: RequestRejected,
    -1: Unauthorized,
    -9: Unauthorized,
    -4: NumberNotFound,
    -5: BalanceExhausted,
    -8: ServiceError,
}


def error_for_code(code: int, reason: str, *, endpoint: str = "", mobile: str = "") -> ApiError:
    """Return the exception for a vendor error code (unknown codes are ServiceError)."""
    cls = _CODES.get(code, ServiceError)
    return cls(code, reason, endpoint=endpoint, mobile=mobile)
