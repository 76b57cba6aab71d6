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
        """Read a table in the format of the shipped ``segments.tsv``.

        A malformed row raises ConfigurationError naming the file, the line
        and what is wrong (``my.tsv:7: unknown operator '移不动'``); a file that
        cannot be read raises OSError.
        """
        with open(path, "rb") as f:
            raw = f.read()
        return cls(_parse(_decode(raw, str(path)), str(path)), source=str(path))


def _decode(raw: bytes, source: str) -> list[str]:
    """Return the lines of a UTF-8 file; a line that is not UTF-8 is refused by its number."""
    # utf-8-sig: Windows editors save the hand-edited table with a BOM.
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    lines = []
    for lineno, chunk in enumerate(raw.split(b"\n"), 1):
        try:
            lines.append(chunk.decode("utf-8"))
        except UnicodeDecodeError:
            # Excel on Chinese Windows saves GBK: say so rather than show mojibake.
            raise ConfigurationError(
                f"{source}:{lineno}: not UTF-8 text (save the table as UTF-8)"
            ) from None
    return lines


def _header(cells: list[str], where: str) -> tuple[str, ...]:
    """Return the column names of a header row, checked."""
    names = tuple(c.lower() for c in cells)
    while names and not names[-1]:
        names = names[:-1]
    for name in names:
        if name not in _COLUMNS:
            raise ConfigurationError(
                f"{where}: unknown column {name!r} (columns: {', '.join(_COLUMNS)})"
            )
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ConfigurationError(f"{where}: column {twice!r} appears twice")
    for needed in ("operator", "kind"):
        if needed not in names:
            raise ConfigurationError(f"{where}: the header has no {needed!r} column")
    return names


def _parse(lines: Iterable[str], source: str) -> list[Segment]:
    """Return the rows of a table's lines; a bad row raises ConfigurationError with its line."""
    rows: list[Segment] = []
    columns: tuple[str, ...] = _COLUMNS
    first_seen: dict[str, int] = {}
    header_seen = False
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{source}:{lineno}"
        cells = [c.strip() for c in line.split("\t")]
        while len(cells) > 1 and not cells[-1]:
            cells.pop()  # trailing tabs: empty cells, not extra columns
        if not header_seen and not rows and cells[0].lower() == "segment":
            columns, header_seen = _header(cells, where), True
            continue
        if len(cells) > len(columns):
            raise ConfigurationError(
                f"{where}: {len(cells)} tab-separated cells, but the table has"
                f" {len(columns)} columns ({', '.join(columns)})"
            )
        row = _row(dict(zip(columns, cells, strict=False)), where)
        if row.prefix in first_seen:
            raise ConfigurationError(
                f"{where}: segment {row.prefix} appears twice (first on line"
                f" {first_seen[row.prefix]})"
            )
        first_seen[row.prefix] = lineno
        rows.append(row)
    if not rows:
        raise ConfigurationError(f"{source}: no segments")
    return rows


def _row(cells: Mapping[str, str], where: str) -> Segment:
    """Return one row's Segment; what is wrong raises ConfigurationError at ``where``."""
    seg = cells.get("segment", "")
    if not (3 <= len(seg) <= 5 and seg.isascii() and seg.isdigit() and seg[0] == "1"):
        tip = " (columns are separated by tabs)" if " " in seg else ""
        raise ConfigurationError(f"{where}: bad segment {seg!r}: want 3-5 digits from 1{tip}")
    op, host = cells.get("operator", ""), cells.get("host", "")
    kind = cells.get("kind", "").lower()
    if kind not in KINDS:
        what = f"unknown kind {kind!r}" if kind else "no kind"
        raise ConfigurationError(f"{where}: segment {seg}: {what} ({', '.join(sorted(KINDS))})")
    carrier = Carrier.parse(op) if op else None
    if op and carrier is None:
        raise ConfigurationError(f"{where}: unknown operator {op!r} (移动, 联通, 电信, 广电)")
    host_carrier = Carrier.parse(host) if host else None
    if host and host_carrier is None:
        raise ConfigurationError(f"{where}: unknown host network {host!r} (移动, 联通, 电信, 广电)")
    length = cells.get("length", "")
    try:
        n = int(length.split("/")[0]) if length else None
    except ValueError:
        raise ConfigurationError(f"{where}: bad length {length!r}: want 11 or 13") from None
    if kind == "virtual" and carrier is None:
        carrier = host_carrier  # a virtual segment answers its host network
    return Segment(
        seg,
        carrier,
        kind,
        host_carrier,
        n,
        cells.get("confidence", ""),
        cells.get("holder", ""),
        cells.get("sources", ""),
    )


def load(path: str | os.PathLike[str]) -> SegmentTable:
    """Return a table read from a file in the format of the shipped one.

    Columns are tab-separated; a header row (``segment  operator  kind ...``)
    may name them in any order, and the optional ones (``host``, ``length``,
    ``confidence``, ``holder``, ``sources``) may be left out. A malformed row
    raises ConfigurationError naming the file and the line; an unreadable
    file raises OSError.
    """
    return SegmentTable.from_path(path)


def _load_default() -> SegmentTable:
    raw = resources.files("smsroute").joinpath("data/segments.tsv").read_bytes()
    name = "smsroute/data/segments.tsv"
    return SegmentTable(_parse(_decode(raw, name), name), source="built-in")


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
