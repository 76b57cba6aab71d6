"""Tests for `smsroute lookup`: one query per number, the route cache, errors as JSON."""

from __future__ import annotations

import json

import test_cli
from test_cli import PLAIN

from smsroute import cli
from smsroute.testing import DOC_NUMBER

server = test_cli.server  # the fixture, shared with test_cli.py

PASTED = [
    DOC_NUMBER,
    "139 7256 5391",
    "+86 139-7256-5391",
    "0086 13972565391",
    "8613972565391",
    "(139) 7256 5391",
    "１３９７２５６５３９１",  # full-width digits
]


def test_lookup_dedupes_pasted_forms(server, capsys):
    """Seven pasted forms of one number are one query and one row."""
    assert cli.main(["lookup", *PASTED]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert out[1].split()[0] == DOC_NUMBER
    assert server.paid == 1


def test_lookup_json_dedupes_too(server, capsys):
    """--json prints one object for the seven forms."""
    assert cli.main(["lookup", "--json", *PASTED, PLAIN]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["number"] for d in lines] == [DOC_NUMBER, PLAIN]
    assert server.paid == 2


def test_lookup_json_writes_errors_as_json_lines(server, capsys):
    """With --json an invalid number and a vendor error are JSON objects, in input order."""
    server.set_answer(PLAIN, code=-4)
    assert cli.main(["lookup", "--json", DOC_NUMBER, "12345", PLAIN]) == 1
    captured = capsys.readouterr()
    assert captured.err == ""
    answer, invalid, failed = (json.loads(line) for line in captured.out.splitlines())
    assert invalid == {
        "input": "12345",
        "number": None,
        "error": "InvalidNumber",
        "code": None,
        "message": "too short: 5 digits, a mobile number has 11",
    }
    assert answer["current"] == "电信"
    assert failed["input"] == PLAIN
    assert failed["number"] == PLAIN
    assert failed["error"] == "NumberNotFound"
    assert failed["code"] == -4
    assert failed["message"].startswith("vendor code -4")


def test_lookup_json_after_a_rejected_key_says_what_was_skipped(server, capsys):
    """After a rejected key the numbers not asked about get an object saying so."""
    argv = ["--apikey", "wrong", "lookup", "--json", PLAIN, DOC_NUMBER]
    assert cli.main(argv) == 1
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (first["error"], first["code"]) == ("Unauthorized", -1)
    assert (second["number"], second["error"]) == (DOC_NUMBER, "Skipped")
    assert len(server.requests) == 1


def test_lookup_uses_the_same_cache_file_as_route(server, tmp_path, capsys):
    """Numbers route paid for are answered from the cache file by lookup, marked 'cache'."""
    cache = tmp_path / "answers.sqlite3"
    source = tmp_path / "n.txt"
    source.write_text(f"{PLAIN}\n{DOC_NUMBER}\n", encoding="utf-8")
    assert cli.main(["route", str(source), "--cache-file", str(cache)]) == 0
    assert server.paid == 2
    capsys.readouterr()
    assert cli.main(["lookup", "--cache-file", str(cache), DOC_NUMBER, "18612345678"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["number", "initial", "current", "ported", "virtual", "area", "source"]
    assert out[1].split() == [DOC_NUMBER, "移动", "电信", "yes", "no", "湖北-宜昌", "cache"]
    assert out[2].split()[0] == "18612345678"
    assert out[2].split()[-1] == "upstream"
    assert server.paid == 3
    # ... and stores what it paid for, for route and the next lookup.
    assert cli.main(["lookup", "--json", "--cache-file", str(cache), "18612345678"]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "cache"
    assert server.paid == 3


def test_lookup_cache_flag_uses_the_default_file(server, tmp_path, capsys):
    """--cache uses the file route uses by default, under the user cache directory."""
    assert cli.main(["lookup", "--cache", PLAIN]) == 0
    assert cli.main(["lookup", "--cache", PLAIN]) == 0
    assert server.paid == 1
    assert (tmp_path / "xdg" / "smsroute" / "answers.sqlite3").is_file()


def test_lookup_cached_not_found_is_an_error_without_a_query(server, tmp_path, capsys):
    """A cached 'vendor does not know this number' is reported again without paying."""
    server.set_answer(PLAIN, code=-4)
    cache = str(tmp_path / "answers.sqlite3")
    assert cli.main(["lookup", "--cache-file", cache, PLAIN]) == 1
    assert cli.main(["lookup", "--cache-file", cache, PLAIN]) == 1
    assert "not found (cached)" in capsys.readouterr().err
    assert len(server.requests) == 1


def test_lookup_with_an_unusable_cache_warns_and_asks_the_vendor(server, tmp_path, capsys):
    """A cache file that is not a database is one warning; the lookup still answers."""
    cache = tmp_path / "junk.sqlite3"
    cache.write_bytes(b"this is not a database" * 100)
    assert cli.main(["lookup", "--cache-file", str(cache), PLAIN]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert "warning: cannot use the cache file" in captured.err
    assert PLAIN in captured.out


def test_lookup_asks_the_vendor_about_a_segment_the_table_does_not_know(server, capsys):
    """194 is not in the table: lookup asks, as route does; the vendor's -3 is the answer (free)."""
    assert cli.main(["lookup", "--json", "19412345678", "12345678901"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["error"], r["code"]) for r in lines] == [
        ("RequestRejected", -3),
        ("InvalidNumber", None),
    ]
    assert [r.method for r in server.requests] == ["POST"]  # 123... was refused before any query
    assert server.paid == 0
