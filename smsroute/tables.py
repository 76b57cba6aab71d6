"""Aligned text tables for terminals, where a CJK character takes two columns.

A leaf module (standard library only), so that the command line and the demo
both import it without importing each other.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

__all__ = ["format_table", "text_width"]


def text_width(text: str) -> int:
    """Return the columns ``text`` takes on a terminal: wide (CJK) characters count twice."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Return rows as aligned columns under a header; wide (CJK) characters count twice."""
    cells = [[str(h) for h in headers]] + [
        ["" if c is None else str(c) for c in row] for row in rows
    ]
    widths = [max(text_width(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c + " " * (w - text_width(c)) for c, w in zip(row, widths, strict=True)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)
