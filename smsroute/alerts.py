"""AlertHub: one ``on_alert`` for a router and a balance watcher, one alert per incident.

An empty account is seen twice: the router's breaker opens on the vendor's
-5, and the :class:`~smsroute.BalanceWatcher` reads a balance of 0 (or -5
too). Each source alerts once per incident on its own, so a pager given to
both would be paged twice for one problem, and told twice that it is over.
A hub given to both passes the first alert of each incident and the first
``recovered`` alert that ends it, and drops the rest::

    hub = AlertHub(page)
    router = Router(client, gateways, on_alert=hub)
    watcher = BalanceWatcher(client, interval=60, low_water=10_000, on_alert=hub).start()

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from smsroute.core.breaker import Alert

__all__ = ["AlertHub"]


class AlertHub:
    """Pass each incident's first alert, and the first recovery that ends it, to ``on_alert``.

    Incidents are keyed by :attr:`Alert.incident` (``balance_exhausted``,
    ``unauthorized``, ``upstream_down``, ``balance_low``). An alert for an
    incident already open is dropped; a ``recovered`` alert closes the
    incident and is passed on if it was open, dropped if not (another source
    said it first). Whichever source sees the end first says so: the watcher
    when the balance is back, the router when its breaker's probe gets an
    answer.

    Why a hub to pass, rather than the router and the watcher noticing that
    they were given the same callable: an incident belongs to one vendor
    account, and a callable cannot tell which. One pager often serves two
    accounts (two apikeys, two routers); with automatic dedupe, account B
    running dry while account A's exhaustion is open would page no one. A
    hub is a scope you draw: one per account, given to each router and
    watcher of that account. It also needs no registry of callables (bound
    methods are new objects at each access, lambdas never equal) and keeps
    no state between tests.

    Thread-safe: routers call it from send threads or the event loop, the
    watcher from its thread. ``on_alert`` is called under the hub's
    (re-entrant) lock, so that a pager never hears an incident's end before
    its start; alerts are rare, and a hook that raises is logged by the
    caller, which goes on.
    """

    def __init__(self, on_alert: Callable[[Alert], None]) -> None:
        self.on_alert = on_alert
        self._open: set[str] = set()
        self._lock = threading.RLock()
        self.dropped = 0
        """Alerts not passed on: repeats of an open incident, recoveries already told."""

    @property
    def incidents(self) -> frozenset[str]:
        """Return the incidents alerted and not yet recovered."""
        with self._lock:
            return frozenset(self._open)

    def __call__(self, alert: Alert) -> None:
        """Pass ``alert`` on if it opens an incident or ends an open one; else drop it."""
        with self._lock:
            is_open = alert.incident in self._open
            passes = is_open if alert.recovered else not is_open
            if not passes:
                self.dropped += 1
                return
            if alert.recovered:
                self._open.discard(alert.incident)
            else:
                self._open.add(alert.incident)
            self.on_alert(alert)

    def __repr__(self) -> str:
        return f"AlertHub(incidents={sorted(self.incidents)}, dropped={self.dropped})"
