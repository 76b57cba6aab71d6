"""Normalising and validating mainland-China mobile numbers, locally and for free."""

from __future__ import annotations

from smsroute import segments
from smsroute.errors import InvalidNumber
from smsroute.phonetext import digits, mask, mask_numbers

__all__ = ["digits", "mask", "mask_numbers", "normalize"]


def normalize(
    text: object, table: segments.SegmentTable | None = None, *, unknown_segments: bool = False
) -> str:
    """Return the 11 digits of a mainland-China mobile number in an allocated segment.

    Raises InvalidNumber (a ValueError) saying what is wrong: too short, too
    long, not a digit, not a mobile segment, unallocated segment. With
    ``unknown_segments``, a number in the mobile range (``1[3-9]x``) whose
    segment the table does not know as allocated is accepted: MIIT keeps
    allocating segments, and the vendor answers -3 (free) for a bad one.
    """
    t = table if table is not None else segments.default_table()
    if type(text) is str and len(text) == 11 and text.isdigit() and text.isascii():
        d = text  # fast path: already normalised
    else:
        d = digits(text)
    row = t.lookup(d)
    if row is not None and row.kind != "unallocated" and row.length == 11:
        return d
    if d[0] != "1" or d[1] in "012":
        raise InvalidNumber(f"not a mobile segment: {d[:3]}", text)
    if row is None or row.kind == "unallocated":
        if unknown_segments:
            return d
        raise InvalidNumber(f"unallocated segment: {d[:3]}", text)
    raise InvalidNumber(
        f"not a mobile segment: {row.prefix} holds {row.length}-digit {row.kind} numbers", text
    )
