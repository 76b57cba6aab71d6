"""The command line's package layout: one job per module, no cycle with the demo."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import smsroute.cli

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
