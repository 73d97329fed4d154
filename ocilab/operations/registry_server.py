"""The local CNCF distribution registry: find the binary, start it, stop it, collect its garbage.

``RegistryServer`` runs the real ``registry`` (Debian ``docker-registry``) on
127.0.0.1 with deletion enabled and filesystem storage rooted at a data
directory ocilab owns. It writes its own ``config.yml`` and logs to
``registry.log``, both inside that directory, beside the registry's
``docker/registry/v2`` tree. The ``http.secret`` that signs upload session
state is made once per data directory and kept in ``http.secret`` (mode 0600),
so an upload begun before a restart can be finished after it; ``config.yml``
holds that secret and is 0600 too. ``REGISTRY_*`` variables of the caller's
environment are not passed on, so they cannot override that config.

Every start records the process in ``ocilab-registry.json`` in the data
directory (pid, URL, port, settings), so another Python process -- the
``ocilab registry`` commands -- can find it with ``RegistryServer.find`` and
stop it. ``start(detach=True)`` makes a registry that outlives the Python
process that started it (a new session, nothing stops it at exit). A record
whose pid is dead, or names a process that is not this data directory's
registry, is stale and ignored.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import secrets
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ocilab.errors import ComponentUnavailableError, InvalidInputError

DEBIAN_BINARY = Path("/usr/bin/docker-registry")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
GC_TIMEOUT = 600.0
_LOG_TAIL_LINES = 20
_LOG_TAIL_BYTES = 64 * 1024
SECRET_FILE = "http.secret"
RECORD_FILE = "ocilab-registry.json"
LOCK_FILE = ".ocilab-registry.lock"
DATA_ENV = "OCILAB_REGISTRY_DATA"


def default_data_dir() -> Path:
    """The user's own registry data: ``$OCILAB_REGISTRY_DATA``, else ``$XDG_DATA_HOME/ocilab/registry``,
    else ``~/.local/share/ocilab/registry`` (a relative ``XDG_DATA_HOME`` is ignored, as the XDG spec says)."""
    explicit = os.environ.get(DATA_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "ocilab" / "registry"


def find_registry_binary() -> str | None:
    """The registry binary: ``registry`` or ``docker-registry`` on PATH, else the Debian path; None if absent."""
    for name in ("registry", "docker-registry"):
        found = shutil.which(name)
        if found:
            return found
    return str(DEBIAN_BINARY) if os.access(DEBIAN_BINARY, os.X_OK) else None


def write_htpasswd(path: Path, user: str, password: str) -> Path:
    """Write a bcrypt htpasswd file for one user at ``path`` (mode 0600), made by Apache's ``htpasswd``.

    The password reaches the tool on stdin, never on a command line.
    InvalidInputError for an empty user name or one with ':', or a password
    with a line break; ComponentUnavailableError without the tool.
    """
    if not user or ":" in user or "\n" in password or "\r" in password:
        raise InvalidInputError(
            f"registry credentials for {user!r}: the user name must be non-empty without ':',"
            " and the password on one line"
        )
    hashed = _run_tool(["htpasswd", "-n", "-B", "-i", user], "apache2-utils", password.encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(_private_copy(path, hashed.strip() + b"\n"), path)
    return path


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """``directory/ca.crt`` and ``directory/server-key.pem``: a self-signed certificate for 127.0.0.1 and localhost.

    Made once by openssl, then kept, so clients that trust it go on trusting
    it. The name ``ca.crt`` lets ``skopeo --cert-dir DIRECTORY`` trust it as a
    CA; the key is 0600 from the moment it exists.
    """
    certificate, key = directory / "ca.crt", directory / "server-key.pem"
    if certificate.is_file() and key.is_file():
        return certificate, key
    directory.mkdir(parents=True, exist_ok=True)
    new_certificate, new_key = _private_copy(certificate, b""), _private_copy(key, b"")
    try:
        _run_tool(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(new_key), "-out",
             str(new_certificate)],
            "openssl",
        )  # fmt: skip
        new_certificate.chmod(0o644)
        os.replace(new_key, key)
        os.replace(new_certificate, certificate)
    finally:
        new_key.unlink(missing_ok=True)
        new_certificate.unlink(missing_ok=True)
    return certificate, key


def _run_tool(command: list[str], package: str, stdin: bytes = b"") -> bytes:
    """Run a helper tool and return its stdout; ComponentUnavailableError naming the Debian package if it fails."""
    tool = shutil.which(command[0])
    if tool is None:
        raise ComponentUnavailableError(f"the {command[0]} command was not found; install the Debian package {package}")
    try:
        result = subprocess.run([tool, *command[1:]], input=stdin, capture_output=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        raise ComponentUnavailableError(f"{command[0]} did not finish within 120 s") from None
    if result.returncode != 0:
        error = _tail(result.stderr.decode("utf-8", "replace"), 3)
        raise ComponentUnavailableError(f"{command[0]} failed with exit code {result.returncode}: {error}")
    return result.stdout


class RegistryServer:
    """A CNCF distribution registry process on 127.0.0.1, serving from ``data_dir``.

    ``port`` None picks a free port when the server is created; it stays the
    same across restarts. With ``htpasswd`` (a bcrypt htpasswd file) the
    registry demands Basic authentication. With ``tls`` (a PEM certificate and
    its key) it serves HTTPS instead of plain HTTP. Use as a context manager,
    or call ``start()`` and ``stop()``; ``find(data_dir)`` gives the one
    already running there, started by any process.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        htpasswd: Path | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        binary = find_registry_binary()
        if binary is None:
            raise ComponentUnavailableError(
                "the CNCF registry binary was not found (looked for `registry` and `docker-registry` on PATH"
                f" and {DEBIAN_BINARY}); install the Debian package docker-registry"
            )
        self._binary = binary
        self._data_dir = Path(data_dir).resolve()
        self._port = port if port is not None else _free_port()
        self._htpasswd = Path(htpasswd).resolve() if htpasswd is not None else None
        self._tls = (Path(tls[0]).resolve(), Path(tls[1]).resolve()) if tls is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self._reaper: weakref.finalize[[subprocess.Popen[bytes]], RegistryServer] | None = None
        self._log: IO[bytes] | None = None
        self._pid: int | None = None  # a registry this object found through its record, not its child
        self._detached = False

    @classmethod
    def find(cls, data_dir: Path) -> RegistryServer | None:
        """The registry serving ``data_dir`` now, started by any process; None when there is none.

        The record must name a live process whose command line is this data
        directory's ``registry serve .../config.yml``; anything else (no record,
        an unreadable one, a dead pid, a pid reused by another program) is None.
        It may still be starting or hung: ``answers()`` asks it over HTTP.
        """
        path = Path(data_dir).resolve() / RECORD_FILE
        try:
            record = json.loads(path.read_text())
            pid, port, detached = int(record["pid"]), int(record["port"]), bool(record["detached"])
            htpasswd = Path(record["htpasswd"]) if record["htpasswd"] else None
            tls = (Path(record["tls_certificate"]), Path(record["tls_key"])) if record["tls_certificate"] else None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        server = cls(data_dir, port=port, htpasswd=htpasswd, tls=tls)
        if not _is_registry(pid, server.config_path):
            return None
        server._pid, server._detached = pid, detached
        return server

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the host part of ``docker://`` references to this registry."""
        return f"127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, or ``https://`` when serving TLS."""
        return f"{'https' if self._tls else 'http'}://{self.host}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def data_dir(self) -> Path:
        """The storage root; blobs live under ``docker/registry/v2/blobs`` inside it."""
        return self._data_dir

    @property
    def config_path(self) -> Path:
        return self._data_dir / "config.yml"

    @property
    def secret_path(self) -> Path:
        return self._data_dir / SECRET_FILE

    @property
    def log_path(self) -> Path:
        return self._data_dir / "registry.log"

    @property
    def record_path(self) -> Path:
        return self._data_dir / RECORD_FILE

    @property
    def htpasswd(self) -> Path | None:
        return self._htpasswd

    @property
    def tls(self) -> tuple[Path, Path] | None:
        """The certificate and key served, or None for plain HTTP."""
        return self._tls

    @property
    def pid(self) -> int | None:
        """The registry's process id while it runs, else None."""
        if not self.running:
            return None
        return self._process.pid if self._process is not None else self._pid

    @property
    def detached(self) -> bool:
        """True when the registry outlives the Python process that started it."""
        return self._detached

    @property
    def running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return self._pid is not None and _is_registry(self._pid, self.config_path)

    def answers(self) -> bool:
        """True when something answers ``GET /v2/`` on this registry's port (any status, 401 included)."""
        return _answers(self.host, tls=self._tls is not None)

    def start(self, detach: bool = False) -> RegistryServer:
        """Start the registry, wait until ``GET /v2/`` answers; ComponentUnavailableError with the log tail if not.

        Without ``detach`` the registry stops with this object or with Python;
        with it, it runs on in its own session until ``stop()`` (from any
        process, through ``find``). A registry already serving this data
        directory from another process is refused: two must never share one
        (starts on one directory take turns, under a lock file in it).
        """
        if self.running:
            return self
        self.stop()  # clean up after a process that died on its own
        self._data_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive(self._data_dir / LOCK_FILE):
            self._launch(detach)
        return self

    def _launch(self, detach: bool) -> None:
        other = RegistryServer.find(self._data_dir)
        if other is not None:
            raise ComponentUnavailableError(
                f"a registry (pid {other.pid}) already serves {self._data_dir} on {other.url};"
                f" stop it first (`ocilab registry down --data {self._data_dir}`)"
            )
        if not _port_is_free(self._port):
            raise ComponentUnavailableError(f"cannot start the registry: 127.0.0.1:{self._port} is already in use")
        self._write_config()
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [self._binary, "serve", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=_clean_environment(),
            start_new_session=detach,
        )
        self._detached = detach
        if not detach:
            # Stops the registry if this object is dropped or Python exits without stop().
            self._reaper = weakref.finalize(self, _terminate, self._process)
        try:
            self._wait_until_ready()
            self._write_record()
        except ComponentUnavailableError:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate the registry, killing it if it has not exited after a few seconds, and drop its record.

        Idempotent; a record naming another process is left alone.
        """
        pid = self._process.pid if self._process is not None else self._pid
        if self._reaper is not None:
            self._reaper()
        elif self._process is not None:
            _terminate(self._process)
        elif self._pid is not None:
            _terminate_pid(self._pid, self.config_path)
        self._reaper = None
        self._process = None
        self._pid = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if pid is not None:
            self._drop_record(pid)

    def to_json(self) -> dict[str, Any]:
        """What the record holds: pid (None when stopped), url, host, port, data_dir and the settings."""
        return {
            "pid": self.pid,
            "detached": self._detached,
            "url": self.url,
            "host": self.host,
            "port": self._port,
            "data_dir": str(self._data_dir),
            "config": str(self.config_path),
            "log": str(self.log_path),
            "htpasswd": str(self._htpasswd) if self._htpasswd else None,
            "tls_certificate": str(self._tls[0]) if self._tls else None,
            "tls_key": str(self._tls[1]) if self._tls else None,
        }

    def garbage_collect(self, delete_untagged: bool = True, dry_run: bool = False) -> str:
        """Run ``registry garbage-collect`` and return its output; ``dry_run`` only reports what it would remove.

        The registry must not serve while it collects, so a running server is
        stopped first and started again on the same port afterwards (also when
        collection fails), detached if it was or if another process started it. A dry run changes nothing and
        leaves the server running. A registry serving this data directory from
        another object or process is refused: collect through ``find()``'s
        server instead. ComponentUnavailableError if the collector fails.
        """
        was_running = self.running and not dry_run
        # One found through its record belongs to another process: it comes back detached, to outlive this one.
        detach = self._detached or self._process is None
        if not dry_run:
            self.stop()
            other = RegistryServer.find(self._data_dir)
            if other is not None:
                raise ComponentUnavailableError(
                    f"a registry (pid {other.pid}) is serving {self._data_dir} on {other.url}; collecting garbage"
                    " under a running registry corrupts it, so stop it first (`ocilab registry gc` does)"
                )
        self._write_config()
        # The collector fails with "Path not found" on a registry nothing was ever pushed to.
        for tree in ("repositories", "blobs"):
            (self._data_dir / "docker/registry/v2" / tree).mkdir(parents=True, exist_ok=True)
        flags = ["--delete-untagged"] * delete_untagged + ["--dry-run"] * dry_run
        command = [self._binary, "garbage-collect", *flags, str(self.config_path)]
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=_clean_environment(),
                timeout=GC_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ComponentUnavailableError(f"`{' '.join(command)}` did not finish within {GC_TIMEOUT:.0f} s") from None
        finally:
            if was_running:
                self.start(detach=detach)
        output = result.stdout.decode("utf-8", "replace")
        if result.returncode != 0:
            raise ComponentUnavailableError(
                f"`{' '.join(command)}` failed with exit code {result.returncode}: {_tail(output)}"
            )
        return output

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the registry's log (read from its last 64 KiB)."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - _LOG_TAIL_BYTES))
            return _tail(log.read().decode("utf-8", "replace"), lines)

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RegistryServer {self.url} {state} data={self._data_dir}>"

    def _write_record(self) -> None:
        """Write ``ocilab-registry.json`` for the running process, by renaming a complete file into place."""
        record = {**self.to_json(), "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
        data = json.dumps(record, indent=2).encode() + b"\n"
        os.replace(_private_copy(self.record_path, data), self.record_path)

    def _drop_record(self, pid: int) -> None:
        """Remove the record if it names ``pid``, the process just stopped."""
        try:
            if json.loads(self.record_path.read_text()).get("pid") == pid:
                self.record_path.unlink()
        except (OSError, ValueError, AttributeError):
            pass

    def _write_config(self) -> None:
        """Write ``config.yml`` (0600: it holds the secret) by renaming a complete temporary file into place."""
        self._data_dir.mkdir(parents=True, exist_ok=True)
        os.replace(_private_copy(self.config_path, self._config_text().encode()), self.config_path)

    def _config_text(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  fields:",
            "    service: registry",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {_quote(str(self._data_dir))}",
            "  delete:",
            "    enabled: true",
            "http:",
            f"  addr: {_quote(self.host)}",
            f"  secret: {_quote(self._secret())}",
            "  headers:",
            "    X-Content-Type-Options: [nosniff]",
        ]
        if self._tls is not None:
            lines += [
                "  tls:",
                f"    certificate: {_quote(str(self._tls[0]))}",
                f"    key: {_quote(str(self._tls[1]))}",
            ]
        if self._htpasswd is not None:
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: ocilab-registry",
                f"    path: {_quote(str(self._htpasswd))}",
            ]
        return "\n".join(lines) + "\n"

    def _secret(self) -> str:
        """This data directory's ``http.secret``: read it, or make it when it does not exist yet.

        Made once: concurrent first starts race on a hard link, and every one of
        them ends up with the winner's secret.
        """
        try:
            return self.secret_path.read_text().strip()
        except FileNotFoundError:
            pass
        candidate = _private_copy(self.secret_path, secrets.token_hex(32).encode())
        try:
            os.link(candidate, self.secret_path)
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
        return self.secret_path.read_text().strip()

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ComponentUnavailableError(
                    f"the registry ({self._binary}) exited with code {self._process.returncode} while starting"
                    f" on {self.host}; its log {self.log_path} ends with:\n{self.log_tail()}"
                )
            if _answers(self.host, tls=self._tls is not None):
                return
            time.sleep(0.1)
        raise ComponentUnavailableError(
            f"the registry on {self.host} did not answer GET /v2/ within {START_TIMEOUT:.0f} s;"
            f" its log {self.log_path} ends with:\n{self.log_tail()}"
        )


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _is_registry(pid: int, config: Path) -> bool:
    """True when ``pid`` is alive and is ``registry serve <config>`` (a zombie has an empty command line)."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return len(arguments) >= 3 and arguments[1] == b"serve" and arguments[2] == os.fsencode(config)


def _terminate_pid(pid: int, config: Path) -> None:
    """Stop a registry that is not this process's child, as ``_terminate`` does for a child.

    Signals go through a pidfd opened before the identity check, so a pid the
    kernel hands to another program meanwhile is never signalled.
    """
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if not _is_registry(pid, config):
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                signal.pidfd_send_signal(handle, sig)
            except ProcessLookupError:
                return
            if _exits(handle, STOP_TIMEOUT):
                return
    finally:
        os.close(handle)


def _exits(pidfd: int, timeout: float) -> bool:
    """True when the process behind ``pidfd`` exits within ``timeout`` seconds (a pidfd turns readable)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock`` (created 0600) for the ``with`` block."""
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _private_copy(path: Path, data: bytes) -> Path:
    """A new file beside ``path``, with mode 0600, holding ``data``; the caller renames or links it into place."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    try:
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as stream:
            stream.write(data)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _quote(text: str) -> str:
    """A YAML double-quoted scalar (a JSON string is one)."""
    return json.dumps(text)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as Go's listeners set it: connections in TIME_WAIT do not count, a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _answers(host: str, tls: bool = False) -> bool:
    """True when an HTTP(S) server answers ``GET /v2/`` on ``host`` (any status, 401 included).

    Over TLS the certificate is not checked here: this only asks whether the process is up.
    """
    hostname, _, port = host.rpartition(":")
    connection: http.client.HTTPConnection
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(hostname, int(port), timeout=1.0, context=context)
    else:
        connection = http.client.HTTPConnection(hostname, int(port), timeout=1.0)
    try:
        connection.request("GET", "/v2/")
        connection.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _clean_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("REGISTRY_")}


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
