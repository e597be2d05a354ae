"""`.ci/run` runs the README's test command with the Python a fresh machine has."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no system Python on this machine")
def test_ci_runs_make_test_with_the_system_python(tmp_path: Path) -> None:
    # A PATH holding only a recording `make` and what the script itself needs: no
    # PostgreSQL or Redis tools, so it starts neither.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    record = tmp_path / "make.txt"
    fake_make = bin_dir / "make"
    fake_make.write_text(f'#!{shutil.which("bash")}\necho "PYTHON=$PYTHON $*" > {record}\n')
    fake_make.chmod(0o755)
    environment = {"PATH": str(bin_dir), "HOME": str(tmp_path)}  # no PYTHON of our own
    subprocess.run([str(ROOT / ".ci" / "run")], env=environment, check=True, timeout=60)
    assert record.read_text().strip() == f"PYTHON={SYSTEM_PYTHON} test"
