"""Value objects: a lookup answer and an account balance."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from smsroute.carrier import Carrier
from smsroute.phonetext import mask

__all__ = ["EMPTY", "Balance", "CarrierInfo"]

EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CarrierInfo:
    """The vendor's answer for one number: where it started and where it is now."""

    mobile: str = field(repr=False)
    res: int
    area: str
    initial: Carrier | None
    current: Carrier | None
    raw: Mapping[str, Any] = field(default_factory=lambda: EMPTY, compare=False, repr=False)
    """The vendor's ``result`` object as received (empty for answers rebuilt from a cache)."""

    def __repr__(self) -> str:
        # The number masked, as in Decision's repr: reprs end up in logs.
        return (
            f"CarrierInfo(mobile={mask(self.mobile)!r}, res={self.res}, area={self.area!r}, "
            f"initial={self.initial!r}, current={self.current!r})"
        )

    @property
    def ported(self) -> bool:
        """Return True when the vendor says the number was ported (res 1)."""
        return self.res == 1

    @property
    def virtual(self) -> bool:
        """Return True for a virtual-operator (MVNO) number (res 3 or 4)."""
        return self.res in (3, 4)

    @property
    def province(self) -> str:
        """Return the province part of ``area`` (``湖北`` of ``湖北-宜昌``)."""
        return self.area.partition("-")[0]

    @property
    def city(self) -> str:
        """Return the city part of ``area`` (``宜昌`` of ``湖北-宜昌``), or ``""``."""
        return self.area.partition("-")[2]


@dataclass(frozen=True, slots=True)
class Balance:
    """The account's remaining queries."""

    fee_type: str
    remaining: int
    raw: Mapping[str, Any] = field(default_factory=lambda: EMPTY, compare=False, repr=False)

    @property
    def postpaid(self) -> bool:
        """Return True for a postpaid (后付费) account, whose balance may go negative."""
        return self.fee_type == "后付费"
