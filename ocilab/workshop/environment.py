"""The learners' Python: one shared virtual environment, made from the system's Python, read-only to learners.

The default ``python3`` of a machine may be private to root (a pyenv build
under ``/root``), so the environment is made with ``/usr/bin/python3``
(Debian's, package ``python3-venv``) and this kit is installed into it from
its source tree with the ``workshop`` extra (JupyterHub's single-user server,
JupyterLab, ipywidgets). Root owns it; everyone may read and run it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ocilab.errors import ComponentUnavailableError

SYSTEM_PYTHON = Path("/usr/bin/python3")
PIP_TIMEOUT = 1800
SINGLEUSER = "jupyterhub-singleuser"


def source_tree() -> Path:
    """The kit's source tree (with ``pyproject.toml``); ComponentUnavailableError when ocilab runs from elsewhere."""
    import ocilab

    tree = Path(ocilab.__file__).resolve().parent.parent
    if not (tree / "pyproject.toml").is_file():
        raise ComponentUnavailableError(
            f"ocilab runs from {tree}, not from its source tree: run `ocilab workshop` from a checkout of the kit"
        )
    return tree


def build(venv: Path, python: Path = SYSTEM_PYTHON) -> None:
    """Make ``venv`` with ``python`` when it has no single-user server yet, then (re)install the kit into it.

    The kit is reinstalled every time (without its dependencies when they are
    there already), so learners get the code this command runs. A failed pip
    run raises ComponentUnavailableError with the end of pip's output.
    """
    if not os.access(python, os.X_OK):
        raise ComponentUnavailableError(f"{python} is missing: install the Debian packages python3 and python3-venv")
    tree = source_tree()
    fresh = not (venv / "bin" / SINGLEUSER).exists()
    if fresh:
        shutil.rmtree(venv, ignore_errors=True)
        _run([str(python), "-m", "venv", str(venv)], "python3 -m venv (Debian package python3-venv)")
        _run([str(venv / "bin/python"), "-m", "pip", "install", "-q", f"{tree}[workshop]"], "pip install")
    else:
        reinstall = ["-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(tree)]
        _run([str(venv / "bin/python"), *reinstall], "pip install")
    _readable(venv)


def _readable(root: Path) -> None:
    """Everyone may read every file and enter every directory (pip's umask may say otherwise)."""
    for directory, _, files in os.walk(root):
        os.chmod(directory, os.stat(directory).st_mode | 0o555)
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)


def _run(command: list[str], what: str) -> None:
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("PYTHON", "VIRTUAL_ENV"))}
    environment["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT, env=environment)
    except subprocess.TimeoutExpired:
        raise ComponentUnavailableError(f"{what} did not finish within {PIP_TIMEOUT} s") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if not line.startswith("WARNING: Location")]
        tail = "\n".join(lines[-10:])
        raise ComponentUnavailableError(
            f"{what} failed (exit code {result.returncode}); PyPI must be reachable:\n{tail}"
        )
