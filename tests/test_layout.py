"""The harness's layout holds: data flows one way (tasks -> protocol -> engines -> storage -> execution ->
analysis -> rendering -> command line), no module imports from a layer above it, there is no import circle, the
protocol loads without torch, and every module's old flat path still imports the same object."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from budgetsched.bench._moved import MOVED

SRC = Path(__file__).resolve().parents[1] / "src"
BENCH = SRC / "budgetsched" / "bench"

#: lower layers first; a module may import from its own layer and the ones below
LAYERS = ["tasks", "protocol", "engines", "storage", "execution", "analysis", "rendering"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every budgetsched module ``path`` imports, at module level or inside a function (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("budgetsched"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("budgetsched"):
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) >= 3 and parts[:2] == ["budgetsched", "bench"] and parts[2] in LAYERS:
        return LAYERS.index(parts[2])
    return None


def _bench_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in BENCH.rglob("*.py")}


def test_no_module_imports_from_a_layer_above_it():
    upward = []
    for name, path in _bench_modules().items():
        mine = _layer(name)
        if mine is None:
            continue
        for imp in _imports(path):
            theirs = _layer(imp)
            if theirs is not None and theirs > mine:
                upward.append(f"{name} -> {imp}")
    assert not upward, "imports from a layer above:\n" + "\n".join(sorted(upward))


def test_no_import_circle_in_src():
    modules = {_module_name(p): p for p in (SRC / "budgetsched").rglob("*.py")}
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    # a package's __init__ importing its own submodules is how packages work, not a circle
    graph = {m: {i for i in deps if not (modules[m].name == "__init__.py" and i.startswith(m + "."))}
             for m, deps in graph.items()}
    seen: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(m: str) -> None:
        seen[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if seen.get(d) == 1:
                circles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in seen:
                visit(d)
        stack.pop()
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m)
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_protocol_and_the_harness_package_load_without_torch():
    code = ("import sys; import budgetsched.bench; import budgetsched.bench.protocol.grid, "
            "budgetsched.bench.protocol.study, budgetsched.bench.protocol.presets, budgetsched.bench.protocol.status; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_flat_module_paths_are_the_moved_modules(old):
    new = importlib.import_module(f"budgetsched.bench.{MOVED[old]}")
    assert importlib.import_module(f"budgetsched.bench.{old}") is new
    namespace: dict = {}
    exec(f"from budgetsched.bench import {old} as m", namespace)
    assert namespace["m"] is new
