"""smsroute: route SMS and top-up sends to a number's current operator after porting.

Normalise and validate the number locally, look in a TTL LRU cache, ask the
vendor's ``/carrier`` only on a miss, pick the gateway by the current
operator, and fall back (stale answer, then the segment table) when the
lookup fails, so that a send never fails because the lookup did.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from smsroute import codec, segments
from smsroute._version import __version__
from smsroute.alerts import AlertHub
from smsroute.cache import CachePolicy, MemoryCache
from smsroute.carrier import Carrier
from smsroute.client import CarrierClient
from smsroute.core.policy import RoutingPolicy
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
    Throttled,
    TransportError,
    Unauthorized,
    WrongCarrier,
)
from smsroute.models import Balance, CarrierInfo
from smsroute.numbers import normalize
from smsroute.ratelimit import RateLimit
from smsroute.resilience import Alert, CircuitBreaker, default_retrying
from smsroute.routing import Decision, Router, Rule
from smsroute.segments import initial_carrier
from smsroute.sqlite_cache import SqliteCache
from smsroute.types import CacheBackend, LookupClient
from smsroute.watcher import BalanceWatcher

if _TYPE_CHECKING:
    from smsroute.aio.client import AsyncCarrierClient
    from smsroute.aio.redis_cache import AsyncRedisCache
    from smsroute.aio.router import AsyncRouter
    from smsroute.metrics import PrometheusCollector
    from smsroute.redis_cache import RedisCache
    from smsroute.redis_ratelimit import RedisRateLimit

__all__ = [
    "Alert",
    "AlertHub",
    "ApiError",
    "AsyncCarrierClient",
    "AsyncRedisCache",
    "AsyncRouter",
    "Balance",
    "BalanceExhausted",
    "BalanceWatcher",
    "CacheBackend",
    "CachePolicy",
    "Carrier",
    "CarrierClient",
    "CarrierInfo",
    "CircuitBreaker",
    "CircuitOpen",
    "ConfigurationError",
    "Decision",
    "InvalidNumber",
    "LookupClient",
    "LookupFailed",
    "MemoryCache",
    "NoRoute",
    "NumberNotFound",
    "PrometheusCollector",
    "RateLimit",
    "RedisCache",
    "RedisRateLimit",
    "RequestRejected",
    "Router",
    "RoutingPolicy",
    "Rule",
    "ServiceError",
    "SmsRouteError",
    "SqliteCache",
    "Throttled",
    "TransportError",
    "Unauthorized",
    "WrongCarrier",
    "__version__",
    "codec",
    "default_retrying",
    "initial_carrier",
    "normalize",
    "segments",
]


_LAZY = {
    "AsyncCarrierClient": "smsroute.aio.client",
    "AsyncRedisCache": "smsroute.aio.redis_cache",
    "AsyncRouter": "smsroute.aio.router",
    "PrometheusCollector": "smsroute.metrics",
    "RedisCache": "smsroute.redis_cache",
    "RedisRateLimit": "smsroute.redis_ratelimit",
}


def __getattr__(name: str) -> _Any:
    """Return a lazily imported export (optional extras load on first use)."""
    # redis-py and aiohttp are optional extras and take ~75 ms each to import,
    # which `import smsroute` should not pay.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'smsroute' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the package's names, lazy exports included."""
    return sorted({*globals(), *_LAZY})
