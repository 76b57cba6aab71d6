"""Decision: where one send goes, the value every router front end returns."""

from __future__ import annotations

from typing import Any

from smsroute import codec
from smsroute.carrier import Carrier
from smsroute.core.stats import Source
from smsroute.errors import LookupFailed
from smsroute.models import CarrierInfo
from smsroute.numbers import mask

__all__ = ["Decision", "Source"]


class Decision:
    """Where one send goes: number, operator, gateway, and where the answer came from."""

    __slots__ = ("_answer", "_error", "_info", "carrier", "gateway", "mobile", "reason", "source")

    mobile: str
    carrier: Carrier | None
    gateway: Any
    source: Source
    reason: str | None

    def __init__(
        self,
        mobile: str,
        carrier: Carrier | None,
        gateway: Any,
        source: Source,
        info: CarrierInfo | None = None,
        reason: str | None = None,
        answer: int | None = None,
        error: LookupFailed | None = None,
    ) -> None:
        self.mobile = mobile
        self.carrier = carrier
        self.gateway = gateway
        self.source = source
        self.reason = reason
        self._info = info
        self._answer = answer
        self._error = error

    @property
    def info(self) -> CarrierInfo | None:
        """Return the lookup answer behind the decision (None for a segment-table fallback)."""
        if self._info is None and self._answer is not None:
            # Rebuilt on demand: a cache hit should not pay for an object nobody reads.
            self._info = codec.decode(self.mobile, self._answer)
        return self._info

    @property
    def guessed(self) -> bool:
        """Return True when no current answer was had: a stale answer or the segment table."""
        return self.source in ("stale", "fallback")

    @property
    def error(self) -> LookupFailed | None:
        """Return the lookup error behind a stale or segment-table decision (None otherwise)."""
        return self._error

    def raise_for_guess(self) -> Decision:
        """Return self when it rests on a current answer; else raise the lookup's error.

        For flows that must not guess (a top-up sent to the old operator of a
        ported number fails; retrying later is better).
        """
        if self.source in ("stale", "fallback"):
            raise self._error if self._error is not None else LookupFailed(self.reason or "")
        return self

    @property
    def answer(self) -> int | None:
        """Return the answer code the decision was made from (None for a segment-table fallback)."""
        return self._answer

    def __repr__(self) -> str:
        return (
            f"Decision(mobile={mask(self.mobile)!r}, carrier={self.carrier}, "
            f"gateway={self.gateway!r}, source={self.source!r}, reason={self.reason!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return (self.mobile, self.carrier, self.gateway, self.source, self.reason) == (
            other.mobile,
            other.carrier,
            other.gateway,
            other.source,
            other.reason,
        )

    __hash__ = None  # type: ignore[assignment]
