"""Tests for what `smsroute route` reads: encodings, delimiters, header, number column."""

from __future__ import annotations

import csv
import io

import pytest
import test_cli
from test_cli import PLAIN, rows_of

from smsroute import cli
from smsroute.cli.summary import Examples
from smsroute.testing import DOC_NUMBER

server = test_cli.server  # the fixture, shared with test_cli.py

CHINESE_CSV = f"姓名,手机号\n张三,{PLAIN}\n李四,{DOC_NUMBER}\n"


def write(path, text, encoding="utf-8"):
    """Write ``text`` to ``path`` in ``encoding`` and return the path."""
    path.write_bytes(text.encode(encoding))
    return path


def route(*argv):
    """Run `smsroute route ... --no-cache` in-process; return the exit status."""
    return cli.main(["route", *map(str, argv), "--no-cache"])


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16"])
def test_excel_encodings_are_detected(server, tmp_path, capsys, encoding):
    """UTF-8, UTF-8 with a BOM, GBK/GB18030 and UTF-16 (Excel's 'Unicode text') all read."""
    source = write(tmp_path / "c.csv", CHINESE_CSV, encoding)
    assert route(source) == 0
    captured = capsys.readouterr()
    rows = rows_of(captured.out)
    assert [(r["姓名"], r["手机号"], r["number"]) for r in rows] == [
        ("张三", PLAIN, PLAIN),
        ("李四", DOC_NUMBER, DOC_NUMBER),
    ]
    assert "(2 rows: 0 duplicates, 0 invalid, 0 empty)" in captured.err


def test_gbk_file_says_how_it_was_read(server, tmp_path, capsys):
    """The summary names the encoding, the delimiter and the column it used."""
    source = write(tmp_path / "c.csv", CHINESE_CSV, "gbk")
    assert route(source) == 0
    err = capsys.readouterr().err
    assert "input: GB18030, comma-separated, header row, numbers in column 2 '手机号'" in err


def test_encoding_flag_is_used_and_checked(server, tmp_path, capsys):
    """--encoding names the codec; a wrong or unknown one is one line and exit 2."""
    source = write(tmp_path / "c.csv", CHINESE_CSV, "gbk")
    assert route(source, "--encoding", "gbk") == 0
    assert [r["姓名"] for r in rows_of(capsys.readouterr().out)] == ["张三", "李四"]
    assert route(source, "--encoding", "utf-8") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "not UTF-8 text" in err
    assert "(line 1: byte 0xd0)" in err
    assert route(source, "--encoding", "klingon") == 2
    assert "unknown encoding 'klingon'" in capsys.readouterr().err
    assert server.paid == 2


def test_undecodable_file_exits_2_and_suggests_encoding(server, tmp_path, capsys):
    """Bytes that are neither UTF-8 nor GB18030 are one line, exit 2, before any query."""
    source = tmp_path / "bad.csv"
    source.write_bytes(f"mobile\n{PLAIN}\n".encode() + b"\xff\xfe\xff\n")
    assert route(source) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "neither UTF-8 nor GB18030" in err
    assert "--encoding" in err
    assert server.paid == 0


@pytest.mark.parametrize(
    ("name", "delimiter", "said"),
    [
        ("c.tsv", "\t", "tab-separated"),
        ("c.csv", "\t", "tab-separated"),
        ("c.txt", "\t", "tab-separated"),
        ("c.csv", ";", "';'-separated"),
        ("c.csv", "|", "'|'-separated"),
        ("c", ",", "comma-separated"),
    ],
)
def test_delimiters_are_sniffed(server, tmp_path, capsys, name, delimiter, said):
    """Tabs, semicolons and pipes are found without a flag, whatever the file's name."""
    text = CHINESE_CSV.replace(",", delimiter)
    source = write(tmp_path / name, text)
    assert route(source) == 0
    captured = capsys.readouterr()
    assert [r["number"] for r in rows_of(captured.out)] == [PLAIN, DOC_NUMBER]
    assert said in captured.err


def test_delimiter_flag(server, tmp_path, capsys):
    """--delimiter tab (or a single character) overrides sniffing; two characters exit 2."""
    source = write(tmp_path / "c.txt", f"a;b\tmobile\nx;y\t{PLAIN}\n")
    assert route(source, "--delimiter", "tab") == 0
    assert [r["number"] for r in rows_of(capsys.readouterr().out)] == [PLAIN]
    assert route(source, "--delimiter", "\\t") == 0
    capsys.readouterr()
    assert route(source, "--delimiter", ";;") == 2
    assert "--delimiter: one character" in capsys.readouterr().err


def test_output_keeps_the_input_delimiter_out_of_its_own_csv(server, tmp_path, capsys):
    """A TSV input still gives a comma-separated CSV out, with the input's cells intact."""
    source = write(tmp_path / "c.tsv", f"name\tmobile\nA, the first\t{PLAIN}\n")
    assert route(source) == 0
    rows = rows_of(capsys.readouterr().out)
    assert rows[0]["name"] == "A, the first"


def test_header_cell_with_a_digit_is_still_a_header(server, tmp_path, capsys):
    """'phone2' is a header: its column is found by name and the row is not counted invalid."""
    source = write(tmp_path / "p.csv", f"name,phone2\nA,{PLAIN}\nB,{DOC_NUMBER}\n")
    assert route(source) == 0
    captured = capsys.readouterr()
    assert [r["number"] for r in rows_of(captured.out)] == [PLAIN, DOC_NUMBER]
    assert "(2 rows: 0 duplicates, 0 invalid, 0 empty)" in captured.err
    assert route(source, "--column", "phone2") == 0
    assert [r["name"] for r in rows_of(capsys.readouterr().out)] == ["A", "B"]


def test_headerless_csv_first_row_is_data(server, tmp_path, capsys):
    """A first row holding a valid number is data, named column1, column2... in the output."""
    source = write(tmp_path / "h.csv", f"A,{PLAIN}\nB,{DOC_NUMBER}\n")
    assert route(source, "--column", "2") == 0
    rows = rows_of(capsys.readouterr().out)
    assert [(r["line"], r["column1"], r["number"]) for r in rows] == [
        ("1", "A", PLAIN),
        ("2", "B", DOC_NUMBER),
    ]


def test_first_row_with_a_bad_number_and_no_letters_is_data(server, tmp_path, capsys):
    """A junk first row without letters is an invalid data row (line 1), not a header."""
    source = write(tmp_path / "j.csv", f"12345,7\n{PLAIN},8\n")
    assert route(source, "--column", "1") == 0
    err = capsys.readouterr().err
    assert "line 1: '12345': too short" in err


def test_header_flags_override_detection(server, tmp_path, capsys):
    """--no-header reads the first row as data, --header as names."""
    source = write(tmp_path / "f.csv", f"mobile,n\n{PLAIN},1\n")
    assert route(source, "--no-header", "--column", "1") == 0
    assert "line 1: 'mobile': not a digit" in capsys.readouterr().err
    source = write(tmp_path / "g.csv", f"{PLAIN},n\n{DOC_NUMBER},1\n")
    assert route(source, "--header", "--column", "1") == 0
    rows = rows_of(capsys.readouterr().out)
    assert list(rows[0])[:3] == ["line", PLAIN, "n"]
    assert [r["number"] for r in rows] == [DOC_NUMBER]
    assert route(source, "--no-header", "--column", "mobile") == 2
    assert "--column 'mobile' names a header column" in capsys.readouterr().err


@pytest.mark.parametrize("column", ["3", "9"])
def test_column_index_past_the_last_is_a_usage_error(server, tmp_path, capsys, column):
    """An index past the last column exits 2 before any query, not 'routed 0 numbers'."""
    source = write(tmp_path / "two.csv", f"name,mobile\nA,{PLAIN}\n")
    assert route(source, "--column", column) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"--column {column}: {source} has 2 columns (name, mobile)" in err
    assert server.paid == 0


def test_column_name_not_found_lists_the_columns(server, tmp_path, capsys):
    """A --column name that is no header cell exits 2 and lists the columns there are."""
    source = write(tmp_path / "two.csv", f"name,phone2\nA,{PLAIN}\n")
    assert route(source, "--column", "tel") == 2
    err = capsys.readouterr().err
    assert "no column 'tel' (columns: name, phone2)" in err
    assert route(source, "--column", "0") == 2
    assert "--column: indexes count from 1" in capsys.readouterr().err
    assert server.paid == 0


def test_column_on_a_text_list_is_a_csv(server, tmp_path, capsys):
    """--column on a file without a delimiter reads it as a one-column CSV."""
    source = write(tmp_path / "one.txt", f"mobile\n{PLAIN}\n")
    assert route(source, "--column", "mobile") == 0
    assert [r["number"] for r in rows_of(capsys.readouterr().out)] == [PLAIN]


def test_empty_cells_are_counted_and_rejected(server, tmp_path, capsys):
    """Empty number cells are counted in the summary and listed as rejects; blank rows skipped."""
    source = write(tmp_path / "e.csv", f"name,mobile\nA,{PLAIN}\nB,\nC,  \n,,\n\nD,{DOC_NUMBER}\n")
    rejects = tmp_path / "rejects.csv"
    assert route(source, "--rejects", rejects) == 0
    err = capsys.readouterr().err
    assert "(4 rows: 0 duplicates, 0 invalid, 2 empty)" in err
    assert "empty cells: 2" in err
    got = list(csv.DictReader(io.StringIO(rejects.read_text(encoding="utf-8"))))
    assert [(r["line"], r["name"], r["reason"]) for r in got] == [
        ("3", "B", "empty: no number in column 2 'mobile'"),
        ("4", "C", "empty: no number in column 2 'mobile'"),
    ]


def test_a_leading_quote_from_our_own_output_is_read_back(server, tmp_path, capsys):
    """A number cell our CSV writer prefixed with ' (a formula guard) reads back as the number."""
    source = write(tmp_path / "q.csv", "mobile\n'+86 138 0013 8000\n")
    assert route(source) == 0
    assert [r["number"] for r in rows_of(capsys.readouterr().out)] == [PLAIN]


def test_summary_keeps_only_what_it_shows():
    """The summary keeps 20 examples per kind, truncated, however many and long the rows."""
    examples = Examples()
    for line in range(1, 10_001):
        examples.add(line, "x" * 1_000_000, "y" * 1_000)
    assert examples.count == 10_000
    assert len(examples.shown) == 20
    assert all(len(text) <= 41 and len(reason) <= 121 for _, text, reason in examples.shown)


def test_huge_junk_lines_show_truncated(server, tmp_path, capsys):
    """Lines of megabytes of junk are invalid rows shown in a few characters each."""
    source = tmp_path / "junk.txt"
    with source.open("w", encoding="utf-8") as f:
        for _ in range(30):
            f.write("z" * 300_000 + "\n")
        f.write(PLAIN + "\n")
    assert route(source) == 0
    captured = capsys.readouterr()
    assert [r["number"] for r in rows_of(captured.out)] == [PLAIN]
    assert "invalid rows: 30" in captured.err
    assert "... and 10 more" in captured.err
    assert max(len(line) for line in captured.err.splitlines()) < 200
