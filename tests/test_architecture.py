"""The package's shape: a core without I/O, no private names across modules, no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import smsroute

PACKAGE = Path(smsroute.__file__).parent
# What waits or talks: the core may import none of these (nor anything under them).
FORBIDDEN = {
    "threading",
    "asyncio",
    "time",
    "socket",
    "selectors",
    "logging",
    "structlog",
    "requests",
    "urllib3",
    "aiohttp",
    "redis",
    "sqlite3",
    "concurrent",
    "smsroute._log",
}


def modules() -> dict[str, Path]:
    """Return every module of the package by dotted name."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(path: Path, *, with_type_checking: bool = False) -> list[tuple[str, list[str], int]]:
    """Return ``(module, names, line)`` for every import in a file, lazy ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    if not with_type_checking:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names], node.lineno))
    return found


KNOWN_CYCLES: set[str] = set()
CORE = {name: path for name, path in modules().items() if name.startswith("smsroute.core")}


@pytest.mark.parametrize("name", sorted(CORE))
def test_core_does_no_io(name):
    """A core module imports nothing that waits or talks (time comes in as an argument)."""
    bad = [
        (module, line)
        for module, _names, line in imports(CORE[name], with_type_checking=True)
        if any(module == f or module.startswith(f + ".") for f in FORBIDDEN)
    ]
    assert bad == []


def test_core_exists():
    """The decision core has its modules, each with one job."""
    assert {n.rsplit(".", 1)[-1] for n in CORE} >= {
        "freshness",
        "policy",
        "resolve",
        "outcome",
        "breaker",
        "vendor",
        "stats",
    }


def test_no_private_name_is_imported_across_modules():
    """``from smsroute.x import _y`` is a seam that is not one: nothing does it."""
    bad = []
    for name, path in modules().items():
        for module, names, line in imports(path, with_type_checking=True):
            if module.startswith("smsroute"):
                bad.extend(
                    f"{name}:{line} {module}.{n}"
                    for n in names
                    if n.startswith("_") and n != "__version__"
                )
    assert bad == []


def test_no_import_cycles():
    """The import graph of the package has no cycle, lazy imports included."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for module, names, _line in imports(path):
            for target in [module, *(f"{module}.{n}" for n in names)]:
                if target in mods and target != name and not name.startswith(target + "."):
                    deps.add(target)
        graph[name] = deps
    # The package's own __init__ re-exports everything; only cycles among the rest count.
    graph.pop("smsroute", None)
    for deps in graph.values():
        deps.discard("smsroute")
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert set(cycles) <= KNOWN_CYCLES


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_says_its_job_and_stays_small(name):
    """Each module opens with a docstring, and none grows past ~500 lines."""
    path = modules()[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{name} has no docstring"
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= 530, f"{name}: {lines} lines"
