"""The controls every front end shares: :class:`VendorControls` passes them to its simulator.

``FakeCarrierServer``, ``AsyncFakeCarrierServer`` and ``VendorMock`` inherit
from it, so ``server.fault = "hang"`` or ``server.set_answer(...)`` reads
the same on all three and lands on the one :class:`VendorSimulator`.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smsroute.testing.faults import Fault
from smsroute.testing.simulator import AnswerSpec, RecordedRequest, VendorSimulator

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["VendorControls"]


class VendorControls:
    """The simulator's controls as attributes of a front end; it keeps no state of its own."""

    simulator: VendorSimulator

    @property
    def apikey(self) -> str:
        """Return the apikey the fake vendor accepts."""
        return self.simulator.apikey

    @property
    def balance(self) -> int:
        """Return the queries left on the account."""
        return self.simulator.balance

    @balance.setter
    def balance(self, value: int) -> None:
        self.simulator.balance = value

    @property
    def fee_type(self) -> str:
        """Return ``"预付费"`` or ``"后付费"``."""
        return self.simulator.fee_type

    @fee_type.setter
    def fee_type(self, value: str) -> None:
        self.simulator.fee_type = value

    @property
    def fault(self) -> Fault | None:
        """Return the fault applied to every request, or None."""
        return self.simulator.fault

    @fault.setter
    def fault(self, fault: Fault | None) -> None:
        self.simulator.set_fault(fault)

    @property
    def latency(self) -> float:
        """Return the seconds added before every answer."""
        return self.simulator.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self.simulator.latency = seconds

    @property
    def slow_seconds(self) -> float:
        """Return the extra seconds the ``"slow"`` fault waits."""
        return self.simulator.slow_seconds

    @slow_seconds.setter
    def slow_seconds(self, seconds: float) -> None:
        self.simulator.slow_seconds = seconds

    @property
    def requests(self) -> list[RecordedRequest]:
        """Return a copy of the recorded requests, oldest first."""
        return self.simulator.requests

    @property
    def paid(self) -> int:
        """Return how many queries were charged."""
        return self.simulator.paid

    @property
    def carrier_calls(self) -> int:
        """Return how many ``/carrier`` requests arrived."""
        return self.simulator.carrier_calls

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self.simulator.clear_requests()

    def set_fault(self, fault: Fault | None, *, for_requests: int | None = None) -> None:
        """Apply a fault to all requests, or only to the next ``for_requests`` of them."""
        self.simulator.set_fault(fault, for_requests=for_requests)

    def set_answer(self, number: str, **spec: Unpack[AnswerSpec]) -> None:
        """Pin the answer for one number; see :meth:`VendorSimulator.set_answer`."""
        # The keywords are AnswerSpec's: written there once, checked by the simulator.
        self.simulator.set_answer(number, **spec)

    def clear_answer(self, number: str) -> None:
        """Forget a pinned answer."""
        self.simulator.clear_answer(number)

    def answer_for(self, number: str) -> dict[str, Any]:
        """Return the body a well-formed query for ``number`` gets: no charge, no fault."""
        return self.simulator.answer_for(number)
