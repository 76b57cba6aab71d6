"""Reading the input of ``route`` (a text list or a CSV, a file or stdin) row by row, with lines.

:func:`open_source` decides once how the input is written (see
:mod:`smsroute.cli.sniff`) and which column holds the numbers; the
:class:`Source` can then be read any number of times: ``route`` reads it
twice, to count and check every row before paying for a lookup, then to
route the rows with their cells, so that no row is held in memory. Stdin and
other streams that cannot be read twice (a FIFO, ``<(...)``) are copied to
a temporary file first.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import csv
import io
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Final

from smsroute.cli.common import EXIT_USAGE, CommandError
from smsroute.cli.sniff import (
    UnknownEncoding,
    delimiter_label,
    detect_encoding,
    encoding_label,
    locate_decode_error,
    looks_like_header,
    number_columns,
    sniff_delimiter,
)

__all__ = ["InputRow", "Source", "open_source"]

_SAMPLE_CHARS: Final = 1 << 16
# A text-list line longer than this cannot be a number: the rest of it is
# skipped unread into memory, so a file of huge junk lines costs no memory.
_MAX_LINE: Final = 1 << 16
_CSV_EXTENSIONS: Final = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


@dataclass(frozen=True, slots=True)
class InputRow:
    """One input row: its first line number, its cells as read, and its number cell stripped."""

    line: int
    cells: list[str]
    value: str


class Source:
    """An input of ``route``, read as a text list (``delimiter`` None) or as a CSV."""

    def __init__(
        self,
        name: str,
        raw: BinaryIO | None,
        path: str | None,
        *,
        encoding: str,
        delimiter: str | None,
    ) -> None:
        self.name = name
        """The input as the user named it (``stdin`` for ``-``)."""
        self.path = path
        """The file's path, or None for stdin (and for streams copied to a temporary file)."""
        self.encoding = encoding
        self.delimiter = delimiter
        self.header: list[str] | None = None
        """The header row's cells, or None when the first row is data (or a text list)."""
        self.index = 0
        """The number column, counting from 0."""
        self.width = 1
        """The number of cells of the first row: the input columns of the output."""
        self._raw = raw

    # -- what the output needs ----------------------------------------------------

    @property
    def column_names(self) -> tuple[str, ...]:
        """Return the input's column names for a CSV header, as they are in the file."""
        if self.delimiter is None:
            return ("input",)
        if self.header is not None:
            return tuple(self.header)
        return tuple(f"column{i}" for i in range(1, self.width + 1))

    @property
    def json_keys(self) -> tuple[str, ...] | None:
        """Return unique non-empty keys for the JSON ``input`` object; None for a text list."""
        if self.delimiter is None:
            return None
        keys: list[str] = []
        for i, name in enumerate(self.column_names, 1):
            key = name.strip() or f"column{i}"
            while key in keys:
                key = f"{key}_{i}"
            keys.append(key)
        return tuple(keys)

    def column_label(self) -> str:
        """Return the number column as the summary names it: ``column 2 'mobile'``."""
        if self.header is not None:
            return f"column {self.index + 1} {self.header[self.index].strip()!r}"
        return f"column {self.index + 1}"

    def describe(self) -> str:
        """Return how the input was read, for the summary."""
        parts = [encoding_label(self.encoding)]
        if self.delimiter is None:
            parts.append("one number a line")
        else:
            parts.append(delimiter_label(self.delimiter))
            parts.append("header row" if self.header is not None else "no header row")
            parts.append(f"numbers in {self.column_label()}")
        return ", ".join(parts)

    # -- reading ------------------------------------------------------------------

    @contextlib.contextmanager
    def _text(self, errors: str = "strict") -> Iterator[IO[str]]:
        if self._raw is None:
            assert self.path is not None
            with open(self.path, encoding=self.encoding, errors=errors, newline="") as stream:
                yield stream
            return
        self._raw.seek(0)
        stream = io.TextIOWrapper(self._raw, encoding=self.encoding, errors=errors, newline="")
        try:
            yield stream
        finally:
            stream.detach()  # the temporary file stays open for the next reading

    def sample(self) -> str:
        """Return the start of the input as text (undecodable bytes replaced)."""
        with self._text(errors="replace") as stream:
            text = stream.read(_SAMPLE_CHARS)
        if len(text) == _SAMPLE_CHARS:  # cut: drop the last, partial line
            text = text[: max(text.rfind("\n"), 0)]
        return text

    def first_row(self) -> list[str] | None:
        """Return the first non-blank CSV row, or None for an empty input."""
        for _line, cells in self._csv_rows():
            return cells
        return None

    def rows(self) -> Iterator[InputRow]:
        """Yield every row with its number cell; blank rows and a list's ``#`` lines are skipped."""
        if self.delimiter is None:
            yield from self._list_rows()
            return
        index = self.index
        rows = self._csv_rows()
        if self.header is not None:
            next(rows, None)
        for line, cells in rows:
            value = cells[index].strip() if index < len(cells) else ""
            # A leading quote is how a spreadsheet (and our own formula guard)
            # marks a cell as text: the number is what follows it.
            yield InputRow(line, cells, value.removeprefix("'").strip())

    def _list_rows(self) -> Iterator[InputRow]:
        line = 0
        try:
            with self._text() as stream:
                for line, text in enumerate(_bounded_lines(stream), 1):
                    stripped = text.strip()
                    if stripped and not stripped.startswith("#"):
                        yield InputRow(line, [stripped], stripped)
        except UnicodeDecodeError:
            raise self._decode_error() from None

    def _csv_rows(self) -> Iterator[tuple[int, list[str]]]:
        assert self.delimiter is not None
        line = 1
        try:
            with self._text() as stream:
                reader = csv.reader(stream, delimiter=self.delimiter)
                while True:
                    line = reader.line_num + 1  # where the next row starts
                    cells = next(reader, None)
                    if cells is None:
                        return
                    if any(c.strip() for c in cells):
                        yield line, cells
        except UnicodeDecodeError:
            raise self._decode_error() from None
        except csv.Error as exc:
            # A malformed CSV (a cell over the csv module's field limit, ...) is
            # bad input: one line and exit 2, not a traceback.
            raise CommandError(
                f"cannot read {self.name}: not a readable CSV (line {line}): {exc}", EXIT_USAGE
            ) from None

    def _decode_error(self) -> CommandError:
        where = ""
        with self._binary() as raw:
            found = locate_decode_error(raw, self.encoding)
        if found is not None:
            where = f" (line {found[0]}: byte 0x{found[1]:02x})"
        return CommandError(
            f"cannot read {self.name}: not {encoding_label(self.encoding)} text{where}; "
            "pass the right --encoding (e.g. gbk), or leave it out to detect it",
            EXIT_USAGE,
        )

    @contextlib.contextmanager
    def _binary(self) -> Iterator[BinaryIO]:
        if self._raw is not None:
            self._raw.seek(0)
            yield self._raw
            return
        assert self.path is not None
        with open(self.path, "rb") as raw:
            yield raw

    def close(self) -> None:
        """Remove the temporary copy of a stream, if one was made."""
        if self._raw is not None:
            self._raw.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _bounded_lines(stream: IO[str]) -> Iterator[str]:
    """Yield the lines of a text stream, each cut at _MAX_LINE characters."""
    while True:
        line = stream.readline(_MAX_LINE)
        if not line:
            return
        if len(line) == _MAX_LINE and not line.endswith(("\n", "\r")):
            while True:  # skip the rest of an overlong line
                more = stream.readline(_MAX_LINE)
                if not more or more.endswith(("\n", "\r")):
                    break
        yield line


def _spool(stream: IO[bytes]) -> BinaryIO:
    copy = tempfile.TemporaryFile()  # noqa: SIM115  (closed by Source.close)
    shutil.copyfileobj(stream, copy)
    copy.seek(0)
    return copy


def _spool_stdin() -> BinaryIO:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return _spool(buffer)
    # A text stdin without bytes under it (an embedding's StringIO): UTF-8 it.
    copy = tempfile.TemporaryFile()  # noqa: SIM115
    for chunk in iter(lambda: sys.stdin.read(_SAMPLE_CHARS), ""):
        copy.write(chunk.encode("utf-8"))
    copy.seek(0)
    return copy


def _resolve_encoding(name: str, raw_head: bytes) -> str:
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise CommandError(f"--encoding: unknown encoding {name!r}", EXIT_USAGE) from None
    if codec == "utf-8" and raw_head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"  # the BOM is not part of the first cell
    return codec


def _open_raw(path: str) -> tuple[BinaryIO | None, str | None]:
    """Return (a temporary copy, None) for stdin or a stream, or (None, path) for a file."""
    if path == "-":
        return _spool_stdin(), None
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "it is a directory")
        if stat.S_ISREG(st.st_mode):
            with open(path, "rb"):  # readable?
                pass
            return None, path
        with open(path, "rb") as stream:
            return _spool(stream), None
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE) from None


def open_source(args: argparse.Namespace) -> Source:
    """Open the input of a route run and decide how to read it; usage errors exit 2."""
    path: str = args.file
    name = "stdin" if path == "-" else path
    raw, file_path = _open_raw(path)
    try:
        head = _head(raw, file_path)
        if args.encoding:
            encoding = _resolve_encoding(args.encoding, head)
        else:
            try:
                encoding = _detect(raw, file_path)
            except UnknownEncoding as exc:
                raise CommandError(
                    f"cannot read {name}: {exc}; pass --encoding", EXIT_USAGE
                ) from None
        source = Source(name, raw, file_path, encoding=encoding, delimiter=None)
        source.delimiter = _choose_delimiter(args, source, Path(path).suffix.lower())
        if source.delimiter is not None:
            _choose_column(args, source)
    except BaseException:
        if raw is not None:
            raw.close()
        raise
    return source


def _head(raw: BinaryIO | None, path: str | None) -> bytes:
    if raw is not None:
        head = raw.read(4)
        raw.seek(0)
        return head
    assert path is not None
    with open(path, "rb") as f:
        return f.read(4)


def _detect(raw: BinaryIO | None, path: str | None) -> str:
    if raw is not None:
        return detect_encoding(raw)
    assert path is not None
    with open(path, "rb") as f:
        return detect_encoding(f)


def _choose_delimiter(args: argparse.Namespace, source: Source, suffix: str) -> str | None:
    if args.delimiter is not None:
        return str(args.delimiter)
    sniffed = sniff_delimiter(source.sample())
    if sniffed is not None:
        return sniffed
    if suffix in _CSV_EXTENSIONS:
        return _CSV_EXTENSIONS[suffix]
    if args.column is not None:
        return ","  # --column says it is a CSV: one of one column
    return None


def _choose_column(args: argparse.Namespace, source: Source) -> None:
    """Set the source's header, number column and width from the first row and the flags."""
    first = source.first_row()
    if first is None:
        return  # an empty input: nothing to route
    cells = [c.strip() for c in first]
    source.width = len(cells)
    column: str | None = args.column
    header: bool | None = args.header
    if column is not None and column.isdigit():
        index = int(column) - 1
        if index < 0:
            raise CommandError("--column: indexes count from 1", EXIT_USAGE)
        is_header = header if header is not None else looks_like_header(cells, index)
        if index >= len(cells):
            have = ", ".join(cells) if is_header else "no header row"
            raise CommandError(
                f"--column {column}: {source.name} has {len(cells)} "
                f"column{'s' if len(cells) != 1 else ''} ({have})",
                EXIT_USAGE,
            )
    elif column is not None:
        if header is False:
            raise CommandError(
                f"--column {column!r} names a header column, but --no-header says "
                "the first row is data; give its index instead",
                EXIT_USAGE,
            )
        found = [i for i, c in enumerate(cells) if c == column.strip()]
        found = found or [i for i, c in enumerate(cells) if c.lower() == column.strip().lower()]
        if not found:
            have = ", ".join(cells) if looks_like_header(cells, None) else "no header row"
            raise CommandError(f"{source.name}: no column {column!r} (columns: {have})", EXIT_USAGE)
        index, is_header = found[0], True
    else:
        is_header = header if header is not None else looks_like_header(cells, None)
        matches = number_columns(cells) if is_header else []
        if len(cells) == 1:
            index = 0
        elif len(matches) == 1:
            index = matches[0]
        else:
            have = ", ".join(cells) if is_header else f"{len(cells)} columns, no header row"
            raise CommandError(
                f"{source.name}: which column holds the numbers? pass --column NAME_OR_INDEX "
                f"(columns: {have})",
                EXIT_USAGE,
            )
    source.index = index
    source.header = list(first) if is_header else None
