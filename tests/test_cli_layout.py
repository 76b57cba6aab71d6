"""The command line's package layout: one job per module, no cycle with the demo."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import smsroute.cli
from smsroute.cli.common import EXIT_STATUSES

CLI_DIR = Path(smsroute.cli.__file__).parent
MODULES = sorted(CLI_DIR.glob("*.py"))


def test_every_cli_module_says_its_job_and_stays_small():
    """Each module opens with a docstring and stays under about 500 lines."""
    assert len(MODULES) > 5
    for path in MODULES:
        source = path.read_text(encoding="utf-8")
        assert ast.get_docstring(ast.parse(source)), path.name
        assert source.count("\n") <= 500, path.name


def test_no_private_name_is_imported_across_modules():
    """No ``from smsroute... import _name``: what modules share is public."""
    for path in [*MODULES, CLI_DIR.parent / "demo.py", CLI_DIR.parent / "tables.py"]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("smsroute"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private or node.module == "smsroute._version", (path.name, private)


def test_demo_does_not_import_the_command_line():
    """smsroute.demo imports the table formatting from smsroute.tables, not from the CLI."""
    code = (
        "import sys, smsroute.demo; "
        "print(sorted(m for m in sys.modules if m.split('.')[:2] == ['smsroute', 'cli']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "[]"


def test_readme_lists_the_exit_statuses_of_the_code():
    """The README's exit status table says what EXIT_STATUSES says, status by status."""
    readme = (CLI_DIR.parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("Exit status (also at the end of `smsroute --help`):", 1)[1]
    rows = [line.split("|")[1:3] for line in table.strip().splitlines()[2:] if line.startswith("|")]
    documented = [(int(code), meaning.strip().replace("`", "")) for code, meaning in rows]
    assert documented == list(EXIT_STATUSES)


def test_help_ends_with_the_exit_statuses(capsys):
    """`smsroute --help` lists every exit status."""
    assert smsroute.cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for code, _ in EXIT_STATUSES:
        assert f"\n  {code:<4} " in out
