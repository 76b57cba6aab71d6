"""The four mainland-China mobile operators and the spellings that name them."""

from __future__ import annotations

import difflib
import enum
import re
from collections.abc import Iterable

__all__ = ["Carrier"]


class Carrier(str, enum.Enum):
    """A mobile network operator; the value is its short Chinese name."""

    MOBILE = "移动"
    UNICOM = "联通"
    TELECOM = "电信"
    BROADNET = "广电"

    def __str__(self) -> str:
        return self.value

    @property
    def code(self) -> int:
        """Return a small stable integer (1-4) used in compact cache values."""
        return _CODE[self]

    @classmethod
    def from_code(cls, code: int) -> Carrier | None:
        """Return the carrier for :attr:`code`, or None for 0."""
        return _BY_CODE[code]

    @classmethod
    def parse(cls, text: object) -> Carrier | None:
        """Return the carrier a spelling names, or None for text it does not know.

        Reads what APIs and people write: ``移动``, ``中国移动``, ``China Mobile``,
        ``CMCC``, ``移动虚拟运营商`` (an MVNO on China Mobile's network) and the
        like for the other three.
        """
        if isinstance(text, Carrier):
            return text
        if not isinstance(text, str):
            return None
        hit = _CACHE.get(text)
        if hit is not None or text in _CACHE:
            return hit
        key = _NOISE.sub("", text).lower()
        found = _ALIASES.get(key)
        if found is None:
            for suffix in _MVNO_SUFFIXES:
                if key.endswith(suffix):
                    found = _ALIASES.get(key[: -len(suffix)])
                    if found is not None:
                        break
        if len(_CACHE) < 1024:  # bounded: keys come from upstream bodies
            _CACHE[text] = found
        return found

    @classmethod
    def suggest(cls, text: str, extra: Iterable[str] = ()) -> str | None:
        """Return the spelling :meth:`parse` reads (or one of ``extra``) closest to ``text``.

        For "did you mean" hints: ``"连通"`` gives ``"联通"``, ``"Moble"``
        gives ``"mobile"``; None when nothing is close. Compared as
        :meth:`parse` reads (spaces and case do not count).

        .. versionadded:: 0.2.0
        """
        extras = {_NOISE.sub("", e).lower(): e for e in extra}
        choices = [*_ALIASES, *extras]
        # 0.5: one character of a two-character Chinese name may be wrong (连通 / 联通).
        close = difflib.get_close_matches(_NOISE.sub("", text).lower(), choices, n=1, cutoff=0.5)
        if not close:
            return None
        found = close[0]
        return extras.get(found) or _SHOWN.get(found, found)


_CODE = {Carrier.MOBILE: 1, Carrier.UNICOM: 2, Carrier.TELECOM: 3, Carrier.BROADNET: 4}
_BY_CODE: tuple[Carrier | None, ...] = (
    None,
    Carrier.MOBILE,
    Carrier.UNICOM,
    Carrier.TELECOM,
    Carrier.BROADNET,
)

# Spaces, dots, hyphens, underscores and brackets carry no meaning in a name.
_NOISE = re.compile(r"[\s.\-_()（）]+")
_MVNO_SUFFIXES = ("虚拟运营商", "虚拟", "mvno", "virtual")

_ALIASES: dict[str, Carrier] = {}
for _carrier, _names in {
    Carrier.MOBILE: ("移动", "中国移动", "中移动", "chinamobile", "cmcc", "mobile", "cm"),
    Carrier.UNICOM: ("联通", "中国联通", "chinaunicom", "cucc", "unicom", "cu"),
    Carrier.TELECOM: ("电信", "中国电信", "chinatelecom", "ctcc", "telecom", "ct"),
    Carrier.BROADNET: (
        "广电",
        "中国广电",
        "chinabroadnet",
        "broadnet",
        "cbn",
        "cbnet",
        "chinabroadcastnetwork",
        "中国广播电视网络",
    ),
}.items():
    for _name in (*_names, _carrier.value):
        _ALIASES[_name] = _carrier

# How a hint spells the aliases that are stored squashed (parse reads both).
_SHOWN: dict[str, str] = {
    "chinamobile": "China Mobile",
    "chinaunicom": "China Unicom",
    "chinatelecom": "China Telecom",
    "chinabroadnet": "China Broadnet",
    "chinabroadcastnetwork": "China Broadcast Network",
    **{name: name.upper() for name in ("cmcc", "cucc", "ctcc", "cbn", "cm", "cu", "ct")},
    "cbnet": "CBNet",
}

_CACHE: dict[str, Carrier | None] = {}
