"""The status page at ``/``: one HTML page for a person, no external assets, no JavaScript.

Decisions by source and operator, hit ratio, queries paid and saved, the
breaker, the balance, the last fallbacks, the callers' quotas, HTTP counts,
uptime and version. It shows client names, never a key, and masked numbers
(``139****5391``), never a full one; every text on it is escaped.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Iterable, Sequence

from aiohttp import web

from smsroute._version import __version__
from smsroute.carrier import Carrier
from smsroute.core.stats import SOURCES
from smsroute.serve.ops import readiness
from smsroute.serve.service import Service

__all__ = ["render_status", "status_routes"]

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:72em}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}td,th{padding:.2em .8em;border-bottom:1px solid #ddd}
th{text-align:left;background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#070}.bad{color:#b00}.muted{color:#777}
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="n">{_esc(c)}</td>' if isinstance(c, int | float) else f"<td>{_esc(c)}</td>"
            for c in row
        )
        body.append(f"<tr>{cells}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(headers)}" class="muted">none yet</td></tr>')
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}d {hours}h {minutes}m" if days else f"{hours}h {minutes}m {secs}s"


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def render_status(service: Service, ready: str | None) -> str:
    """Return the status page's HTML (``ready`` is the readiness problem, or None)."""
    stats = service.router.stats()
    decisions = stats["decisions"]
    total = sum(decisions.values())
    hits = stats["hits"]
    saved = hits + stats["coalesced"]
    ratio = f"{hits / total:.1%}" if total else "-"
    breaker = stats["breaker"]
    incident = service.router.breaker.incident
    breaker_text = breaker + (f" ({incident.kind})" if incident is not None else "")
    bal = service.balance
    if bal.last is not None:
        balance = f"{bal.last.remaining} queries ({bal.last.fee_type}), read {_clock(bal.read_at)}"
    else:
        balance = "not read yet"
    if bal.error:
        balance += f"; last read failed: {bal.error}"
    state = (
        '<span class="ok">ready</span>'
        if ready is None
        else f'<span class="bad">not ready: {_esc(ready)}</span>'
    )
    summary = _table(
        ("", ""),
        [
            ("decisions", total),
            ("cache hit ratio", ratio),
            ("queries paid", service.metered.paid),
            ("queries saved (cache hits, shared lookups)", saved),
            ("refused by a daily quota", service.metered.refused),
            ("breaker", breaker_text),
            ("breaker opened", stats["breaker_opened"]),
            ("balance", balance),
            ("cache size", "-" if stats["cache_size"] is None else stats["cache_size"]),
        ],
    )
    by_source = _table(("source", "decisions"), [(s, decisions[s]) for s in SOURCES])
    by_carrier = stats["decisions_by_carrier"]
    names = [c.value for c in Carrier] + ["unknown"]
    carriers = _table(
        ("operator", *SOURCES, "total"),
        [
            (name, *counts, sum(counts))
            for name in names
            for counts in [[by_carrier[s].get(name, 0) for s in SOURCES]]
            if any(counts)
        ],
    )
    recent = _table(
        ("when", "number", "source", "reason"),
        [(_clock(f.at), f.mobile, f.source, f.reason) for f in reversed(service.fallbacks)],
    )
    counted: list[tuple[str, int]] = sorted(
        stats["fallback_reasons"].items(), key=lambda kv: (-kv[1], kv[0])
    )
    reasons = _table(("reason", "count"), counted)
    callers = _table(
        ("client", "qps", "daily queries", "paid today"),
        [
            (
                c.name,
                "-" if c.qps is None else c.qps,
                "-" if c.daily_queries is None else c.daily_queries,
                service.limits.used_today(c),
            )
            for c in service.callers.callers
        ],
    )
    requests = _table(
        ("endpoint", "method", "status", "requests"),
        [(e, m, str(s), n) for (e, m, s), n in sorted(service.http.counts.items())],
    )
    worker = (
        f"worker {service.worker + 1} of {service.workers}, pid {os.getpid()},"
        f" {service.loop_name} loop"
    )
    uptime = _duration(time.time() - service.started)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="10">'
        f"<title>smsroute serve</title><style>{_STYLE}</style></head><body>"
        f"<h1>smsroute serve {_esc(__version__)}</h1>"
        f"<p>{state} · up {_esc(uptime)} since {_esc(_clock(service.started))} · {_esc(worker)}</p>"
        f"<h2>Summary</h2>{summary}"
        f"<h2>Decisions by source</h2>{by_source}"
        f"<h2>Decisions by operator</h2>{carriers}"
        f"<h2>Last fallbacks</h2>{recent}"
        f"<h2>Fallback reasons</h2>{reasons}"
        f"<h2>Clients</h2>{callers}"
        f"<h2>HTTP requests</h2>{requests}"
        '<p class="muted">Numbers are masked; keys are never shown. '
        "JSON: <code>/healthz</code>, <code>/readyz</code>; Prometheus: <code>/metrics</code>.</p>"
        "</body></html>\n"
    )


def status_routes(service: Service) -> list[web.RouteDef]:
    """Return the route of the status page at ``/``."""

    async def status(request: web.Request) -> web.Response:
        page = render_status(service, await readiness(service))
        return web.Response(
            text=page,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    return [web.get("/", status, allow_head=False)]
