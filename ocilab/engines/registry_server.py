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
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import weakref
from pathlib import Path
from typing import IO

from ocilab.errors import ComponentUnavailableError

DEBIAN_BINARY = Path("/usr/bin/docker-registry")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
GC_TIMEOUT = 600.0
_LOG_TAIL_LINES = 20
_LOG_TAIL_BYTES = 64 * 1024
SECRET_FILE = "http.secret"


def find_registry_binary() -> str | None:
    """The registry binary: ``registry`` or ``docker-registry`` on PATH, else the Debian path; None if absent."""
    for name in ("registry", "docker-registry"):
        found = shutil.which(name)
        if found:
            return found
    return str(DEBIAN_BINARY) if os.access(DEBIAN_BINARY, os.X_OK) else None


class RegistryServer:
    """A CNCF distribution registry process on 127.0.0.1, serving from ``data_dir``.

    ``port`` None picks a free port when the server is created; it stays the
    same across restarts. With ``htpasswd`` (a bcrypt htpasswd file) the
    registry demands Basic authentication. With ``tls`` (a PEM certificate and
    its key) it serves HTTPS instead of plain HTTP. Use as a context manager,
    or call ``start()`` and ``stop()``.
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
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RegistryServer:
        """Start the registry, wait until ``GET /v2/`` answers; ComponentUnavailableError with the log tail if not."""
        if self.running:
            return self
        self.stop()  # clean up after a process that died on its own
        self._data_dir.mkdir(parents=True, exist_ok=True)
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
        )
        # Stops the registry if this object is dropped or Python exits without stop().
        self._reaper = weakref.finalize(self, _terminate, self._process)
        try:
            self._wait_until_ready()
        except ComponentUnavailableError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate the registry, killing it if it has not exited after a few seconds. Idempotent."""
        if self._reaper is not None:
            self._reaper()
        self._reaper = None
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def garbage_collect(self, delete_untagged: bool = True) -> str:
        """Run ``registry garbage-collect`` on the stopped registry and return its output.

        The registry must not serve while it collects, so a running server is
        stopped first and started again on the same port afterwards (also when
        collection fails). ComponentUnavailableError if the collector fails.
        """
        was_running = self.running
        self.stop()
        self._write_config()
        # The collector fails with "Path not found" on a registry nothing was ever pushed to.
        for tree in ("repositories", "blobs"):
            (self._data_dir / "docker/registry/v2" / tree).mkdir(parents=True, exist_ok=True)
        flags = ["--delete-untagged"] if delete_untagged else []
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
                self.start()
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
