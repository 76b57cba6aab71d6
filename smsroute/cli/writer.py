"""Writing records as CSV or JSON lines, every CSV text cell guarded against spreadsheet formulas.

A record is one input row as read (its line number and cells) plus the fields
a command adds: the routing columns of ``route``, the ``reason`` of a reject.

CSV injection, as OWASP describes it: a spreadsheet evaluates a cell that
starts with ``=``, ``+``, ``-`` or ``@`` (and, after a tab or a carriage
return, whatever follows), so a hostile name in the input, or a vendor's
area string, could run a formula on the machine of whoever opens the output.
Following OWASP, :func:`spreadsheet_safe` prefixes such a cell with a single
quote, which Excel and LibreOffice read as "this cell is text" and do not
show. Our one exception: a cell that is a plain decimal number (``-1``,
``+86``, ``-0.5``, ``1e-3``) is left as it is. A spreadsheet reads it as a
number, never as a formula, so there is nothing to neutralise, and quoting it
would turn the number into text. OWASP's other advice, that a value must not
be able to open a new cell, is the csv module's quoting; we also quote every
cell of a row holding a carriage return, which the module would otherwise
write bare. JSON lines are for programs, not spreadsheets: written as is.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TextIO

from smsroute import segments
from smsroute.cli.common import EXIT_FAILED, CommandError, carrier_name
from smsroute.routing import Decision

__all__ = [
    "ROUTE_COLUMNS",
    "Layout",
    "OutputError",
    "RowWriter",
    "decision_row",
    "spreadsheet_safe",
]

ROUTE_COLUMNS: Final = (
    "number",
    "initial",
    "current",
    "ported",
    "virtual",
    "area",
    "gateway",
    "source",
)
_FLUSH_EVERY: Final = 0.5  # seconds between flushes of route output
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


class OutputError(CommandError):
    """Writing the output failed (a full disk, a vanished directory): one line, exit 1."""

    def __init__(self, name: str, exc: OSError) -> None:
        super().__init__(f"cannot write {name}: {exc.strerror or exc}", EXIT_FAILED)


def spreadsheet_safe(text: str) -> str:
    """Return ``text`` with a leading ``'`` if a spreadsheet would read it as a formula."""
    if text.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return spreadsheet_safe(str(value))


@dataclass(frozen=True)
class Layout:
    """The columns of an output: the line, the input's columns, then the added fields.

    ``input_names`` are the input's header cells as they are in the file (or
    ``column1``... without a header, ``input`` for a text list); ``json_keys``
    are unique non-empty names for the JSON ``input`` object, or None when the
    input is one string (a text list).
    """

    input_names: tuple[str, ...]
    json_keys: tuple[str, ...] | None
    fields: tuple[str, ...]

    def csv_header(self) -> list[str]:
        """Return the CSV header: an added name that is also an input column gets ``route_``."""
        taken = set(self.input_names)
        added = []
        for name in ("line", *self.fields):
            while name in taken:
                name = "route_" + name
            taken.add(name)
            added.append(name)
        return [added[0], *self.input_names, *added[1:]]


class RowWriter:
    """Writes records to a stream as CSV (after a header) or JSON lines; flushes twice a second.

    ``name`` says where in error messages: an OSError while writing becomes
    an :class:`OutputError`, except a broken pipe, which the command line
    treats as the reader having gone away.
    """

    def __init__(self, stream: TextIO, fmt: str, layout: Layout, *, name: str) -> None:
        self.rows = 0
        self._stream = stream
        self._layout = layout
        self._name = name
        self._width = len(layout.input_names)
        self._csv: Any = None
        self._csv_all: Any = None
        self._last_flush = time.monotonic()
        if fmt == "csv":
            self._csv = csv.writer(stream, lineterminator="\n")
            self._csv_all = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_ALL)
            self._guarded(self._write_csv, [_csv_cell(c) for c in layout.csv_header()])

    def write(self, line: int, cells: Sequence[str], values: Mapping[str, object]) -> None:
        """Write one record: the input row read on ``line`` and the added field values."""
        if self._csv is not None:
            width = self._width
            padded = [*cells[:width], *([""] * (width - len(cells)))]
            # Cells past the header's width (a ragged row) go after the added
            # fields, so that every column stays under its name and none is lost.
            extra = list(cells[width:])
            while extra and not extra[-1].strip():
                extra.pop()
            row = [_csv_cell(line), *map(_csv_cell, padded)]
            row += [_csv_cell(values[f]) for f in self._layout.fields]
            row += map(_csv_cell, extra)
            self._guarded(self._write_csv, row)
        else:
            record = {"line": line, "input": self._json_input(cells), **values}
            self._guarded(self._stream.write, json.dumps(record, ensure_ascii=False) + "\n")
        self.rows += 1
        now = time.monotonic()
        if now - self._last_flush >= _FLUSH_EVERY:
            self.flush()
            self._last_flush = now

    def _write_csv(self, row: list[str]) -> None:
        # The csv module quotes a cell with a newline but not one with a bare
        # carriage return (lineterminator is "\n"): quote that row whole.
        writer = self._csv_all if any("\r" in c for c in row) else self._csv
        writer.writerow(row)

    def _json_input(self, cells: Sequence[str]) -> object:
        keys = self._layout.json_keys
        if keys is None:
            return cells[0] if cells else ""
        data = dict(zip(keys, cells, strict=False))  # a short row: the rest are empty
        for key in keys[len(cells) :]:
            data[key] = ""
        for i, cell in enumerate(cells[len(keys) :], len(keys) + 1):
            if cell.strip():
                data[f"column{i}"] = cell
        return data

    def flush(self) -> None:
        """Flush what was written."""
        self._guarded(self._stream.flush)

    def _guarded(self, call: Any, *args: Any) -> None:
        try:
            call(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(self._name, exc) from None


def decision_row(decision: Decision) -> dict[str, Any]:
    """Return the routing fields of one decision, keyed by ROUTE_COLUMNS."""
    info = decision.info
    ported: bool | None
    virtual: bool | None
    if info is not None:
        initial, ported, virtual, area = info.initial, info.ported, info.virtual, info.area
    else:  # a segment-table fallback: the original operator, no port, no area
        seg = segments.lookup(decision.mobile)
        initial = seg.carrier if seg is not None else None
        ported, virtual, area = None, (seg.virtual if seg is not None else None), ""
    return {
        "number": decision.mobile,
        "initial": carrier_name(initial),
        "current": carrier_name(decision.carrier),
        "ported": ported,
        "virtual": virtual,
        "area": area,
        "gateway": decision.gateway,
        "source": decision.source,
    }
