"""A hard deadline for one requests call: a watchdog that shuts its sockets down, DNS within budget.

urllib3's timeouts bound each socket operation, not a call: ``total`` is
checked only until the headers, ``read`` applies per receive, so a vendor
sending a byte every 100 ms, or a hundred ``100 Continue`` lines, trips
neither; and name resolution is outside every timeout. Go gives sockets a
deadline (``SetDeadline``); Python does not, so this module builds one:

* :class:`Watchdog`: one daemon thread keeps a heap of armed :class:`Guard`
  objects and fires each at its deadline. A fired guard shuts down
  (``SHUT_RDWR``) every socket attached to it, which wakes the blocked
  ``recv``/``send`` at once: whatever urllib3 was reading (status line,
  interim responses, header lines, body, TLS handshake) fails right there.
* :class:`DeadlineAdapter`: a requests adapter whose pools attach to the
  current thread's guard the socket of every connection they hand out, take
  it off when the connection goes back to the pool, and mark the guard
  ``sent`` once a request was written; its connections resolve the host
  with :class:`Resolver`, inside the guard's budget.

Attaching holds a duplicate of the socket's descriptor, owned by the guard
and closed when it is disarmed: shutting down our own descriptor can never
hit a socket that urllib3 closed and the process reused, and it survives
``SSLSocket`` taking over the raw socket mid-handshake.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import itertools
import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TypeAlias

import requests.adapters
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.poolmanager import PoolManager, ProxyManager
from urllib3.util.connection import allowed_gai_family

if TYPE_CHECKING:
    from urllib3._base_connection import BaseHTTPConnection

__all__ = ["WATCHDOG", "DeadlineAdapter", "Guard", "Resolver", "Watchdog", "current_guard"]

AddrInfo: TypeAlias = tuple[Any, ...]

_state = threading.local()
_COMPACT_EVERY = 4096  # arms between sweeps of disarmed guards out of the heap


def current_guard() -> Guard | None:
    """Return the guard armed on this thread, or None."""
    guard: Guard | None = getattr(_state, "guard", None)
    return guard


class Guard:
    """One call's deadline (on ``time.monotonic``) and the sockets to shut down when it passes.

    Used as a context manager: entering makes it this thread's current
    guard, leaving disarms it. ``fired``: the watchdog cut the call;
    ``sent``: a request was written in full; ``hooked``: a DeadlineAdapter
    pool served the call (so ``sent`` is known, not guessed).
    """

    __slots__ = (
        "_lock",
        "_prev",
        "_socks",
        "deadline",
        "done",
        "fired",
        "hooked",
        "resolver",
        "sent",
    )

    def __init__(self, deadline: float, resolver: Resolver | None = None) -> None:
        self.deadline = deadline
        self.resolver = resolver
        self.fired = False
        self.done = False
        self.sent = False
        self.hooked = False
        self._lock = threading.Lock()
        self._socks: list[tuple[object, socket.socket]] = []
        self._prev: Guard | None = None

    def __enter__(self) -> Guard:
        self._prev = current_guard()
        _state.guard = self
        return self

    def __exit__(self, *exc: object) -> None:
        _state.guard = self._prev
        self.disarm()

    def left(self) -> float:
        """Return the seconds left before the deadline (negative once past)."""
        return self.deadline - time.monotonic()

    def expired(self) -> bool:
        """Return True once the watchdog fired or the deadline passed."""
        return self.fired or time.monotonic() >= self.deadline

    def watch(self, owner: object, sock: socket.socket) -> None:
        """Shut ``sock`` down at the deadline, until ``owner`` is released or the guard disarmed."""
        self.hooked = True
        try:
            # A descriptor of our own on the same connection (see the module docstring).
            dup = socket.socket(sock.family, sock.type, sock.proto, socket.dup(sock.fileno()))
        except OSError:
            return  # the socket is closed already: there is nothing to cut
        with self._lock:
            if not self.done:
                self._socks.append((owner, dup))
                if self.fired:  # connected after the deadline: cut it at once
                    _shutdown(dup)
                return
        dup.close()

    def release(self, owner: object) -> None:
        """Stop watching ``owner``'s socket: its connection went back to the pool."""
        with self._lock:
            if not self._socks:
                return
            mine = [s for o, s in self._socks if o is owner]
            self._socks = [(o, s) for o, s in self._socks if o is not owner]
        for s in mine:
            s.close()

    def fire(self) -> None:
        """Cut the call: shut down every socket it uses (called by the watchdog at the deadline)."""
        with self._lock:
            if self.done:
                return
            self.fired = True
            for _owner, s in self._socks:
                _shutdown(s)

    def disarm(self) -> None:
        """End the guard: the watchdog will not fire it; close the duplicate descriptors."""
        with self._lock:
            self.done = True
            socks, self._socks = self._socks, []
        for _owner, s in socks:
            s.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the peer closed it already
        sock.shutdown(socket.SHUT_RDWR)


class Watchdog:
    """One daemon thread that fires guards at their deadlines; arming is a heap push.

    Disarmed guards stay in the heap until they reach its top or a sweep
    (every few thousand arms) drops them: no search on the hot path. The
    thread wakes only for the earliest live deadline. Thread-safe; starts
    its thread lazily, after a fork too.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Guard]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def arm(self, seconds: float, resolver: Resolver | None = None) -> Guard:
        """Return a guard that fires in ``seconds``; use it as a context manager."""
        guard = Guard(time.monotonic() + seconds, resolver)
        with self._cond:
            heap = self._heap
            seq = next(self._seq)
            if seq % _COMPACT_EVERY == 0 and len(heap) > _COMPACT_EVERY:
                # Disarmed guards wait in the heap for their deadline: under a
                # high rate of long deadlines, drop them in one pass instead.
                heap[:] = [entry for entry in heap if not entry[2].done]
                heapq.heapify(heap)
            heapq.heappush(heap, (guard.deadline, seq, guard))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="smsroute-watchdog", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is guard:
                self._cond.notify()  # an earlier deadline than the one it sleeps towards
        return guard

    def _run(self) -> None:
        heap = self._heap
        while True:
            with self._cond:
                while True:
                    while heap and heap[0][2].done:
                        heapq.heappop(heap)
                    if not heap:
                        self._cond.wait()
                        continue
                    wait = heap[0][0] - time.monotonic()
                    if wait <= 0:
                        guard = heapq.heappop(heap)[2]
                        break
                    self._cond.wait(wait)
            guard.fire()  # outside the heap's lock: arming never waits on a shutdown

    def _after_fork(self) -> None:
        # The thread did not survive the fork; the lock may be held by it.
        self._cond = threading.Condition(threading.Lock())
        self._heap = []
        self._thread = None


WATCHDOG = Watchdog()
"""The process-wide watchdog every CarrierClient arms."""


class Resolver:
    """getaddrinfo on a helper thread, waited for within the caller's budget; answers kept a while.

    A name already resolved never waits on the resolver again: ``ttl`` s on,
    the known addresses are used while one refresh runs in the background.
    One resolution per name is in flight at a time, however many callers
    wait for it, so a hung resolver costs one thread, not one per lookup.
    """

    def __init__(self, *, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._known: dict[tuple[str, int, int], tuple[float, list[AddrInfo]]] = {}
        self._pending: dict[tuple[str, int, int], _Pending] = {}

    def resolve(self, host: str, port: int, family: int, timeout: float) -> list[AddrInfo]:
        """Return getaddrinfo's stream addresses for ``host``; TimeoutError past ``timeout``."""
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(host)
            # A literal needs no resolver: getaddrinfo answers it at once.
            return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        key = (host, port, family)
        now = time.monotonic()
        with self._lock:
            known = self._known.get(key)
            pending = self._pending.get(key)
            if pending is None and (known is None or known[0] <= now):
                pending = self._pending[key] = _Pending()
                threading.Thread(
                    target=self._run, args=(key, pending), name="smsroute-resolve", daemon=True
                ).start()
        if known is not None:
            return known[1]  # fresh, or stale while the refresh runs
        assert pending is not None  # nothing known: a resolution is pending
        if not pending.done.wait(max(0.0, timeout)):
            raise TimeoutError(f"resolving {host} took over {timeout:.3f} s")
        if pending.error is not None:
            raise pending.error
        return pending.infos

    def _run(self, key: tuple[str, int, int], pending: _Pending) -> None:
        host, port, family = key
        try:
            infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        except OSError as exc:
            pending.error = exc
        else:
            pending.infos = list(infos)
        with self._lock:
            if pending.infos:
                self._known[key] = (time.monotonic() + self.ttl, pending.infos)
            del self._pending[key]
        pending.done.set()


class _Pending:
    __slots__ = ("done", "error", "infos")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: OSError | None = None
        self.infos: list[AddrInfo] = []


# -- the urllib3 side ---------------------------------------------------------------------


def _connect(conn: HTTPConnection, guard: Guard, resolver: Resolver) -> socket.socket:
    """Open ``conn``'s socket with resolution and connect inside the guard's budget.

    What urllib3's ``create_connection`` does, with the resolver that waits
    no longer than the budget; the errors are those of ``HTTPConnection._new_conn``.
    """
    timeout = conn.timeout if isinstance(conn.timeout, (int, float)) else None
    budget = guard.left() if timeout is None else min(float(timeout), guard.left())
    host = conn.host.strip("[]")
    started = time.monotonic()
    try:
        infos = resolver.resolve(host, conn.port or 80, allowed_gai_family(), budget)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:
        raise ConnectTimeoutError(conn, f"Resolving {conn.host} timed out ({exc})") from exc
    err: OSError | None = None
    for family, kind, proto, _name, address in infos:
        left = budget - (time.monotonic() - started)
        if left <= 0:
            err = TimeoutError("no time left to connect")
            break
        sock = socket.socket(family, kind, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(left)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            err = exc
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock
    if isinstance(err, TimeoutError):
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={budget:.3f})"
        ) from err
    raise NewConnectionError(conn, f"Failed to establish a new connection: {err}") from err


class _Watched:
    """Connection mixin: resolve within the guard, attach the new socket, mark requests sent."""

    def _new_conn(self) -> socket.socket:
        guard = current_guard()
        if guard is None or guard.resolver is None:
            sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        else:
            sock = _connect(self, guard, guard.resolver)  # type: ignore[arg-type]
        if guard is not None:
            guard.watch(self, sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)  # type: ignore[misc]
        guard = current_guard()
        if guard is not None:
            guard.sent = True  # written in full: from here on the vendor may bill it


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedPool:
    """Pool mixin: a pooled connection handed out is attached to the guard, and let go on return."""

    def _get_conn(self, timeout: float | None = None) -> BaseHTTPConnection:
        conn: BaseHTTPConnection = super()._get_conn(timeout)  # type: ignore[misc]
        guard = current_guard()
        if guard is not None:
            guard.hooked = True
            sock = getattr(conn, "sock", None)
            if sock is not None:  # a kept-alive connection: no _new_conn() will attach it
                guard.watch(conn, sock)
        return conn

    def _put_conn(self, conn: BaseHTTPConnection | None) -> None:
        guard = current_guard()
        if guard is not None and conn is not None:
            # Another thread may take it from the pool next: this call's
            # deadline must not cut that one's request.
            guard.release(conn)
        super()._put_conn(conn)  # type: ignore[misc]


class _WatchedHTTPPool(_WatchedPool, HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(_WatchedPool, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": _WatchedHTTPPool,
    "https": _WatchedHTTPSPool,
}


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter whose connections obey the current thread's :class:`Guard`.

    Mount it on a session passed to CarrierClient to keep the hard deadline
    (the client mounts one on the session it builds). SOCKS proxies are not
    covered: their connections are urllib3's own, bounded per operation only.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Build the pool manager, with watched pools."""
        super().init_poolmanager(*args, **kwargs)
        _use_watched_pools(self.poolmanager)

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> ProxyManager:
        """Return the proxy manager for a proxy, with watched pools."""
        manager: ProxyManager = super().proxy_manager_for(*args, **kwargs)
        _use_watched_pools(manager)
        return manager


def _use_watched_pools(manager: PoolManager) -> None:
    # Only urllib3's own pools are swapped: a SOCKS manager's pools are SOCKS
    # pools, and replacing them would drop the proxy.
    pools = manager.pool_classes_by_scheme
    if pools.get("http") is HTTPConnectionPool and pools.get("https") is HTTPSConnectionPool:
        manager.pool_classes_by_scheme = dict(_POOLS)
