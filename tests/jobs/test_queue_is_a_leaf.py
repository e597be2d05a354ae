"""Domain services import `app.jobs.queue` to enqueue work; the domains' jobs import those
services. So the queue module must import nothing of the domains (not even inside a
function), or the three form a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import app.jobs.queue
import app.jobs.repository

ALLOWED = ("app.jobs.repository",)


def _app_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {name for name in found if name == "app" or name.startswith("app.")}


def test_the_queue_and_its_repository_import_no_domain() -> None:
    for module in (app.jobs.queue, app.jobs.repository):
        assert module.__file__ is not None
        assert _app_imports(Path(module.__file__)) <= set(ALLOWED), module.__name__
