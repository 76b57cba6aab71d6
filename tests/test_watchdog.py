"""The watchdog and the resolver alone: guards cut sockets at their deadline, and only then."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from smsroute.watchdog import WATCHDOG, Guard, Resolver, Watchdog, current_guard


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Yield a connected pair of sockets; the first has a long timeout, like a read."""
    a, b = socket.socketpair()
    a.settimeout(5.0)
    with a, b:
        yield a, b


def test_a_guard_cuts_a_blocked_read_at_its_deadline(pair):
    """A recv blocked on a watched socket returns at the deadline, not at the socket's timeout."""
    a, _b = pair
    started = time.monotonic()
    with WATCHDOG.arm(0.1) as guard:
        guard.watch("conn", a)
        assert a.recv(10) == b""  # shut down: end of file
    assert guard.fired
    assert time.monotonic() - started < 1.0


def test_a_disarmed_guard_never_fires(pair):
    """Leaving the guard's block disarms it: the socket stays usable past the deadline."""
    a, b = pair
    with WATCHDOG.arm(0.05) as guard:
        guard.watch("conn", a)
    time.sleep(0.1)
    b.sendall(b"ok")
    assert a.recv(2) == b"ok"
    assert not guard.fired


def test_a_released_connection_is_not_cut(pair):
    """Once a connection went back to the pool, the guard's deadline no longer touches it."""
    a, b = pair
    with WATCHDOG.arm(0.05) as guard:
        guard.watch("conn", a)
        guard.release("conn")
        time.sleep(0.1)
        assert guard.fired
        b.sendall(b"ok")
        assert a.recv(2) == b"ok"


def test_a_socket_watched_after_the_deadline_is_cut_at_once(pair):
    """A connection that completed only after the deadline is shut down as it is attached."""
    a, _b = pair
    with WATCHDOG.arm(0.0) as guard:
        time.sleep(0.05)
        guard.watch("conn", a)
        assert a.recv(10) == b""


def test_the_current_guard_is_per_thread():
    """A guard is current on the thread that entered it only, and restored on exit."""
    seen: list[Guard | None] = []
    with WATCHDOG.arm(1.0) as guard:
        t = threading.Thread(target=lambda: seen.append(current_guard()))
        t.start()
        t.join()
        assert current_guard() is guard
    assert seen == [None]
    assert current_guard() is None


def test_disarmed_guards_do_not_pile_up():
    """Many short calls with long deadlines leave a bounded heap behind them."""
    dog = Watchdog()
    for _ in range(20_000):
        with dog.arm(60.0):
            pass
    assert len(dog._heap) <= 8192


def test_an_earlier_deadline_wakes_the_watchdog(pair):
    """A deadline earlier than the one the thread sleeps towards is still kept."""
    a, _b = pair
    dog = Watchdog()
    with dog.arm(30.0):
        started = time.monotonic()
        with dog.arm(0.1) as guard:
            guard.watch("conn", a)
            assert a.recv(10) == b""
        assert time.monotonic() - started < 1.0


# -- the resolver -------------------------------------------------------------------


class SlowDNS:
    """A getaddrinfo stand-in: counts calls, answers 127.0.0.1, blocks while ``gate`` is clear."""

    def __init__(self, real) -> None:
        self.real = real
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, host, port, *args, **kwargs):
        """Resolve ``host`` as 127.0.0.1, once the gate is open."""
        if host == "vendor.test":
            self.calls += 1
            self.gate.wait(5.0)
            host = "127.0.0.1"
        return self.real(host, port, *args, **kwargs)


@pytest.fixture
def dns(monkeypatch) -> Iterator[SlowDNS]:
    """Replace socket.getaddrinfo (what urllib3 calls too) with a SlowDNS."""
    slow = SlowDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", slow)
    yield slow
    slow.gate.set()


def test_resolution_waits_no_longer_than_the_budget(dns):
    """A hung resolver costs the caller its budget, then a TimeoutError."""
    dns.gate.clear()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        Resolver().resolve("vendor.test", 80, socket.AF_INET, 0.1)
    assert time.monotonic() - started < 1.0


def test_one_resolution_in_flight_however_many_wait(dns):
    """Callers waiting on a hung name share one resolution (one thread), not one each."""
    dns.gate.clear()
    resolver = Resolver()
    for _ in range(5):
        with pytest.raises(TimeoutError):
            resolver.resolve("vendor.test", 80, socket.AF_INET, 0.02)
    dns.gate.set()
    assert resolver.resolve("vendor.test", 80, socket.AF_INET, 1.0)[0][4][0] == "127.0.0.1"
    assert dns.calls == 1


def test_a_known_name_never_waits_again(dns):
    """Past its ttl a name is answered from what is known while one refresh runs behind."""
    resolver = Resolver(ttl=0.0)
    first = resolver.resolve("vendor.test", 80, socket.AF_INET, 1.0)
    dns.gate.clear()
    started = time.monotonic()
    assert resolver.resolve("vendor.test", 80, socket.AF_INET, 1.0) == first
    assert time.monotonic() - started < 0.5
    assert dns.calls == 2  # the refresh, still waiting on the gate


def test_ip_literals_need_no_resolver(dns):
    """An IP literal is answered at once, whatever the resolver does."""
    dns.gate.clear()
    assert Resolver().resolve("127.0.0.1", 80, socket.AF_INET, 0.0)[0][4][0] == "127.0.0.1"
    assert dns.calls == 0
