"""The aiohttp application of ``smsroute serve``: its routes, its middleware and its lifecycle.

:func:`create_app` wires one :class:`~smsroute.serve.service.Service` into
an ``aiohttp.web.Application``: the routing API (``/v1/route``), drop-in
vendor mode (``/carrier``, ``/balance``), operations (``/healthz``,
``/readyz``, ``/metrics``), the status page (``/``) and, when ``[kannel]
sendsms_url`` is set, the Kannel pass-through of
``smsroute.serve.kannel``. Serving it (sockets, workers, signals, drain) is
:mod:`smsroute.serve.runner`'s job; tests run it with aiohttp's TestServer.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from typing import Any, Final

from aiohttp import web

from smsroute._log import get_logger
from smsroute.config import Settings
from smsroute.serve.api import api_routes
from smsroute.serve.compat import compat_routes
from smsroute.serve.observe import observe_middleware
from smsroute.serve.ops import metrics_snapshots, ops_routes
from smsroute.serve.service import Service
from smsroute.serve.status import status_routes

__all__ = ["KANNEL_MODULE", "SERVICE", "add_kannel", "create_app"]

SERVICE: Final = web.AppKey("smsroute_service", Service)
"""Where the application keeps its Service: ``app[SERVICE]``."""
KANNEL_MODULE: Final = "smsroute.serve.kannel"

_log = get_logger()


def create_app(
    settings: Settings | None = None, *, service: Service | None = None, **kwargs: Any
) -> web.Application:
    """Return the service's application, over ``service`` or one built from ``settings``.

    ``kwargs`` go to :class:`Service` (``limits``, ``worker``, ``workers``,
    ``client``, ``cache``).
    """
    if service is None:
        if settings is None:
            raise TypeError("create_app() needs settings or a service")
        service = Service(settings, **kwargs)
    limits = service.settings.serve
    app = web.Application(
        client_max_size=limits.max_body,
        middlewares=[observe_middleware(service.http, access_log=limits.access_log)],
    )
    app[SERVICE] = service
    app.add_routes(api_routes(service))
    app.add_routes(compat_routes(service))
    app.add_routes(ops_routes(service))
    app.add_routes(status_routes(service))
    add_kannel(app, service)

    snapshots: list[asyncio.Task[None]] = []

    async def started(_app: web.Application) -> None:
        await service.start()
        if service.metrics_dir is not None:
            snapshots.append(asyncio.ensure_future(metrics_snapshots(service)))

    async def closed(_app: web.Application) -> None:
        for task in snapshots:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await service.close()

    app.on_startup.append(started)
    app.on_cleanup.append(closed)
    return app


def add_kannel(app: web.Application, service: Service) -> bool:
    """Add the Kannel pass-through when ``[kannel] sendsms_url`` is set; return whether it was."""
    url = service.settings.kannel_url
    if url is None:
        return False
    try:
        # Imported by name: the module is written apart from this one, and the
        # service must start (without /cgi-bin/sendsms) while it is absent.
        module = importlib.import_module(KANNEL_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != KANNEL_MODULE:
            raise
        _log.warning("serve.kannel_unavailable", module=KANNEL_MODULE)
        return False
    timeout = service.settings.kannel_timeout
    setup = getattr(module, "setup_kannel", None)
    if setup is not None:  # routes and the session they send through
        setup(app, service.view, url, timeout=timeout)
    else:
        app.add_routes(list(module.kannel_routes(service.view, url, timeout=timeout)))
    return True
