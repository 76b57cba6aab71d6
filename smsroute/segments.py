"""Offline segment table: which operator MIIT allocated a number's segment to.

The table ships as ``smsroute/data/segments.tsv``, a human-editable file whose
header names its sources and date. Rows map 3-, 4- and 5-digit prefixes to an
operator; the longest prefix wins. Loading expands the rows into one verdict
per 5-digit prefix, so a lookup is a single dict access.

MIIT keeps allocating segments: :func:`install` swaps in a newer table from a
path without waiting for a release.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Final

from smsroute.carrier import Carrier
from smsroute.errors import ConfigurationError
from smsroute.phonetext import digits

__all__ = [
    "KINDS",
    "Segment",
    "SegmentTable",
    "default_table",
    "initial_carrier",
    "install",
    "load",
    "lookup",
]

KINDS: Final = frozenset({"regular", "virtual", "data", "iot", "satellite", "other", "unallocated"})
_COLUMNS: Final = (
    "segment",
    "operator",
    "kind",
    "host",
    "length",
    "confidence",
    "holder",
    "sources",
)


@dataclass(frozen=True, slots=True)
class Segment:
    """One row of the segment table."""

    prefix: str
    carrier: Carrier | None
    kind: str
    host: Carrier | None = None
    length: int | None = 11
    confidence: str = ""
    holder: str = ""
    sources: str = ""

    @property
    def allocated(self) -> bool:
        """Return True when the segment holds numbers (whoever holds it)."""
        return self.kind != "unallocated"

    @property
    def virtual(self) -> bool:
        """Return True for a virtual-operator (MVNO) segment."""
        return self.kind == "virtual"


class SegmentTable:
    """A longest-prefix table over 3- to 5-digit segments; immutable once built."""

    __slots__ = ("_by5", "_rows", "source")

    def __init__(self, rows: Iterable[Segment], *, source: str = "<memory>") -> None:
        self.source = source
        by_prefix: dict[str, Segment] = {}
        for row in rows:
            p = row.prefix
            if not (3 <= len(p) <= 5 and p.isascii() and p.isdigit() and p[0] == "1"):
                raise ConfigurationError(f"{source}: bad segment {p!r}: want 3-5 digits from 1")
            if p in by_prefix:
                raise ConfigurationError(f"{source}: segment {p} appears twice")
            if row.kind not in KINDS:
                raise ConfigurationError(f"{source}: segment {p}: unknown kind {row.kind!r}")
            by_prefix[p] = row
        self._rows: Mapping[str, Segment] = by_prefix
        # Expand once to every 5-digit prefix so that lookup is one dict access
        # (the hot path of normalize() and of every fallback).
        by5: dict[str, Segment] = {}
        for n in range(10000, 20000):
            s = str(n)
            found = by_prefix.get(s) or by_prefix.get(s[:4]) or by_prefix.get(s[:3])
            if found is not None:
                by5[s] = found
        self._by5 = by5

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"SegmentTable({len(self._rows)} rows from {self.source})"

    def rows(self) -> list[Segment]:
        """Return the rows in prefix order."""
        return [self._rows[k] for k in sorted(self._rows)]

    def lookup(self, digits: str) -> Segment | None:
        """Return the longest-prefix row for a digit string, or None."""
        return self._by5.get(digits[:5])

    def initial_carrier(self, number: str) -> Carrier | None:
        """Return the operator the number's segment was allocated to, or None."""
        if not (len(number) == 11 and number.isdigit() and number.isascii()):
            number = digits(number)
        row = self._by5.get(number[:5])
        return None if row is None else row.carrier

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> SegmentTable:
        """Read a table in the format of the shipped ``segments.tsv``."""
        # utf-8-sig: Windows editors save the hand-edited table with a BOM.
        with open(path, encoding="utf-8-sig") as f:
            return cls(_parse(f, str(path)), source=str(path))


def _parse(lines: Iterable[str], source: str) -> list[Segment]:
    rows: list[Segment] = []
    header_seen = False
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in line.split("\t")]
        if not header_seen and cells[0] == "segment":
            header_seen = True
            continue
        cells += [""] * (len(_COLUMNS) - len(cells))
        seg, op, kind, host, length, conf, holder, sources = cells[: len(_COLUMNS)]
        carrier = Carrier.parse(op) if op else None
        if op and carrier is None:
            raise ConfigurationError(f"{source}:{lineno}: unknown operator {op!r}")
        host_carrier = Carrier.parse(host) if host else None
        if host and host_carrier is None:
            raise ConfigurationError(f"{source}:{lineno}: unknown host network {host!r}")
        try:
            n = int(length.split("/")[0]) if length else None
        except ValueError:
            raise ConfigurationError(f"{source}:{lineno}: bad length {length!r}") from None
        if kind == "virtual" and carrier is None:
            carrier = host_carrier  # a virtual segment answers its host network
        rows.append(Segment(seg, carrier, kind, host_carrier, n, conf, holder, sources))
    if not rows:
        raise ConfigurationError(f"{source}: no segments")
    return rows


def load(path: str | os.PathLike[str]) -> SegmentTable:
    """Return a table read from a file in the format of the shipped one."""
    return SegmentTable.from_path(path)


def _load_default() -> SegmentTable:
    ref = resources.files("smsroute").joinpath("data/segments.tsv")
    with ref.open(encoding="utf-8") as f:
        return SegmentTable(_parse(f, "smsroute/data/segments.tsv"), source="built-in")


_default: SegmentTable = _load_default()


def default_table() -> SegmentTable:
    """Return the table that normalize() and initial_carrier() use."""
    return _default


def install(table: SegmentTable | str | os.PathLike[str] | None) -> SegmentTable:
    """Make a table (or a path's table) the process default; None restores the built-in."""
    global _default
    if table is None:
        new = _load_default()
    elif isinstance(table, SegmentTable):
        new = table
    else:
        new = load(table)
    _default = new
    return new


def lookup(number: str) -> Segment | None:
    """Return the default table's row for a number (normalised or not)."""
    if not (len(number) == 11 and number.isdigit() and number.isascii()):
        number = digits(number)
    return _default.lookup(number)


def initial_carrier(number: str) -> Carrier | None:
    """Return the operator MIIT allocated the number's segment to, or None.

    Virtual-operator segments answer their host network; unallocated segments
    and segments held by someone other than the four operators answer None.
    Text that is not a phone number at all raises InvalidNumber.
    """
    return _default.initial_carrier(number)
