"""Guard smsroute.testing's shape: its exports, and modules that import no private names."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

import smsroute.testing

PACKAGE = Path(smsroute.testing.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))

# What code outside the package imports today (tests, benchmarks, demo, cli, plugin).
STABLE = {
    "AREAS",
    "DOC_NUMBER",
    "FAULTS",
    "REASONS",
    "AnswerSpec",
    "FakeCarrierServer",
    "FakeClock",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "Reply",
    "VendorMock",
    "VendorSimulator",
    "mock_vendor",
}


def imports_of(path: Path) -> list[tuple[str, str]]:
    """Return (module, name) for every ``from smsroute... import name`` in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("smsroute"):
            found.extend((str(node.module), alias.name) for alias in node.names)
    return found


def test_all_names_resolve():
    """Every name in smsroute.testing.__all__ resolves, once listed."""
    for name in smsroute.testing.__all__:
        assert getattr(smsroute.testing, name) is not None, name
    assert len(smsroute.testing.__all__) == len(set(smsroute.testing.__all__))


def test_all_lists_the_public_names():
    """__all__ is exactly the public non-module names the package holds."""
    exported = set(smsroute.testing.__all__)
    for name in exported:
        getattr(smsroute.testing, name)  # resolve the lazy export first
    public = {
        name
        for name, value in vars(smsroute.testing).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    public -= {"annotations", "TYPE_CHECKING", "Any"}
    assert public == exported
    assert exported >= STABLE


def test_no_private_name_crosses_a_module():
    """No module of the package imports an underscore name from another module."""
    crossing = [
        (path.name, module, name)
        for path in MODULES
        for module, name in imports_of(path)
        if name.startswith("_")
    ]
    assert crossing == []


def test_no_import_cycle_inside_the_package():
    """The package's modules import each other without a cycle, type-only imports included."""
    graph = {
        path.stem: {
            module.rsplit(".", 1)[1]
            for module, _ in imports_of(path)
            if module.startswith("smsroute.testing.")
        }
        for path in MODULES
    }
    done: set[str] = set()

    def visit(node, trail):
        assert node not in trail, " -> ".join([*trail, node])
        if node not in done:
            for child in graph.get(node, ()):
                visit(child, [*trail, node])
            done.add(node)

    for node in graph:
        visit(node, [])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_modules_are_small_and_say_their_job(path):
    """Each module stays under about 500 lines and opens with a docstring."""
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") <= 520
    assert ast.get_docstring(ast.parse(text))


def test_importing_the_package_does_not_import_pytest_or_responses():
    """smsroute.testing loads without pytest, responses or requests' test helpers."""
    code = (
        "import sys, smsroute.testing; "
        "print(sorted(m for m in ('pytest', 'responses') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "[]"


def test_fault_names_are_written_once():
    """FAULTS is the FaultKind literal's own list, and the HTML faults are among them."""
    from typing import get_args

    from smsroute.testing.faults import HTTP_FAULTS

    assert get_args(smsroute.testing.FaultKind) == smsroute.testing.FAULTS
    assert set(HTTP_FAULTS) <= set(smsroute.testing.FAULTS)


def test_set_answer_keywords_are_answer_specs():
    """The server's set_answer() takes exactly AnswerSpec's keywords and refuses a typo."""
    sim = smsroute.testing.VendorSimulator()
    server = smsroute.testing.FakeCarrierServer(simulator=sim)
    server.set_answer("13800138000", res=1, init="移动", now="联通", area="西藏-拉萨")
    assert sim.answer_for("13800138000")["result"]["Now_isp"] == "联通"
    server.set_answer(number="13800138001", code=-4, reason="nope", fault=None)
    assert sim.answer_for("13800138001") == {"code": -4, "reason": "nope", "result": None}
    with pytest.raises(TypeError):
        server.set_answer("13800138000", now_isp="联通")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        server.set_answer("13800138000", fault="gremlins")  # type: ignore[typeddict-item]


def test_package_docstring_example_runs():
    """The example in smsroute.testing's docstring runs as written."""
    import requests

    doc = smsroute.testing.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    code = "\n".join(line[4:] for line in block.splitlines())
    assert "FakeCarrierServer" in code
    exec(compile(code, "smsroute.testing.__doc__", "exec"), {"requests": requests})
