"""The sandbox is a package of its own: it imports nothing from the service, the service
reaches it through one module (app/sandbox_mount.py), and its modules form no import
cycle (imports at any level count, including those inside functions)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MOUNT = Path("app/sandbox_mount.py")


def _modules(package: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in the file, relative ones resolved; for
    `from package import name` both the package and `package.name`."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _is_in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_sandbox_imports_nothing_from_the_service() -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for name, path in _modules("sandbox").items()
        for line, target in _imports(name, path)
        if _is_in(target, "app")
    ]
    assert offending == []


def test_the_service_reaches_the_sandbox_through_one_module() -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for name, path in _modules("app").items()
        for line, target in _imports(name, path)
        if _is_in(target, "sandbox") and path.relative_to(ROOT) != MOUNT
    ]
    assert offending == []


def test_no_import_cycles_inside_the_sandbox() -> None:
    """Strict: `from sandbox import x` in a module of the package is an edge to the
    package itself (whose `__init__` imports the app), so siblings import each other by
    their full names."""
    modules = _modules("sandbox")
    graph = {
        name: {t for _, t in _imports(name, path) if t in modules and t != name}
        for name, path in modules.items()
    }
    cycles = [component for component in _components(graph) if len(component) > 1]
    assert cycles == []


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found
