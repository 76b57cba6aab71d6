"""The benchmarks' quick mode runs end to end, so that they never rot.

Only that it runs and writes well-formed JSON with every figure is checked:
never a timing, never whether an aim was met (that is for the full mode on a
quiet machine, see benchmarks/README.md).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"
FIGURES = range(1, 14)  # 1-7 threads; 8-11 asyncio; 12 Redis Cluster; 13 the route command


def _no_constants(name: str) -> object:
    raise AssertionError(f"{name} in the figures JSON: not strict JSON")


def test_quick_mode_writes_every_figure(tmp_path):
    """``run.py --quick --json PATH`` exits 0 and writes figures 1-13, each well-formed."""
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    data = json.loads(out.read_text(encoding="utf-8"), parse_constant=_no_constants)
    assert data["mode"] == "quick"
    assert isinstance(data["met"], bool)
    assert data["machine"]["python"]
    assert set(data["figures"]) == {str(n) for n in FIGURES}
    for number, fig in data["figures"].items():
        assert fig["title"], number
        assert isinstance(fig["met"], bool), number
        assert isinstance(fig["context"], dict), number
        assert fig["measures"], number
        for m in fig["measures"]:
            assert isinstance(m["name"], str), number
            assert m["name"], number
            assert isinstance(m["aim"], str), number
            assert m["aim"], number
            assert isinstance(m["met"], bool), number
            if m.get("skipped"):  # 1 without bench, 8-11 without aiohttp, 12 without Redis
                assert m["value"] is None, number
            else:
                assert isinstance(m["value"], (int, float)), (number, m)
                assert math.isfinite(m["value"]), (number, m)
        # The table printed a row for each figure.
        assert any(line.lstrip().startswith(f"{number} ") for line in proc.stdout.splitlines())


def test_only_runs_the_chosen_figures(tmp_path):
    """``--only 4,7`` writes figures 4 and 7 and nothing else."""
    out = tmp_path / "some.json"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--only", "4,7", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text(encoding="utf-8"), parse_constant=_no_constants)
    assert set(data["figures"]) == {"4", "7"}


def test_plot_writes_a_png_or_says_why_not(tmp_path):
    """``--plot PATH`` with figure 9 writes a PNG, or says in one line that it cannot."""
    out, png = tmp_path / "nine.json", tmp_path / "throughput.png"
    args = ["--quick", "--only", "9", "--json", str(out), "--plot", str(png)]
    proc = subprocess.run(
        [sys.executable, str(RUN), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = [line for line in proc.stdout.splitlines() if line.startswith("--plot:")]
    assert len(said) == 1, proc.stdout
    data = json.loads(out.read_text(encoding="utf-8"), parse_constant=_no_constants)
    if "matplotlib" in said[0]:
        assert not png.exists()
        assert data["figures"]["9"]["context"]["plot"] is None
    else:
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), said
