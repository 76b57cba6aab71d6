"""smsroute: route SMS and top-up sends to a number's current operator."""

from smsroute._version import __version__
from smsroute.carrier import Carrier
from smsroute.errors import (
    ApiError,
    BalanceExhausted,
    CircuitOpen,
    ConfigurationError,
    InvalidNumber,
    LookupFailed,
    NoRoute,
    NumberNotFound,
    RequestRejected,
    ServiceError,
    SmsRouteError,
    TransportError,
    Unauthorized,
    WrongCarrier,
)
from smsroute.numbers import normalize
from smsroute.segments import initial_carrier

__all__ = [
    "ApiError",
    "BalanceExhausted",
    "Carrier",
    "CircuitOpen",
    "ConfigurationError",
    "InvalidNumber",
    "LookupFailed",
    "NoRoute",
    "NumberNotFound",
    "RequestRejected",
    "ServiceError",
    "SmsRouteError",
    "TransportError",
    "Unauthorized",
    "WrongCarrier",
    "__version__",
    "initial_carrier",
    "normalize",
]
