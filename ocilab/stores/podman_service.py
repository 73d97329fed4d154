"""Podman's Docker-compatible API on a private, per-user socket: found when it answers, started when it does not.

``podman_host()`` is ``CONTAINER_HOST`` when set (Podman's own variable; the
kit then never starts anything), else ``unix://DIR/podman.sock`` in the user's
private directory ``DIR`` (``$XDG_RUNTIME_DIR/ocilab``, else
``/tmp/ocilab-<uid>``, mode 0700). ``ensure_service()`` starts
``podman system service`` there when nothing answers, in its own session so
it outlives the Python process (as ``scripts/setup.sh`` starts ``dockerd``),
with the flags this kind of machine needs: ``--runtime runc --cgroup-manager
cgroupfs``, and a private ``containers.conf`` giving containers (RUN steps and
runs) ``nofile`` and ``nproc`` ulimits of 1024, since Podman's defaults exceed
the hard limits here. Its log and pid file sit beside the socket.

It lives among the stores, not the engines, because ``containers-storage:``
(``ocilab.stores.daemon``) starts the service it reads from, and stores may
not import engines. The docker SDK is imported only inside ``answers``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ocilab.errors import ComponentUnavailableError

SERVICE_FLAGS = ("--runtime", "runc", "--cgroup-manager", "cgroupfs")
"""Global podman flags the service runs with (measured: builds and runs work on this kind of machine)."""
ULIMITS = ("nofile=1024:1024", "nproc=1024:1024")
"""Every container's ulimits: Podman's defaults exceed the machine's hard limits."""
START_WAIT = 30.0
"""Seconds a freshly started service may take to answer."""
PING_TIMEOUT = 3.0

CONTAINERS_CONF = (
    "# Written by ocilab for its private podman service.\n"
    "[containers]\n"
    f"default_ulimits = [{', '.join(repr(limit).replace(chr(39), chr(34)) for limit in ULIMITS)}]\n"
    "[engine]\n"
    'runtime = "runc"\n'
    'cgroup_manager = "cgroupfs"\n'
)


def service_dir() -> Path:
    """The user's private directory for the socket, log, pid and config: created 0700, refused if not ours.

    A directory someone else owns (or others may write) raises
    ComponentUnavailableError naming it.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "ocilab" if runtime and Path(runtime).is_dir() else None
    directory = base or Path(tempfile.gettempdir()) / f"ocilab-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700, parents=base is not None)
    info = directory.lstat()
    if not directory.is_dir() or directory.is_symlink() or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise ComponentUnavailableError(
            f"{directory} is not a private directory of this user, so ocilab will not put Podman's socket there;"
            " remove it or set XDG_RUNTIME_DIR to a directory of your own"
        )
    return directory


def podman_host() -> str:
    """``CONTAINER_HOST`` if set, else the private socket ``unix://<service_dir()>/podman.sock``."""
    return os.environ.get("CONTAINER_HOST") or f"unix://{service_dir() / 'podman.sock'}"


def answers(host: str, timeout: float = PING_TIMEOUT) -> bool:
    """True when an engine at ``host`` answers ``/_ping`` within ``timeout`` seconds (False without the SDK)."""
    try:
        import docker
    except ImportError:
        return False
    client = None
    try:
        client = docker.DockerClient(base_url=host, timeout=timeout)
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any failure means "does not answer"
        return False
    finally:
        if client is not None:
            client.close()


def ensure_service(wait: float = START_WAIT) -> str:
    """The host of a Podman API that answers, starting the private service when needed.

    Raises ComponentUnavailableError, in one sentence, when ``CONTAINER_HOST``
    names a host that does not answer, when podman is not installed, or when the
    service it started does not answer within ``wait`` seconds (quoting its log).
    """
    host = podman_host()
    if answers(host):
        return host
    if "CONTAINER_HOST" in os.environ:
        raise ComponentUnavailableError(
            f"No Podman service answers at CONTAINER_HOST={host}: start it there, or unset CONTAINER_HOST"
            " and ocilab starts its own"
        )
    podman = shutil.which("podman")
    if podman is None:
        raise ComponentUnavailableError(
            "Podman is not installed (apt-get install podman), so there is no Podman engine to start"
        )
    directory = service_dir()
    with open(directory / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; the others find it answering
        if answers(host):
            return host
        _start(podman, directory, host, wait)
    return host


def _start(podman: str, directory: Path, host: str, wait: float) -> None:
    socket = directory / "podman.sock"
    socket.unlink(missing_ok=True)  # a stale socket from a service that died
    conf = directory / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    log = directory / "service.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [podman, *SERVICE_FLAGS, "system", "service", "--time", "0", host],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env={**os.environ, "CONTAINERS_CONF": str(conf)},
        )
    (directory / "service.pid").write_text(f"{process.pid}\n")
    deadline = time.monotonic() + wait
    while not answers(host, timeout=1.0):
        if process.poll() is not None or time.monotonic() > deadline:
            problem = "exited" if process.poll() is not None else f"did not answer within {wait:g} s"
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            tail = " ".join(log.read_text(errors="replace").strip().splitlines()[-1:]) or "no output"
            raise ComponentUnavailableError(f"podman system service {problem} at {host} (log {log}: {tail})")
        time.sleep(0.2)


def stop_service(wait: float = 10.0) -> bool:
    """Stop the private service this user's ocilab started (from its pid file); False when none runs."""
    pid_file = service_dir() / "service.pid"
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return False
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie child of ours is reaped and counts as gone)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
