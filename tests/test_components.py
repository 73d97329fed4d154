"""``doctor``: real components on this machine, compared with what the tools themselves print."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocilab.operations import components
from ocilab.operations.components import ComponentStatus, doctor, doctor_json
from tests.conftest import BUSYBOX, require, require_tool

TOOLS = ["docker-cli", "registry", "runc", "skopeo", "umoci", "buildah"]
PYTHON = [f"python:{name}" for name in components.PYTHON_PACKAGES]


@pytest.fixture(scope="module")
def report() -> dict[str, ComponentStatus]:
    return {status.name: status for status in doctor()}


def tool_version(*command: str) -> str:
    """The version a tool prints, parsed here independently of ocilab (first dotted number)."""
    output = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout
    match = re.search(r"(\d+\.\d+[\w.+~-]*)", output)
    assert match is not None, output
    return match.group(1)


def test_every_component_is_reported_once_in_order(report: dict[str, ComponentStatus]) -> None:
    names = [status.name for status in doctor()]
    assert names == ["docker-engine", "podman-engine", "podman-rootless", *TOOLS, "busybox-static", *PYTHON]
    for status in report.values():
        assert status.how_to_get, status
        assert status.detail, status


def test_working_agrees_with_asking_each_component_another_way(report: dict[str, ComponentStatus]) -> None:
    """Whatever this machine has: each verdict matches a check made here without ocilab's probes, and a
    working component always has a version, a missing one never is working."""
    expected = {
        "docker-engine": engine_pings(),
        "podman-engine": runs("podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "version"),
        "podman-rootless": rootless_possible(),
        **{name: runs(command, "--version") for name, command in TOOL_COMMANDS.items()},
        "registry": runs(shutil.which("registry") or shutil.which("docker-registry"), "--version"),
        "busybox-static": BUSYBOX.is_file() and ldd_says_static(BUSYBOX) and runs(str(BUSYBOX), "--help"),
        **{f"python:{name}": working for name, working in importable().items()},
    }
    assert {name: status.working for name, status in report.items()} == expected
    for status in report.values():
        assert status.present or not status.working, status
        assert bool(status.version) or not status.working, status


TOOL_COMMANDS = {"docker-cli": "docker", "runc": "runc", "skopeo": "skopeo", "umoci": "umoci", "buildah": "buildah"}


def rootless_possible() -> bool:
    """User namespaces on, newuidmap here, and (for a non-root user) subordinate ranges in /etc/subuid and subgid."""
    namespaces = Path("/proc/sys/user/max_user_namespaces")
    if not namespaces.exists() or namespaces.read_text().strip() == "0" or not shutil.which("newuidmap"):
        return False
    if os.getuid() == 0:
        return runs("podman", "--version")
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    return all(f"\n{user}:" in "\n" + Path(table).read_text() for table in ("/etc/subuid", "/etc/subgid"))


def runs(command: str | None, *args: str) -> bool:
    """True when ``command`` is on PATH (or a path) and exits 0 with ``args``."""
    path = shutil.which(command) if command else None
    if path is None:
        return False
    return subprocess.run([path, *args], capture_output=True, timeout=30).returncode == 0


def engine_pings() -> bool:
    """``GET /_ping`` answered ``OK`` by the engine at DOCKER_HOST or the default socket, over a raw socket."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            connection = socket.socket(socket.AF_UNIX)
            connection.settimeout(10)
            connection.connect(host.removeprefix("unix://"))
        else:
            address, _, port = host.removeprefix("tcp://").rpartition(":")
            connection = socket.create_connection((address, int(port)), timeout=10)
        with connection:
            connection.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = connection.recv(4096)
    except OSError:
        return False
    return answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n")[0] and answer.endswith(b"OK")


def ldd_says_static(path: Path) -> bool:
    result = subprocess.run(
        ["ldd", path], capture_output=True, text=True, timeout=30, env={**os.environ, "LC_ALL": "C"}
    )
    return "not a dynamic executable" in result.stdout + result.stderr or "statically linked" in result.stdout


def importable() -> dict[str, bool]:
    """Each Python package's module, really imported in a fresh interpreter."""
    modules = {name: module for name, (module, _) in components.PYTHON_PACKAGES.items()}
    script = (
        "import importlib, json, sys\n"
        "found = {}\n"
        "for name, module in json.loads(sys.argv[1]).items():\n"
        "    try:\n"
        "        importlib.import_module(module)\n"
        "        found[name] = True\n"
        "    except Exception:\n"
        "        found[name] = False\n"
        "print(json.dumps(found))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, json.dumps(modules)], capture_output=True, text=True, timeout=120, check=True
    )
    return dict(json.loads(result.stdout))


def test_doctor_json_is_plain_json(report: dict[str, ComponentStatus]) -> None:
    rows = doctor_json(list(report.values()))
    assert json.loads(json.dumps(rows)) == rows
    assert set(rows[0]) == {"name", "present", "working", "version", "detail", "how_to_get"}


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("runc", ["runc", "--version"]),
        ("skopeo", ["skopeo", "--version"]),
        ("umoci", ["umoci", "--version"]),
        ("docker-cli", ["docker", "--version"]),
    ],
)
def test_installed_tool_reports_the_version_it_prints(
    report: dict[str, ComponentStatus], name: str, command: list[str]
) -> None:
    path = require_tool(command[0])
    status = report[name]
    assert (status.present, status.working) == (True, True), status
    assert status.version == tool_version(path, *command[1:])
    assert status.detail == path


def test_registry_binary_reports_its_version(report: dict[str, ComponentStatus]) -> None:
    binary = shutil.which("registry") or shutil.which("docker-registry")
    require(binary is not None, "the CNCF registry binary (Debian package docker-registry)")
    assert binary is not None
    status = report["registry"]
    assert (status.present, status.working) == (True, True), status
    assert status.version == tool_version(binary, "--version")


def test_static_busybox_is_recognised(report: dict[str, ComponentStatus]) -> None:
    require(BUSYBOX.is_file(), f"{BUSYBOX} (Debian package busybox-static)")
    status = report["busybox-static"]
    assert (status.present, status.working) == (True, True), status
    printed = subprocess.run([BUSYBOX, "--help"], capture_output=True, text=True, timeout=30).stdout
    assert f"BusyBox v{status.version} " in printed


def test_elf_interpreter_check_agrees_with_ldd() -> None:
    require_tool("ldd")  # libc-bin: on every Debian system
    require(BUSYBOX.is_file(), f"{BUSYBOX} (Debian package busybox-static)")
    verdicts = {}
    for path in (BUSYBOX, Path(sys.executable).resolve(), Path("/bin/sh").resolve()):
        verdicts[path] = ldd_says_static(path)
        assert components.is_static_elf(path) == verdicts[path], path
    assert set(verdicts.values()) == {True, False}, verdicts  # both answers were checked


def test_a_dynamic_busybox_is_present_but_not_working() -> None:
    status = components.probe_busybox(Path("/bin/sh").resolve())
    assert (status.present, status.working) == (True, False)
    assert "dynamically linked" in status.detail
    assert status.how_to_get == "apt-get install busybox-static"


def test_not_an_elf_file_is_reported_not_raised(tmp_path: Path) -> None:
    fake = tmp_path / "busybox"
    fake.write_text("#!/bin/sh\necho BusyBox v9.9\n")
    status = components.probe_busybox(fake)
    assert (status.present, status.working) == (True, False)
    assert "not an ELF file" in status.detail
    missing = components.probe_busybox(tmp_path / "absent")
    assert (missing.present, missing.working) == (False, False)


def test_python_packages_report_their_distribution_version(report: dict[str, ComponentStatus]) -> None:
    from importlib.metadata import version

    for name in components.PYTHON_PACKAGES:
        status = report[f"python:{name}"]
        assert (status.present, status.working) == (True, True), status
        assert status.version == version(name)
    assert report["python:nbval"].how_to_get.startswith("pip install nbval")


def test_missing_python_package_says_how_to_get_it() -> None:
    status = components.probe_python_package("ocilab-no-such-package")
    assert (status.present, status.working, status.version) == (False, False, None)
    assert status.how_to_get == "pip install ocilab-no-such-package"


def test_engine_reachable_when_the_sdk_reaches_it(docker_client) -> None:  # type: ignore[no-untyped-def]
    status = components.probe_engine()
    assert (status.present, status.working) == (True, True), status
    assert status.version == docker_client.version()["Version"]


def test_unreachable_engine_is_reported_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    started = time.monotonic()
    status = components.probe_engine()
    assert time.monotonic() - started < 10  # a guard against hanging, not a benchmark
    assert (status.working, status.version) == (False, None)
    assert status.present  # DOCKER_HOST names an engine; it just does not answer
    assert "tcp://127.0.0.1:1" in status.detail and "Connection refused" in status.detail
    assert "docker.io" in status.how_to_get


def test_missing_docker_sdk_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # makes `import docker` raise ImportError
    status = components.probe_engine()
    assert (status.working, status.version) == (False, None)
    assert "pip install docker" in status.detail


def test_tools_missing_from_path_are_absent_with_how_to_get(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(components, "find_registry_binary", lambda: None)
    report = {status.name: status for status in doctor(engine_timeout=3)}
    for name in TOOLS:
        status = report[name]
        assert (status.present, status.working, status.version) == (False, False, None), status
        assert status.how_to_get.startswith("apt-get install "), status
    assert report["skopeo"].how_to_get == "apt-get install skopeo"
    assert report["registry"].how_to_get == "apt-get install docker-registry"


def test_a_tool_that_fails_is_present_but_not_working(tmp_path: Path) -> None:
    broken = tmp_path / "skopeo"
    broken.write_text("#!/bin/sh\necho 'cannot start: no such file' >&2\nexit 3\n")
    broken.chmod(0o755)
    status = components.probe_tool("skopeo", ["skopeo"], "apt-get install skopeo", path=str(broken))
    assert (status.present, status.working, status.version) == (True, False, None)
    assert "cannot start" in status.detail


def test_a_tool_that_hangs_is_cut_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stuck = tmp_path / "umoci"
    stuck.write_text("#!/bin/sh\nexec sleep 60\n")
    stuck.chmod(0o755)
    monkeypatch.setattr(components, "TOOL_TIMEOUT", 0.5)
    status = components.probe_tool("umoci", ["umoci"], "apt-get install umoci", path=str(stuck))
    assert (status.present, status.working) == (True, False)
    assert "no answer within" in status.detail


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("skopeo version 1.13.3 commit: 1a2b3c", "1.13.3"),
        ("Docker version 28.2.2, build e6534b4", "28.2.2"),
        ("runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev", "1.1.5+ds1"),
        ("umoci version 0.4.7+ds-3+b7", "0.4.7+ds-3+b7"),
        ("docker-registry github.com/docker/distribution 2.8.2+ds1", "2.8.2+ds1"),
        ("registry github.com/distribution/distribution/v3 v3.0.0", "3.0.0"),
        ("something else entirely", None),
    ],
)
def test_parse_version(output: str, version: str | None) -> None:
    assert components.parse_version(output) == version
