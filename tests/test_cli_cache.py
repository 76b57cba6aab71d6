"""Tests for `smsroute cache path|stats|purge` and for route with an unusable cache file."""

from __future__ import annotations

import sqlite3
import time

import pytest
import test_cli
from test_cli import PLAIN, rows_of

from smsroute import cli
from smsroute.sqlite_cache import SqliteCache
from smsroute.testing import DOC_NUMBER

server = test_cli.server  # the fixture, shared with test_cli.py


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    """Point the user cache directory at a temporary one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def fill(path, numbers, *, now):
    """Store an answer for each number as if at wall-clock time ``now``."""
    with SqliteCache(path, clock=lambda: now) as cache:
        for number in numbers:
            cache.set(number, 1)


def test_cache_path_prints_the_default_file(xdg, capsys):
    """`cache path` prints the file route uses by default, without creating it."""
    assert cli.main(["cache", "path"]) == 0
    out = capsys.readouterr().out
    assert out == f"{xdg / 'smsroute' / 'answers.sqlite3'}\n"
    assert not (xdg / "smsroute").exists()


def test_cache_stats_counts_rows(xdg, tmp_path, capsys):
    """`cache stats` shows the file, its size and its rows."""
    path = tmp_path / "a.sqlite3"
    fill(path, [PLAIN, DOC_NUMBER], now=time.time())
    assert cli.main(["cache", "stats", "--cache-file", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"file:  {path}\n" in out
    assert "rows:  2\n" in out
    assert "KiB" in out


def test_cache_purge_drops_expired_rows(xdg, tmp_path, capsys):
    """`cache purge` deletes rows past their stale window and says how many."""
    path = tmp_path / "a.sqlite3"
    fill(path, [PLAIN], now=time.time())
    # Stored in 1970: long expired (and not purged by this opening, whose clock says 1970).
    fill(path, ["13800000001", "13800000002"], now=0.0)
    assert cli.main(["cache", "purge", "--cache-file", str(path)]) == 0
    assert capsys.readouterr().out == f"purged 2 expired rows from {path}; 1 row kept\n"
    with SqliteCache(path) as cache:
        assert len(cache) == 1


def test_cache_stats_without_a_file_creates_nothing(xdg, capsys):
    """With no cache file yet, stats and purge say so and create nothing."""
    for action in ("stats", "purge"):
        assert cli.main(["cache", action]) == 0
        assert "no cache file yet" in capsys.readouterr().out
    assert not (xdg / "smsroute").exists()


def test_cache_stats_on_a_junk_file_is_one_line(xdg, tmp_path, capsys):
    """A file that is not a database is one error line and exit 2."""
    path = tmp_path / "junk"
    path.write_bytes(b"not a database" * 100)
    assert cli.main(["cache", "stats", "--cache-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"cannot open the cache file {path}: " in err


def test_cache_needs_an_action(capsys):
    """`cache` alone is a usage error naming the actions."""
    assert cli.main(["cache"]) == 2
    assert "path, stats or purge" in capsys.readouterr().err


def _junk(path):
    path.write_bytes(b"not a database" * 100)
    return path


def _directory(path):
    path.mkdir()
    return path


def _read_only(path, monkeypatch):
    # Tests run as root, whom file modes do not stop: make the open fail as a
    # read-only file does for everyone else.
    def refuse(self, *args, **kwargs):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(SqliteCache, "__init__", refuse)
    return path


@pytest.mark.parametrize("kind", ["junk", "directory", "read-only"])
def test_route_with_an_unusable_cache_file_warns_once_and_goes_on(
    server, tmp_path, monkeypatch, capsys, kind
):
    """A cache file that is junk, a directory or read-only is one warning; the run goes on."""
    path = tmp_path / "answers.sqlite3"
    if kind == "junk":
        _junk(path)
    elif kind == "directory":
        _directory(path)
    else:
        _read_only(path, monkeypatch)
    source = tmp_path / "n.txt"
    source.write_text(f"{PLAIN}\n{DOC_NUMBER}\n", encoding="utf-8")
    assert cli.main(["route", str(source), "--cache-file", str(path)]) == 0
    captured = capsys.readouterr()
    assert [r["number"] for r in rows_of(captured.out)] == [PLAIN, DOC_NUMBER]
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert f"warning: cannot use the cache file {path}" in warnings[0]
    assert "answers are kept in memory for this run" in warnings[0]
    assert "Traceback" not in captured.err
    assert server.paid == 2
