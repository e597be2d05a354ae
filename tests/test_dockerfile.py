"""The image follows the layout: the Dockerfile copies every package pyproject.toml ships.

No container engine runs here, so the image is never built in CI; this reads the
Dockerfile instead. The stage that runs `pip install .` must copy each top-level package
(a package left out installs nothing and fails only when imported in production), and the
final stage must hold them, alembic.ini, migrations/ and sql/ in its WORKDIR, on
PYTHONPATH: `ce-email migrate` finds the migrations beside the `app` it imports.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BESIDE_THE_PACKAGES = ("alembic.ini", "migrations", "sql")


def shipped_packages(project: Path) -> set[str]:
    """Top-level packages `[tool.setuptools.packages.find]` selects, found the way
    setuptools' PackageFinder does: folders with an __init__.py, descending only into
    packages, dotted names matched against `include` and `exclude` with fnmatch."""
    config = tomllib.loads((project / "pyproject.toml").read_text())
    find = config["tool"]["setuptools"]["packages"]["find"]
    assert find.get("where", ["."]) == ["."], "this check reads packages from the root only"
    include = find.get("include", ["*"])
    exclude = find.get("exclude", [])

    def selected(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in include) and not any(
            fnmatch.fnmatchcase(name, p) for p in exclude
        )

    found: set[str] = set()
    for folder, dirs, _files in os.walk(project):
        descend = []
        for name in dirs:
            path = Path(folder) / name
            dotted = ".".join(path.relative_to(project).parts)
            if "." in name or not (path / "__init__.py").is_file():
                continue
            if selected(dotted):
                found.add(dotted.split(".")[0])
            descend.append(name)
        dirs[:] = descend
    return found


@dataclass
class Stage:
    name: str
    workdir: str = "/"
    copied: set[str] = field(default_factory=set)
    """Top-level names copied from the build context."""
    copied_stages: list[tuple[str, str]] = field(default_factory=list)
    """(stage, source path) of each COPY --from."""
    runs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        lines.append((keyword.upper(), args.strip()))
    return lines


def parse_stages(dockerfile: str) -> list[Stage]:
    stages: list[Stage] = []
    for keyword, args in _instructions(dockerfile):
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name))
            continue
        stage = stages[-1]
        if keyword == "WORKDIR":
            stage.workdir = os.path.normpath(os.path.join(stage.workdir, args))
        elif keyword == "RUN":
            stage.runs.append(args)
        elif keyword == "ENV":
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                stage.env[name] = value
        elif keyword in ("COPY", "ADD"):
            options, bracket, json_form = args.partition("[")
            words = shlex.split(options)
            flags = {w.split("=", 1)[0]: w.partition("=")[2] for w in words if w.startswith("--")}
            paths = json.loads(bracket + json_form) if bracket else words[len(flags) :]
            sources = paths[:-1]
            if "--from" in flags:
                stage.copied_stages += [(flags["--from"], s) for s in sources]
            else:
                stage.copied |= {os.path.normpath(s).split("/")[0] for s in sources}
    return stages


def missing_from_image(project: Path) -> list[str]:
    """What the image lacks, one sentence each (empty: it holds everything)."""
    packages = shipped_packages(project)
    stages = parse_stages((project / "Dockerfile").read_text())
    installs = [s for s in stages if any("pip install" in r and " ." in f"{r} " for r in s.runs)]
    if not installs:
        return ["no stage runs `pip install .`"]
    build, final = installs[0], stages[-1]
    problems = [
        f"the {build.name} stage (pip install .) does not copy {name}"
        for name in sorted(packages | {"pyproject.toml"})
        if name not in build.copied
    ]
    in_final = set(final.copied)
    for source_stage, source in final.copied_stages:
        if source_stage == build.name and os.path.normpath(source) == build.workdir:
            in_final |= build.copied  # the whole tree the packages were installed from
    problems += [
        f"the final stage does not copy {name} into {final.workdir}"
        for name in sorted(packages | set(BESIDE_THE_PACKAGES))
        if name not in in_final
    ]
    if final.workdir not in final.env.get("PYTHONPATH", "").split(":"):
        problems.append(f"the final stage's PYTHONPATH does not hold {final.workdir}")
    return problems


def test_the_dockerfile_copies_every_shipped_package() -> None:
    assert "app" in shipped_packages(ROOT)
    assert missing_from_image(ROOT) == []


# The check itself, on small projects: a package left out is found; a complete one passes.

DOCKERFILE = """\
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml alembic.ini ./
{build_copies}
RUN pip install --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
WORKDIR /srv/x
{final_copies}
ENV A=1 \\
    PYTHONPATH=/srv/x
"""


def _project(
    tmp_path: Path,
    *,
    include: list[str],
    build_copies: str,
    final_copies: str = "COPY --from=build /src ./",
    exclude: list[str] | None = None,
) -> Path:
    find = f"include = {json.dumps(include)}\n"
    if exclude:
        find += f"exclude = {json.dumps(exclude)}\n"
    (tmp_path / "pyproject.toml").write_text(f"[tool.setuptools.packages.find]\n{find}")
    for package in ("app", "app/dev", "sandbox", "tests"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "application").mkdir()  # no __init__.py: not a package, whatever its name
    (tmp_path / "Dockerfile").write_text(
        DOCKERFILE.format(build_copies=build_copies, final_copies=final_copies)
    )
    return tmp_path


BUILD_ALL = "COPY app ./app\nCOPY sandbox ./sandbox\nCOPY migrations ./migrations\nCOPY sql ./sql"


def test_the_include_patterns_resolve_to_top_level_packages(tmp_path: Path) -> None:
    project = _project(tmp_path, include=["app*", "sandbox*"], build_copies="")
    assert shipped_packages(project) == {"app", "sandbox"}
    (tmp_path / "only-a-subpackage").mkdir()
    subpackage = _project(tmp_path / "only-a-subpackage", include=["app.dev"], build_copies="")
    assert shipped_packages(subpackage) == {"app"}


def test_a_package_the_dockerfile_leaves_out_is_found(tmp_path: Path) -> None:
    without_sandbox = BUILD_ALL.replace("COPY sandbox ./sandbox\n", "")
    project = _project(tmp_path, include=["app*", "sandbox*"], build_copies=without_sandbox)
    assert missing_from_image(project) == [
        "the build stage (pip install .) does not copy sandbox",
        "the final stage does not copy sandbox into /srv/x",
    ]


def test_a_complete_dockerfile_passes(tmp_path: Path) -> None:
    project = _project(tmp_path, include=["app*", "sandbox*"], build_copies=BUILD_ALL)
    assert missing_from_image(project) == []


def test_excluded_packages_need_no_copy(tmp_path: Path) -> None:
    project = _project(tmp_path, include=["*"], exclude=["tests*"], build_copies=BUILD_ALL)
    assert shipped_packages(project) == {"app", "sandbox"}
    assert missing_from_image(project) == []


@pytest.mark.parametrize("left_out", ["migrations", "sql", "alembic.ini", "sandbox"])
def test_a_final_stage_copying_one_by_one_must_copy_each(tmp_path: Path, left_out: str) -> None:
    final = "\n".join(
        f'COPY ["{name}", "./{name}"]'
        for name in ("app", "sandbox", "migrations", "sql", "alembic.ini")
        if name != left_out
    )
    project = _project(
        tmp_path, include=["app*", "sandbox*"], build_copies=BUILD_ALL, final_copies=final
    )
    assert missing_from_image(project) == [f"the final stage does not copy {left_out} into /srv/x"]
