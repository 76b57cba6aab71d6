"""Phone-number text: the digits of a pasted number, and masking numbers for logs.

Pure text work with no segment table, so that both :mod:`smsroute.numbers`
(which validates against the table) and :mod:`smsroute.segments` (which
looks numbers up) can use it without importing each other.
"""

from __future__ import annotations

import re
import unicodedata

from smsroute.errors import InvalidNumber

__all__ = ["digits", "mask", "mask_numbers"]

# Characters people put between digits; they carry no meaning.
_SEPARATORS = frozenset(" \t\r\n\u00a0\u3000-.()/_")
_MAX_TEXT = 64  # longer input is not a pasted phone number; don't spend time on it


def digits(text: object) -> str:
    """Return the 11 national digits of a pasted number, without checking the segment.

    Accepts ``+86``/``0086``/``86`` prefixes, brackets, spaces, hyphens, dots
    and full-width characters. Raises InvalidNumber saying what is wrong.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:  # str() would give "-139...", and "-" reads as a separator
            raise InvalidNumber("not a phone number: negative int", text)
        if text.bit_length() > 64:
            # str() of an int past 4,300 digits raises ValueError (CPython's
            # guard against quadratic conversion): junk must be InvalidNumber.
            raise InvalidNumber("too long: an int of more than 19 digits", text)
        text = str(text)
    if not isinstance(text, str):
        raise InvalidNumber(f"not a phone number: expected text, got {type(text).__name__}", text)
    s = text
    if len(s) > _MAX_TEXT:
        raise InvalidNumber(f"too long: {len(s)} characters", text)
    if not s.isascii():
        s = unicodedata.normalize("NFKC", s)  # full-width digits, ＋, （）
    plus = False
    out: list[str] = []
    for i, ch in enumerate(s):
        if "0" <= ch <= "9":
            out.append(ch)
        elif ch in _SEPARATORS:
            continue
        elif ch == "+" and not out and not plus:
            plus = True
        else:
            raise InvalidNumber(f"not a digit: {ch!r} at position {i + 1}", text)
    d = "".join(out)
    if plus:
        if not d.startswith("86"):
            raise InvalidNumber("not a mainland-China number: country code is not +86", text)
        d = d[2:]
    elif len(d) == 15 and d.startswith("0086"):
        d = d[4:]
    elif len(d) == 13 and d.startswith("86"):
        d = d[2:]
    if not d:
        raise InvalidNumber("empty: no digits", text)
    if len(d) < 11:
        raise InvalidNumber(f"too short: {len(d)} digits, a mobile number has 11", text)
    if len(d) > 11:
        raise InvalidNumber(f"too long: {len(d)} digits, a mobile number has 11", text)
    return d


_NUMBER_RUN = re.compile(r"(?<!\d)(\+?86[\s-]?)?(1\d{2})[\s-]?\d{4}[\s-]?(\d{4})(?!\d)")


def mask_numbers(text: str) -> str:
    """Return text with every mobile number in it masked (``139****5391``)."""
    return _NUMBER_RUN.sub(lambda m: f"{m.group(2)}****{m.group(3)}", text)


def mask(number: str) -> str:
    """Return a number masked for logs: ``139****5391``."""
    if len(number) >= 7:
        return number[:3] + "****" + number[-4:]
    return "*" * len(number)
