"""The routing API: ``/v1/route`` (one number, GET or POST) and ``/v1/route/batch``.

Answers ``{"mobile", "carrier", "initial", "ported", "virtual", "area",
"gateway", "source", "reason"}``. A vendor failure is never an error here:
the answer then comes from a stale cached answer or the segment table and
says so in ``source`` and ``reason``. Errors: 400 ``invalid_number`` (no
query is paid), 422 ``no_route``, 401, 429, 413 ``batch_too_large``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from smsroute.errors import InvalidNumber, NoRoute, SmsRouteError
from smsroute.serve.callers import find_key
from smsroute.serve.decisions import decision_json
from smsroute.serve.replies import JSON_TYPE, Refusal, json_reply, read_params
from smsroute.serve.service import Service

__all__ = ["BATCH_CONCURRENCY", "api_routes"]

BATCH_CONCURRENCY = 100  # lookups in flight for one batch: the vendor client's connection pool


def api_routes(service: Service) -> list[web.RouteDef]:
    """Return the routes of ``/v1/route`` and ``/v1/route/batch`` served from ``service``."""
    view = service.view
    router = service.router
    rendered = service.rendered
    table = service.table
    read_timeout = service.settings.serve.read_timeout
    max_batch = service.settings.serve.max_batch

    async def route_one(request: web.Request) -> web.Response:
        try:
            service.admit(find_key(request.headers))
            params = await read_params(request, read_timeout, json_ok=True)
            mobile = params.get("mobile")
            if mobile is None or mobile == "":
                raise Refusal(400, "bad_request", "give the number as mobile=...")
            decision = await router.route(mobile)
            fast = rendered.route(decision)
            if fast is not None:  # an answered decision: no fallback to note
                return web.Response(body=fast, headers={"Content-Type": JSON_TYPE})
            decision = view.apply(decision)
        except Refusal as refusal:
            return refusal.reply()
        except InvalidNumber as exc:
            return json_reply({"error": "invalid_number", "message": str(exc)}, 400)
        except NoRoute as exc:
            return json_reply({"error": "no_route", "message": str(exc)}, 422)
        service.note(decision)
        return json_reply(decision_json(decision, table))

    async def route_batch(request: web.Request) -> web.Response:
        try:
            caller = service.authenticate(find_key(request.headers))
            params = await read_params(request, read_timeout, json_ok=True)
            mobiles = params.get("mobiles")
            if not isinstance(mobiles, list):
                raise Refusal(400, "bad_request", 'send {"mobiles": ["139...", ...]}')
            if len(mobiles) > max_batch:
                raise Refusal(
                    413, "batch_too_large", f"{len(mobiles)} numbers; at most {max_batch}"
                )
            # A batch weighs its size against the caller's qps.
            service.limit(caller, max(1, len(mobiles)))
            results = await view.router.route_many(
                [
                    m if isinstance(m, str | int) and not isinstance(m, bool) else None
                    for m in mobiles
                ],
                concurrency=BATCH_CONCURRENCY,
                return_exceptions=True,
            )
        except Refusal as refusal:
            return refusal.reply()
        return json_reply({"results": [_item(service, r) for r in results]})

    return [
        web.get("/v1/route", route_one, allow_head=False),
        web.post("/v1/route", route_one),
        web.post("/v1/route/batch", route_batch),
    ]


def _item(service: Service, result: Any) -> dict[str, Any]:
    if isinstance(result, InvalidNumber):
        return {"error": "invalid_number", "message": str(result)}
    if isinstance(result, SmsRouteError):
        return {"error": "no_route", "message": str(result)}
    try:
        decision = service.view.apply(result)
    except NoRoute as exc:
        return {"error": "no_route", "message": str(exc)}
    service.note(decision)
    return decision_json(decision, service.table)
