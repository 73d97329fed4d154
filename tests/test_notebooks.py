"""The notebooks pass nbval with no Docker engine (as on Binder), two runs at once, and keep the lesson's shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))


def nbval(notebook: Path, **environment: str) -> subprocess.Popen[str]:
    """nbval over ``notebook`` in a subprocess with progress bars off and the venv's commands first on PATH."""
    env = dict(os.environ, OCILAB_PROGRESS="off", **environment)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env"]
    command += ["--nbval-sanitize-with", str(NOTEBOOKS / "sanitize.cfg"), str(notebook)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def passed(process: subprocess.Popen[str]) -> tuple[bool, str]:
    output, _ = process.communicate(timeout=600)
    return process.returncode == 0 and " passed" in output and " failed" not in output, output[-4000:]


@pytest.mark.parametrize("notebook", ALL, ids=lambda path: path.name)
def test_notebook_runs_without_an_engine(notebook: Path, tmp_path: Path) -> None:
    ok, output = passed(
        nbval(
            notebook,
            DOCKER_HOST="unix:///nonexistent/docker.sock",  # no Docker engine, and no Podman either (as on Binder)
            CONTAINER_HOST="unix:///nonexistent/podman.sock",
            OCILAB_WORKSPACE=str(tmp_path / "ocilab-lab"),
        )
    )
    assert ok, output


ENGINE_NOTEBOOKS = [path for path in ALL if "if_engine(" in path.read_text()]


@pytest.mark.parametrize("notebook", ENGINE_NOTEBOOKS, ids=lambda path: path.name)
def test_with_only_podman_the_engine_cells_run_on_podman(notebook: Path, tmp_path: Path) -> None:
    """A learner with Podman and no Docker sees the engine cells run, not the no-engine sentence."""
    import shutil

    from tests.conftest import require

    require(shutil.which("podman") is not None, "podman (Debian package podman)")
    env = dict(os.environ, OCILAB_PROGRESS="off", DOCKER_HOST="unix:///nonexistent/docker.sock")
    env.update(OCILAB_WORKSPACE=str(tmp_path / "ocilab-lab"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    command = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute"]
    subprocess.run([*command, "--output-dir", str(tmp_path), str(notebook)], env=env, check=True, capture_output=True)
    executed = json.loads((tmp_path / notebook.name).read_text())
    outputs = json.dumps([cell.get("outputs", []) for cell in executed["cells"]])
    assert "No Docker engine here" not in outputs
    assert '"output_type": "error"' not in outputs
    assert "docker.io/" in outputs or "podman" in outputs  # Podman's own names for what it ran


def test_two_learners_run_notebook_00_at_once(tmp_path: Path) -> None:
    """Two kernels of the same notebook, same user, same default workspace root: both pass."""
    cache = tmp_path / "cache"
    runs = [nbval(NOTEBOOKS / "00-welcome.ipynb", XDG_CACHE_HOME=str(cache)) for _ in range(2)]
    results = [passed(run) for run in runs]
    assert all(ok for ok, _ in results), "\n\n".join(output for _, output in results)


def test_a_workspace_another_process_holds_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ocilab.present.notebook import workspace, workspace_root

    monkeypatch.delenv("OCILAB_WORKSPACE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert workspace_root() == tmp_path / "ocilab-lab"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import ocilab, sys; print(ocilab.workspace('nb'), flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path)),
    )
    try:
        assert holder.stdout is not None
        theirs = Path(holder.stdout.readline().strip())
        (theirs / "file").write_text("theirs")
        mine = workspace("nb")
        assert (theirs, mine) == (tmp_path / "ocilab-lab" / "nb", tmp_path / "ocilab-lab" / "nb-2")
        assert (theirs / "file").read_text() == "theirs" and list(mine.iterdir()) == []
        assert workspace("nb") == mine  # the same process asking again gets its own directory back
    finally:
        holder.communicate("", timeout=30)


def test_the_default_workspace_is_the_users_own(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ocilab.present.notebook import workspace_root

    monkeypatch.delenv("OCILAB_WORKSPACE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert workspace_root() == tmp_path / ".cache" / "ocilab-lab"


def cells(notebook: Path) -> list[dict[str, Any]]:
    return list(json.loads(notebook.read_text())["cells"])


def text(cell: dict[str, Any]) -> str:
    return "".join(cell["source"])


@pytest.mark.parametrize("notebook", ALL, ids=lambda path: path.name)
def test_every_notebook_has_goals_exercises_and_a_recap(notebook: Path) -> None:
    markdown = "\n".join(text(cell) for cell in cells(notebook) if cell["cell_type"] == "markdown")
    for heading in ("**Questions**", "**Objectives**", "## Your turn", "## Key points", "## The same from a terminal"):
        assert heading in markdown, f"{notebook.name} has no {heading}"
    checks = [cell for cell in cells(notebook) if cell["cell_type"] == "code" and "ocilab.check." in text(cell)]
    assert len(checks) >= 2, f"{notebook.name} has {len(checks)} checked exercises"
    assert (NOTEBOOKS / "solutions" / f"{notebook.stem}.py").is_file()


@pytest.mark.parametrize("notebook", ALL, ids=lambda path: path.name)
def test_test_markers_are_cell_tags_not_comments(notebook: Path) -> None:
    """Learners never see nbval's markers: they live in cell tags."""
    for cell in cells(notebook):
        assert "# NBVAL" not in text(cell).upper()


@pytest.mark.parametrize("notebook", ALL, ids=lambda path: path.name)
def test_no_plot_output_is_a_bare_object(notebook: Path) -> None:
    """Every figure output is a picture, and no output's text is a bare matplotlib repr."""
    for cell in cells(notebook):
        for output in cell.get("outputs", []):
            plain = "".join(output.get("data", {}).get("text/plain", ""))
            assert not plain.startswith(("<Axes", "<Figure", "Text(", "<matplotlib")), plain
            if plain.startswith("<plot:"):
                assert "image/png" in output["data"]


@pytest.mark.parametrize("notebook", ALL, ids=lambda path: path.name)
def test_outputs_are_committed_with_progress_bars_off(notebook: Path) -> None:
    code = [cell for cell in cells(notebook) if cell["cell_type"] == "code"]
    assert all(cell["execution_count"] for cell in code), f"{notebook.name} has cells never run"
    for cell in code:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", text(cell)
            assert output.get("name") != "stderr", text(cell)
