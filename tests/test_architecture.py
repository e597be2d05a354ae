"""The house rules (docs/architecture.md), checked over the source with `ast`.

1. SQL lives in repositories: outside `repository.py` files (or a `repository/` package),
   `app/db/`, `app/events.py` and `app/accounts/vault.py` no module calls sqlalchemy's
   `text()`, runs a statement (`.execute()`, `.executemany()`, `.exec_driver_sql()`,
   `.scalar(stmt)`, `.scalars(stmt)`, `.stream_scalars()`: in this code base those names
   are SQLAlchemy's session and connection methods, whatever the receiver is called) or
   holds `pg_notify` in a string. And `pg_notify` is written in `app/events.py` alone.
2. No import cycles in `app/` (and `sandbox/`): the graph holds every import, those
   inside functions included, except those under `if TYPE_CHECKING:` (never run). An
   edge points at the module whose code the import needs: `from pkg import mod` at
   pkg.mod, `from pkg import name` at pkg's __init__. Importing pkg.mod is not an edge
   to pkg's __init__ (Python has it at least partly initialised by then, which is safe),
   so a package whose __init__ re-exports its submodules is not a cycle by itself.
3. Transactions open only at the edges: `org_transaction(`, `system_transaction(` and
   `.begin()` appear only in the modules of TRANSACTION_EDGES (savepoints, `.begin_nested()`,
   are fine anywhere).
4. Tests share helpers from `tests/fixtures/` only: no module under `tests/` imports a test
   module (`test_*`), a conftest (pytest loads those itself) or a `_private` name of another
   module under `tests/`, wherever the import is (functions included, relative or not).

Each check is a function of a project folder, so it is tested below on small synthetic
trees as well: a violation is found, a clean tree passes.
"""

from __future__ import annotations

import ast
import fnmatch
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "sandbox")
"""Top-level packages checked, where the folder exists."""

SQL_HOMES = ("app/db/*", "app/events.py", "app/accounts/vault.py")
"""Besides every repository.py and repository/ package."""
SQL_METHODS = {"execute", "executemany", "exec_driver_sql", "stream_scalars"}
SQL_METHODS_WITH_A_STATEMENT = {"scalar", "scalars"}
"""session.scalars(stmt) runs SQL; result.scalars() / result.scalars(0) only read a result."""
EVENTS_MODULE = "app/events.py"

TRANSACTION_EDGES = {
    "app/db/*": "defines org_transaction / system_transaction and the request/job sessions",
    "app/*/endpoints.py": "a request: the endpoint owns its unit of work",
    "app/*/jobs.py": "a job: it reloads what it needs in its own transaction",
    "app/auth/deps.py": "the request dependency that opens the caller's transaction",
    "app/cli.py": "a command is an edge",
    "app/dev/*": "each development fixture and each step of the demo is a unit of work",
    "app/sync/pipeline.py": "the sync pipeline writes each page in its own transaction",
    "app/tracking/recorder.py": "the pixel recorder's batch write, off the request path",
    "app/accounts/tokens.py": "token refresh: its own unit of work under a row lock",
    "app/send/runner.py": (
        "the send job's body: each step (load, record sent, fail) is its own unit of work,"
        " never held across the provider call"
    ),
    "app/reconcile/service.py": (
        "run_reconcile, the reconciliation job's body: like run_sync, its steps are units"
        " of work around the provider calls (the page writes are the sync pipeline's)"
    ),
    "app/sync/service.py": (
        "run_sync, the sync job's body: its start, outcome and retry steps are units of"
        " work around the provider calls (the page writes are the pipeline's)"
    ),
}
TRANSACTION_OPENERS = {"org_transaction", "system_transaction"}


@dataclass(frozen=True)
class Source:
    rel: str
    """Posix path from the project folder, e.g. app/sync/jobs.py."""
    module: str
    """Dotted module name, e.g. app.sync.jobs (a package: its __init__'s name is the package)."""
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        return self.rel.endswith("/__init__.py")


def sources(project: Path, packages: tuple[str, ...] = PACKAGES) -> list[Source]:
    found = []
    for package in packages:
        for path in sorted((project / package).rglob("*.py")):
            rel = path.relative_to(project)
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            tree = ast.parse(path.read_text(), filename=str(rel))
            found.append(Source(rel.as_posix(), ".".join(parts), tree))
    return found


def _matches(rel: str, patterns: object) -> bool:
    return any(fnmatch.fnmatchcase(rel, pattern) for pattern in patterns)  # type: ignore[attr-defined]


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _strings_with(tree: ast.Module, needle: str) -> Iterator[int]:
    """Line numbers of string literals (f-string parts included, docstrings not) holding
    `needle`."""
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and needle in node.value.lower()
            and id(node) not in docstrings
        ):
            yield node.lineno


def _sqlalchemy_names(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(names bound to sqlalchemy's text(), names bound to a sqlalchemy module)."""
    text_names: set[str] = set()
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sqlalchemy":
                    modules.add(alias.asname or "sqlalchemy")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            for alias in node.names:
                if alias.name == "text":
                    text_names.add(alias.asname or "text")
                elif alias.name in ("sql", "expression"):
                    modules.add(alias.asname or alias.name)
    return text_names, modules


def _is_sql_home(rel: str) -> bool:
    parts = rel.split("/")
    return parts[-1] == "repository.py" or "repository" in parts[:-1] or _matches(rel, SQL_HOMES)


def sql_outside_repositories(project: Path) -> list[str]:
    """`file:line: what` for each statement, text() or pg_notify outside the SQL homes."""
    found = []
    for source in sources(project):
        if not source.rel.startswith("app/") or _is_sql_home(source.rel):
            continue
        text_names, sqlalchemy_modules = _sqlalchemy_names(source.tree)
        hits: set[tuple[int, str]] = set()
        for node in ast.walk(source.tree):
            if isinstance(node, ast.Attribute) and node.attr == "exec_driver_sql":
                hits.add((node.lineno, ".exec_driver_sql()"))
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in text_names:
                hits.add((node.lineno, "text()"))
            elif isinstance(func, ast.Attribute):
                receiver = func.value
                if (
                    func.attr == "text"
                    and isinstance(receiver, ast.Name)
                    and receiver.id in sqlalchemy_modules
                ):
                    hits.add((node.lineno, "text()"))
                elif func.attr in SQL_METHODS:
                    hits.add((node.lineno, f".{func.attr}()"))
                elif func.attr in SQL_METHODS_WITH_A_STATEMENT and node.args:
                    first = node.args[0]
                    if not (isinstance(first, ast.Constant) and isinstance(first.value, int)):
                        hits.add((node.lineno, f".{func.attr}(statement)"))
        hits |= {(line, "pg_notify") for line in _strings_with(source.tree, "pg_notify")}
        found += [f"{source.rel}:{line}: {what}" for line, what in sorted(hits)]
    return found


def notify_outside_events(project: Path) -> list[str]:
    return [
        f"{source.rel}:{line}: pg_notify"
        for source in sources(project)
        if source.rel != EVENTS_MODULE
        for line in _strings_with(source.tree, "pg_notify")
    ]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that can run: at any depth (functions included), but not the body of
    an `if TYPE_CHECKING:` (its `else:` runs)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
        return
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children: list[ast.AST] = list(node.orelse)
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        yield from _imports(child)


def import_graph(project: Path) -> dict[str, dict[str, str]]:
    """module -> {imported module: "file:line" of the first such import}, within PACKAGES.

    `import a.b` and `from a import b` point at the module a.b when it exists (else at the
    closest package that does): the module whose code the import needs."""
    all_sources = sources(project)
    modules = {s.module for s in all_sources}

    def closest(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, str]] = {s.module: {} for s in all_sources}
    for source in all_sources:
        package = source.module if source.is_package else source.module.rpartition(".")[0]
        for node in _imports(source.tree):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [closest(alias.name) for alias in node.names]
            else:
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join([*parts, node.module] if node.module else parts)
                else:
                    base = node.module or ""
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else closest(base)
                    for alias in node.names
                ]
            for target in targets:
                if target and target != source.module:
                    graph[source.module].setdefault(target, f"{source.rel}:{node.lineno}")
    return graph


def _strongly_connected(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components of more than one module, i.e. the cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
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
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def _shortest_cycle(graph: dict[str, dict[str, str]], component: list[str]) -> list[str]:
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph[node]):
            if target not in members or target in previous:
                continue
            previous[target] = node
            if target == start:
                path = [start]
                while path[-1] != start or len(path) == 1:
                    path.append(previous[path[-1]])
                return path[::-1]
            queue.append(target)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def import_cycles(project: Path) -> list[str]:
    """One line per cycle: `a -> b (a.py:3) -> a (b.py:9)`, with the component's size."""
    graph = import_graph(project)
    reports = []
    for component in _strongly_connected(graph):
        cycle = _shortest_cycle(graph, component)
        steps = [cycle[0]] + [
            f"{after} ({graph[before][after]})" for before, after in itertools.pairwise(cycle)
        ]
        more = f" [{len(component)} modules entangled]" if len(component) > len(cycle) - 1 else ""
        reports.append(" -> ".join(steps) + more)
    return reports


def transactions_outside_edges(project: Path) -> list[str]:
    found = []
    for source in sources(project):
        if not source.rel.startswith("app/") or _matches(source.rel, TRANSACTION_EDGES):
            continue
        for node in ast.walk(source.tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in TRANSACTION_OPENERS:
                found.append(f"{source.rel}:{node.lineno}: {name}()")
            elif (
                isinstance(func, ast.Attribute)
                and name == "begin"
                and not node.args
                and not node.keywords
            ):
                found.append(f"{source.rel}:{node.lineno}: .begin()")
    return sorted(found, key=lambda hit: (hit.split(":")[0], int(hit.split(":")[1])))


def _is_shared_only_by_pytest(module: str) -> bool:
    """A test module or a conftest: pytest imports them, other modules must not."""
    last = module.rpartition(".")[2]
    return last.startswith("test_") or last == "conftest"


def imports_between_tests(project: Path) -> list[str]:
    """`file:line: what` for each import, in a module under tests/, of a test module, a
    conftest or a `_private` name of another tests module."""
    found = []
    for source in sources(project, ("tests",)):
        package = source.module if source.is_package else source.module.rpartition(".")[0]
        for node in ast.walk(source.tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
                hits = [f"import {name}" for name in modules if _is_shared_only_by_pytest(name)]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join([*parts, node.module] if node.module else parts)
                else:
                    base = node.module or ""
                if base.split(".")[0] != "tests":
                    continue
                names = [alias.name for alias in node.names]
                if _is_shared_only_by_pytest(base):
                    hits = [f"from {base} import {', '.join(names)}"]
                else:
                    hits = [
                        f"from {base} import {name}"
                        for name in names
                        if name.startswith("_") or _is_shared_only_by_pytest(name)
                    ]
            else:
                continue
            found += [f"{source.rel}:{node.lineno}: {hit}" for hit in hits]
    return sorted(found, key=lambda hit: (hit.split(":")[0], int(hit.split(":")[1])))


# The rules on this code base.


def test_sql_lives_in_repositories() -> None:
    found = sql_outside_repositories(ROOT)
    assert not found, "SQL outside repositories, app/db, events, vault:\n" + "\n".join(found)


def test_events_are_notified_from_app_events_only() -> None:
    found = notify_outside_events(ROOT)
    assert not found, f"pg_notify outside {EVENTS_MODULE}:\n" + "\n".join(found)


def test_no_import_cycles() -> None:
    found = import_cycles(ROOT)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_transactions_open_only_at_the_edges() -> None:
    found = transactions_outside_edges(ROOT)
    assert not found, "transactions opened outside the edges (TRANSACTION_EDGES):\n" + "\n".join(
        found
    )


def test_every_allowed_edge_exists() -> None:
    """An edge that no longer exists is a stale permission."""
    stale = [pattern for pattern in TRANSACTION_EDGES if not any(ROOT.glob(pattern))]
    assert not stale


def test_tests_import_no_test_module_and_no_private_name() -> None:
    found = imports_between_tests(ROOT)
    assert not found, "tests importing other tests (share it in tests/fixtures/):\n" + "\n".join(
        found
    )


# The checks themselves, on small synthetic trees.


def _tree(project: Path, files: dict[str, str]) -> Path:
    for rel, code in files.items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
        for parent in path.relative_to(project).parents[:-1]:
            (project / parent / "__init__.py").touch()
    return project


SQL_TREE = {
    "app/things/repository.py": (
        "from sqlalchemy import text\n"
        "async def load(session):\n"
        "    return (await session.execute(text('SELECT 1'))).scalars()\n"
    ),
    "app/things/repository/__init__.py": "",
    "app/things/repository/more.py": "async def f(conn):\n    await conn.exec_driver_sql('x')\n",
    "app/db/engine.py": "async def ping(conn):\n    await conn.execute('SELECT 1')\n",
    "app/events.py": "SQL = \"SELECT pg_notify('ce_email_events', :p)\"\n",
    "app/accounts/vault.py": "async def f(s, q):\n    await s.execute(q)\n",
    "app/things/service.py": (
        '"""Calls pg_notify through events (a docstring: not SQL)."""\n'
        "from app.things import repository\n"
        "async def rows(session):\n"
        "    result = await repository.load(session)\n"
        "    return result.scalars().all(), result.scalar(), result.scalars(0)\n"
    ),
}


def test_sql_check_passes_a_clean_tree(tmp_path: Path) -> None:
    assert sql_outside_repositories(_tree(tmp_path, SQL_TREE)) == []


def test_sql_check_finds_each_kind_with_file_and_line(tmp_path: Path) -> None:
    bad = {
        "app/things/service.py": (
            "import sqlalchemy as sa\n"
            "from sqlalchemy import text as sql\n"
            "async def f(session, conn, stmt):\n"
            "    await session.execute(stmt)\n"
            "    q = sql('SELECT 2')\n"
            "    await conn.exec_driver_sql('SELECT 3')\n"
            "    await session.scalars(stmt)\n"
            "    return sa.text('SELECT 4'), f'SELECT pg_notify({q})'\n"
        )
    }
    assert sql_outside_repositories(_tree(tmp_path, {**SQL_TREE, **bad})) == [
        "app/things/service.py:4: .execute()",
        "app/things/service.py:5: text()",
        "app/things/service.py:6: .exec_driver_sql()",
        "app/things/service.py:7: .scalars(statement)",
        "app/things/service.py:8: pg_notify",
        "app/things/service.py:8: text()",
    ]


def test_notify_check_allows_events_only(tmp_path: Path) -> None:
    project = _tree(tmp_path, SQL_TREE)
    assert notify_outside_events(project) == []
    (project / "app/things/repository.py").write_text("N = 'SELECT pg_notify(1)'\n")
    assert notify_outside_events(project) == ["app/things/repository.py:1: pg_notify"]


def test_cycle_check_passes_an_acyclic_tree(tmp_path: Path) -> None:
    project = _tree(
        tmp_path,
        {
            "app/a.py": "from app import b\nfrom app.pkg import c\n",
            "app/b.py": "import app.pkg.c\n",
            "app/pkg/c.py": "from . import d\nfrom typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from app.a import X\n",
            "app/pkg/d.py": "import json\n",
        },
    )
    assert import_graph(project)["app.pkg.c"] == {"app.pkg.d": "app/pkg/c.py:1"}
    assert import_cycles(project) == []


def test_cycle_check_finds_cycles_through_functions_and_relative_imports(
    tmp_path: Path,
) -> None:
    project = _tree(
        tmp_path,
        {
            "app/cli.py": "def demo():\n    from app.dev.demo import run\n",
            "app/dev/demo.py": "from ..cli import migrate\n",
            "app/jobs/queue.py": "from app.sync import jobs\n",
            "app/sync/jobs.py": "import app.sync.service\n",
            "app/sync/service.py": "\n\nfrom app.jobs.queue import defer\n",
        },
    )
    assert import_cycles(project) == [
        "app.cli -> app.dev.demo (app/cli.py:2) -> app.cli (app/dev/demo.py:1)",
        "app.jobs.queue -> app.sync.jobs (app/jobs/queue.py:1) -> app.sync.service "
        "(app/sync/jobs.py:1) -> app.jobs.queue (app/sync/service.py:3)",
    ]


def test_cycle_check_spans_the_sandbox_package(tmp_path: Path) -> None:
    project = _tree(
        tmp_path,
        {"app/mount.py": "import sandbox.app\n", "sandbox/app.py": "from app import mount\n"},
    )
    assert import_cycles(project) == [
        "app.mount -> sandbox.app (app/mount.py:1) -> app.mount (sandbox/app.py:1)"
    ]


def test_transaction_check(tmp_path: Path) -> None:
    project = _tree(
        tmp_path,
        {
            "app/sync/jobs.py": "async def j(e):\n    async with org_transaction(e, 1): ...\n",
            "app/db/rls.py": "async def org_transaction(e, o):\n    async with e.begin(): ...\n",
            "app/sync/endpoints.py": "async def r(e):\n    async with e.begin(): ...\n",
            "app/sync/matching.py": (
                "from app.db import rls\n"
                "async def s(session, engine):\n"
                "    async with session.begin_nested(): ...\n"
                "    async with rls.system_transaction(engine): ...\n"
                "    async with engine.begin() as conn: ...\n"
            ),
        },
    )
    assert transactions_outside_edges(project) == [
        "app/sync/matching.py:4: system_transaction()",
        "app/sync/matching.py:5: .begin()",
    ]
    (project / "app/sync/matching.py").write_text("async def s(session): ...\n")
    assert transactions_outside_edges(project) == []


TESTS_TREE = {
    "tests/conftest.py": "from tests.fixtures.orgs import Org, seed_org\n",
    "tests/fixtures/orgs.py": "from app.dev import _private_is_not_ours\nclass Org: ...\n",
    "tests/sync/test_sync.py": (
        "import pytest\n"
        "import tests.fixtures.orgs\n"
        "from tests.fixtures import orgs\n"
        "from tests.fixtures.orgs import Org\n"
        "from ..fixtures.orgs import Org as O\n"
    ),
}


def test_tests_import_check_passes_a_clean_tree(tmp_path: Path) -> None:
    assert imports_between_tests(_tree(tmp_path, TESTS_TREE)) == []


def test_tests_import_check_finds_test_modules_conftests_and_privates(tmp_path: Path) -> None:
    bad = {
        "tests/send/test_api.py": (
            "from tests.send.test_flow import drain, email_row\n"
            "from .test_flow import sent_log\n"
            "import tests.send.test_flow\n"
            "from tests.send import test_flow\n"
            "def f():\n"
            "    from tests.conftest import Org\n"
            "    from tests.fixtures.orgs import Org, _seed\n"
        ),
        "tests/send/test_flow.py": "def drain(): ...\n",
    }
    assert imports_between_tests(_tree(tmp_path, {**TESTS_TREE, **bad})) == [
        "tests/send/test_api.py:1: from tests.send.test_flow import drain, email_row",
        "tests/send/test_api.py:2: from tests.send.test_flow import sent_log",
        "tests/send/test_api.py:3: import tests.send.test_flow",
        "tests/send/test_api.py:4: from tests.send import test_flow",
        "tests/send/test_api.py:6: from tests.conftest import Org",
        "tests/send/test_api.py:7: from tests.fixtures.orgs import _seed",
    ]
