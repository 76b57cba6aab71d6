"""Drop-in vendor mode: ``/carrier`` and ``/balance`` with the vendor's parameters, shape and codes.

Code written against isp.qxt800.com works by changing its base URL. The
``apikey`` a caller sends is one of the service's client keys (wrong: code
-1), checked here and never forwarded; the vendor's key stays in the
service. Answers are ``{"code": 0, "reason": "Succ", "result": {"res",
"Mobile", "Area", "Init_isp", "Now_isp"}}``, and the vendor's own codes
for a caller's mistakes (1, -2, -3) and for a number it does not know (-4).

When the vendor fails, ``/carrier`` still answers code 0, from a stale
cached answer or the segment table (``res`` "0", ``Now_isp`` = ``Init_isp``),
with a ``"source"`` key added; ``[serve] compat_errors = "pass"`` answers
the vendor's error code instead. The service's own account problems (-1,
-9) are never passed on as such: to a caller, -1 means *its* key is wrong,
so they read -8.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from smsroute.core.vendor import REASONS
from smsroute.decision import Decision
from smsroute.errors import ApiError, CircuitOpen, InvalidNumber, LookupFailed
from smsroute.serve.callers import Caller, find_key
from smsroute.serve.decisions import is_not_found
from smsroute.serve.replies import JSON_TYPE, Refusal, json_reply, read_params
from smsroute.serve.service import Service

__all__ = ["REASONS", "compat_routes", "vendor_body"]


_PASSED: Final = frozenset({1, -2, -3, -4, -5, -8})  # vendor codes passed on as they are


def vendor_body(code: int, result: Any = None) -> dict[str, Any]:
    """Return the vendor's answer shape for ``code`` (``result`` null for an error)."""
    return {"code": code, "reason": REASONS.get(code, REASONS[-8]), "result": result}


def _reply(body: Mapping[str, Any], status: int = 200, **headers: str) -> web.Response:
    return json_reply(body, status, headers=headers, compact=False)


def compat_routes(service: Service) -> list[web.RouteDef]:
    """Return the routes of drop-in ``/carrier`` and ``/balance`` served from ``service``."""
    read_timeout = service.settings.serve.read_timeout
    passing = service.settings.serve.compat_errors == "pass"
    router = service.router
    rendered = service.rendered

    async def who(request: web.Request) -> tuple[Mapping[str, Any], web.Response | None]:
        """Return the parameters, and the vendor's refusal when the caller is not let in."""
        try:
            params = await read_params(request, read_timeout, json_ok=False)
        except Refusal as refusal:
            return {}, refusal.reply()
        if service.callers.open:
            return params, None
        key = params.get("apikey") or find_key(request.headers)
        if not key:
            return params, _reply(vendor_body(1))
        try:
            caller: Caller | None = service.authenticate(key)
            service.limit(caller)
        except Refusal as refusal:
            if refusal.status == 401:
                return params, _reply(vendor_body(-1))
            # Over the caller's qps: HTTP 429, the body the vendor's "try later".
            return params, _reply(vendor_body(-8), 429, **refusal.headers)
        return params, None

    async def carrier(request: web.Request) -> web.Response:
        params, refused = await who(request)
        if refused is not None:
            return refused
        mobile = str(params.get("mobile") or "").strip()
        # The vendor's checks, in its order: missing, length, digits, a mobile number.
        if not mobile:
            return _reply(vendor_body(1))
        if len(mobile) != 11:
            return _reply(vendor_body(-2))
        if not (mobile.isascii() and mobile.isdigit()):
            return _reply(vendor_body(-3))
        try:
            decision = await router.route(mobile)
        except InvalidNumber:
            return _reply(vendor_body(-3))
        if decision.source in ("cache", "upstream"):
            body = rendered.carrier(decision, lambda: vendor_body(0, _result(decision)))
            return web.Response(body=body, headers={"Content-Type": JSON_TYPE})
        service.note(decision)
        return _reply(_answer(decision, passing, router))

    async def balance(request: web.Request) -> web.Response:
        _params, refused = await who(request)
        if refused is not None:
            return refused
        try:
            bal = await service.balance.get()
        except ApiError as exc:
            return _reply(vendor_body(exc.code if exc.code in _PASSED else -8))
        except LookupFailed:
            return _reply(vendor_body(-8))
        # The vendor's result object as it came (its balance is text: "12048").
        result = dict(bal.raw) or {"feeType": bal.fee_type, "balance": str(bal.remaining)}
        return _reply(vendor_body(0, result))

    return [
        web.get("/carrier", carrier, allow_head=False),
        web.post("/carrier", carrier),
        web.get("/balance", balance, allow_head=False),
        web.post("/balance", balance),
    ]


def _answer(decision: Decision, passing: bool, router: Any) -> dict[str, Any]:
    """Return the ``/carrier`` body for a decision."""
    if decision.source in ("cache", "upstream"):
        return vendor_body(0, _result(decision))
    if is_not_found(decision):
        return vendor_body(-4)
    if passing:
        return vendor_body(_vendor_code(decision, router))
    if decision.carrier is None:
        return vendor_body(-8)  # no answer and no operator of record: "try again later"
    body = vendor_body(0, _result(decision))
    body["source"] = decision.source
    return body


def _result(decision: Decision) -> dict[str, str]:
    info = decision.info
    if info is None or info.current is None or info.initial is None:
        # The segment table: the issuing operator, taken as the current one.
        name = decision.carrier.value if decision.carrier is not None else ""
        return {
            "res": "0",
            "Mobile": decision.mobile,
            "Area": "",
            "Init_isp": name,
            "Now_isp": name,
        }
    return {
        "res": str(info.res),
        "Mobile": decision.mobile,
        "Area": info.area,
        "Init_isp": info.initial.value,
        "Now_isp": info.current.value,
    }


def _vendor_code(decision: Decision, router: Any) -> int:
    """Return the vendor code a fallback stands for (-8 when it stands for none)."""
    error = decision.error
    if isinstance(error, ApiError):
        return error.code if error.code in _PASSED else -8
    incident = router.breaker.incident
    if isinstance(error, CircuitOpen) and incident is not None and incident.code == -5:
        return -5  # refused by the breaker the vendor's "no balance" opened
    return -8
