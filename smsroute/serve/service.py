"""One worker's service: what it serves from (settings, router, clients, cache) and who may call.

A :class:`Service` is built from Settings before the server binds, so a
missing apikey or an unusable cache stops the start with one line. It owns
what it built and closes it on :meth:`Service.close`; objects passed in
(tests do) are the caller's to close.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from smsroute import segments
from smsroute.config import (
    Settings,
    build_async_client,
    build_async_router,
    build_cache,
    build_segments,
)
from smsroute.core.vendor import redact
from smsroute.decision import Decision
from smsroute.numbers import mask
from smsroute.serve.balance import BalanceCache
from smsroute.serve.callers import CALLER, Caller, Callers, Limits, MeteredClient, retry_after
from smsroute.serve.decisions import CARRIER_POLICY, PolicyView, Rendered
from smsroute.serve.observe import HttpStats
from smsroute.serve.replies import Refusal

__all__ = ["RECENT", "Fallback", "Service"]

RECENT: Final = 20  # fallbacks the status page lists


@dataclass(frozen=True)
class Fallback:
    """One decision that did not come from a fresh answer, as the status page lists it."""

    at: float
    mobile: str
    """Masked: ``139****5391``."""
    source: str
    reason: str


class Service:
    """The state of one worker: settings, router, callers, counters; built before binding."""

    def __init__(
        self,
        settings: Settings,
        *,
        limits: Limits | None = None,
        worker: int = 0,
        workers: int = 1,
        client: Any = None,
        cache: Any = None,
        metrics_dir: str | None = None,
    ) -> None:
        self.settings = settings
        loaded = build_segments(settings)
        self.table = loaded or segments.default_table()
        self._owned: list[Any] = []
        if client is None:
            client = build_async_client(settings, share=workers)
            self._owned.append(client)
        if cache is None:
            cache = build_cache(settings)
            self._owned.append(cache)
        self.client = client
        self.cache = cache
        self.callers = Callers(settings.serve.clients)
        self.limits = limits if limits is not None else Limits(len(self.callers.callers))
        self.metered = MeteredClient(client, self.limits)
        self.router = build_async_router(
            settings, self.metered, cache, policy=CARRIER_POLICY, table=loaded
        )
        self.view = PolicyView(self.router, settings.policy, self.table)
        self.rendered = Rendered(self.view)
        self.balance = BalanceCache(client, settings.serve.balance_ttl)
        self.http = HttpStats()
        self.fallbacks: deque[Fallback] = deque(maxlen=RECENT)
        self.started = time.time()
        self.worker = worker
        self.workers = workers
        self.metrics_dir = metrics_dir
        """Where the workers of ``--workers N`` share their figures (serve.fleet), or None."""
        self.registry: Any = None
        """The Prometheus registry of ``/metrics``, made by serve.ops on first use."""
        self.draining = False
        self.loop_name = "asyncio"

    # -- callers ------------------------------------------------------------------------

    def admit(self, key: str | None, *, cost: int = 1) -> Caller | None:
        """Return the caller a key names (None: open service); raise Refusal 401 or 429."""
        caller = self.authenticate(key)
        self.limit(caller, cost)
        return caller

    def authenticate(self, key: str | None) -> Caller | None:
        """Return the caller a key names (None: open service), set for the request; else 401."""
        if self.callers.open:
            return None
        caller = self.callers.find(key)
        if caller is None:
            raise Refusal(
                401,
                "unauthorized",
                "a client key is needed: Authorization: Bearer KEY, or X-Api-Key: KEY",
                {"WWW-Authenticate": 'Bearer realm="smsroute"'},
            )
        # Each request runs in a task of its own, with a copy of the context: the
        # caller is the quota's owner for this request, and the access log's name.
        CALLER.set(caller)
        return caller

    def limit(self, caller: Caller | None, cost: int = 1) -> None:
        """Take ``cost`` from the caller's rate; raise Refusal 429 (with Retry-After) when over."""
        if caller is None:
            return
        wait = self.limits.admit(caller, cost)
        if wait is not None:
            raise Refusal(
                429,
                "rate_limited",
                f"over the {caller.qps:g} requests a second of client {caller.name}",
                {"Retry-After": retry_after(wait)},
            )

    # -- decisions ----------------------------------------------------------------------

    def note(self, decision: Decision) -> None:
        """Remember a decision that fell back, for the status page."""
        if decision.source in ("stale", "fallback"):
            self.fallbacks.append(
                Fallback(
                    time.time(),
                    mask(decision.mobile),
                    decision.source,
                    redact(decision.reason or ""),
                )
            )

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background work (the balance poll)."""
        self.loop_name = type(asyncio.get_running_loop()).__module__.partition(".")[0]
        self.balance.start_polling(self.settings.serve.balance_interval)

    async def close(self) -> None:
        """Stop the background work; close the client and the cache this service built."""
        await self.balance.stop()
        await self.router.aclose()
        for owned in self._owned:
            if hasattr(owned, "aclose"):
                await owned.aclose()
            elif hasattr(owned, "close"):
                # SqliteCache and RedisCache close with blocking calls.
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(owned.close)
