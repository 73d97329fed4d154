"""Run an image or a bundle: through runc, one lifecycle step at a time, or through the Docker engine.

``Container`` drives runc's lifecycle (create, start, state, kill, delete) on
a bundle and records each step with the state runc reported after it, so a
notebook can show created -> running -> stopped -> deleted. runc keeps its
state in a private ``--root`` (a temporary directory), never the system's.

runc reports no exit codes: a small shim process (``shim`` in a child
Python) becomes the container's parent (a child subreaper), runs ``runc
create``, and writes ``created PID`` and then ``exited CODE`` on a pipe.
The container's stdout and stderr go to files that ``Container`` reads.

``run`` is the one-call form: unpack (or take a bundle), run, collect
output and exit code, and clean up everything (container, runc state,
temporary bundle, imported image), also on failure or KeyboardInterrupt.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocilab.errors import ComponentUnavailableError, InvalidInputError, OcilabError
from ocilab.model import Platform
from ocilab.operations.copy import copy_image
from ocilab.operations.unpack import unpack
from ocilab.stores.image import load_image
from ocilab.stores.transports import open_destination, open_store

PR_SET_CHILD_SUBREAPER = 36
ENGINES = ("runc", "docker", "podman")
SHIM = "import sys; from ocilab.operations.runtime import shim; sys.exit(shim(sys.argv[1:]))"


@dataclass(frozen=True)
class Step:
    """One lifecycle operation and the state runc reported right after it (``deleted`` once gone)."""

    operation: str
    status: str
    pid: int | None = None
    exit_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "status": self.status, "pid": self.pid, "exit_code": self.exit_code}


@dataclass(frozen=True)
class RunResult:
    """What a run gave back: exit code, output, and (with runc) the lifecycle the container went through."""

    engine: str
    exit_code: int
    stdout: str
    stderr: str
    lifecycle: tuple[Step, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "lifecycle": [step.to_json() for step in self.lifecycle],
        }

    def summary(self) -> str:
        """A few lines for a reader: the engine and exit code, then each output stream that is not empty, indented."""
        lines = [f"{self.engine}: exit code {self.exit_code}"]
        if self.lifecycle:
            lines.append("states: " + " -> ".join(step.status for step in self.lifecycle))
        for name, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            if text:
                lines += [f"{name}:", *(f"  {line}" for line in text.rstrip("\n").split("\n"))]
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.summary())


def runc_binary() -> str:
    """The runc executable; ComponentUnavailableError when it is not installed."""
    found = shutil.which("runc") or next(
        (p for p in ("/usr/sbin/runc", "/usr/bin/runc") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise ComponentUnavailableError("runc is not installed (Debian package runc); use --engine docker instead")
    return found


class Container:
    """A runc container on ``bundle``; use it as a context manager so ``delete`` always runs.

    ``lifecycle`` holds a ``Step`` per operation. ``create`` returns once the
    container exists (status ``created``); ``start`` runs its process;
    ``wait`` blocks until it exits and returns the exit code (128 + signal
    when a signal ended it); ``delete`` kills what is left and removes runc's state.
    """

    def __init__(self, bundle: str | Path, container_id: str | None = None) -> None:
        self.bundle = Path(bundle).absolute()
        if not (self.bundle / "config.json").is_file():
            raise InvalidInputError(f"{self.bundle}: not a runtime bundle (no config.json)")
        self.id = container_id or f"ocilab-{uuid.uuid4().hex[:12]}"
        self.lifecycle: list[Step] = []
        self.exit_code: int | None = None
        self._runc = runc_binary()
        self._state_dir = Path(tempfile.mkdtemp(prefix="ocilab-runc-"))
        self._shim: subprocess.Popen[bytes] | None = None
        self._status: Any = None

    def _command(self, *args: str) -> list[str]:
        return [self._runc, "--root", str(self._state_dir / "root"), *args]

    def create(self) -> None:
        """``runc create``: namespaces, mounts and rootfs ready, the process not started yet."""
        reader, writer = os.pipe()
        out = self._state_dir / "stdout"
        err = self._state_dir / "stderr"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            self._shim = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    SHIM,
                    *self._command(),
                    self.id,
                    str(self.bundle),
                    str(self._state_dir / "pid"),
                    str(self._state_dir / "runc.log"),
                    str(writer),
                ],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                pass_fds=(writer,),
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we clean up
            )
        os.close(writer)
        self._status = os.fdopen(reader, "r")
        word, _, value = self._status.readline().partition(" ")
        if word != "created":
            self._shim.wait()
            raise ComponentUnavailableError(f"runc create failed for {self.bundle}: {self._runc_error()}")
        self._record("create", pid=int(value))

    def start(self) -> None:
        """``runc start``: run the process the bundle's config names."""
        self._runc_call("start", self.id)
        self._record("start")

    def state(self) -> dict[str, Any]:
        """``runc state`` (``{"id", "pid", "status", "bundle", ...}``); ``absent`` before create, ``deleted`` after."""
        if self._shim is None:
            return {"id": self.id, "status": "deleted" if self.lifecycle else "absent"}
        result = subprocess.run(self._command("state", self.id), capture_output=True, text=True)
        if result.returncode != 0:
            return {"id": self.id, "status": "deleted"}
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    @property
    def status(self) -> str:
        return str(self.state()["status"])

    def kill(self, signal_name: str = "TERM") -> None:
        """``runc kill``: send a signal to the container's process."""
        self._runc_call("kill", self.id, signal_name)
        self._record(f"kill {signal_name}")

    def wait(self) -> int:
        """Block until the process exits; its exit code (128 + N when signal N ended it)."""
        if self.exit_code is None:
            word, _, value = (self._status.readline() if self._status else "").partition(" ")
            if word != "exited":
                raise ComponentUnavailableError(f"lost track of container {self.id}: {self._runc_error()}")
            self.exit_code = int(value)
            self._record("wait", exit_code=self.exit_code)
        return self.exit_code

    def output(self) -> tuple[str, str]:
        """What the process wrote so far on stdout and stderr."""
        return tuple(  # type: ignore[return-value]
            (self._state_dir / name).read_bytes().decode("utf-8", "replace") for name in ("stdout", "stderr")
        )

    def delete(self) -> None:
        """``runc delete --force`` (kills a live process), then runc's private state is removed."""
        if self._state_dir.exists():
            if self._shim is not None:
                subprocess.run(self._command("delete", "--force", self.id), capture_output=True)
                self._shim.wait()
                self._shim = None
                self._record("delete")
            if self._status is not None:
                self._status.close()
                self._status = None
            shutil.rmtree(self._state_dir, ignore_errors=True)

    def _record(self, operation: str, pid: int | None = None, exit_code: int | None = None) -> None:
        self.lifecycle.append(Step(operation, self.status, pid, exit_code))

    def _runc_call(self, *args: str) -> None:
        result = subprocess.run(self._command(*args), capture_output=True, text=True)
        if result.returncode != 0:
            raise OcilabError(f"runc {args[0]} {self.id}: {result.stderr.strip() or 'failed'}")

    def _runc_error(self) -> str:
        """The last error runc logged, else the last line the shim's stderr holds."""
        messages = []
        log = self._state_dir / "runc.log"
        for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("level") in ("error", "fatal"):
                messages.append(str(record.get("msg")))
        if messages:
            return messages[-1]
        lines = (self._state_dir / "stderr").read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no message"

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()


def run(
    target: str | Path,
    command: Sequence[str] | None = None,
    engine: str = "runc",
    platform: str | Platform | None = None,
    rootless: bool = False,
) -> RunResult:
    """Run an image reference (or, with runc, a bundle directory) to completion; output and exit code.

    ``command`` replaces the image's Cmd (Entrypoint stays, as in ``docker
    run``). With runc, a reference is unpacked into a temporary bundle first.
    Everything made on the way is removed before returning, also on errors.
    """
    if engine not in ENGINES:
        raise InvalidInputError(f"unknown engine {engine!r}: use runc, docker or podman")
    is_bundle = Path(target).is_dir()
    if engine != "runc":
        if is_bundle:
            title = {"docker": "Docker", "podman": "Podman"}[engine]
            raise InvalidInputError(f"{target}: a bundle directory runs with --engine runc; {title} runs images")
        return _run_in_engine(engine, str(target), command, platform)
    with tempfile.TemporaryDirectory(prefix="ocilab-run-") as scratch:
        bundle = Path(target) if is_bundle else Path(scratch) / "bundle"
        if is_bundle and command:
            bundle = _overridden(Path(target), command, Path(scratch) / "bundle")
        elif not is_bundle:
            with open_store(str(target)) as store:
                unpack(load_image(store, _platform(platform)), bundle, rootless=rootless, command=command)
        with Container(bundle) as container:
            container.create()
            container.start()
            exit_code = container.wait()
            stdout, stderr = container.output()
        return RunResult("runc", exit_code, stdout, stderr, tuple(container.lifecycle))


def _platform(platform: str | Platform | None) -> Platform | None:
    return Platform.parse(platform) if isinstance(platform, str) else platform


def _overridden(bundle: Path, command: Sequence[str], scratch: Path) -> Path:
    """A bundle beside ``scratch`` with ``bundle``'s config, its args set to ``command``, on ``bundle``'s rootfs."""
    try:
        document = json.loads((bundle / "config.json").read_text())
        root = document["root"]["path"]
        document["process"]["args"] = list(command)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidInputError(f"{bundle}/config.json: not a runtime config with root and process ({error})") from None
    document["root"]["path"] = str(bundle.absolute() / root)
    scratch.mkdir(mode=0o700)
    (scratch / "config.json").write_text(json.dumps(document, indent=2))
    return scratch


def _run_in_engine(
    engine: str, reference: str, command: Sequence[str] | None, platform: str | Platform | None
) -> RunResult:
    """Run through the Docker engine or Podman: images from other stores are copied in first (and removed after)."""
    from ocilab.stores.daemon import ENGINES as ENGINE_STORES
    from ocilab.stores.daemon import connect_engine

    client = connect_engine(engine)
    transport = ENGINE_STORES[engine].transport
    imported = None
    if reference.startswith(f"{transport}:"):
        image = reference[len(transport) + 1 :]
    else:
        imported = image = f"ocilab-run/{uuid.uuid4().hex[:12]}:latest"
        with open_store(reference) as store, open_destination(f"{transport}:{image}") as writer:
            copy_image(store, writer, platform=_platform(platform))
    container = None
    try:
        container = client.containers.create(image, command=list(command) if command else None)
        container.start()
        exit_code = int(container.wait()["StatusCode"])
        stdout = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
        stderr = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
        return RunResult(engine, exit_code, stdout, stderr)
    finally:
        if container is not None:
            container.remove(force=True)
        if imported is not None:
            client.images.remove(imported, force=True)


def shim(argv: Sequence[str]) -> int:
    """``RUNC --root ROOT ID BUNDLE PIDFILE LOG FD``: create the container, report its pid and then its exit code."""
    *runc, container_id, bundle, pid_file, log, status_fd = argv
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with os.fdopen(int(status_fd), "w", buffering=1) as status:
        created = subprocess.run(
            [
                runc[0],
                "--log",
                log,
                "--log-format",
                "json",
                *runc[1:],
                "create",
                "--bundle",
                bundle,
                "--pid-file",
                pid_file,
                container_id,
            ],
            stdin=subprocess.DEVNULL,
        )
        if created.returncode != 0:
            status.write(f"failed {created.returncode}\n")
            return 1
        pid = int(Path(pid_file).read_text())
        status.write(f"created {pid}\n")
        while True:
            child, code = os.waitpid(-1, 0)
            if child == pid:
                break
        exit_code = os.waitstatus_to_exitcode(code)
        status.write(f"exited {128 - exit_code if exit_code < 0 else exit_code}\n")
    return 0
