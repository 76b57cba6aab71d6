"""Telling how an input is written: encoding, delimiter, header, and where the numbers are.

Pure functions over bytes and text samples, so each rule is tested on its own.

Encodings: a byte-order mark decides (UTF-8, or UTF-16 as Excel's "Unicode
text" saves); else the whole file is checked as UTF-8; else GB18030, the
superset of the GBK (code page 936) that Excel writes on Chinese Windows.

Delimiters: the first of tab, comma, semicolon and pipe that cuts the first
rows of the sample into the same number (two or more) of cells.

Header: the first row is a header when none of its cells is a valid mobile
number and the cell of the number column (any cell, when the column is not
known yet) holds a letter: ``phone2`` and ``手机号`` are names, ``12345`` is
a bad number.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections import Counter
from collections.abc import Sequence
from typing import BinaryIO, Final

from smsroute.errors import InvalidNumber
from smsroute.numbers import normalize

__all__ = [
    "DELIMITERS",
    "NUMBER_COLUMNS",
    "UnknownEncoding",
    "delimiter_label",
    "detect_encoding",
    "encoding_label",
    "is_number",
    "locate_decode_error",
    "looks_like_header",
    "number_columns",
    "sniff_delimiter",
]

DELIMITERS: Final = ("\t", ",", ";", "|")
# Header names of a number column, compared without case, digits, spaces and
# punctuation: "Phone 2", "mobile_no" and "手机号码1" all match.
NUMBER_COLUMNS: Final = frozenset(
    {
        "mobile",
        "mobileno",
        "mobilenumber",
        "mobilephone",
        "phone",
        "phoneno",
        "phonenumber",
        "cellphone",
        "cell",
        "number",
        "msisdn",
        "tel",
        "telephone",
        "手机",
        "手机号",
        "手机号码",
        "号码",
        "电话",
        "电话号码",
        "联系电话",
        "联系方式",
    }
)
_BOMS: Final = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CHUNK: Final = 1 << 20
_SAMPLE_ROWS: Final = 50
_NAME_NOISE: Final = re.compile(r"[\W\d_]+")
_LABELS: Final = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 with BOM",
    "utf-16": "UTF-16",
    "gb18030": "GB18030",
    "gbk": "GBK",
    "gb2312": "GB2312",
}


class UnknownEncoding(ValueError):
    """The bytes are neither UTF-8 nor GB18030 (and have no byte-order mark)."""

    def __init__(self, offset: int, byte: int) -> None:
        super().__init__(f"neither UTF-8 nor GB18030 text (byte 0x{byte:02x} at offset {offset})")


def detect_encoding(raw: BinaryIO) -> str:
    """Return the codec that reads a seekable byte stream; the stream is left at its start."""
    head = raw.read(4)
    raw.seek(0)
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    try:
        utf8_failure = _first_error(raw, "utf-8")
        if utf8_failure is None:
            return "utf-8"
        if _first_error(raw, "gb18030") is None:
            return "gb18030"
        raise UnknownEncoding(*utf8_failure)
    finally:
        raw.seek(0)


def _first_error(raw: BinaryIO, name: str) -> tuple[int, int] | None:
    """Return (offset, byte) of the first byte ``name`` cannot decode, or None."""
    raw.seek(0)
    decoder = codecs.getincrementaldecoder(name)()
    offset = 0  # of the start of the chunk in the file
    while True:
        chunk = raw.read(_CHUNK)
        pending = decoder.getstate()[0]  # bytes of a character cut by the last chunk
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            return offset - len(pending) + exc.start, exc.object[exc.start]
        if not chunk:
            return None
        offset += len(chunk)


def locate_decode_error(raw: BinaryIO, name: str) -> tuple[int, int] | None:
    """Return (line, byte) of the first byte ``name`` cannot decode, or None if all decode.

    A text stream decodes ahead of the line it hands out, so the line of a
    decoding error is found again here, from the bytes.
    """
    failure = _first_error(raw, name)
    if failure is None:
        return None
    offset, byte = failure
    raw.seek(0)
    newlines = 0
    while offset > 0:
        chunk = raw.read(min(_CHUNK, offset))
        if not chunk:
            break
        newlines += chunk.count(b"\n")
        offset -= len(chunk)
    raw.seek(0)
    return newlines + 1, byte


def encoding_label(name: str) -> str:
    """Return how the summary names a codec: ``GB18030``, ``UTF-8 with BOM``..."""
    normal = codecs.lookup(name).name
    return _LABELS.get(name, _LABELS.get(normal, normal.upper()))


def delimiter_label(delimiter: str) -> str:
    """Return ``comma-separated``, ``tab-separated`` or ``';'-separated``."""
    names = {",": "comma", "\t": "tab"}
    return f"{names.get(delimiter, repr(delimiter))}-separated"


def sniff_delimiter(sample: str) -> str | None:
    """Return the delimiter that cuts the sample's first rows evenly, or None for a plain list."""
    lines = [
        line for line in sample.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ][:_SAMPLE_ROWS]
    if not lines:
        return None
    text = "\n".join(lines)
    for delimiter in DELIMITERS:
        try:
            rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if r]
        except csv.Error:
            continue
        if not rows:
            continue
        width, count = Counter(len(r) for r in rows).most_common(1)[0]
        # Nine rows in ten the same width: a trailing delimiter or a ragged
        # row here and there does not hide a CSV.
        if width >= 2 and count * 10 >= len(rows) * 9:
            return delimiter
    return None


def is_number(text: str) -> bool:
    """Return True when ``text`` is a valid mainland-China mobile number."""
    try:
        normalize(text.strip().removeprefix("'"))
    except InvalidNumber:
        return False
    return True


def looks_like_header(first: Sequence[str], index: int | None) -> bool:
    """Return True when the first row reads as column names (see the module docstring)."""
    if any(is_number(cell) for cell in first):
        return False
    probe = [first[index]] if index is not None and index < len(first) else list(first)
    return any(ch.isalpha() for cell in probe for ch in cell)


def number_columns(names: Sequence[str]) -> list[int]:
    """Return the indexes of header names that mean "mobile number"."""
    return [
        i for i, name in enumerate(names) if _NAME_NOISE.sub("", name.lower()) in NUMBER_COLUMNS
    ]
