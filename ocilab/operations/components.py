"""Which real components are here, and do they work? The engine of ``ocilab doctor``.

``doctor()`` probes each component the kit uses -- the Docker engine, Podman
(its API service, and whether this user can run it rootless), the docker CLI,
buildah, the CNCF registry binary, runc, skopeo, umoci, a static busybox
and the Python packages -- and returns one ``ComponentStatus`` per component.
A probe never raises and never hangs: every subprocess and the engine ping
run under a short timeout, the docker SDK is imported lazily, and whatever
goes wrong becomes ``working=False`` with a one-line ``detail``.
``how_to_get`` always says how to install (or fix) the component.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import struct
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ocilab.errors import ComponentUnavailableError
from ocilab.operations.registry_server import find_registry_binary
from ocilab.stores.daemon import engine_host
from ocilab.stores.podman_service import SERVICE_FLAGS, answers, podman_host

ENGINE_TIMEOUT = 3.0
TOOL_TIMEOUT = 5.0
BUSYBOX = Path("/bin/busybox")

#: Python distributions the kit uses: name -> (module to find, extra that installs it).
PYTHON_PACKAGES: dict[str, tuple[str, str]] = {
    "requests": ("requests", ""),
    "docker": ("docker", ""),
    "pandas": ("pandas", ""),
    "matplotlib": ("matplotlib", ""),
    "tqdm": ("tqdm", ""),
    "zlib-ng": ("zlib_ng", ""),
    "backports.zstd": ("backports.zstd", ""),
    "jupyterlab": ("jupyterlab", "lab"),
    "ipywidgets": ("ipywidgets", "lab"),
    "nbval": ("nbval", "test"),
}

_VERSION_WORD = re.compile(r"\bversion\s+v?(\d[^\s,;]*)", re.IGNORECASE)
_VERSION_ANYWHERE = re.compile(r"(?<![\w./])v?(\d+\.\d+[^\s,;]*)")
_DETAIL_CHARS = 200


@dataclass(frozen=True)
class ComponentStatus:
    """What ``doctor`` found out about one component."""

    name: str
    present: bool
    working: bool
    version: str | None
    detail: str
    how_to_get: str


def doctor(engine_timeout: float = ENGINE_TIMEOUT) -> list[ComponentStatus]:
    """Probe every component, in a fixed order: engine, tools, busybox, Python packages."""
    statuses = [
        probe_engine(engine_timeout),
        probe_podman(engine_timeout),
        probe_rootless(),
        probe_tool("docker-cli", ["docker"], "apt-get install docker.io"),
        probe_registry(),
        probe_tool("runc", ["runc"], "apt-get install runc"),
        probe_tool("skopeo", ["skopeo"], "apt-get install skopeo"),
        probe_tool("umoci", ["umoci"], "apt-get install umoci"),
        probe_tool("buildah", ["buildah"], "apt-get install buildah"),
        probe_busybox(),
    ]
    statuses += [probe_python_package(name) for name in PYTHON_PACKAGES]
    if os.getuid() != 0:  # a learner: can the rootless toolchain run here?
        from ocilab.workshop.rootless import probe_rootless as probe_learner

        statuses += probe_learner()
    return statuses


def doctor_json(statuses: list[ComponentStatus]) -> list[dict[str, Any]]:
    """The statuses as JSON-ready dicts (keys are the dataclass fields)."""
    return [asdict(status) for status in statuses]


# --- the Docker engine -------------------------------------------------------------------------


def probe_engine(timeout: float = ENGINE_TIMEOUT) -> ComponentStatus:
    """Ask the engine at DOCKER_HOST (or the default socket) for its version, through the docker SDK."""
    host = engine_host()
    how = "apt-get install docker.io, then start dockerd as root (`make setup` does both)"
    # "present": something to talk to is configured or installed, even if it does not answer.
    configured = "DOCKER_HOST" in os.environ or _socket_exists(host) or shutil.which("dockerd") is not None
    try:
        import docker
    except ImportError:
        detail = "the docker Python package is missing, so the engine cannot be asked (pip install docker)"
        return ComponentStatus("docker-engine", configured, False, None, detail, how)
    client = None
    try:
        client = docker.from_env(timeout=timeout)
        info = client.version()
    except Exception as error:  # noqa: BLE001 - any failure means "the engine does not answer"
        detail = f"no Docker engine answers at {host}: {_engine_problem(error)}"
        return ComponentStatus("docker-engine", configured, False, None, detail, how)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
    version = str(info.get("Version") or "") or None
    detail = f"API {info.get('ApiVersion', '?')} at {host}"
    return ComponentStatus("docker-engine", True, True, version, detail, how)


def probe_podman(timeout: float = ENGINE_TIMEOUT) -> ComponentStatus:
    """Podman's API: answering at its socket, or able to start (``podman version`` works), or why not."""
    name, how = "podman-engine", "apt-get install podman (ocilab starts its API service on a private socket)"
    podman = shutil.which("podman")
    if podman is None:
        return ComponentStatus(name, False, False, None, "podman is not on PATH", how)
    try:
        host = podman_host()
    except ComponentUnavailableError as error:
        return ComponentStatus(name, True, False, None, _short(error), how)
    ok, output = _run([podman, *SERVICE_FLAGS, "version", "--format", "{{.Client.Version}}"])
    version = output.strip() if ok else None
    if answers(host, timeout):
        return ComponentStatus(name, True, True, version, f"answers at {host}", how)
    if not ok:
        return ComponentStatus(name, True, False, None, f"podman version failed: {_short(output)}", how)
    detail = f"no service answers at {host} yet; ocilab starts `podman system service` there when an engine is needed"
    return ComponentStatus(name, True, True, version, detail, how)


def probe_rootless() -> ComponentStatus:
    """Whether Podman can run rootless for this user: user namespaces, newuidmap, and subordinate ID ranges."""
    name = "podman-rootless"
    how = "apt-get install uidmap, then as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER"
    podman = shutil.which("podman")
    problem = _rootless_problem() if podman else (False, "podman is not on PATH")
    if problem is not None:
        return ComponentStatus(name, problem[0], False, None, problem[1], how)
    ok, output = _run([str(podman), "--version"])
    version = parse_version(output) if ok else None
    detail = "user namespaces, newuidmap and subordinate IDs are here"
    if os.getuid() == 0:
        detail += "; root runs Podman rootful, a user with /etc/subuid and /etc/subgid ranges runs it rootless"
    return ComponentStatus(name, True, version is not None, version, detail if version else _short(output), how)


def _rootless_problem() -> tuple[bool, str] | None:
    """(present, why not) when rootless Podman cannot run for this user; None when it can."""
    try:
        namespaces = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        namespaces = 0
    if namespaces == 0:
        return False, "user namespaces are disabled here (/proc/sys/user/max_user_namespaces is 0 or absent)"
    if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
        return False, "newuidmap/newgidmap are missing (Debian package uidmap)"
    if os.getuid() == 0:
        return None  # root runs Podman rootful; a user with subordinate IDs can run it rootless
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name
    for table in ("/etc/subuid", "/etc/subgid"):
        try:
            owners = {line.split(":")[0] for line in Path(table).read_text().splitlines() if line.strip()}
        except OSError:
            owners = set()
        if not owners & {user, str(os.getuid())}:
            return True, f"{table} gives {user} no subordinate ID range, so Podman cannot map a container's users"
    return None


def _engine_problem(error: BaseException) -> str:
    """The root cause of an SDK failure in a few words ("Connection refused"), else the message."""
    cause: BaseException | None = error
    innermost = error
    for _ in range(20):
        if cause is None:
            break
        innermost = cause
        cause = cause.__cause__ or cause.__context__
    if isinstance(innermost, OSError) and innermost.strerror:
        hint = " (is your user in the docker group?)" if isinstance(innermost, PermissionError) else ""
        return f"{innermost.strerror}{hint}"
    return _short(error)


def _socket_exists(host: str) -> bool:
    return host.startswith("unix://") and Path(host.removeprefix("unix://")).exists()


# --- command-line tools ------------------------------------------------------------------------


def probe_tool(name: str, command: list[str], how_to_get: str, path: str | None = None) -> ComponentStatus:
    """Find ``command[0]`` on PATH (or use ``path``) and read its version from ``--version``."""
    found = path or shutil.which(command[0])
    if found is None:
        return ComponentStatus(name, False, False, None, f"{command[0]} is not on PATH", how_to_get)
    ok, output = _run([found, *command[1:], "--version"])
    version = parse_version(output) if ok else None
    if version is None:
        problem = output or "no output"
        return ComponentStatus(name, True, False, None, f"{found} --version failed: {_short(problem)}", how_to_get)
    return ComponentStatus(name, True, True, version, found, how_to_get)


def probe_registry() -> ComponentStatus:
    """The CNCF distribution registry binary: ``registry`` or Debian's ``docker-registry``."""
    how = "apt-get install docker-registry"
    found = find_registry_binary()
    if found is None:
        return ComponentStatus("registry", False, False, None, "neither registry nor docker-registry found", how)
    return probe_tool("registry", [Path(found).name], how, path=found)


def parse_version(output: str) -> str | None:
    """The version in a tool's ``--version`` output, without a leading ``v``; None when there is none.

    ``skopeo version 1.9.3`` -> ``1.9.3``; ``Docker version 28.2.2, build e6534b4`` -> ``28.2.2``;
    ``docker-registry github.com/docker/distribution 2.8.2+ds1`` -> ``2.8.2+ds1``.
    """
    for line in output.splitlines():
        match = _VERSION_WORD.search(line) or _VERSION_ANYWHERE.search(line)
        if match:
            return match.group(1)
    return None


# --- busybox -----------------------------------------------------------------------------------


def probe_busybox(path: Path = BUSYBOX) -> ComponentStatus:
    """A statically linked busybox, which can be copied alone into a scratch image."""
    name, how = "busybox-static", "apt-get install busybox-static"
    if not path.is_file():
        return ComponentStatus(name, False, False, None, f"{path} does not exist", how)
    try:
        static = is_static_elf(path)
    except (OSError, ValueError) as error:
        return ComponentStatus(name, True, False, None, f"{path}: {error}", how)
    if not static:
        detail = f"{path} is dynamically linked, so it cannot run alone in a scratch image"
        return ComponentStatus(name, True, False, None, detail, how)
    ok, output = _run([str(path), "--help"])
    match = re.search(r"BusyBox v?(\S+)", output)
    if match is None:
        return ComponentStatus(name, True, False, None, f"{path} --help printed no version: {_short(output)}", how)
    return ComponentStatus(name, True, True, match.group(1), f"{path}, statically linked", how)


def is_static_elf(path: Path) -> bool:
    """True when the ELF file at ``path`` has no PT_INTERP program header (no dynamic loader).

    ValueError when the file is not ELF.
    """
    with path.open("rb") as file:
        ident = file.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF":
            raise ValueError("not an ELF file")
        bits = {1: 32, 2: 64}.get(ident[4])
        endian = {1: "<", 2: ">"}.get(ident[5])
        if bits is None or endian is None:
            raise ValueError("unknown ELF class or byte order")
        if bits == 64:
            file.seek(0x20)
            (phoff,) = struct.unpack(endian + "Q", file.read(8))
            file.seek(0x36)
        else:
            file.seek(0x1C)
            (phoff,) = struct.unpack(endian + "I", file.read(4))
            file.seek(0x2A)
        phentsize, phnum = struct.unpack(endian + "HH", file.read(4))
        if phnum > 4096 or phentsize < 4:
            raise ValueError("implausible ELF program header table")
        for index in range(phnum):
            file.seek(phoff + index * phentsize)
            raw = file.read(4)
            if len(raw) < 4:
                raise ValueError("truncated ELF program header table")
            (p_type,) = struct.unpack(endian + "I", raw)
            if p_type == 3:  # PT_INTERP
                return False
    return True


# --- Python packages ---------------------------------------------------------------------------


def probe_python_package(distribution: str) -> ComponentStatus:
    """A Python distribution's installed version, and whether its module can be found (not imported)."""
    module, extra = PYTHON_PACKAGES.get(distribution, (distribution, ""))
    how = f"pip install {distribution}" + (f" (or pip install 'ocilab[{extra}]')" if extra else "")
    name = f"python:{distribution}"
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ComponentStatus(name, False, False, None, f"{distribution} is not installed", how)
    try:
        findable = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        findable = False
    if not findable:
        detail = f"{distribution} {version} is installed but its module {module} cannot be found"
        return ComponentStatus(name, True, False, version, detail, how)
    return ComponentStatus(name, True, True, version, f"module {module}", how)


# --- helpers -----------------------------------------------------------------------------------


def _run(argv: list[str], timeout: float | None = None) -> tuple[bool, str]:
    """Run a command; (exit status 0, stdout+stderr). Never raises, never waits past ``timeout``."""
    timeout = TOOL_TIMEOUT if timeout is None else timeout
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"no answer within {timeout:g} s"
    except OSError as error:
        return False, str(error)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def _short(problem: object) -> str:
    """One line of at most a couple hundred characters, for ``detail``."""
    text = " ".join(str(problem).split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 1] + "…"
