"""Tests for the command line: smsroute.cli.main() in-process against a FakeCarrierServer."""

from __future__ import annotations

import csv
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

import smsroute
from smsroute import cli
from smsroute.cli.progress import Progress
from smsroute.cli.writer import ROUTE_COLUMNS
from smsroute.routing import Router
from smsroute.testing import DOC_NUMBER, FakeCarrierServer, FakeClock

PLAIN = "13800138000"  # 移动; pinned as not ported below
VIRTUAL = "17091234567"  # 1709: a virtual operator on 联通's network
SECRET = "7c11272au708345c834b8ue81ac78972"  # the vendor document's sample key


@pytest.fixture
def server(fake_carrier_server, monkeypatch, tmp_path):
    """Point the command line at the fake vendor through the environment."""
    fake_carrier_server.set_answer(PLAIN, res=0, area="北京-北京")
    monkeypatch.setenv(cli.ENV_APIKEY, fake_carrier_server.apikey)
    monkeypatch.setenv(cli.ENV_BASE_URL, fake_carrier_server.url)
    # Never touch the user's real cache directory.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return fake_carrier_server


@pytest.fixture
def numbers_txt(tmp_path):
    """Write a text list with a duplicate, two invalid rows, a comment and a blank line."""
    path = tmp_path / "numbers.txt"
    path.write_text(
        f"{PLAIN}\n"
        "139 7256 5391\n"  # the doc's number, pasted with spaces
        "\n"
        "# a comment\n"
        "12345\n"  # line 5: too short
        f"+86{PLAIN}\n"  # a duplicate of line 1
        f"{VIRTUAL}\n"
        "abc\n",  # line 8: not a number
        encoding="utf-8",
    )
    return path


def rows_of(text):
    """Return the data rows of route's CSV output as dicts."""
    return list(csv.DictReader(io.StringIO(text)))


def test_lookup_prints_a_table(server, capsys):
    """Lookup prints one aligned row per number with initial, current, ported and area."""
    assert cli.main(["lookup", DOC_NUMBER, PLAIN]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["number", "initial", "current", "ported", "virtual", "area"]
    assert out[1].split() == [DOC_NUMBER, "移动", "电信", "yes", "no", "湖北-宜昌"]
    assert out[2].split() == [PLAIN, "移动", "移动", "no", "no", "北京-北京"]
    assert server.paid == 2


def test_lookup_json_prints_one_object_per_line(server, capsys):
    """Lookup --json prints one JSON object per number."""
    assert cli.main(["lookup", "--json", DOC_NUMBER, VIRTUAL]) == 0
    lines = capsys.readouterr().out.splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first == {
        "number": DOC_NUMBER,
        "initial": "移动",
        "current": "电信",
        "ported": True,
        "virtual": False,
        "area": "湖北-宜昌",
        "res": 1,
    }
    assert second["virtual"] is True
    assert second["current"] == "联通"


def test_lookup_bad_number_says_so_and_exits_1(server, capsys):
    """An invalid number gets one line on stderr and exit 1; the valid ones are still shown."""
    assert cli.main(["lookup", "12345", DOC_NUMBER]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        "smsroute: 12345: invalid number: too short: 5 digits, a mobile number has 11"
    )
    assert DOC_NUMBER in captured.out
    assert server.paid == 1


def test_lookup_vendor_error_exits_1(server, capsys):
    """A vendor error code for one number is reported on stderr with exit 1, no traceback."""
    server.set_answer(PLAIN, code=-4)
    assert cli.main(["lookup", PLAIN]) == 1
    err = capsys.readouterr().err
    assert "lookup failed: vendor code -4" in err
    assert "Traceback" not in err


def test_missing_apikey_says_how_to_set_it(server, monkeypatch, capsys):
    """Without a key the command exits 2 and names both ways to give one."""
    monkeypatch.delenv(cli.ENV_APIKEY)
    assert cli.main(["lookup", PLAIN]) == 2
    err = capsys.readouterr().err
    assert err == "smsroute: no apikey: pass --apikey KEY or set SMSROUTE_APIKEY\n"
    assert server.requests == []


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_apikey_is_never_printed(server, method, capsys):
    """A rejected key appears neither on stdout nor on stderr, even with -v and GET."""
    assert cli.main(["-v", "--method", method, "--apikey", SECRET, "lookup", PLAIN]) == 1
    captured = capsys.readouterr()
    assert "vendor code -1" in captured.err
    assert SECRET not in captured.out + captured.err


def test_global_options_work_after_the_subcommand(server, capsys):
    """Connection options are accepted after the subcommand as well as before it."""
    assert cli.main(["lookup", "--apikey", "wrong", PLAIN]) == 1
    assert "vendor code -1" in capsys.readouterr().err
    assert cli.main(["--apikey", "wrong", "lookup", "--apikey", server.apikey, PLAIN]) == 0


def test_balance(server, capsys):
    """Balance prints the fee type and the queries left, as text or JSON."""
    server.balance = 12048
    assert cli.main(["balance"]) == 0
    assert capsys.readouterr().out == "fee type:  预付费\nremaining: 12048 queries\n"
    assert cli.main(["balance", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"fee_type": "预付费", "remaining": 12048}


def test_segment_needs_no_key_and_no_network(monkeypatch, capsys):
    """Segment answers from the offline table with no apikey configured."""
    monkeypatch.delenv(cli.ENV_APIKEY, raising=False)
    monkeypatch.setenv(cli.ENV_BASE_URL, "http://127.0.0.1:9")  # nothing listens there
    assert cli.main(["segment", DOC_NUMBER, VIRTUAL]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["number", "segment", "operator", "kind", "holder"]
    assert out[1].split() == [DOC_NUMBER, "139", "移动", "regular", "中国移动"]
    assert out[2].split()[:4] == [VIRTUAL, "1709", "联通", "virtual"]
    assert cli.main(["segment", "abc"]) == 1
    assert "abc: invalid number" in capsys.readouterr().err


def test_route_text_file(server, numbers_txt, tmp_path, capsys):
    """Route dedupes, skips invalid rows with their line numbers, and pays once per number."""
    cache = tmp_path / "answers.sqlite3"
    assert cli.main(["route", str(numbers_txt), "--cache-file", str(cache)]) == 0
    captured = capsys.readouterr()
    rows = rows_of(captured.out)
    assert [r["number"] for r in rows] == [PLAIN, DOC_NUMBER, VIRTUAL]
    assert list(rows[0]) == ["line", "input", *ROUTE_COLUMNS]
    assert rows[1] == {
        "line": "2",
        "input": "139 7256 5391",
        "number": DOC_NUMBER,
        "initial": "移动",
        "current": "电信",
        "ported": "true",
        "virtual": "false",
        "area": "湖北-宜昌",
        "gateway": "电信",
        "source": "upstream",
    }
    assert rows[2]["virtual"] == "true"
    assert rows[2]["gateway"] == "联通"
    err = captured.err
    assert "6 rows: 1 duplicate, 2 invalid" in err
    assert "line 5: '12345': too short" in err
    assert "line 8: 'abc': not a digit" in err
    assert "queries paid: 3 " in err
    assert "ported: 1 of 3 answered (33.3%)" in err
    assert server.paid == 3


def test_route_second_run_with_the_same_cache_file_pays_nothing(server, numbers_txt, tmp_path):
    """Answers kept in the SQLite cache file are not paid for again."""
    cache = str(tmp_path / "answers.sqlite3")
    assert cli.main(["route", str(numbers_txt), "--cache-file", cache]) == 0
    assert server.paid == 3
    assert cli.main(["route", str(numbers_txt), "--cache-file", cache]) == 0
    assert server.paid == 3


def test_route_csv_column_by_name_to_output_file(server, tmp_path, capsys):
    """A CSV column chosen by header name is routed to -o FILE with gateway mappings."""
    source = tmp_path / "customers.csv"
    source.write_text(
        f"name,mobile\nA,{PLAIN}\nB,{DOC_NUMBER}\nC,not-a-number\nD,{PLAIN}\n", encoding="utf-8"
    )
    target = tmp_path / "routes.csv"
    argv = ["route", str(source), "--column", "mobile", "-o", str(target), "--no-cache"]
    argv += ["--gateway", "移动=cmpp", "--gateway", "电信=smgp"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    rows = rows_of(target.read_text(encoding="utf-8"))
    assert [(r["number"], r["gateway"]) for r in rows] == [(PLAIN, "cmpp"), (DOC_NUMBER, "smgp")]
    assert "line 4: 'not-a-number'" in captured.err
    assert "1 duplicate" in captured.err
    assert server.paid == 2


def test_route_csv_needs_a_column_when_it_cannot_tell(server, tmp_path, capsys):
    """A CSV whose number column cannot be told apart is a usage error listing the columns."""
    source = tmp_path / "two.csv"
    source.write_text(f"{PLAIN},x\n", encoding="utf-8")
    assert cli.main(["route", str(source), "--no-cache"]) == 2
    assert "pass --column NAME_OR_INDEX" in capsys.readouterr().err
    assert cli.main(["route", str(source), "--no-cache", "--column", "1"]) == 0
    assert rows_of(capsys.readouterr().out)[0]["number"] == PLAIN


def test_route_stdin_to_json_lines(server, monkeypatch, capsys):
    """Route reads '-' from stdin and writes JSON lines; virtual numbers get their own gateway."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{VIRTUAL}\n{DOC_NUMBER}\n"))
    argv = ["route", "-", "--format", "jsonl", "--no-cache", "--gateway", "virtual=mvno"]
    assert cli.main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["number"], d["gateway"]) for d in lines] == [(VIRTUAL, "mvno"), (DOC_NUMBER, "电信")]
    assert lines[1]["ported"] is True


def test_route_falls_back_when_the_vendor_is_down(server, numbers_txt, capsys):
    """With the vendor failing, --on-failure fallback guesses every row, and exit 3 says so."""
    server.fault = "http500"
    argv = ["route", str(numbers_txt), "--no-cache", "--deadline", "0.2", "--concurrency", "1"]
    assert cli.main([*argv, "--on-failure", "fallback"]) == 3
    captured = capsys.readouterr()
    rows = rows_of(captured.out)
    assert {r["source"] for r in rows} == {"fallback"}
    # Offline the doc's number is still on its original operator: 移动, not 电信.
    assert rows[1]["current"] == "移动"
    assert rows[1]["ported"] == ""
    assert "fallbacks: 3" in captured.err
    assert "3 rows are guesses (3 from the segment table, 0 from stale answers" in captured.err
    assert server.paid == 0


def test_route_retries_failed_rows_before_guessing(server, numbers_txt, capsys):
    """By default a row whose lookup failed is asked again at the end: no guess, exit 0."""
    server.set_fault("http500", for_requests=3)  # the first row's three attempts
    argv = ["route", str(numbers_txt), "--no-cache", "--deadline", "0.5", "--concurrency", "1"]
    assert cli.main([*argv, "--max-wait", "10"]) == 0
    captured = capsys.readouterr()
    rows = rows_of(captured.out)
    assert {r["source"] for r in rows} == {"upstream"}
    assert len(rows) == 3
    assert int(rows[-1]["line"]) == 1  # the retried row comes last, with its line
    assert "retried: 1 row whose first lookup failed" in captured.err
    assert "guesses" not in captured.err


def test_route_guesses_only_after_max_wait_and_says_so(server, numbers_txt, capsys):
    """With the vendor down for good, the rows are guesses after --max-wait, marked, exit 3."""
    server.fault = "http500"
    argv = ["route", str(numbers_txt), "--no-cache", "--deadline", "0.2", "--concurrency", "1"]
    assert cli.main([*argv, "--max-wait", "0.5"]) == 3
    captured = capsys.readouterr()
    assert {r["source"] for r in rows_of(captured.out)} == {"fallback"}
    assert "rows are guesses" in captured.err
    assert "rerun to retry them" in captured.err


def test_route_on_failure_fail_stops_at_the_first_failure(server, numbers_txt, capsys):
    """--on-failure fail stops the run at the first failed lookup, exit 1, rows kept."""
    server.fault = "http500"
    argv = ["route", str(numbers_txt), "--no-cache", "--deadline", "0.2", "--concurrency", "1"]
    assert cli.main([*argv, "--on-failure", "fail"]) == 1
    err = capsys.readouterr().err
    assert "stopped (--on-failure fail): line " in err
    assert "HTTP 500" in err


def test_route_stops_on_a_rejected_apikey(server, numbers_txt, capsys):
    """A wrong key stops the run with exit 1 instead of falling back for every number."""
    argv = ["--apikey", "wrong", "route", str(numbers_txt), "--no-cache", "--concurrency", "1"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "stopped: unauthorized (code -1)" in err
    assert len(server.requests) == 1


def test_route_number_of_no_operator_needs_a_default_gateway(server, tmp_path, capsys):
    """A number of no known operator is listed as 'no gateway' (exit 1) unless a default is set."""
    source = tmp_path / "sat.txt"
    source.write_text(f"{PLAIN}\n17406123456\n", encoding="utf-8")  # 17406: an emergency satellite
    assert cli.main(["route", str(source), "--no-cache"]) == 1
    captured = capsys.readouterr()
    assert [r["number"] for r in rows_of(captured.out)] == [PLAIN]
    assert "no gateway: 1" in captured.err
    assert "line 2: '17406123456'" in captured.err
    argv = ["route", str(source), "--no-cache", "--default-gateway", "other"]
    assert cli.main(argv) == 0
    rows = rows_of(capsys.readouterr().out)
    assert (rows[1]["gateway"], rows[1]["current"], rows[1]["source"]) == ("other", "", "fallback")


def test_route_keyboard_interrupt_keeps_written_rows(server, tmp_path, monkeypatch, capsys):
    """Ctrl-C after some rows keeps them as FILE.partial, prints the summary and exits 130."""
    source = tmp_path / "many.txt"
    source.write_text("".join(f"1380013{i:04d}\n" for i in range(10)), encoding="utf-8")
    target = tmp_path / "out.csv"
    real_route = Router.route
    calls = []

    def route_then_interrupt(self, number, **kwargs):
        calls.append(number)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return real_route(self, number, **kwargs)

    monkeypatch.setattr(Router, "route", route_then_interrupt)
    argv = ["route", str(source), "-o", str(target), "--no-cache", "--concurrency", "1"]
    argv += ["--engine", "threads"]  # Router.route is what the test interrupts
    assert cli.main(argv) == 130
    partial = tmp_path / "out.csv.partial"
    rows = rows_of(partial.read_text(encoding="utf-8"))
    assert [r["number"] for r in rows] == ["13800130000", "13800130001", "13800130002"]
    assert not target.exists()
    err = capsys.readouterr().err
    assert f"interrupted: 3 of 10 numbers written to {partial}" in err
    assert "queries paid: 3 " in err


def test_route_usage_errors_exit_2(server, tmp_path, capsys):
    """A missing input file, a bad gateway mapping and a bad option value exit 2 in one line."""
    assert cli.main(["route", str(tmp_path / "missing.txt"), "--no-cache"]) == 2
    assert "cannot read" in capsys.readouterr().err
    source = tmp_path / "one.txt"
    source.write_text(PLAIN, encoding="utf-8")
    assert cli.main(["route", str(source), "--no-cache", "--gateway", "火星=x"]) == 2
    assert "unknown operator '火星'" in capsys.readouterr().err
    assert cli.main(["route", str(source), "--concurrency", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--concurrency: must be at least 1" in err
    assert server.paid == 0


def test_route_unreadable_csv_exits_2_in_one_line(server, tmp_path, capsys):
    """A CSV cell over the csv module's field limit is bad input: one line, exit 2, no traceback."""
    source = tmp_path / "big.csv"
    source.write_text(f'mobile,note\n{PLAIN},"{"a" * 200_000}"\n', encoding="utf-8")
    assert cli.main(["route", str(source), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "not a readable CSV" in err
    assert server.paid == 0


def test_progress_without_tqdm_prints_a_periodic_line(monkeypatch, capsys):
    """Without tqdm the progress is a line on stderr every two seconds once a run is long."""
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    clock = FakeClock()
    progress = Progress(10, True, clock=clock)
    progress.update()  # at once: too early to say anything
    clock.advance(2.5)
    progress.update()
    progress.update()  # within two seconds of the last line
    clock.advance(2.0)
    progress.update()
    progress.close()
    assert capsys.readouterr().err == (
        "smsroute: 2/10 numbers routed (20%)\nsmsroute: 4/10 numbers routed (40%)\n"
    )


def test_verbose_logs_debug_events_and_cleans_up(server, capsys):
    """-v sends smsroute's debug events to stderr for that run only."""
    logger = logging.getLogger("smsroute")
    handlers = list(logger.handlers)
    assert cli.main(["-v", "lookup", PLAIN]) == 0
    assert "client.call" in capsys.readouterr().err
    assert logger.handlers == handlers
    assert cli.main(["lookup", PLAIN]) == 0
    assert capsys.readouterr().err == ""


def test_fake_server_prints_its_url_and_key(monkeypatch, capsys):
    """fake-server prints where it listens and the key it accepts, and stops cleanly."""
    started = []

    def serve(self):
        started.append(self.url)
        self.stop()

    monkeypatch.setattr(FakeCarrierServer, "serve_until_interrupted", serve)
    assert cli.main(["fake-server", "--port", "0", "--apikey", "k-demo"]) == 0
    out = capsys.readouterr().out
    assert f"listening on {started[0]}" in out
    assert "apikey: k-demo" in out


def test_demo_exits_0_and_shows_every_source(monkeypatch, capsys):
    """The demo needs no key and walks through upstream, cache, stale and fallback decisions."""
    monkeypatch.delenv(cli.ENV_APIKEY, raising=False)
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    table = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert {"upstream", "cache", "stale", "fallback"} <= {w for row in table for w in row}
    assert any(DOC_NUMBER in row and "SMGP" in row for row in table)  # ported to 电信
    assert "half-open" in out
    assert "balance:" in out


def test_no_command_and_help(capsys):
    """No subcommand prints the help with exit 2; --help exits 0."""
    assert cli.main([]) == 2
    assert "lookup" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    assert "fake-server" in capsys.readouterr().out


def test_python_m_smsroute_version():
    """`python -m smsroute --version` prints the version and exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "smsroute", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=Path(__file__).parent,
    )
    assert result.returncode == 0
    assert result.stdout == f"smsroute {smsroute.__version__}\n"


def test_route_summary_counts_lookups_that_may_have_been_billed(server, numbers_txt, capsys):
    """A lookup that timed out after its request went out is counted as maybe billed."""
    server.fault = "hang"
    argv = ["route", str(numbers_txt), "--no-cache", "--deadline", "0.2", "--concurrency", "1"]
    assert cli.main([*argv, "--on-failure", "fallback"]) == 3
    err = capsys.readouterr().err
    assert "maybe billed: " in err
