"""pytest plugin: the ``fake_carrier_server`` and ``fake_clock`` fixtures.

Registered through the ``pytest11`` entry point, so installing smsroute makes
the fixtures available to any test suite::

    def test_lookup(fake_carrier_server):
        client = CarrierClient(apikey=fake_carrier_server.apikey,
                               base_url=fake_carrier_server.url)
        fake_carrier_server.set_answer("13800138000", res=1, now="联通")
        ...

Only this module imports pytest; :mod:`smsroute.testing` does not.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smsroute.testing import FakeCarrierServer, FakeClock

__all__ = ["fake_carrier_server", "fake_clock"]


@pytest.fixture
def fake_carrier_server() -> Iterator[FakeCarrierServer]:
    """Yield a started FakeCarrierServer on 127.0.0.1; stop it after the test."""
    with FakeCarrierServer() as server:
        yield server


@pytest.fixture
def fake_clock() -> FakeClock:
    """Return a FakeClock starting at 1000.0."""
    return FakeClock()
