"""Operations endpoints: ``/healthz`` (up), ``/readyz`` (worth sending traffic) and ``/metrics``.

``/readyz`` answers 503 with the reason while the service drains, while the
breaker is hard-open (a wrong vendor key, an exhausted balance: nothing
succeeds until a person acts) or while the configured cache cannot be
reached. A breaker open on plain failures is not "unready": every answer
then still comes, from the fallbacks, and another instance would fare no
better.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from typing import Any, Final

from aiohttp import web

from smsroute._log import get_logger
from smsroute.core.breaker import HARD_KINDS
from smsroute.core.vendor import redact
from smsroute.serve.replies import error_reply, json_reply
from smsroute.serve.service import Service

__all__ = ["HARD_INCIDENTS", "cache_problem", "metrics_snapshots", "ops_routes", "readiness"]

HARD_INCIDENTS: Final = HARD_KINDS
_PING_TIMEOUT: Final = 0.5  # seconds a readiness check waits for Redis
_log = get_logger()


async def cache_problem(cache: Any) -> str | None:
    """Return why the cache cannot be reached, or None (an in-process cache always can)."""
    ping = getattr(getattr(cache, "client", None), "ping", None)
    if callable(ping):  # RedisCache: ask the server itself
        try:
            await asyncio.wait_for(asyncio.to_thread(ping), _PING_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - any failure means unreachable
            return f"redis cache unreachable: {type(exc).__name__}"
        return None
    path = getattr(cache, "path", None)
    on_disk = isinstance(path, str) and path != ":memory:" and not path.startswith("file:")
    if on_disk and not os.path.exists(str(path)):
        return "sqlite cache file is gone"
    return None


async def readiness(service: Service) -> str | None:
    """Return why the service should get no traffic now, or None when it is ready."""
    if service.draining:
        return "draining: shutting down"
    breaker = service.router.breaker
    incident = breaker.incident
    if incident is not None and incident.kind in HARD_INCIDENTS and breaker.state != "closed":
        return f"vendor {incident.kind.replace('_', ' ')} (code {incident.code}): " + redact(
            incident.reason
        )
    return await cache_problem(service.cache)


def _prometheus(service: Service) -> tuple[Any, Any] | None:
    """Return serve.prom and the service's registry (made once), or None without the extra."""
    try:
        prom = importlib.import_module("smsroute.serve.prom")
    except ImportError:  # prometheus-client is an optional extra
        return None
    if service.registry is None:
        service.registry = prom.registry_for(service)
    return prom, service.registry


def ops_routes(service: Service) -> list[web.RouteDef]:
    """Return the routes of ``/healthz``, ``/readyz`` and ``/metrics`` served from ``service``."""

    async def healthz(request: web.Request) -> web.Response:
        return json_reply({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        reason = await readiness(service)
        if reason is not None:
            return json_reply({"ready": False, "reason": reason}, 503)
        return json_reply({"ready": True})

    async def metrics(request: web.Request) -> web.Response:
        found = _prometheus(service)
        if found is None:
            return error_reply(
                501,
                "not_implemented",
                "/metrics needs prometheus-client: pip install 'smsroute[prometheus]'",
            )
        prom, registry = found
        if service.metrics_dir is None:
            body = prom.exposition(registry)
        else:  # one of several workers: the whole fleet's figures
            fleet = importlib.import_module("smsroute.serve.fleet")
            body = fleet.exposition(registry, service.metrics_dir, service.worker)
        return web.Response(body=body, headers={"Content-Type": prom.CONTENT_TYPE_LATEST})

    return [
        web.get("/healthz", healthz, allow_head=True),
        web.get("/readyz", readyz, allow_head=True),
        web.get("/metrics", metrics, allow_head=False),
    ]


async def metrics_snapshots(service: Service) -> None:
    """Keep this worker's figures in the workers' metrics directory (serve.fleet): a task."""
    found = _prometheus(service)
    directory = service.metrics_dir
    if found is None or directory is None:
        return
    fleet = importlib.import_module("smsroute.serve.fleet")
    while True:
        try:
            fleet.write_snapshot(found[1], directory, service.worker)
        except Exception as exc:  # noqa: BLE001 - a full disk costs the siblings' view, no more
            _log.warning("serve.metrics_snapshot_failed", error=type(exc).__name__)
        await asyncio.sleep(fleet.SNAPSHOT_SECONDS)
