"""The JupyterHub process: its config (written here, for people to read), start, stop, and its REST API.

The config names the learners, the shared password and the instructor
service's API token by *file* (``password``, ``api-token``: mode 0600, in
the hub's directory), so ``jupyterhub_config.py`` itself holds no secret.
Learners' servers are JupyterHub's local process spawner running
``jupyterhub-singleuser`` from the shared venv, as the learner, with an
environment made from scratch: the venv and the system's tools on ``PATH``,
``XDG_RUNTIME_DIR=/run/user/UID`` (skopeo's auth file and Podman's run state),
``TMPDIR`` in the learner's home (runc's ``--root`` goes there), and nothing
of the hub's own environment but the locale -- no ``REGISTRY_*`` variable,
which the registry binary would read as config.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from ocilab.errors import ComponentUnavailableError
from ocilab.workshop.accounts import NOTEBOOKS, TMP
from ocilab.workshop.environment import SINGLEUSER
from ocilab.workshop.processes import command_line, stop_process
from ocilab.workshop.record import Record

CONFIG = "jupyterhub_config.py"
PASSWORD = "password"
TOKEN = "api-token"
LOG = "jupyterhub.log"
SERVICE = "ocilab-workshop"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
SPAWN_TIMEOUT = 300
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY = "configurable-http-proxy"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_secret(path: Path, value: str) -> None:
    """``value`` into ``path``, mode 0600 from the start."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as stream:
        stream.write(value + "\n")


def read_secret(record: Record, name: str) -> str:
    return (record.hub_dir / name).read_text().strip()


def config_text(record: Record) -> str:
    """``jupyterhub_config.py`` for this workshop."""
    hub, venv = record.hub_dir, record.venv
    names = sorted(learner.name for learner in record.learners)
    return f'''\
"""JupyterHub for an ocilab workshop: written by `ocilab workshop up`; `ocilab workshop down` stops it."""

import pwd
from pathlib import Path

HUB = Path({str(hub)!r})

# Where learners log in, and the hub's and proxy's own ports (free ones, on loopback).
c.JupyterHub.ip = {record.ip!r}
c.JupyterHub.port = {record.port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {record.hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{record.proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{shutil.which(PROXY) or PROXY!r}]
c.ConfigurableHTTPProxy.pid_file = str(HUB / "proxy.pid")
c.JupyterHub.pid_file = str(HUB / "jupyterhub.pid")
c.JupyterHub.db_url = "sqlite:///" + str(HUB / "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = str(HUB / "jupyterhub_cookie_secret")

# One shared password; only the workshop's learners may log in.
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = (HUB / {PASSWORD!r}).read_text().strip()
c.Authenticator.allowed_users = {set(names)!r}

# The instructor's tools (`ocilab workshop status|reset`, the tests) use this service's token.
c.JupyterHub.services = [{{"name": {SERVICE!r}, "api_token": (HUB / {TOKEN!r}).read_text().strip()}}]
c.JupyterHub.load_roles = [
    {{
        "name": {SERVICE!r},
        "scopes": ["admin:users", "admin:servers", "access:servers", "list:users", "read:users"],
        "services": [{SERVICE!r}],
    }}
]


def _entry(spawner):
    return pwd.getpwnam(spawner.user.name)


# Each learner's server runs as that learner, from the shared read-only venv.
c.Spawner.cmd = [{str(venv / "bin" / SINGLEUSER)!r}]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~/{NOTEBOOKS}"
c.Spawner.env_keep = ["LANG", "LC_ALL"]
c.Spawner.environment = {{
    "PATH": {f"{venv}/bin:{SYSTEM_PATH}"!r},
    "XDG_RUNTIME_DIR": lambda spawner: f"/run/user/{{_entry(spawner).pw_uid}}",
    "TMPDIR": lambda spawner: f"{{_entry(spawner).pw_dir}}/{TMP}",
}}
c.Spawner.start_timeout = {SPAWN_TIMEOUT}
c.Spawner.http_timeout = {SPAWN_TIMEOUT}
'''


def write_config(record: Record, password: str) -> Path:
    """The config (0644), the password and a new API token (0600) in the hub's directory."""
    record.hub_dir.mkdir(mode=0o700, exist_ok=True)
    write_secret(record.hub_dir / PASSWORD, password)
    if not (record.hub_dir / TOKEN).exists():
        write_secret(record.hub_dir / TOKEN, secrets.token_hex(32))
    path = record.hub_dir / CONFIG
    path.write_text(config_text(record))
    path.chmod(0o644)
    return path


def start(record: Record) -> int:
    """Start the hub in its own session (it starts the proxy), wait until its API answers; its pid."""
    if shutil.which(PROXY) is None:
        raise ComponentUnavailableError(f"{PROXY} is not on PATH: `npm install -g {PROXY}` (make setup does it)")
    environment = {
        "PATH": f"{record.venv}/bin:{SYSTEM_PATH}",
        "HOME": "/root",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    with (record.hub_dir / LOG).open("ab") as log:
        process = subprocess.Popen(
            [str(record.venv / "bin/jupyterhub"), "-f", str(record.hub_dir / CONFIG)],
            cwd=record.hub_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ComponentUnavailableError(
                f"JupyterHub exited with code {process.returncode} while starting; its log {record.hub_dir / LOG}"
                f" ends with:\n{log_tail(record)}"
            )
        try:
            if requests.get(api_url(record), timeout=2).ok:
                return process.pid
        except requests.RequestException:
            pass
        time.sleep(0.5)
    stop_process(process.pid)
    raise ComponentUnavailableError(f"JupyterHub did not answer within {START_TIMEOUT:.0f} s:\n{log_tail(record)}")


def running(record: Record) -> bool:
    """True when the recorded hub pid is a live ``jupyterhub`` with this workshop's config."""
    return record.hub_pid is not None and str(record.hub_dir / CONFIG) in command_line(record.hub_pid)


def stop(record: Record) -> None:
    """Stop the hub (it stops the learners' servers and its proxy first), then any proxy it left behind."""
    if record.hub_pid is not None and running(record):
        stop_process(record.hub_pid, uid=0, command_contains=CONFIG)
    proxy = record.hub_dir / "proxy.pid"
    if proxy.exists():
        try:
            stop_process(int(proxy.read_text().strip()), uid=0, command_contains=PROXY)
        except ValueError:
            pass
        proxy.unlink(missing_ok=True)


def log_tail(record: Record, lines: int = 15) -> str:
    try:
        return "\n".join((record.hub_dir / LOG).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def api_url(record: Record, path: str = "") -> str:
    """The hub's REST API, reached on loopback directly (not through the proxy)."""
    return f"http://127.0.0.1:{record.hub_port}/hub/api{path}"


def api(record: Record, method: str, path: str, timeout: float = 30) -> Any:
    """Call the hub's REST API with the workshop service's token; the JSON answer (None when empty)."""
    headers = {"Authorization": f"token {read_secret(record, TOKEN)}"}
    try:
        answer = requests.request(method, api_url(record, path), headers=headers, timeout=timeout)
    except requests.RequestException as error:
        raise ComponentUnavailableError(f"the workshop's hub does not answer at {api_url(record)}: {error}") from None
    if answer.status_code >= 400:
        raise ComponentUnavailableError(f"hub API {method} {path}: {answer.status_code} {answer.text[:200]}")
    return answer.json() if answer.content else None
