"""Tests for `--config FILE` and `--segments FILE` on route, lookup and segment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import test_cli
from test_cli import PLAIN, rows_of

from smsroute import cli
from smsroute.cli import route
from smsroute.cli.configfile import command_settings
from smsroute.testing import DOC_NUMBER

NEW = "19412345678"  # 194: unallocated in the built-in table; the fake vendor refuses it (-3)
HEADER = "segment\toperator\tkind\thost\tlength\n"


@pytest.fixture
def server(test_cli_server, monkeypatch):
    """The fake vendor, known only to the settings file: no apikey or URL in the environment."""
    monkeypatch.delenv(cli.ENV_APIKEY)
    monkeypatch.delenv(cli.ENV_BASE_URL)
    monkeypatch.setenv("VENDOR_KEY", test_cli_server.apikey)
    return test_cli_server


test_cli_server = test_cli.server  # the fixture of test_cli.py, under another name


def write_config(folder: Path, url: str, extra: str = "", name: str = "smsroute.toml") -> Path:
    """Write a settings file and, beside it, the segment table it names by a relative path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "newer.tsv").write_text(
        HEADER + "194\t电信\tregular\t\t11\n138\t移动\tregular\t\t11\n139\t移动\tregular\t\t11\n",
        encoding="utf-8",
    )
    path = folder / name
    path.write_text(
        f"""
[vendor]
apikey_env = "VENDOR_KEY"
base_url = "{url}"

[routing]
segments = "newer.tsv"
default = "OTHER"

[gateways]
"移动" = "CMPP"
"联通" = "SGIP"
"电信" = "SMGP"

[[rules]]
gateway = "HB-CT"
carrier = "电信"
province = "湖北"
{extra}""",
        encoding="utf-8",
    )
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def numbers(tmp_path):
    """A text list: the doc's ported number (湖北), a plain 移动 one and one in segment 194."""
    path = tmp_path / "numbers.txt"
    path.write_text(f"{DOC_NUMBER}\n{PLAIN}\n{NEW}\n", encoding="utf-8")
    return path


def route_rows(capsys, *argv):
    """Run route with --no-cache; return its exit status and rows by number."""
    status = cli.main(["route", *argv, "--no-cache", "--no-progress"])
    captured = capsys.readouterr()
    assert status != 2, captured.err
    return status, {r["number"]: r for r in rows_of(captured.out)}


def one_error_line(capsys) -> str:
    """Return stderr, checked to be one line and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_route_reads_vendor_gateways_rules_and_segments_from_the_file(
    server, numbers, tmp_path, capsys, monkeypatch
):
    """The file gives the vendor, the gateways, a rule and a segment table relative to itself."""
    config = write_config(tmp_path / "etc", server.url)
    monkeypatch.chdir(tmp_path)  # the table is found beside the file, not in the cwd
    status, rows = route_rows(capsys, str(numbers), "--config", str(config))
    assert status == 0
    assert rows[DOC_NUMBER]["gateway"] == "HB-CT"  # 电信 in 湖北: the rule
    assert rows[PLAIN]["gateway"] == "CMPP"
    # The vendor refuses 194 (-3); the user's table knows it as 电信, the built-in one does not.
    assert (rows[NEW]["current"], rows[NEW]["gateway"]) == ("电信", "SMGP")
    assert rows[NEW]["source"] == "fallback"
    assert server.paid == 2


def test_flags_given_on_the_command_line_override_the_file(server, numbers, tmp_path, capsys):
    """--gateway, --default-gateway, --base-url and --apikey replace what the file says."""
    config = write_config(tmp_path, "http://127.0.0.1:9")  # nothing listens there
    status, rows = route_rows(
        capsys,
        str(numbers),
        "--config",
        str(config),
        "--base-url",
        server.url,
        "--gateway",
        "移动=CM2",
        "--on-failure",
        "fail",
    )
    assert status == 0
    assert rows[PLAIN]["gateway"] == "CM2"
    assert rows[DOC_NUMBER]["gateway"] == "HB-CT"  # rules still come from the file
    status = cli.main(
        ["route", str(numbers), "--config", str(config), "--base-url", server.url,
         "--apikey", "wrong-key", "--no-cache", "--no-progress"]
    )  # fmt: skip
    assert status == 1  # the flag's key, not the file's: the vendor rejects it
    assert "stopped: unauthorized (code -1)" in capsys.readouterr().err


def test_the_file_wins_over_the_environment_and_the_flags_over_both(server, tmp_path):
    """[vendor] base_url beats $SMSROUTE_BASE_URL; flags beat the file; unset keys keep defaults."""
    config = write_config(tmp_path, server.url, "\n[cache]\nttl = 60\n")
    text = config.read_text(encoding="utf-8").replace(
        "[vendor]", '[vendor]\nqps = 20\nmethod = "GET"'
    )
    config.write_text(text, encoding="utf-8")
    os.environ[cli.ENV_BASE_URL] = "http://127.0.0.1:9"
    try:
        args = cli.build_parser().parse_args(["route", "x", "--config", str(config)])
        s = command_settings(args)
        assert (s.vendor.base_url, s.vendor.method, s.vendor.qps) == (server.url, "GET", 20)
        assert s.vendor.apikey == server.apikey
        assert route._deadline(args, s) == route.ROUTE_DEADLINE  # the file has no deadline
        args = cli.build_parser().parse_args(
            ["route", "x", "--config", str(config), "--method", "post", "--qps", "5",
             "--deadline", "0.2", "--timeout", "1.5"]
        )  # fmt: skip
        s = command_settings(args)
        assert (s.vendor.method, s.vendor.qps, s.vendor.timeout) == ("POST", 5, 1.5)
        assert route._deadline(args, s) == 0.2
        deadline_file = write_config(tmp_path / "d", server.url, "", "d.toml")
        deadline_file.write_text(
            deadline_file.read_text("utf-8").replace("[routing]", "[routing]\ndeadline = 0.75"),
            "utf-8",
        )
        args = cli.build_parser().parse_args(["route", "x", "--config", str(deadline_file)])
        assert route._deadline(args, command_settings(args)) == 0.75
        # Without a file, the environment gives the URL as before.
        args = cli.build_parser().parse_args(["route", "x"])
        assert command_settings(args).vendor.base_url == "http://127.0.0.1:9"
    finally:
        del os.environ[cli.ENV_BASE_URL]


@pytest.mark.parametrize("command", [["route", "numbers.txt"], ["lookup", DOC_NUMBER]])
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "[routing]\ndedline = 1\n",
            r"\[routing\] dedline: unknown key \(did you mean 'deadline'\?\)",
        ),
        ('[cache]\nbackend = "disk"\n', r"\[cache\] backend: "),
        ("[servre]\nport = 1\n", r"\[servre\]: unknown table"),
    ],
)
def test_a_bad_key_is_one_line_naming_it_and_exit_2(
    server, tmp_path, capsys, command, extra, message
):
    """A typo in the file stops route and lookup before anything is paid: one line, status 2."""
    import re

    (tmp_path / "numbers.txt").write_text(f"{PLAIN}\n", encoding="utf-8")
    config = tmp_path / "bad.toml"
    config.write_text(f'[vendor]\nbase_url = "{server.url}"\n' + extra, encoding="utf-8")
    command = [str(tmp_path / c) if c == "numbers.txt" else c for c in command]
    assert cli.main([*command, "--config", str(config)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"smsroute: {config}: ")
    assert re.search(message, line), line
    assert server.paid == 0


def test_a_missing_config_file_is_one_line(server, tmp_path, capsys):
    """--config naming no file says so and exits 2."""
    assert cli.main(["lookup", DOC_NUMBER, "--config", str(tmp_path / "nope.toml")]) == 2
    assert one_error_line(capsys).endswith("nope.toml: no such file")


def test_no_apikey_names_the_variable_the_file_chose(
    server, numbers, tmp_path, capsys, monkeypatch
):
    """The missing-key message names [vendor] apikey_env's variable, not $SMSROUTE_APIKEY."""
    monkeypatch.delenv("VENDOR_KEY")
    config = write_config(tmp_path, server.url)
    assert cli.main(["route", str(numbers), "--config", str(config), "--no-cache"]) == 2
    line = one_error_line(capsys)
    assert "set VENDOR_KEY" in line
    assert "[vendor] apikey_env" in line


def test_segments_flag_routes_a_new_segment_offline(server, numbers, tmp_path, capsys, monkeypatch):
    """--segments alone (no file) makes 194 a 电信 number when the vendor cannot say."""
    monkeypatch.setenv(cli.ENV_APIKEY, server.apikey)
    monkeypatch.setenv(cli.ENV_BASE_URL, server.url)
    table = tmp_path / "t.tsv"
    table.write_text(
        HEADER + "194\t电信\tregular\t\t11\n138\t移动\tregular\t\t11\n139\t移动\tregular\t\t11\n",
        "utf-8",
    )
    status, rows = route_rows(capsys, str(numbers), "--segments", str(table))
    assert rows[NEW]["current"] == "电信"
    assert rows[NEW]["gateway"] == "电信"
    assert status == 0
    _, rows = route_rows(capsys, str(numbers))
    assert NEW not in rows  # the built-in table: no operator, no gateway


@pytest.mark.parametrize("command", [["route", "numbers.txt"], ["lookup", NEW], ["segment", NEW]])
def test_a_malformed_table_names_its_line_and_exits_2(server, tmp_path, capsys, command):
    """A bad row in --segments or in [routing] segments: one line with file:line, status 2."""
    (tmp_path / "numbers.txt").write_text(f"{PLAIN}\n", encoding="utf-8")
    command = [str(tmp_path / c) if c == "numbers.txt" else c for c in command]
    table = tmp_path / "bad.tsv"
    table.write_text(HEADER + "194\t电信\tregular\t\t11\n195\t移懂\tregular\t\t11\n", "utf-8")
    assert cli.main([*command, "--segments", str(table)]) == 2
    assert one_error_line(capsys) == (
        f"smsroute: --segments: {table}:3: unknown operator '移懂' (移动, 联通, 电信, 广电)"
    )
    config = write_config(tmp_path / "etc", server.url)
    (tmp_path / "etc" / "newer.tsv").write_text(table.read_text("utf-8"), "utf-8")
    assert cli.main([*command, "--config", str(config)]) == 2
    line = one_error_line(capsys)
    assert line == (
        f"smsroute: {config}: [routing] segments: {tmp_path / 'etc' / 'newer.tsv'}:3:"
        " unknown operator '移懂' (移动, 联通, 电信, 广电)"
    )
    assert server.paid == 0


def test_lookup_uses_the_file_vendor_segments_and_cache(server, tmp_path, capsys, monkeypatch):
    """lookup --config: the file's vendor, its table's segments, answers kept in its [cache]."""
    config = write_config(
        tmp_path / "etc", server.url, '\n[cache]\nbackend = "sqlite"\npath = "answers.sqlite3"\n'
    )
    monkeypatch.chdir(tmp_path)
    assert cli.main(["lookup", DOC_NUMBER, "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == "upstream"
    assert (tmp_path / "etc" / "answers.sqlite3").exists()  # beside the file, not in the cwd
    assert cli.main(["lookup", DOC_NUMBER, "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == "cache"
    assert server.paid == 1
    # 194 goes to the vendor with the user's table and with the built-in one
    # (which does not know it yet): the vendor's -3 here, free of charge.
    assert cli.main(["lookup", NEW, "--config", str(config)]) == 1
    assert "vendor code -3" in capsys.readouterr().err
    monkeypatch.setenv(cli.ENV_APIKEY, server.apikey)
    monkeypatch.setenv(cli.ENV_BASE_URL, server.url)
    assert cli.main(["lookup", NEW]) == 1
    assert "vendor code -3" in capsys.readouterr().err
    assert server.paid == 1


def test_segment_shows_the_users_table(tmp_path, capsys):
    """segment --segments answers from the given table; without it, from the built-in one."""
    table = tmp_path / "t.tsv"
    table.write_text(HEADER + "194\t电信\tregular\t\t11\n", "utf-8")
    assert cli.main(["segment", "--segments", str(table), NEW]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == [NEW, "194", "电信", "regular"]
    assert cli.main(["segment", NEW]) == 0
    assert "unallocated" in capsys.readouterr().out
