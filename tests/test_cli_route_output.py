"""Tests for what `smsroute route` writes: joinable rows, rejects, safe files and signals."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import test_cli
from test_cli import PLAIN, VIRTUAL, rows_of

from smsroute import cli
from smsroute.aio.router import AsyncRouter
from smsroute.cli.common import CommandError
from smsroute.cli.progress import progress_enabled
from smsroute.cli.reader import Source
from smsroute.cli.writer import ROUTE_COLUMNS, spreadsheet_safe
from smsroute.routing import Router
from smsroute.testing import DOC_NUMBER

server = test_cli.server  # the fixture, shared with test_cli.py

SATELLITE = "17406123456"  # 17406: an emergency satellite segment, of no operator


def route(*argv):
    """Run `smsroute route ... --no-cache` in-process; return the exit status."""
    return cli.main(["route", *map(str, argv), "--no-cache"])


def read_csv(path):
    """Return the rows of a CSV file we wrote, as dicts."""
    return list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))


@pytest.fixture
def customers(tmp_path):
    """Write a customer CSV with a duplicate, an invalid number and an empty cell."""
    path = tmp_path / "customers.csv"
    path.write_text(
        "name,mobile,city\n"
        f"A,{PLAIN},北京\n"
        f"B,{DOC_NUMBER},宜昌\n"
        "C,not-a-number,x\n"
        f"D,{PLAIN},y\n"
        "E,,z\n",
        encoding="utf-8",
    )
    return path


def test_output_keeps_every_input_column_and_the_line(server, customers, capsys):
    """Each row has the line, the input's columns as they were, then the routing columns."""
    assert route(customers, "--column", "mobile") == 0
    out = capsys.readouterr().out
    header = next(csv.reader(io.StringIO(out)))
    assert header == ["line", "name", "mobile", "city", *ROUTE_COLUMNS]
    rows = rows_of(out)
    assert [(r["line"], r["name"], r["city"], r["number"]) for r in rows] == [
        ("2", "A", "北京", PLAIN),
        ("3", "B", "宜昌", DOC_NUMBER),
    ]
    assert rows[1]["current"] == "电信"


def test_text_list_output_has_line_and_input(server, tmp_path, capsys):
    """A text list's row keeps the line number and the number as it was typed."""
    source = tmp_path / "n.txt"
    source.write_text(f"# list\n139 7256 5391\n{PLAIN}\n", encoding="utf-8")
    assert route(source) == 0
    rows = rows_of(capsys.readouterr().out)
    assert [(r["line"], r["input"], r["number"]) for r in rows] == [
        ("2", "139 7256 5391", DOC_NUMBER),
        ("3", PLAIN, PLAIN),
    ]


def test_input_column_named_like_a_routing_column_is_kept(server, tmp_path, capsys):
    """An input column called 'number' keeps its name; the routing one becomes route_number."""
    source = tmp_path / "c.csv"
    source.write_text(f"number,line\n+86 {PLAIN},7\n", encoding="utf-8")
    assert route(source, "--column", "number") == 0
    out = capsys.readouterr().out
    header = next(csv.reader(io.StringIO(out)))
    assert header[:4] == ["route_line", "number", "line", "route_number"]
    row = rows_of(out)[0]
    assert (row["route_line"], row["number"], row["line"], row["route_number"]) == (
        "2",
        f"'+86 {PLAIN}",  # a text cell starting with '+' is guarded (see spreadsheet_safe)
        "7",
        PLAIN,
    )


def test_jsonl_keeps_the_input(server, customers, capsys):
    """JSON lines carry the line and the input row as an object keyed by header name."""
    assert route(customers, "--column", "mobile", "--format", "jsonl") == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first["line"] == 2
    assert first["input"] == {"name": "A", "mobile": PLAIN, "city": "北京"}
    assert first["number"] == PLAIN


def test_rejects_file_has_every_unroutable_row(server, tmp_path, capsys):
    """Invalid, empty and no-gateway rows all go to --rejects with line, input and reason."""
    source = tmp_path / "many.csv"
    lines = ["id,mobile"] + [f"{i},bad{i}" for i in range(30)]
    lines += ["e,", f"s,{SATELLITE}", f"ok,{PLAIN}"]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    assert route(source, "--rejects", rejects) == 1  # a number had no gateway
    err = capsys.readouterr().err
    got = read_csv(rejects)
    assert len(got) == 32
    assert list(got[0]) == ["line", "id", "mobile", "reason"]
    assert got[0] == {
        "line": "2",
        "id": "0",
        "mobile": "bad0",
        "reason": "invalid: not a digit: 'b' at position 1",
    }
    assert got[30]["reason"].startswith("empty")
    assert (got[31]["line"], got[31]["mobile"]) == ("33", SATELLITE)
    assert got[31]["reason"].startswith("no gateway: ")
    assert "... and 10 more" in err
    assert f"rejects: 32 rows written to {rejects}" in err


def test_without_rejects_the_summary_says_how_to_keep_them(server, tmp_path, capsys):
    """With no --rejects the summary names the flag that would keep every rejected row."""
    source = tmp_path / "n.txt"
    source.write_text("abc\n" * 25 + PLAIN + "\n", encoding="utf-8")
    assert route(source) == 0
    assert "pass --rejects FILE to keep all 25" in capsys.readouterr().err


def test_rejects_as_json_lines(server, tmp_path, capsys):
    """With --format jsonl the rejects are JSON lines too."""
    source = tmp_path / "n.txt"
    source.write_text(f"abc\n{PLAIN}\n", encoding="utf-8")
    rejects = tmp_path / "rejects.jsonl"
    assert route(source, "--format", "jsonl", "--rejects", rejects) == 0
    got = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert got == [{"line": 1, "input": "abc", "reason": "invalid: not a digit: 'a' at position 1"}]


def test_successful_run_replaces_the_target_and_leaves_no_temporary_file(server, customers):
    """The output appears whole under its name at the end; nothing else is left beside it."""
    target = customers.parent / "routes.csv"
    target.write_text("old content\n", encoding="utf-8")
    before = set(os.listdir(customers.parent))
    assert route(customers, "--column", "mobile", "-o", target) == 0
    assert [r["number"] for r in read_csv(target)] == [PLAIN, DOC_NUMBER]
    assert set(os.listdir(customers.parent)) == before


def test_interrupt_keeps_rows_as_partial_and_leaves_the_target_alone(
    server, tmp_path, monkeypatch, capsys
):
    """Ctrl-C keeps the rows done in out.csv.partial; an existing out.csv is not touched."""
    source = tmp_path / "many.txt"
    source.write_text("".join(f"1380013{i:04d}\n" for i in range(10)), encoding="utf-8")
    target = tmp_path / "out.csv"
    target.write_text("yesterday's routes\n", encoding="utf-8")
    real_route = Router.route
    calls = []

    def route_then_interrupt(self, number, **kwargs):
        calls.append(number)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return real_route(self, number, **kwargs)

    monkeypatch.setattr(Router, "route", route_then_interrupt)
    assert route(source, "-o", target, "--concurrency", "1", "--engine", "threads") == 130
    assert target.read_text(encoding="utf-8") == "yesterday's routes\n"
    partial = tmp_path / "out.csv.partial"
    assert [r["number"] for r in read_csv(partial)] == ["13800130000", "13800130001", "13800130002"]
    err = capsys.readouterr().err
    assert f"interrupted: 3 of 10 numbers written to {partial} ({target} not written)" in err
    assert sorted(os.listdir(tmp_path)) == ["many.txt", "out.csv", "out.csv.partial"]


@pytest.mark.parametrize("engine", ["threads", "async"])
def test_sigterm_prints_the_summary_like_ctrl_c(server, tmp_path, monkeypatch, capsys, engine):
    """SIGTERM stops a run with its summary and the rows done kept, exit 143 (either engine)."""
    source = tmp_path / "many.txt"
    source.write_text("".join(f"1380013{i:04d}\n" for i in range(10)), encoding="utf-8")
    target = tmp_path / "out.csv"
    calls = []
    if engine == "threads":
        real_route = Router.route

        def route_then_terminate(self, number, **kwargs):
            calls.append(number)
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGTERM)
            return real_route(self, number, **kwargs)

        monkeypatch.setattr(Router, "route", route_then_terminate)
    else:
        real_aroute = AsyncRouter.route

        async def aroute_then_terminate(self, number, **kwargs):
            calls.append(number)
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGTERM)
            return await real_aroute(self, number, **kwargs)

        monkeypatch.setattr(AsyncRouter, "route", aroute_then_terminate)
    previous = signal.getsignal(signal.SIGTERM)
    assert route(source, "-o", target, "--concurrency", "1", "--engine", engine) == 143
    assert signal.getsignal(signal.SIGTERM) is previous
    err = capsys.readouterr().err
    assert "terminated: " in err
    assert "queries paid: " in err
    assert not target.exists()
    numbers = [r["number"] for r in read_csv(tmp_path / "out.csv.partial")]
    assert numbers == [f"1380013{i:04d}" for i in range(len(numbers))]


def test_output_naming_the_input_is_refused(server, customers, capsys, monkeypatch):
    """-o naming the input file (however spelled) exits 2 and leaves the input as it was."""
    before = customers.read_bytes()
    monkeypatch.chdir(customers.parent)
    for spelling in (
        str(customers),
        "./customers.csv",
        "../" + customers.parent.name + "/customers.csv",
    ):
        assert route(customers, "--column", "mobile", "-o", spelling) == 2
        assert "is the input file" in capsys.readouterr().err
    assert route(customers, "--column", "mobile", "--rejects", "customers.csv") == 2
    capsys.readouterr()
    assert customers.read_bytes() == before
    assert server.paid == 0


def test_unwritable_output_is_one_line(server, customers, capsys):
    """An output path that cannot be created is one line and exit 2, before any query."""
    not_a_dir = customers.parent / "file.txt"
    not_a_dir.write_text("", encoding="utf-8")
    for target in (not_a_dir / "out.csv", customers.parent):
        assert route(customers, "--column", "mobile", "-o", target) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert f"cannot write {target}: " in err
    assert server.paid == 0


def test_full_disk_is_one_line_not_a_traceback(server, customers, capsys):
    """Writing to a full disk (/dev/full) is one clear error line and exit 1."""
    assert route(customers, "--column", "mobile", "-o", "/dev/full") == 1
    err = capsys.readouterr().err
    assert "smsroute: cannot write /dev/full: No space left on device\n" in err
    assert "Traceback" not in err


def test_full_disk_on_stdout_is_one_line(server, customers):
    """Rows piped into a full disk give one error line, no traceback, nothing 'ignored'."""
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "smsroute", "route", str(customers), "--no-cache"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "XDG_CACHE_HOME": str(customers.parent / "xdg")},
        )
    assert result.returncode == 1
    assert "smsroute: cannot write stdout: No space left on device\n" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Exception ignored" not in result.stderr


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-1", "-1"),
        ("+86", "+86"),
        ("-0.5", "-0.5"),
        ("1e-3", "1e-3"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_spreadsheet_safe(cell, written):
    """Formula starters get a leading quote; plain numbers and other text stay as they are."""
    assert spreadsheet_safe(cell) == written


def test_every_csv_we_write_is_guarded(server, tmp_path, capsys):
    """Input cells, gateway names, rejects and headers are all guarded against formulas."""
    source = tmp_path / "evil.csv"
    source.write_text(
        f'name,=mobile\n"=HYPERLINK(""http://x"")",{PLAIN}\n@bad,=1+2\n-1,{DOC_NUMBER}\n',
        encoding="utf-8",
    )
    rejects = tmp_path / "rejects.csv"
    argv = [source, "--column", "=mobile", "--gateway", "移动==cmd", "--rejects", rejects]
    assert route(*argv) == 0
    out = capsys.readouterr().out
    header = next(csv.reader(io.StringIO(out)))
    assert header[1:3] == ["name", "'=mobile"]
    rows = rows_of(out)
    assert rows[0]["name"] == '\'=HYPERLINK("http://x")'
    assert rows[0]["gateway"] == "'=cmd"
    assert rows[1]["name"] == "-1"  # a plain number stays a number
    got = read_csv(rejects)
    assert (got[0]["name"], got[0]["'=mobile"]) == ("'@bad", "'=1+2")


def test_a_cell_with_a_carriage_return_reads_back_whole(server, tmp_path, capsys):
    """A cell holding a CR is quoted, so the row reads back as one row."""
    source = tmp_path / "cr.csv"
    source.write_text(f'note,mobile\n"a\rb",{PLAIN}\n', encoding="utf-8", newline="")
    assert route(source) == 0
    rows = rows_of(capsys.readouterr().out)
    assert [(r["note"], r["number"]) for r in rows] == [("a\rb", PLAIN)]


def test_excel_writes_utf8_with_a_bom(server, customers, capsys):
    """--excel starts the file with a BOM, so Excel shows 移动 and 联通."""
    target = customers.parent / "routes.csv"
    assert route(customers, "--column", "mobile", "-o", target, "--excel") == 0
    data = target.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfline,")
    assert "移动" in data.decode("utf-8-sig")
    assert route(customers, "--format", "jsonl", "--excel") == 2
    assert "--excel writes CSV" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("stderr_tty", "stdout_tty", "to_stdout", "wanted"),
    [
        (True, False, True, True),  # rows piped away, bar on the terminal
        (True, True, False, True),  # rows to a file
        (True, True, True, False),  # rows on the same terminal: no bar between them
        (False, False, False, False),  # stderr is a log file
    ],
)
def test_progress_only_where_it_cannot_mix_with_rows(stderr_tty, stdout_tty, to_stdout, wanted):
    """The progress display shows on a terminal stderr, never while rows print there too."""
    assert (
        progress_enabled(
            stderr_tty=stderr_tty, stdout_tty=stdout_tty, to_stdout=to_stdout, disabled=False
        )
        is wanted
    )
    assert not progress_enabled(
        stderr_tty=stderr_tty, stdout_tty=stdout_tty, to_stdout=to_stdout, disabled=True
    )


def test_virtual_and_ported_rows_keep_their_input(server, tmp_path, capsys):
    """A virtual-operator number routed to its own gateway keeps its input columns."""
    source = tmp_path / "v.csv"
    source.write_text(f"who,tel\nmvno,{VIRTUAL}\n", encoding="utf-8")
    assert route(source, "--gateway", "virtual=mvno") == 0
    row = rows_of(capsys.readouterr().out)[0]
    assert (row["who"], row["gateway"], row["virtual"]) == ("mvno", "mvno", "true")


def test_an_error_in_the_routing_pass_keeps_the_rows_and_prints_the_summary(
    server, tmp_path, monkeypatch, capsys
):
    """An input that fails on its second reading keeps the rows done, with the summary."""
    source = tmp_path / "n.txt"
    source.write_text(f"{PLAIN}\n{DOC_NUMBER}\n", encoding="utf-8")
    target = tmp_path / "out.csv"
    real_rows = Source.rows
    readings = []

    def rows_then_fail(self):
        readings.append(1)
        for i, row in enumerate(real_rows(self)):
            if len(readings) == 2 and i == 1:
                raise CommandError(f"cannot read {source}: it changed", 2)
            yield row

    monkeypatch.setattr(Source, "rows", rows_then_fail)
    assert route(source, "-o", target, "--concurrency", "1") == 2
    err = capsys.readouterr().err
    assert f"smsroute: cannot read {source}: it changed\n" in err
    partial = tmp_path / "out.csv.partial"
    assert f"incomplete: 1 row kept in {partial} ({target} not written)" in err
    assert [r["number"] for r in read_csv(partial)] == [PLAIN]
    assert not target.exists()


def test_a_new_segment_the_vendor_calls_invalid_is_an_invalid_row(server, tmp_path, capsys):
    """194 is not in the table; the vendor's -3 makes the row invalid (rejects), not a guess."""
    source = tmp_path / "n.txt"
    source.write_text(f"19412345678\n{PLAIN}\n", encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    assert route(source, "--rejects", rejects) == 0
    err = capsys.readouterr().err
    got = read_csv(rejects)
    assert [(r["line"], r["input"]) for r in got] == [("1", "19412345678")]
    assert got[0]["reason"].startswith("invalid: 194****5678: not a valid number")
    assert "(2 rows: 0 duplicates, 1 invalid)" in err
