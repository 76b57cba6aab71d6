"""The docs stay true: the README quotes the latest benchmark run, and no doc names a work item."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BENCHMARKS = ROOT / "benchmarks" / "README.md"
LATEST = "## Last full-mode figures"
# A measured figure: "8.2×", "0.53 µs", "1.00 query per distinct number" is
# prose; the units are what a benchmark prints.
FIGURE = re.compile(r"(?<![\d.])\d[\d,]*(?:\.\d+)?(?:-\d[\d,]*(?:\.\d+)?)?\s?(?:×|x\b|µs\b)")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def test_the_readme_quotes_the_latest_benchmark_run():
    """Every speed figure in the README is one of the latest run's (benchmarks/README.md)."""
    readme = README.read_text(encoding="utf-8")
    latest = _section(BENCHMARKS.read_text(encoding="utf-8"), LATEST)
    quoted = FIGURE.findall(readme)
    assert quoted, "the README quotes no figure: the pattern is broken"
    measured = {f.replace(" ", "").replace("x", "×") for f in FIGURE.findall(latest)}
    missing = [f for f in quoted if f.replace(" ", "").replace("x", "×") not in measured]
    assert not missing, f"README figures not in {LATEST!r} of benchmarks/README.md: {missing}"


def test_no_doc_names_an_issue_number():
    """Work items are the team's bookkeeping; a reader of the docs has no use for their numbers."""
    pattern = re.compile(r"\b(?:issue|task)s?\s+#?\d+\b", re.IGNORECASE)
    docs = [README, BENCHMARKS, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    docs += sorted((ROOT / "benchmarks").rglob("*.py"))
    found = []
    for path in docs:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            # Another project's tracker is a source worth citing ("httpx's open issue #3215").
            if pattern.search(line) and not re.search(r"httpx|github|upstream", line, re.I):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, found
