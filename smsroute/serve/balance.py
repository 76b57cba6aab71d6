"""The vendor balance as the service knows it: fetched at most once per ``ttl``, shared by callers.

``/balance`` relays it, the status page and ``/metrics`` show it, and an
optional background task polls it every ``balance_interval`` seconds so it
is known before anyone asks. Concurrent askers share one vendor call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from smsroute._log import get_logger
from smsroute.core.vendor import redact
from smsroute.errors import LookupFailed
from smsroute.models import Balance
from smsroute.types import Clock

__all__ = ["BalanceCache"]

_log = get_logger()
_TIMEOUT = 5.0  # seconds one balance call may take


class BalanceCache:
    """The last balance read from the vendor, re-read when older than ``ttl`` seconds."""

    def __init__(self, client: Any, ttl: float, *, clock: Clock = time.monotonic) -> None:
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self.last: Balance | None = None
        self.read_at = 0.0
        """Wall-clock time of the last successful read (0 before any)."""
        self.error: str | None = None
        """Why the last read failed (None after a success)."""
        self._fetched = -float("inf")
        self._pending: asyncio.Future[Balance] | None = None
        self._poller: asyncio.Task[None] | None = None

    async def get(self) -> Balance:
        """Return the balance, from the vendor when the last read is older than ``ttl``."""
        if self.last is not None and self.clock() - self._fetched < self.ttl:
            return self.last
        pending = self._pending
        if pending is None:
            pending = self._pending = asyncio.ensure_future(self._fetch())
            pending.add_done_callback(self._settled)
        # shield(): one asker that gives up must not cancel the others' call.
        return await asyncio.shield(pending)

    def _settled(self, future: asyncio.Future[Balance]) -> None:
        self._pending = None
        if not future.cancelled():
            future.exception()  # retrieved here: a failed read nobody awaited is not an error

    async def _fetch(self) -> Balance:
        try:
            balance: Balance = await self.client.balance(timeout=_TIMEOUT)
        except LookupFailed as exc:
            self.error = redact(f"{type(exc).__name__}: {exc}")
            raise
        self.last, self._fetched, self.read_at, self.error = (
            balance,
            self.clock(),
            time.time(),
            None,
        )
        return balance

    def start_polling(self, interval: float) -> None:
        """Read the balance now and every ``interval`` seconds, in the background."""
        if interval > 0 and self._poller is None:
            self._poller = asyncio.ensure_future(self._poll(interval))

    async def _poll(self, interval: float) -> None:
        while True:
            try:
                await self.get()
            except LookupFailed:
                _log.warning("serve.balance_failed", error=self.error)
            except Exception as exc:  # noqa: BLE001 - the poll must outlive a surprise
                _log.warning("serve.balance_failed", error=type(exc).__name__)
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """Stop the background polling."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
