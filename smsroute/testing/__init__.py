"""Test doubles for code that talks to the carrier-lookup vendor (isp.qxt800.com).

:class:`FakeCarrierServer` is a real HTTP/1.1 server on 127.0.0.1 speaking the
vendor protocol (``/carrier`` and ``/balance``, GET or POST), with switchable
faults; :class:`AsyncFakeCarrierServer` is the same server on asyncio, for
throughput work; :func:`mock_vendor` serves the same answers through
``responses`` without a socket; :class:`FakeClock` is an injectable clock.
Every double shares one sans-I/O core, :class:`VendorSimulator`, so they
cannot disagree.

::

    from smsroute.testing import FakeCarrierServer

    with FakeCarrierServer(balance=10) as server:
        r = requests.post(server.url + "/carrier",
                          data={"apikey": server.apikey, "mobile": "13972565391"})
        assert r.json()["result"]["Now_isp"] == "电信"
        server.fault = "http502"          # every request now fails
        server.set_fault(-8, for_requests=2)  # the next two answer code -8
        assert server.paid == 1

Answers are deterministic: a hash of ``(seed, number)`` decides whether a
number is ported (``ported_share`` of them), where it is and what it ported
to. ``set_answer()`` pins the answer for a number. Nothing here imports pytest
or responses at import time; the fixtures live in :mod:`smsroute.pytest_plugin`.

=================  ===========================================================
``simulator``      :class:`VendorSimulator`: every decision, no I/O
``faults``         the fault names (:data:`FaultKind`) and what each looks like
``wire``           reason texts, :class:`Reply`, body rendering, form parsing
``controls``       the knobs the servers and the mock share
``server``         :class:`FakeCarrierServer`: threads, ``http.server``
``aio_server``     :class:`AsyncFakeCarrierServer`: asyncio streams (lazy)
``http11``         HTTP/1.1 request heads and response heads for it, no I/O
``mock``           :func:`mock_vendor`: ``responses``, no socket
``clock``          :class:`FakeClock`
=================  ===========================================================

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smsroute.testing.clock import FakeClock
from smsroute.testing.faults import FAULTS, Fault, FaultKind
from smsroute.testing.mock import VendorMock, mock_vendor
from smsroute.testing.server import FakeCarrierServer
from smsroute.testing.simulator import (
    AREAS,
    DOC_NUMBER,
    AnswerSpec,
    RecordedRequest,
    VendorSimulator,
)
from smsroute.testing.wire import REASONS, Reply

if TYPE_CHECKING:
    from smsroute.testing.aio_server import AsyncFakeCarrierServer

__all__ = [
    "AREAS",
    "DOC_NUMBER",
    "FAULTS",
    "REASONS",
    "AnswerSpec",
    "AsyncFakeCarrierServer",
    "FakeCarrierServer",
    "FakeClock",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "Reply",
    "VendorMock",
    "VendorSimulator",
    "mock_vendor",
]


def __getattr__(name: str) -> Any:
    """Return AsyncFakeCarrierServer, importing asyncio's server on first use."""
    # Lazy for two reasons: sync-only test suites need not import asyncio, and
    # ``python -m smsroute.testing.aio_server`` must not find its own module
    # already imported by this package (runpy warns, and the classes would exist twice).
    if name == "AsyncFakeCarrierServer":
        from smsroute.testing.aio_server import AsyncFakeCarrierServer

        globals()[name] = AsyncFakeCarrierServer
        return AsyncFakeCarrierServer
    raise AttributeError(f"module 'smsroute.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    """List the package's names, the lazy one included."""
    return sorted({*globals(), "AsyncFakeCarrierServer"})
