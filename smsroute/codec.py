"""Compact answer codes: a whole lookup answer packed into one small int.

A cached number must cost little memory (aim: 200 bytes, key included), so
caches store an int, not a dict or a dataclass::

    bits 0-2   current operator (Carrier.code, 0 = unknown)
    bits 3-5   initial operator
    bits 6-8   res (0, 1, 3, 4; 7 marks "vendor does not know this number")
    bits 9-30  area, as an index into a process-wide table of area strings

Area indexes are local to a process, so stores shared between processes
(Redis, SQLite) keep the portable text form of :func:`dumps`.
"""

from __future__ import annotations

import threading
from typing import Final

from smsroute.carrier import Carrier
from smsroute.models import CarrierInfo

__all__ = ["NOT_FOUND", "decode", "dumps", "encode", "fields", "is_negative", "loads"]

_RES_NOT_FOUND: Final = 7
NOT_FOUND: Final = _RES_NOT_FOUND << 6
"""The answer code of a number the vendor does not know (code -4): cached briefly."""
MAX_AREAS: Final = 1 << 16  # China has ~370 prefecture-level areas; a bound against junk
_PROVINCE_RESERVE: Final = 4096  # past MAX_AREAS, room for provinces alone (34 real ones)

_areas: list[str] = [""]
_area_ids: dict[str, int] = {"": 0}
_lock = threading.Lock()


def _area_id(area: str) -> int:
    i = _area_ids.get(area)
    if i is not None:
        return i
    with _lock:
        i = _area_ids.get(area)
        if i is not None:
            return i
        if len(_areas) >= MAX_AREAS:
            # Full (junk from a vendor): keep the province, which is what
            # Rule(province=...) reads, so that a route never changes; the
            # city is dropped. Provinces are few; a reserve bounds junk ones.
            province = area.partition("-")[0]
            i = _area_ids.get(province)
            if i is not None:
                return i
            if len(_areas) >= MAX_AREAS + _PROVINCE_RESERVE:
                return 0
            area = province
        i = len(_areas)
        _areas.append(area)
        _area_ids[area] = i
        return i


def encode(info: CarrierInfo) -> int:
    """Return the answer code of a lookup answer."""
    cur = info.current.code if info.current is not None else 0
    init = info.initial.code if info.initial is not None else 0
    return cur | init << 3 | (info.res & 7) << 6 | _area_id(info.area) << 9


def is_negative(answer: int) -> bool:
    """Return True for the code of a number the vendor does not know."""
    return (answer >> 6) & 7 == _RES_NOT_FOUND


def fields(answer: int) -> tuple[Carrier | None, Carrier | None, int, str]:
    """Return ``(current, initial, res, area)`` of an answer code."""
    return (
        Carrier.from_code(answer & 7),
        Carrier.from_code((answer >> 3) & 7),
        (answer >> 6) & 7,
        _areas[answer >> 9] if (answer >> 9) < len(_areas) else "",
    )


def decode(mobile: str, answer: int) -> CarrierInfo | None:
    """Return the CarrierInfo an answer code stands for (None for NOT_FOUND)."""
    if is_negative(answer):
        return None
    current, initial, res, area = fields(answer)
    return CarrierInfo(mobile, res, area, initial, current)


def dumps(answer: int) -> str:
    """Return a portable text form of an answer code (``"1-31湖北-宜昌"``-like, short)."""
    if is_negative(answer):
        return "N"
    current, initial, res, area = fields(answer)
    return f"{res}{initial.code if initial else 0}{current.code if current else 0}{area}"


def loads(text: str | bytes) -> int | None:
    """Return the answer code of a :func:`dumps` text, or None when it is not one."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if text == "N":
        return NOT_FOUND
    head = text[:3]
    # isascii() too: str.isdigit() accepts "²" and "١", which int() refuses or misreads.
    if len(text) < 3 or not (head.isascii() and head.isdigit()) or not text.isprintable():
        return None
    res, init, cur = int(text[0]), int(text[1]), int(text[2])
    if res not in (0, 1, 3, 4) or init > 4 or cur > 4:
        return None
    return cur | init << 3 | res << 6 | _area_id(text[3:67]) << 9
