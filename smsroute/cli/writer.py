"""Writing the output of ``route``: one row per decision, as CSV or JSON lines.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import csv
import json
import time
from typing import Any, Final, TextIO

from smsroute import segments
from smsroute.cli.common import carrier_name
from smsroute.routing import Decision

__all__ = ["ROUTE_COLUMNS", "RowWriter", "decision_row"]

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


class RowWriter:
    """Writes route rows as CSV or JSON lines, flushing at most every half second."""

    def __init__(self, stream: TextIO, fmt: str) -> None:
        self._stream = stream
        self._csv = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
        self._last_flush = time.monotonic()
        if self._csv is not None:
            self._csv.writerow(ROUTE_COLUMNS)

    def write(self, row: dict[str, Any]) -> None:
        """Write one row."""
        if self._csv is not None:
            self._csv.writerow(_csv_cell(row[c]) for c in ROUTE_COLUMNS)
        else:
            self._stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        now = time.monotonic()
        if now - self._last_flush >= _FLUSH_EVERY:
            self._stream.flush()
            self._last_flush = now

    def flush(self) -> None:
        """Flush what was written."""
        self._stream.flush()


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def decision_row(decision: Decision) -> dict[str, Any]:
    """Return the output row of one decision, keyed by ROUTE_COLUMNS."""
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
