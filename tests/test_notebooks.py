"""The notebooks also pass nbval with no Docker engine reachable (as on Binder): nothing in them may need one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda path: path.name)
def test_notebook_runs_without_an_engine(notebook: Path, tmp_path: Path) -> None:
    environment = dict(
        os.environ,
        DOCKER_HOST="unix:///nonexistent/docker.sock",
        OCILAB_WORKSPACE=str(tmp_path / "ocilab-lab"),
        OCILAB_PROGRESS="off",
    )
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--nbval",
            "--nbval-current-env",
            "--nbval-sanitize-with",
            str(NOTEBOOKS / "sanitize.cfg"),
            str(notebook),
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
