"""Running bundles and images: real runc (lifecycle, output, exit codes, clean-up) and the real Docker engine.

runtime-spec runtime.md: "create ... the process MUST NOT be started"; "start ... MUST run the
user-specified program"; "delete ... MUST delete the resources that were created during the create step".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import ocilab
from ocilab.errors import InvalidInputError
from ocilab.operations.runtime import Container
from tests.conftest import require_tool
from tests.engines import engine, engine_client, engine_image, transport

__all__ = ["engine", "engine_client", "engine_image"]  # fixtures


@pytest.fixture(scope="module")
def busybox_bundle(oci_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Docker-built busybox image (skopeo's layout), unpacked by ocilab."""
    require_tool("runc")
    bundle = tmp_path_factory.mktemp("run") / "bundle"
    ocilab.unpack(f"oci:{oci_layout}:v1", bundle)
    return bundle


def test_echo_hello_through_runc(busybox_bundle: Path) -> None:
    result = ocilab.run(busybox_bundle, ["echo", "hello"])
    assert (result.exit_code, result.stdout) == (0, "hello\n")
    assert [step.operation for step in result.lifecycle] == ["create", "start", "wait", "delete"]
    assert result.lifecycle[0].status == "created" and result.lifecycle[0].pid
    assert result.lifecycle[1].status in ("running", "stopped")
    assert (result.lifecycle[2].status, result.lifecycle[3].status) == ("stopped", "deleted")


def test_exit_code_and_stderr(busybox_bundle: Path) -> None:
    result = ocilab.run(busybox_bundle, ["sh", "-c", "echo oops >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, "", "oops\n")


def test_the_image_config_is_what_runs(busybox_bundle: Path) -> None:
    """The image's Env, cwd and user reach the process."""
    result = ocilab.run(busybox_bundle, ["sh", "-c", 'echo "$GREETING"; pwd; id -u'])
    assert result.stdout == "hello from ocilab\n/\n0\n"


def test_lifecycle_one_step_at_a_time(oci_layout: Path, tmp_path: Path) -> None:
    """created (no process yet) -> running -> killed -> stopped (128+9) -> deleted; runc's state kept private."""
    require_tool("runc")
    bundle = tmp_path / "bundle"
    ocilab.unpack(f"oci:{oci_layout}:v1", bundle, command=["sleep", "300"])
    assert json.loads((bundle / "config.json").read_text())["process"]["args"] == ["sleep", "300"]
    with Container(bundle) as container:
        container.create()
        assert container.status == "created"
        state = container.state()
        assert state["id"] == container.id and Path(state["bundle"]) == bundle
        container.start()
        assert container.status == "running"
        container.kill("KILL")
        assert container.wait() == 137
        assert container.status == "stopped"
        private = Path(container._state_dir)  # noqa: SLF001 - the test checks it goes away
        assert not Path("/run/runc", container.id).exists()
    assert container.status == "deleted" and not private.exists()
    assert [step.operation for step in container.lifecycle] == ["create", "start", "kill KILL", "wait", "delete"]


def test_run_an_image_reference_cleans_up(oci_layout: Path, tmp_path: Path) -> None:
    """A reference is unpacked into a temporary bundle, run, and everything made on the way removed."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "ocilab", "run", f"oci:{oci_layout}:v1", "--", "sh", "-c", "echo hi; exit 4"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert (result.returncode, result.stdout) == (4, "hi\n"), result.stderr
    assert os.listdir(tmp_path) == []


def test_interrupt_cleans_up(oci_layout: Path, tmp_path: Path) -> None:
    """SIGINT while the container runs: the container is killed, runc's state and the bundle removed."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    child = subprocess.Popen(
        [sys.executable, "-m", "ocilab", "run", f"oci:{oci_layout}:v1", "--", "sh", "-c", "echo started; sleep 300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    started = None
    while child.poll() is None and started is None:  # wait for the container's first line, no timing involved
        started = next((p for p in tmp_path.glob("ocilab-runc-*/stdout") if p.read_text() == "started\n"), None)
    assert started is not None, child.communicate()
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate()
    assert child.returncode == 130 and "interrupted" in stderr
    assert os.listdir(tmp_path) == []
    assert "sleep 300" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def test_bad_runs_are_one_line_errors(busybox_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not a runtime bundle"):
        Container(tmp_path)
    with pytest.raises(InvalidInputError, match="Docker runs images"):
        ocilab.run(busybox_bundle, engine="docker")
    with pytest.raises(InvalidInputError, match="unknown engine"):
        ocilab.run(busybox_bundle, engine="lxc")


def test_an_engine_runs_its_own_image(engine: str, engine_client, engine_image: str) -> None:  # type: ignore[no-untyped-def]
    """Docker and Podman alike: output, error output and exit code come back, and no container is left."""
    result = ocilab.run(
        f"{transport(engine)}:{engine_image}", ["sh", "-c", "echo hello; echo err >&2; exit 3"], engine=engine
    )
    assert (result.engine, result.exit_code, result.stdout, result.stderr) == (engine, 3, "hello\n", "err\n")
    assert not engine_client.containers.list(all=True, filters={"ancestor": engine_image})


def test_an_engine_imports_and_removes_other_stores(engine: str, engine_client, oci_layout: Path) -> None:  # type: ignore[no-untyped-def]
    """An image from a layout is copied into the engine for the run, and removed after it."""
    result = ocilab.run(f"oci:{oci_layout}:v1", ["echo", "from a layout"], engine=engine)
    assert (result.exit_code, result.stdout) == (0, "from a layout\n")
    left = [tag for image in engine_client.images.list() for tag in image.tags if "ocilab-run/" in tag]
    assert not left
