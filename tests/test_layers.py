"""The layering of the code, read from its imports (also those inside functions).

From the bottom up: ``skyshard`` (the contracts every stage shares: record schema, manifest, run
record, files, memory), then the sample generator and the export, the trainer, evaluation, the
``cli`` package, the benchmark harness (``bench``) and the research tools (``research``) on top.
A package imports only packages below it (or itself), and no module imports itself through
others: no import cycle, not even one hidden inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Package -> layer; a package may import packages of a lower layer only (research uses bench's
#: measuring helpers; the benchmark harness never imports research).
LAYERS = {"skyshard": 0, "sample": 1, "exporter": 1, "trainer": 2, "evaluation": 3, "cli": 4,
          "bench": 5, "research": 6}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in LAYERS if (REPO / package).is_dir()
            for p in (REPO / package).rglob("*.py")}


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports anywhere in its body."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(path, known) - {name} for name, path in known.items()}


def test_packages_import_only_the_layers_below_them(graph):
    wrong = sorted(f"{source} imports {target}" for source, targets in graph.items()
                   for target in targets
                   if LAYERS[target.split(".")[0]] > LAYERS[source.split(".")[0]]
                   or (LAYERS[target.split(".")[0]] == LAYERS[source.split(".")[0]]
                       and target.split(".")[0] != source.split(".")[0]))
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles(graph):
    """Tarjan's strongly connected components: every component must be one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_check_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from skyshard import schema\n    import exporter.spec\n")
    assert imported(source, {"skyshard.schema": source, "exporter.spec": source,
                             "skyshard": source}) == {"skyshard.schema", "exporter.spec",
                                                      "skyshard"}
