"""The project's own checks, so that CI enforces them: ruff and strict mypy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        ("ruff", "check", "smsroute", "tests", "benchmarks"),
        ("ruff", "format", "--check", "smsroute", "tests", "benchmarks"),
        ("mypy", "smsroute"),
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_tool_is_clean(command: tuple[str, ...]) -> None:
    """The package passes ruff and strict mypy as configured in pyproject.toml."""
    result = _run(*command)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_ships_typing_marker_and_segment_table() -> None:
    """py.typed and the segment table are package data, so installs keep them."""
    assert (ROOT / "smsroute" / "py.typed").is_file()
    assert (ROOT / "smsroute" / "data" / "segments.tsv").is_file()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"py.typed"' in pyproject
    assert '"data/*.tsv"' in pyproject
