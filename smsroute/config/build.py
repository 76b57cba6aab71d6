"""Building from Settings: the vendor client, the cache, the segment table and the routers.

Kept apart from reading (:mod:`smsroute.config.settings`) so that every
front end (``smsroute serve``, ``smsroute route --config``) builds the same
objects from one file, and nothing is built by merely reading it. Optional
extras (aiohttp, redis-py) are imported only by the builder that needs them.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smsroute import segments
from smsroute.config.settings import Settings
from smsroute.core.policy import RoutingPolicy
from smsroute.errors import ConfigurationError

if TYPE_CHECKING:
    from smsroute.aio.client import AsyncCarrierClient
    from smsroute.aio.router import AsyncRouter
    from smsroute.client import CarrierClient
    from smsroute.routing import Router

__all__ = [
    "build_async_client",
    "build_async_router",
    "build_cache",
    "build_client",
    "build_router",
    "build_segments",
]


def build_segments(settings: Settings) -> segments.SegmentTable | None:
    """Return the segment table of ``[routing] segments`` (None: the built-in one)."""
    if settings.segments is None:
        return None
    try:
        return segments.load(settings.segments)
    except (OSError, ValueError, ConfigurationError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if settings.segments not in detail:
            detail = f"{settings.segments}: {detail}"
        raise ConfigurationError(f"[routing] segments: {detail}") from None


def _apikey(settings: Settings) -> str:
    v = settings.vendor
    if v.apikey:
        return v.apikey
    raise ConfigurationError(f"[vendor] apikey_env: ${v.apikey_env} is not set")


def _rate_limit(settings: Settings, share: int) -> Any:
    """Return the RateLimit of ``[vendor] qps`` (and burst), split over ``share`` processes."""
    from smsroute.ratelimit import RateLimit

    v = settings.vendor
    if v.qps is None:
        return None
    # The vendor limits the account, so N workers each take 1/N of it.
    burst = None if v.burst is None else max(1.0, v.burst / share)
    return RateLimit(v.qps / share, burst)


def build_async_client(settings: Settings, *, share: int = 1, **kwargs: Any) -> AsyncCarrierClient:
    """Return the AsyncCarrierClient of ``[vendor]``; ``share`` processes split its qps.

    Other keywords (``max_connections=``) go to the client.
    """
    from smsroute.aio.client import AsyncCarrierClient

    return AsyncCarrierClient(
        _apikey(settings), **_vendor_kwargs(settings, share, kwargs), **kwargs
    )


def build_client(settings: Settings, **kwargs: Any) -> CarrierClient:
    """Return the blocking CarrierClient of ``[vendor]``, qps included.

    Other keywords (``pool_maxsize=``) go to the client.
    """
    from smsroute.client import CarrierClient

    return CarrierClient(_apikey(settings), **_vendor_kwargs(settings, 1, kwargs), **kwargs)


def _vendor_kwargs(settings: Settings, share: int, given: dict[str, Any]) -> dict[str, Any]:
    """Return what either client takes from ``[vendor]`` (its timeout unless ``given`` has one)."""
    v = settings.vendor
    out: dict[str, Any] = {
        "base_url": v.base_url,
        "method": v.method,
        "rate_limit": _rate_limit(settings, share),
    }
    if v.timeout is not None and "timeout" not in given:
        out["timeout"] = v.timeout
    return out


def build_cache(settings: Settings) -> Any:
    """Return the cache backend of ``[cache]`` (MemoryCache, SqliteCache or RedisCache)."""
    c = settings.cache
    if c.backend == "memory":
        from smsroute.cache import MemoryCache

        return MemoryCache(c.maxsize, policy=c.policy)
    if c.backend == "sqlite":
        import sqlite3

        from smsroute.sqlite_cache import SqliteCache, default_cache_path

        path = c.path or str(default_cache_path())
        try:
            return SqliteCache(path, policy=c.policy)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(f"[cache] path: {path}: {exc}") from None
    try:
        from smsroute.redis_cache import RedisCache

        assert c.url is not None
        return RedisCache(c.url, prefix=c.prefix, policy=c.policy, near_maxsize=c.maxsize)
    except ImportError as exc:
        raise ConfigurationError(f"[cache] backend: {exc}") from None
    except ValueError as exc:
        raise ConfigurationError(f"[cache] url: {exc}") from None


def build_async_router(
    settings: Settings,
    client: Any,
    cache: Any,
    *,
    policy: RoutingPolicy | None = None,
    table: segments.SegmentTable | None = None,
    **kwargs: Any,
) -> AsyncRouter:
    """Return an AsyncRouter of the settings over ``client`` and ``cache``.

    ``policy`` replaces the settings' routing policy; ``table`` is a segment
    table loaded already (default: :func:`build_segments`).
    """
    from smsroute.aio.router import AsyncRouter

    return AsyncRouter(
        client,
        policy or settings.policy,
        cache=cache,
        deadline=settings.deadline,
        segments=table if table is not None else build_segments(settings),
        **kwargs,
    )


def build_router(settings: Settings, client: Any, cache: Any, **kwargs: Any) -> Router:
    """Return the threaded Router of the settings over ``client`` and ``cache``."""
    from smsroute.routing import Router

    return Router(
        client,
        settings.policy,
        cache=cache,
        deadline=settings.deadline,
        segments=build_segments(settings),
        **kwargs,
    )
