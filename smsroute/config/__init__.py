"""Settings: an ``smsroute.toml`` file read and checked into one frozen value, and what it builds.

The file has the tables ``[vendor]``, ``[routing]``, ``[gateways]``,
``[[rules]]``, ``[cache]``, ``[serve]`` and ``[kannel]``; every key is in
``docs/config.md`` and ``examples/smsroute.toml`` is a complete file.
:func:`load_settings` reads it into :class:`Settings`; every bad value is a
:class:`~smsroute.ConfigurationError` whose message names the table and the
key (``[routing] deadline: must be a positive number``), and an unknown key
is refused with the nearest known one as a hint. Building is kept apart from
reading: :func:`build_async_client`, :func:`build_cache`,
:func:`build_async_router` (and the blocking twins) take a Settings, so
``smsroute serve`` and the batch commands share one file::

    settings = load_settings("smsroute.toml")
    router = build_async_router(settings, build_async_client(settings), build_cache(settings))

=============  ===================================================================
``settings``   the value types and :func:`load_settings`
``table``      reading one table: typed values, messages naming the key, no strays
``build``      clients, caches, segment table and routers from a Settings
=============  ===================================================================

.. versionadded:: 0.2.0
"""

from smsroute.config.build import (
    build_async_client,
    build_async_router,
    build_cache,
    build_client,
    build_router,
    build_segments,
)
from smsroute.config.settings import (
    DEFAULT_APIKEY_ENV,
    DEFAULT_PORT,
    CacheSettings,
    ClientKey,
    ServeSettings,
    Settings,
    VendorSettings,
    load_settings,
)

__all__ = [
    "DEFAULT_APIKEY_ENV",
    "DEFAULT_PORT",
    "CacheSettings",
    "ClientKey",
    "ServeSettings",
    "Settings",
    "VendorSettings",
    "build_async_client",
    "build_async_router",
    "build_cache",
    "build_client",
    "build_router",
    "build_segments",
    "load_settings",
]
