"""Reading the input of ``route``: a text list, a CSV column, or stdin, with line numbers.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator
from typing import IO, Final

from smsroute.cli.common import EXIT_USAGE, CommandError

__all__ = ["NUMBER_COLUMNS", "read_numbers"]

# Header names a CSV without --column may use for its number column.
NUMBER_COLUMNS: Final = frozenset(
    {"mobile", "phone", "number", "msisdn", "tel", "手机", "手机号", "手机号码", "号码", "电话"}
)


def read_numbers(args: argparse.Namespace) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for every non-blank input row."""
    path: str = args.file
    as_csv = args.column is not None or path.lower().endswith(".csv")
    try:
        stream: IO[str] = (
            sys.stdin if path == "-" else open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
        )
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from None
    try:
        if not as_csv:
            for lineno, line in enumerate(stream, 1):
                text = line.strip()
                if text and not text.startswith("#"):
                    yield lineno, text
        else:
            yield from _read_csv(stream, args.column, path)
    except UnicodeDecodeError:
        raise CommandError(f"cannot read {path}: not UTF-8 text", EXIT_USAGE) from None
    except csv.Error as exc:
        # A malformed CSV (a cell over the csv module's field limit, ...) is bad
        # input: one line and exit 2, not a traceback.
        raise CommandError(f"cannot read {path}: not a readable CSV: {exc}", EXIT_USAGE) from None
    finally:
        if stream is not sys.stdin:
            stream.close()


def _has_digit(text: str) -> bool:
    return any(ch.isdigit() for ch in text)


def _read_csv(stream: IO[str], column: str | None, path: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, cell)`` of one CSV column (see ``--column``)."""
    reader = csv.reader(stream)
    first = next(reader, None)
    if first is None:
        return
    cells = [c.strip() for c in first]
    # A first row with no digit anywhere is a header, not bad data.
    header = cells if not any(_has_digit(c) for c in cells) else None
    if column is not None and column.isdigit():
        index = int(column) - 1
        if index < 0:
            raise CommandError("--column: indexes count from 1", EXIT_USAGE)
    elif column is not None:
        if header is None or column not in header:
            have = ", ".join(header) if header else "no header row"
            raise CommandError(f"{path}: no column {column!r} (columns: {have})", EXIT_USAGE)
        index = header.index(column)
    elif len(cells) == 1:
        index = 0
    else:
        found = [i for i, name in enumerate(header or ()) if name.lower() in NUMBER_COLUMNS]
        if len(found) != 1:
            have = ", ".join(header) if header else f"{len(cells)} columns, no header row"
            raise CommandError(
                f"{path}: which column holds the numbers? pass --column NAME_OR_INDEX "
                f"(columns: {have})",
                EXIT_USAGE,
            )
        index = found[0]
    if header is None and index < len(cells) and cells[index]:
        yield reader.line_num, cells[index]
    for row in reader:
        if index < len(row) and row[index].strip():
            yield reader.line_num, row[index].strip()
