"""``up``, ``status``, ``reset`` and ``down``: a workshop's whole life, as its record tracks it."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ocilab.errors import ComponentUnavailableError, InvalidInputError, NotFoundError
from ocilab.workshop import accounts, environment, firewall, hub
from ocilab.workshop.processes import listening_ports, processes_of, stop_all
from ocilab.workshop.record import Learner, Record

MIN_PASSWORD = 8  # JupyterHub's shared-password authenticator refuses shorter ones
SERVER_TIMEOUT = 300.0


def _require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise ComponentUnavailableError(f"`ocilab workshop {action}` must run as root: it manages unix users")


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD or any(char in password for char in "\r\n"):
        raise InvalidInputError(f"--password: give at least {MIN_PASSWORD} characters on one line")
    return password


def _record(root: Path) -> Record:
    record = Record.load(root)
    if record is None:
        raise NotFoundError(f"no workshop in {root} (no {root}/workshop.json): start one with `ocilab workshop up`")
    return record


def default_notebooks() -> Path:
    """The lessons learners get: the ``notebooks/`` directory of the kit's source tree."""
    return environment.source_tree() / "notebooks"


def up(
    learners: int,
    root: Path,
    password: str | None = None,
    port: int = 8000,
    ip: str = "0.0.0.0",
    prefix: str = "learner",
    notebooks: Path | None = None,
) -> tuple[Record, str]:
    """Set up and start a JupyterHub for ``learners`` learners; the record and the shared password.

    Creates, recording each as it goes: ``root`` (0755) with the learners'
    venv and the hub's directory, users ``PREFIX1``..``PREFIXN`` with the
    lessons in their homes, their ``/run/user/UID``, the firewall chain. A
    user name that exists but was not made by this workshop is refused. Run
    again after ``down``, it starts the same workshop again (more learners
    may be added, never removed).
    """
    _require_root("up")
    if not 1 <= learners <= firewall.MAX_LEARNERS:
        raise InvalidInputError(f"--learners {learners}: give a number from 1 to {firewall.MAX_LEARNERS}")
    password = _check_password(password) if password is not None else secrets.token_urlsafe(9)
    accounts.check_prefix(prefix)
    lessons = Path(notebooks) if notebooks is not None else default_notebooks()
    if not lessons.is_dir():
        raise InvalidInputError(f"{lessons}: not a directory of notebooks")
    root = Path(root).absolute()
    record = Record.load(root)
    if record is not None and hub.running(record):
        raise InvalidInputError(f"a workshop already runs from {root} on {record.url}; `ocilab workshop down` first")
    prefix = record.prefix if record is not None else prefix
    names = [f"{prefix}{number}" for number in range(1, learners + 1)]
    ours = {learner.name for learner in record.learners} if record is not None else set()
    strangers = [name for name in names if name not in ours and accounts.exists(name)]
    if strangers:
        raise InvalidInputError(
            f"users {', '.join(strangers)} exist and were not made by this workshop; choose another --prefix"
        )
    if record is None:
        record = Record(str(root), created_root=not root.exists(), prefix=prefix)
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
        record.save()
    os.chmod(root, 0o755)
    record.ip, record.port = ip, port
    record.hub_port, record.proxy_api_port = hub.free_port(), hub.free_port()
    environment.build(record.venv)
    for name in names:
        if record.learner(name) is None:
            record.learners.append(accounts.create(name))
            record.save()
    for learner in record.learners:
        accounts.fill_home(learner, lessons)
        accounts.make_runtime_dir(learner)
    firewall.install([learner.uid for learner in record.learners])
    record.firewall = True
    record.save()
    hub.write_config(record, password)
    record.hub_pid = hub.start(record)
    record.save()
    return record, password


def down(root: Path, purge: bool = False) -> Record:
    """Stop the hub, every learner's server and leftover process, remove the firewall chain and the learners'
    runtime directories and what they left in the shared temporary directories (Podman's lock in /dev/shm...).

    With ``purge``, also remove the learner accounts and homes (their work
    with them) and ``root`` if ``up`` made it: what ``up`` created, and no more.
    """
    _require_root("down")
    record = _record(Path(root).absolute())
    hub.stop(record)
    record.hub_pid = None
    uids = {learner.uid for learner in record.learners}
    stop_all(uids)
    for learner in record.learners:
        accounts.remove_runtime_dir(learner)
    accounts.remove_temporary_files(uids)
    if record.firewall:
        firewall.remove()
        record.firewall = False
    record.save()
    if purge:
        for learner in list(record.learners):
            accounts.delete(learner)
            record.learners.remove(learner)
            record.save()
        if record.created_root:
            shutil.rmtree(record.root)
        else:
            for made in (record.hub_dir, record.venv, record.path):
                shutil.rmtree(made) if made.is_dir() else made.unlink(missing_ok=True)
    return record


def reset(root: Path, notebooks: Path | None = None) -> Record:
    """Every learner back to the start of the lessons: servers stopped, their processes ended, homes refilled."""
    _require_root("reset")
    record = _record(Path(root).absolute())
    if hub.running(record):
        stop_servers(record)
    stop_all({learner.uid for learner in record.learners})
    lessons = Path(notebooks) if notebooks is not None else default_notebooks()
    for learner in record.learners:
        accounts.fill_home(learner, lessons, fresh=True)
        accounts.remove_runtime_dir(learner)
        accounts.make_runtime_dir(learner)
    return record


def status(root: Path) -> dict[str, Any]:
    """The workshop as JSON: url, hub, and per learner its server, processes, registries and listening ports."""
    _require_root("status")
    record = _record(Path(root).absolute())
    running = hub.running(record)
    users = {user["name"]: user for user in hub.api(record, "GET", "/users")} if running else {}
    rows = []
    for learner in record.learners:
        server = users.get(learner.name, {}).get("servers", {}).get("")
        rows.append(
            {
                "name": learner.name,
                "uid": learner.uid,
                "home": learner.home,
                "server": ("ready" if server.get("ready") else "pending") if server else "stopped",
                "processes": len(processes_of({learner.uid})),
                "registries": registries(learner),
                "ports": listening_ports(learner.uid),
            }
        )
    return {
        "root": record.root,
        "url": record.url,
        "hub": {"running": running, "pid": record.hub_pid if running else None, "port": record.hub_port},
        "firewall": record.firewall,
        "learners": rows,
    }


def registries(learner: Learner) -> list[dict[str, Any]]:
    """The kit's registries the learner runs now (found through their records under the learner's home)."""
    from ocilab.operations.registry_server import RECORD_FILE, RegistryServer

    found = []
    for record in sorted(Path(learner.home).rglob(RECORD_FILE)):
        server = RegistryServer.find(record.parent)
        if server is not None:
            found.append({"url": server.url, "port": server.port, "pid": server.pid, "data": str(server.data_dir)})
    return found


def start_servers(record: Record, names: list[str] | None = None, timeout: float = SERVER_TIMEOUT) -> None:
    """Ask the hub to start these learners' servers (default: all) at once; return when all are ready."""
    wanted = names if names is not None else [learner.name for learner in record.learners]
    with ThreadPoolExecutor(max(1, len(wanted))) as pool:
        list(pool.map(lambda name: hub.api(record, "POST", f"/users/{name}/server"), wanted))
    _wait_servers(record, wanted, ready=True, timeout=timeout)


def stop_servers(record: Record, names: list[str] | None = None, timeout: float = SERVER_TIMEOUT) -> None:
    """Ask the hub to stop these learners' servers (default: all); return when none runs."""
    wanted = names if names is not None else [learner.name for learner in record.learners]
    users = {user["name"]: user for user in hub.api(record, "GET", "/users")}
    running = [name for name in wanted if users.get(name, {}).get("servers", {}).get("")]
    with ThreadPoolExecutor(max(1, len(running))) as pool:
        list(pool.map(lambda name: hub.api(record, "DELETE", f"/users/{name}/server"), running))
    _wait_servers(record, running, ready=False, timeout=timeout)


def _wait_servers(record: Record, names: list[str], ready: bool, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        users = {user["name"]: user for user in hub.api(record, "GET", "/users")}
        states = {name: users.get(name, {}).get("servers", {}).get("") for name in names}
        if all(bool(server and server.get("ready")) == ready for server in states.values()):
            return
        if time.monotonic() > deadline:
            raise ComponentUnavailableError(
                f"learners' servers did not {'start' if ready else 'stop'} within {timeout:.0f} s:"
                f" {states}; the hub's log {record.hub_dir / hub.LOG} ends with:\n{hub.log_tail(record)}"
            )
        time.sleep(0.5)
