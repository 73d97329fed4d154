"""A workshop for real: `ocilab workshop up` with 3 learners, their servers started at once through the hub's REST
API, each learner's kernel driven over its websocket through notebook 00 and the daemonless lessons, learners
fenced from each other, `reset`, and `down --purge` leaving the machine as it found it.

Runs as root (it makes unix users) with configurable-http-proxy, the system Python with venv, runc, the
registry binary, skopeo and iptables; in CI all must be there. The workshop lives in a new directory under
/tmp, its learners get a random user-name prefix and the hub a free port, and the module's fixture runs
`down --purge` whatever happens.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import require
from tests.workshop_lessons import PAGE, Lessons, run_lessons

ACCOUNT_FILES = [Path(f"/etc/{name}") for name in ("passwd", "group", "shadow", "gshadow", "subuid", "subgid")]
# Compared entry by entry before and after (others' work on the machine does not touch these) ...
OWN_DIRECTORIES = [Path(path) for path in ("/run/user", "/home", "/var/mail")]
# ... and searched for anything a learner owns (other people's temporary files come and go meanwhile).
SHARED_DIRECTORIES = [*OWN_DIRECTORIES, *(Path(path) for path in ("/tmp", "/var/tmp", "/dev/shm", "/run"))]
LEARNERS = 3


def ocilab(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The kit's command line, in a child process."""
    command = [sys.executable, "-m", "ocilab", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def machine() -> dict[str, Any]:
    """What a workshop may change on the machine: accounts, shared directories' entries, the firewall's chains."""
    chains = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    return {
        "accounts": {str(path): sorted(path.read_text().splitlines()) for path in ACCOUNT_FILES if path.exists()},
        "entries": {str(path): sorted(os.listdir(path)) for path in OWN_DIRECTORIES if path.is_dir()},
        "chains": sorted(line for line in chains.splitlines() if line.startswith("-N")),
    }


@dataclass
class Workshop:
    root: Path
    password: str
    port: int
    names: list[str]
    before: dict[str, Any]

    @property
    def record(self) -> Any:
        from ocilab.workshop import Record

        return Record.load(self.root)


@pytest.fixture(scope="module")
def workshop() -> Iterator[Workshop]:
    require(os.geteuid() == 0, "root (a workshop makes unix users)")
    for tool in ("configurable-http-proxy", "runc", "skopeo", "iptables", "useradd"):
        require(shutil.which(tool) is not None, f"the {tool} command")
    require(os.access("/usr/bin/python3", os.X_OK), "/usr/bin/python3 (Debian's python3 and python3-venv)")
    token = secrets.token_hex(3)
    root, prefix, port, password = Path(f"/tmp/ocilab-workshop-{token}"), f"owt{token}x", free_port(), "s3cret-room"
    before = machine()
    # A REGISTRY_* variable in the instructor's environment must not reach the learners.
    environment = dict(os.environ, REGISTRY_HTTP_ADDR="0.0.0.0:1")
    try:
        started = ocilab(
            "workshop", "up", "--learners", str(LEARNERS), "--root", str(root), "--prefix", prefix,
            "--port", str(port), "--ip", "127.0.0.1", "--password", password, "--json", env=environment,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        document = json.loads(started.stdout)
        assert document["url"] == f"http://127.0.0.1:{port}/" and document["password"] == password
        yield Workshop(root, password, port, document["learners"], before)
    finally:
        if root.exists():
            ocilab("workshop", "down", "--purge", "--root", str(root))


@pytest.fixture(scope="module")
def kernels(workshop: Workshop) -> Iterator[dict[str, Any]]:
    """Every learner's server started through the REST API at once, and a kernel on each."""
    from ocilab.workshop import start_servers
    from ocilab.workshop.kernels import LearnerKernel

    record = workshop.record
    start_servers(record)
    opened: dict[str, Any] = {}
    try:
        for name in workshop.names:
            opened[name] = LearnerKernel(record, name)
        yield opened
    finally:
        for kernel in opened.values():
            kernel.close()


@pytest.fixture(scope="module")
def lessons(kernels: dict[str, Any]) -> dict[str, Lessons]:
    """The three learners through notebook 00 and the daemonless lessons, all at once."""
    with ThreadPoolExecutor(len(kernels)) as pool:
        return dict(zip(kernels, pool.map(run_lessons, kernels.values()), strict=True))


def test_the_hub_config_is_readable_and_holds_no_secret(workshop: Workshop) -> None:
    record = workshop.record
    config = record.hub_dir / "jupyterhub_config.py"
    text = config.read_text()
    assert config.stat().st_mode & 0o777 == 0o644
    assert workshop.password not in text and (record.hub_dir / "api-token").read_text().strip() not in text
    for secret in ("password", "api-token"):
        assert (record.hub_dir / secret).stat().st_mode & 0o777 == 0o600
    assert "c.Authenticator.allowed_users = " in text and all(name in text for name in workshop.names)
    compile(text, str(config), "exec")


def test_a_learner_logs_in_with_the_shared_password_and_not_without(workshop: Workshop) -> None:
    """What a learner does in the browser: the login form, through the proxy on the public port."""
    login = f"http://127.0.0.1:{workshop.port}/hub/login"
    for password, welcomed in ((workshop.password, True), ("not-the-password", False)):
        with requests.Session() as browser:
            browser.get(login, timeout=30)
            form = {"username": workshop.names[0], "password": password, "_xsrf": browser.cookies.get("_xsrf", "")}
            answer = browser.post(login, data=form, allow_redirects=False, timeout=60)
            assert (answer.status_code == 302) == welcomed, answer.text[:300]


def test_every_learner_runs_notebook_00(lessons: dict[str, Lessons], tmp_path: Path) -> None:
    """Every cell runs without an error, and the image each learner built is the one built here (reproducible)."""
    import ocilab

    expected = ocilab.open(f"oci:{ocilab.busybox_layout(tmp_path / 'busybox', tag='1')}:1").manifest_digest
    assert {name: result.errors for name, result in lessons.items()} == {name: [] for name in lessons}
    assert {result.busybox_digest for result in lessons.values()} == {str(expected)}


def test_every_learner_builds_pushes_unpacks_runs_deletes_and_collects(
    workshop: Workshop, lessons: dict[str, Lessons], tmp_path: Path
) -> None:
    import ocilab

    base = ocilab.busybox_layout(tmp_path / "busybox", tag="1")
    image = ocilab.Builder.from_image(f"oci:{base}:1").add_files({"/srv/index.html": PAGE})
    ports = set()
    for name, result in lessons.items():
        facts, home = result.daemonless, pwd.getpwnam(name).pw_dir
        assert facts["digest"] == str(image.digest) == facts["skopeo"], (name, facts)
        assert (facts["exit_code"], facts["stdout"]) == (0, PAGE.decode()), (name, facts)
        assert facts["blobs_before"] == 5 and facts["blobs_after"] == 0, (name, facts)
        assert facts["registry"].startswith(home + "/") and facts["workspace"].startswith(home + "/")
        blobs = Path(facts["registry"]) / "docker/registry/v2/blobs/sha256"
        assert list(blobs.glob("*/*")) == []  # checked on disk, as root
        ports.add(facts["port"])
    assert len(ports) == LEARNERS


def test_no_learner_can_read_or_write_another_learners_workspace_or_registry(
    kernels: dict[str, Any], lessons: dict[str, Lessons]
) -> None:
    probe = """
import requests
def attempt(action):
    try:
        action()
        return "allowed"
    except (OSError, requests.RequestException) as error:
        return type(error).__name__
print([attempt(lambda: open({file!r}).read()), attempt(lambda: open({new!r}, "w").write("x")),
       attempt(lambda: requests.get({url!r}, timeout=10).raise_for_status())])
"""
    for owner, result in lessons.items():
        facts = result.daemonless
        target = {"file": f"{facts['workspace']}/busybox/index.json", "new": f"{facts['workspace']}/intruder",
                  "url": f"http://127.0.0.1:{facts['port']}/v2/"}  # fmt: skip
        assert kernels[owner].execute(probe.format(**target)).stdout.strip() == "['allowed', 'allowed', 'allowed']"
        assert requests.get(target["url"], timeout=10).status_code == 200  # root, like the hub, is not fenced
        for other in set(kernels) - {owner}:
            answer = kernels[other].execute(probe.format(**target)).stdout.strip()
            assert answer == "['PermissionError', 'PermissionError', 'ConnectionError']", (other, owner, answer)


def test_a_learner_cannot_run_the_instructors_commands(workshop: Workshop, kernels: dict[str, Any]) -> None:
    code = f"!ocilab workshop down --root {workshop.root}"
    answer = kernels[workshop.names[0]].execute(code).stdout.strip()
    assert answer == "ocilab: `ocilab workshop down` must run as root: it manages unix users"


def test_doctor_as_a_learner_says_the_rootless_toolchain_works(kernels: dict[str, Any]) -> None:
    code = "import json, ocilab; print(json.dumps(ocilab.doctor().set_index('name')['working'].to_dict()))"
    working = json.loads(next(iter(kernels.values())).execute(code).stdout)
    assert {name: working.get(name) for name in ("runc-rootless", "skopeo-auth", "podman-rootless", "registry")} == {
        "runc-rootless": True, "skopeo-auth": True, "podman-rootless": True, "registry": True
    }  # fmt: skip
    assert working["docker-engine"] is False  # no Docker socket for learners


def test_learners_have_their_own_environment_and_no_registry_variables(
    workshop: Workshop, kernels: dict[str, Any]
) -> None:
    code = "import os, sys, tempfile; print(os.getuid(), sys.executable, tempfile.gettempdir(), sorted(os.environ))"
    for name, kernel in kernels.items():
        uid, python, temporary, names = kernel.execute(code).stdout.split(" ", 3)
        entry = pwd.getpwnam(name)
        assert int(uid) == entry.pw_uid and python == str(workshop.root / "venv/bin/python")
        assert temporary == f"{entry.pw_dir}/.cache/tmp"
        assert "'XDG_RUNTIME_DIR'" in names and "REGISTRY_" not in names
        assert os.stat(entry.pw_dir).st_mode & 0o777 == 0o700


def test_rootless_podman_works_for_a_learner(workshop: Workshop, kernels: dict[str, Any]) -> None:
    """`podman info` as a learner: rootless, its run state in /run/user/UID (it leaves a pause process behind,
    and a lock in /dev/shm, which `down --purge` must clear: the last test checks)."""
    require(shutil.which("podman") is not None, "podman")
    name = workshop.names[-1]
    code = 'import subprocess; print(subprocess.run(["podman", "info", "--format", "{{.Host.Security.Rootless}} {{.Store.RunRoot}}"], capture_output=True, text=True).stdout)'  # noqa: E501
    answer = kernels[name].execute(code).stdout.split()
    assert answer == ["true", f"/run/user/{pwd.getpwnam(name).pw_uid}/containers"]


def test_status_lists_learners_servers_registries_and_ports(workshop: Workshop, lessons: dict[str, Lessons]) -> None:
    answer = ocilab("workshop", "status", "--root", str(workshop.root), "--json")
    assert answer.returncode == 0, answer.stderr
    document = json.loads(answer.stdout)
    assert document["hub"]["running"] and document["firewall"]
    rows = {row["name"]: row for row in document["learners"]}
    assert sorted(rows) == sorted(workshop.names)
    for name, result in lessons.items():
        port = result.daemonless["port"]
        assert rows[name]["server"] == "ready" and port in rows[name]["ports"]
        assert [registry["port"] for registry in rows[name]["registries"]] == [port]
    text = ocilab("workshop", "status", "--root", str(workshop.root))
    assert text.returncode == 0 and all(f"{name}  " in text.stdout for name in workshop.names)


def test_reset_puts_every_learner_back_at_the_start(workshop: Workshop, lessons: dict[str, Lessons]) -> None:
    from ocilab.workshop.processes import command_line, processes_of

    answer = ocilab("workshop", "reset", "--root", str(workshop.root))
    assert answer.returncode == 0, answer.stderr
    for name, result in lessons.items():
        entry = pwd.getpwnam(name)
        home = Path(entry.pw_dir)
        assert not Path(result.daemonless["workspace"]).exists()
        assert [command_line(pid) for pid in processes_of({entry.pw_uid})] == []
        assert sorted(p.name for p in (home / "notebooks").glob("*.ipynb")) == sorted(
            p.name for p in (Path(__file__).parent.parent / "notebooks").glob("*.ipynb")
        )
        assert (home / "notebooks").stat().st_uid == entry.pw_uid
    status = json.loads(ocilab("workshop", "status", "--root", str(workshop.root), "--json").stdout)
    assert {row["server"] for row in status["learners"]} == {"stopped"}


def test_down_purge_leaves_the_machine_as_it_found_it(workshop: Workshop) -> None:
    from ocilab.workshop.processes import processes_of

    uids = {pwd.getpwnam(name).pw_uid for name in workshop.names}
    answer = ocilab("workshop", "down", "--purge", "--root", str(workshop.root))
    assert answer.returncode == 0, answer.stderr
    assert not workshop.root.exists() and processes_of(uids) == []
    after = machine()
    assert after == workshop.before
    leftovers = [
        entry
        for directory in SHARED_DIRECTORIES
        for entry in (directory.iterdir() if directory.is_dir() else [])
        if entry.lstat().st_uid in uids
    ]
    assert leftovers == []


# --- refusals: one sentence, nothing made ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--learners", "0"], "--learners 0: give a number from 1 to"),
        (["--learners", "2", "--password", "short"], "--password: give at least 8 characters"),
        (["--learners", "2", "--prefix", "Bad!"], "--prefix 'Bad!': a user name starts with"),
        (["--learners", "1", "--prefix", "root", "--notebooks", "/nonexistent"], "/nonexistent: not a directory"),
    ],
)
def test_up_refuses_bad_input_in_one_sentence_and_makes_nothing(
    arguments: list[str], message: str, tmp_path: Path
) -> None:
    require(os.geteuid() == 0, "root (a workshop makes unix users)")
    root = tmp_path / "workshop"
    answer = ocilab("workshop", "up", "--root", str(root), *arguments)
    assert answer.returncode == 1 and answer.stderr.startswith("ocilab: ") and message in answer.stderr
    assert len(answer.stderr.strip().splitlines()) == 1 and not root.exists()


def test_up_refuses_user_names_it_did_not_make(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "root (a workshop makes unix users)")
    prefix = f"owt{secrets.token_hex(3)}y"
    subprocess.run(["useradd", f"{prefix}1"], check=True)
    try:
        answer = ocilab("workshop", "up", "--learners", "2", "--prefix", prefix, "--root", str(tmp_path / "w"))
        assert answer.returncode == 1 and f"users {prefix}1 exist and were not made by this workshop" in answer.stderr
        assert not (tmp_path / "w").exists()
        with pytest.raises(KeyError):
            pwd.getpwnam(f"{prefix}2")
    finally:
        subprocess.run(["userdel", f"{prefix}1"], check=True)


def test_commands_on_no_workshop_say_so(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "root (a workshop makes unix users)")
    missing = ocilab("workshop", "status", "--root", str(tmp_path / "none"))
    assert missing.returncode == 1 and "no workshop in" in missing.stderr and "ocilab workshop up" in missing.stderr


# --- beyond one machine: the Zero to JupyterHub values and the single-user image, checked, not deployed ----------

KUBERNETES = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, value) in a YAML document."""
    yield path, node
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in children:
        yield from walk(child, f"{path}.{key}" if path else str(key))


def test_learner_pods_are_unprivileged_and_get_no_docker_socket() -> None:
    yaml = pytest.importorskip("yaml")
    values = yaml.safe_load((KUBERNETES / "values.yaml").read_text())
    single = values["singleuser"]
    assert single["uid"] != 0 and single["allowPrivilegeEscalation"] is False
    pod, container = single["extraPodConfig"]["securityContext"], single["extraContainerConfig"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == single["uid"] != 0
    assert container["privileged"] is False and container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"] and "add" not in container["capabilities"]
    everything = list(walk(values))
    assert [path for path, _ in everything if path.endswith(("hostPath", "privileged")) and _ is not False] == []
    assert [path for path, value in everything if isinstance(value, str) and "docker.sock" in value] == []
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"] == "shared-password"
    assert single["image"]["name"].endswith("ocilab/singleuser") and single["networkPolicy"]["enabled"] is True


def test_the_single_user_image_is_built_from_environment_yml_and_the_apt_components() -> None:
    lines = [line.strip() for line in (KUBERNETES / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert "COPY binder/apt.txt /tmp/apt.txt" in instructions and "COPY environment.yml /tmp/environment.yml" in lines
    assert any("mamba env update -n base -f /tmp/environment.yml" in line for line in instructions)
    assert any("xargs -a /tmp/apt.txt apt-get install" in line for line in instructions)
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users[-1] == "${NB_UID}"  # the image ends unprivileged (jovyan, uid 1000)
    assert not any("docker.io" in line or "docker.sock" in line or line.startswith("VOLUME") for line in instructions)
