"""The local registry from the command line: ``ocilab registry up|down|status|ls|gc``, with the real binary."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from ocilab.errors import ComponentUnavailableError
from ocilab.operations.registry_server import RegistryServer, default_data_dir, find_registry_binary
from tests.conftest import require, require_tool, run
from tests.random_image import write_random_image


@pytest.fixture
def server(tmp_path: Path) -> RegistryServer:
    require(find_registry_binary() is not None, "the CNCF registry binary (Debian package docker-registry)")
    return RegistryServer(tmp_path / "data")


def test_an_upload_begun_before_a_restart_finishes_after_it(server: RegistryServer) -> None:
    """distribution: "http.secret ... is used to sign state that may be stored with the client to protect
    against tampering" -- the same secret after a restart keeps the upload's signed state valid."""
    first, second = b"first chunk ", b"second chunk"
    digest = "sha256:" + hashlib.sha256(first + second).hexdigest()
    with server:
        begun = requests.post(f"{server.url}/v2/ocilab/resumed/blobs/uploads/", timeout=5)
        assert begun.status_code == 202
        patched = requests.patch(urljoin(server.url, begun.headers["Location"]), data=first, timeout=5)
        assert patched.status_code == 202
    secret = server.secret_path.read_text()
    assert stat.S_IMODE(server.secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(server.config_path.stat().st_mode) == 0o600
    with server:
        location = urljoin(server.url, patched.headers["Location"])
        put = requests.put(location, params={"digest": digest}, data=second, timeout=5)
        assert put.status_code == 201, put.text
        assert requests.head(f"{server.url}/v2/ocilab/resumed/blobs/{digest}", timeout=5).status_code == 200
    assert server.secret_path.read_text() == secret
    assert secret in server.config_path.read_text()


def ocilab(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command line in its own Python process, as a learner runs it."""
    return subprocess.run(
        [sys.executable, "-m", "ocilab", *map(str, args)], capture_output=True, text=True, timeout=120, env=env
    )


def ocilab_json(*args: str | Path) -> dict[str, Any]:
    result = ocilab(*args, "--json")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not reaped, does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until_gone(pid: int) -> None:
    """Wait for a killed process to be reaped; a process that outlives the deadline fails the test."""
    deadline = time.monotonic() + 30
    while alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} is still alive"
        time.sleep(0.05)


def registry_pids(data_dir: Path) -> set[int]:
    """The processes running ``registry serve <data_dir>/config.yml``, found by command line."""
    config = os.fsencode(data_dir.resolve() / "config.yml")
    found = set()
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and config in (entry / "cmdline").read_bytes().split(b"\0"):
                found.add(int(entry.name))
    return found


def kill_registries(data_dir: Path) -> None:
    """Kill every registry serving ``data_dir``, found by command line, whatever the record says."""
    for pid in registry_pids(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def data_dirs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``make(name)``: a registry data directory in tmp_path; every registry serving one is killed at teardown."""
    require(find_registry_binary() is not None, "the CNCF registry binary (Debian package docker-registry)")
    made: list[Path] = []

    def make(name: str) -> Path:
        made.append(tmp_path / name)
        return tmp_path / name

    yield make
    for data_dir in made:
        kill_registries(data_dir)


def test_up_status_down_across_processes(data_dirs: Callable[[str], Path]) -> None:
    data = data_dirs("data")
    started = ocilab_json("registry", "up", "--data", data)
    pid = started["pid"]
    assert started["already_running"] is False and started["answers"] is True
    assert started["data_dir"] == str(data) and started["url"] == f"http://127.0.0.1:{started['port']}"
    # The command has exited; the registry it started has not, and answers this process.
    assert alive(pid)
    assert requests.get(f"{started['url']}/v2/", timeout=5).status_code == 200
    record = json.loads((data / "ocilab-registry.json").read_text())
    assert record["pid"] == pid and record["port"] == started["port"] and record["detached"] is True
    assert f"{data}/config.yml" in Path(f"/proc/{pid}/cmdline").read_text()

    status = ocilab_json("registry", "status", "--data", data)
    assert status == {
        "running": True, "answers": True, "pid": pid, "url": started["url"], "host": started["host"],
        "data_dir": str(data), "repositories": 0, "blobs": 0, "bytes": 0,
    }  # fmt: skip

    again = ocilab("registry", "up", "--data", data)
    assert again.returncode == 0 and f"already running for {data} (pid {pid})" in again.stdout
    assert ocilab_json("registry", "up", "--data", data)["already_running"] is True

    assert ocilab_json("registry", "down", "--data", data) == {"stopped": True, "pid": pid, "data_dir": str(data)}
    assert not alive(pid)
    assert not (data / "ocilab-registry.json").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{started['url']}/v2/", timeout=5)

    down = ocilab("registry", "down", "--data", data)
    assert down.returncode == 0 and down.stdout == f"no registry is running for {data}\n"
    assert ocilab_json("registry", "status", "--data", data)["running"] is False


def test_a_killed_registry_does_not_block_the_next_up(data_dirs: Callable[[str], Path]) -> None:
    data = data_dirs("data")
    first = ocilab_json("registry", "up", "--data", data)
    os.kill(first["pid"], signal.SIGKILL)
    wait_until_gone(first["pid"])
    assert (data / "ocilab-registry.json").exists()  # stale: nobody removed it
    assert ocilab_json("registry", "status", "--data", data)["running"] is False
    down = ocilab("registry", "down", "--data", data)
    assert down.returncode == 0 and "no registry is running" in down.stdout

    second = ocilab_json("registry", "up", "--data", data)
    assert second["already_running"] is False and second["pid"] != first["pid"]
    assert requests.get(f"{second['url']}/v2/", timeout=5).status_code == 200


def test_a_record_naming_another_program_is_stale(data_dirs: Callable[[str], Path]) -> None:
    """The pid in the record is alive, but it is this test, not the data directory's registry."""
    data = data_dirs("data")
    started = ocilab_json("registry", "up", "--data", data)
    record = json.loads((data / "ocilab-registry.json").read_text())
    (data / "ocilab-registry.json").write_text(json.dumps({**record, "pid": os.getpid()}))
    assert ocilab_json("registry", "status", "--data", data)["running"] is False
    assert ocilab_json("registry", "down", "--data", data)["stopped"] is False  # and this test is still here
    os.kill(started["pid"], signal.SIGKILL)
    wait_until_gone(started["pid"])
    assert ocilab_json("registry", "up", "--data", data)["answers"] is True


def test_an_unreadable_record_is_stale(data_dirs: Callable[[str], Path]) -> None:
    data = data_dirs("data")
    data.mkdir()
    (data / "ocilab-registry.json").write_text("{not json")
    assert ocilab_json("registry", "status", "--data", data)["running"] is False
    assert ocilab_json("registry", "up", "--data", data)["answers"] is True


def test_two_registries_with_different_data_run_at_once(data_dirs: Callable[[str], Path]) -> None:
    one, two = data_dirs("one"), data_dirs("two")
    first = ocilab_json("registry", "up", "--data", one)
    second = ocilab_json("registry", "up", "--data", two)
    assert first["port"] != second["port"] and first["pid"] != second["pid"]
    for started in (first, second):
        assert requests.get(f"{started['url']}/v2/", timeout=5).status_code == 200
    assert ocilab_json("registry", "status", "--data", two)["pid"] == second["pid"]
    assert ocilab_json("registry", "down", "--data", one)["pid"] == first["pid"]
    assert ocilab_json("registry", "status", "--data", two)["answers"] is True
    assert ocilab_json("registry", "status", "--data", one)["running"] is False


def test_ups_racing_on_one_directory_start_one_registry(data_dirs: Callable[[str], Path]) -> None:
    data = data_dirs("data")
    # Each racer loads ocilab, then waits for its go on stdin, so all start `up` at the same moment.
    script = "import sys; from ocilab.cli import main; sys.stdin.read(1); sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", script, "registry", "up", "--json", "--data", str(data)]
    racers = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for racer in racers:
        assert racer.stdin is not None
        racer.stdin.write("go")
        racer.stdin.flush()
    answers = [racer.communicate(timeout=120) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0, 0, 0], answers
    documents = [json.loads(stdout) for stdout, _ in answers]
    assert sorted(d["already_running"] for d in documents) == [False, True, True, True]
    assert registry_pids(data) == {documents[0]["pid"]} == {d["pid"] for d in documents}


def test_a_second_registry_on_the_same_data_is_refused(data_dirs: Callable[[str], Path]) -> None:
    data = data_dirs("data")
    started = ocilab_json("registry", "up", "--data", data)
    with pytest.raises(ComponentUnavailableError, match=f"a registry \\(pid {started['pid']}\\) already serves"):
        RegistryServer(data).start()
    with pytest.raises(ComponentUnavailableError, match="stop it first"):
        RegistryServer(data).garbage_collect()


def test_up_with_auth_and_tls_serves_https_behind_a_login(data_dirs: Callable[[str], Path], tmp_path: Path) -> None:
    require_tool("htpasswd")
    require_tool("openssl")
    data = data_dirs("data")
    result = ocilab("registry", "up", "--data", data, "--auth", "alice:s3cret:with:colons", "--tls")
    assert result.returncode == 0, result.stderr
    certificate = data / "tls" / "ca.crt"
    assert f"CA          {certificate}  (skopeo: --cert-dir {data / 'tls'})" in result.stdout
    started = ocilab_json("registry", "status", "--data", data)
    assert started["url"].startswith("https://127.0.0.1:")
    htpasswd = data / "htpasswd"
    assert htpasswd.read_text().startswith("alice:$2y$") and stat.S_IMODE(htpasswd.stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "tls" / "server-key.pem").stat().st_mode) == 0o600
    url = f"{started['url']}/v2/"
    assert requests.get(url, verify=certificate, timeout=5).status_code == 401
    assert requests.get(url, verify=certificate, auth=("alice", "wrong"), timeout=5).status_code == 401
    assert requests.get(url, verify=certificate, auth=("alice", "s3cret:with:colons"), timeout=5).status_code == 200
    # skopeo trusts the directory as printed, and logs in.
    image = write_random_image(tmp_path / "layout", seed=11)
    run(
        "skopeo", "copy", "--quiet", "--dest-cert-dir", data / "tls", "--dest-creds", "alice:s3cret:with:colons",
        image.reference, f"docker://{started['host']}/ocilab/private:1",
    )  # fmt: skip
    assert ocilab_json("registry", "ls", "--data", data)["repositories"][0]["tags"] == {"1": image.digest}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--auth", "alice"], "--auth 'alice': give USER:PASSWORD"),
        (["--auth", ":nobody"], "the user name must be non-empty"),
    ],
)
def test_bad_credentials_are_refused_before_anything_starts(
    data_dirs: Callable[[str], Path], arguments: list[str], message: str
) -> None:
    data = data_dirs("data")
    result = ocilab("registry", "up", "--data", data, *arguments)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("ocilab: ") and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not (data / "ocilab-registry.json").exists() and not (data / "htpasswd").exists()


def test_a_port_in_use_is_one_clear_line(data_dirs: Callable[[str], Path]) -> None:
    data = data_dirs("data")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = ocilab("registry", "up", "--data", data, "--port", str(port))
    assert result.returncode == 1
    assert result.stderr == f"ocilab: cannot start the registry: 127.0.0.1:{port} is already in use\n"


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_a_port_out_of_range_is_a_usage_error(data_dirs: Callable[[str], Path], port: str) -> None:
    result = ocilab("registry", "up", "--data", data_dirs("data"), "--port", port)
    assert result.returncode == 2 and "argument --port: invalid port value" in result.stderr


def test_ls_of_a_missing_directory_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-registry"
    result = ocilab("registry", "ls", "--data", missing)
    assert result.returncode == 1
    assert result.stderr.startswith(f"ocilab: {missing}: no registry data directory here")
    assert not missing.exists()
    gc = ocilab("registry", "gc", "--data", missing)
    assert gc.returncode == 1 and not missing.exists()


def test_the_default_data_directory_is_the_users_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """XDG Base Directory: "If $XDG_DATA_HOME is either not set or empty, a default equal to
    $HOME/.local/share should be used" (and relative paths are invalid and ignored)."""
    for name in ("OCILAB_REGISTRY_DATA", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home/.local/share/ocilab/registry"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")
    assert default_data_dir() == tmp_path / "home/.local/share/ocilab/registry"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg/ocilab/registry"
    monkeypatch.setenv("OCILAB_REGISTRY_DATA", str(tmp_path / "mine"))
    assert default_data_dir() == tmp_path / "mine"


def test_without_data_the_commands_use_the_default(data_dirs: Callable[[str], Path]) -> None:
    data = data_dirs("from-env")
    environment = {**os.environ, "OCILAB_REGISTRY_DATA": str(data)}
    up = ocilab("registry", "up", "--json", env=environment)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["data_dir"] == str(data)
    assert ocilab_json("registry", "status", "--data", data)["running"] is True
    assert ocilab("registry", "down", env=environment).stdout.startswith(f"stopped the registry for {data}")
