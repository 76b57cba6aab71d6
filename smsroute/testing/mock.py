"""VendorMock and mock_vendor(): the fake vendor inside ``responses``, with no socket at all.

One ``responses`` stub carries every GET and POST to ``{base_url}/carrier``
and ``{base_url}/balance`` to a
:class:`~smsroute.testing.simulator.VendorSimulator`, so its answers are
byte-for-byte those of the HTTP servers. ``responses`` and ``requests`` are
imported only when a mock is made.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from smsroute.testing.controls import VendorControls
from smsroute.testing.simulator import PREPAID, AnswerSpec, VendorSimulator
from smsroute.testing.wire import request_params

if TYPE_CHECKING:
    import responses
    from requests import PreparedRequest

__all__ = ["VendorMock", "mock_vendor"]


class VendorMock(VendorControls):
    """Serve the vendor's answers through a ``responses.RequestsMock``: no socket.

    Registers one stub matching GET and POST on ``{base_url}/carrier`` and
    ``{base_url}/balance``. Latency and the ``"slow"`` fault call ``sleep``
    when one is given (e.g. ``FakeClock.sleep``) and are skipped otherwise;
    ``"hang"`` raises ``requests.ReadTimeout``, ``"reset"`` raises
    ``requests.ConnectionError``. With ``assert_all_requests_are_fired=True``
    the stub counts as fired after any one call.
    """

    def __init__(
        self,
        rsps: responses.RequestsMock,
        *,
        base_url: str = "https://isp.qxt800.com",
        simulator: VendorSimulator | None = None,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.simulator = simulator if simulator is not None else VendorSimulator()
        self.base_url = base_url.rstrip("/")
        self._base_path = urlsplit(self.base_url).path
        self._sleep = sleep
        self.stub = _vendor_response_class()(
            method="POST",
            url=re.compile(re.escape(self.base_url) + r"/(?:carrier|balance)/?(?:\?.*)?\Z"),
            callback=self._callback,
            content_type=None,
        )
        rsps.add(self.stub)

    def _callback(self, request: PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        import requests

        path, params = request_params(
            str(request.url),
            (request.body or b"") if request.method == "POST" else b"",
            request.headers.get("Content-Type", ""),
        )
        if self._base_path:
            path = path[len(self._base_path) :]
        reply = self.simulator.handle(
            str(request.method), path, params, dict(request.headers.items())
        )
        if reply.action == "hang":
            raise requests.ReadTimeout("FakeCarrier: the vendor did not answer (hang fault)")
        if reply.delay and self._sleep is not None:
            self._sleep(reply.delay)
        if reply.action == "reset":
            raise requests.ConnectionError(ConnectionResetError(104, "Connection reset by peer"))
        return reply.status, reply.headers, reply.body


def _vendor_response_class() -> type[responses.CallbackResponse]:
    import responses

    class _VendorResponse(responses.CallbackResponse):
        # One stub for both methods and both paths, so that a test using only
        # POST /carrier does not trip assert_all_requests_are_fired.
        def matches(self, request: PreparedRequest) -> tuple[bool, str]:
            if request.method not in ("GET", "POST"):
                return False, "Method does not match"
            if not isinstance(self.url, re.Pattern) or not self.url.match(str(request.url)):
                return False, "URL does not match"
            return True, ""

    return _VendorResponse


def mock_vendor(
    rsps: responses.RequestsMock,
    *,
    base_url: str = "https://isp.qxt800.com",
    answers: Mapping[str, AnswerSpec] | None = None,
    balance: int = 100_000,
    apikey: str = "test-apikey",
    fee_type: str = PREPAID,
    ported_share: float = 0.1,
    seed: int | str = 0,
    simulator: VendorSimulator | None = None,
    sleep: Callable[[float], object] | None = None,
) -> VendorMock:
    """Register the fake vendor on ``rsps`` and return its controls."""
    if simulator is None:
        simulator = VendorSimulator(
            apikey=apikey,
            balance=balance,
            fee_type=fee_type,
            ported_share=ported_share,
            seed=seed,
            answers=answers,
        )
    return VendorMock(rsps, base_url=base_url, simulator=simulator, sleep=sleep)
