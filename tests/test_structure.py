"""The package's shape, checked: layers only import downwards, no import cycles, small files.

Imports are read from the source (every ``import``, lazy ones inside functions included), so a violation
fails here even when no test happens to execute the offending function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vit_edge"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set:
    """The vit_edge modules ``path`` imports anywhere in its body (``from a import b`` counts ``a.b`` when
    that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _cycles(graph: dict) -> list:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(root):
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_is_read():
    """Guards the checks below against vacuity: the graph holds the edges we know exist."""
    assert "vit_edge.metrics" in GRAPH["vit_edge.validate"]
    assert "vit_edge.convert.stages.export" in GRAPH["vit_edge.convert.onnx"]
    assert len(MODULES) > 40


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _violations(sources, forbidden) -> list:
    return sorted(f"{name} imports {target}" for name in GRAPH if _under(name, *sources)
                  for target in GRAPH[name] if _under(target, *forbidden))


def test_runtimes_never_import_convert_or_calibration():
    """An app that only runs artifacts must not need what builds them."""
    assert _violations(["vit_edge.runtimes"], ["vit_edge.convert", "vit_edge.calibration"]) == []


def test_stages_and_targets_never_import_validate_or_the_cli():
    stages_and_targets = [n for n in MODULES if _under(n, "vit_edge.convert") and n not in
                          ("vit_edge.convert", "vit_edge.convert.tensorrt.cli")]
    assert _violations(stages_and_targets, ["vit_edge.validate", "vit_edge.cli", "vit_edge.cli_options",
                                            "vit_edge.bench_cli"]) == []


def test_the_bottom_layer_imports_only_errors():
    bottom = ["vit_edge.errors", "vit_edge.metrics", "vit_edge.targets", "vit_edge.cache", "vit_edge.artifact.records"]
    assert _violations(bottom, [n for n in MODULES if n not in ("vit_edge", "vit_edge.errors")]) == []


def test_only_the_entry_point_imports_the_cli():
    importers = sorted(n for n, targets in GRAPH.items() if "vit_edge.cli" in targets)
    assert importers == ["vit_edge.__main__"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_too_long(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines (split it by what its parts do)"


def test_importing_the_package_and_cli_loads_no_backend():
    import subprocess
    import sys

    code = ("import sys, vit_edge, vit_edge.cli, vit_edge.runtimes, vit_edge.artifact; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'openvino', 'nncf', 'tensorrt') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
