"""The package's shape, checked from its source: no import cycles, the facade never reaching
into the HTTP layer, and no module or function grown past what one reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "aiservice"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _trees() -> dict[str, ast.Module]:
    return {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


TREES = _trees()


def _imported(module: str, tree: ast.Module) -> set[str]:
    """Every aiservice module `module` imports, at any depth (a lazy import inside a function
    still ties the two modules together)."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in MODULES and name != module)
    return found


GRAPH = {name: _imported(name, tree) for name, tree in TREES.items()}


def _cycle() -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[name] = 2
        return None

    for name in sorted(GRAPH):
        if name not in state and (found := visit(name)):
            return found
    return None


def test_no_module_imports_itself_back_through_others():
    cycle = _cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_two_packages_import_each_other():
    # Layers (api, services, governance, metering, providers, store...) point one way.
    edges = {
        (_package(name), _package(target))
        for name, targets in GRAPH.items()
        for target in targets
        if _package(name) != _package(target)
    }
    assert not {(a, b) for a, b in edges if (b, a) in edges}


@pytest.mark.parametrize("package", ["aiservice.client"])
def test_the_facade_never_imports_the_http_layer(package: str):
    reaching = {
        (name, target)
        for name, targets in GRAPH.items()
        if name == package or name.startswith(package + ".")
        for target in targets
        if target == "aiservice.api" or target.startswith("aiservice.api.")
    }
    assert not reaching


def test_no_command_module_imports_the_cli_package_back():
    back = {name for name, targets in GRAPH.items() if "aiservice.cli" in targets}
    assert back <= {"aiservice.__main__"}


def test_no_module_is_longer_than_600_lines():
    long = {
        name: lines
        for name, path in MODULES.items()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long


def test_no_function_is_longer_than_60_lines():
    long = {
        f"{name}:{node.lineno} {node.name}": node.end_lineno - node.lineno + 1
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert not long


def test_the_cycle_finder_finds_a_cycle():
    # The checks above are only as good as the graph: a known cycle must be found.
    saved = dict(GRAPH)
    try:
        GRAPH["aiservice.errors"] = GRAPH["aiservice.errors"] | {"aiservice.settings"}
        GRAPH["aiservice.settings"] = GRAPH["aiservice.settings"] | {"aiservice.errors"}
        assert _cycle() is not None
    finally:
        GRAPH.clear()
        GRAPH.update(saved)
