"""What a workshop created, written down as it is created, so ``down --purge`` removes exactly that.

The record is ``ROOT/workshop.json`` (mode 0600, root's): every unix user
``up`` made (name, uid, home), whether it made ``ROOT`` itself, the hub's
ports and pid, and the runtime directories it made. It is rewritten (by
renaming a complete file into place) after each thing is created, so a
failure half-way through still leaves a record of what exists.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ocilab.errors import InvalidInputError

DEFAULT_ROOT = Path("/opt/ocilab-workshop")
ROOT_ENV = "OCILAB_WORKSHOP_ROOT"
RECORD_FILE = "workshop.json"


def default_root() -> Path:
    """``$OCILAB_WORKSHOP_ROOT``, else ``/opt/ocilab-workshop``."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


@dataclass
class Learner:
    """One learner: a unix user the workshop created, with its home."""

    name: str
    uid: int
    home: str

    @property
    def runtime_dir(self) -> Path:
        """``XDG_RUNTIME_DIR`` for the learner: ``/run/user/UID``, made by ``up``, removed by ``down``."""
        return Path("/run/user") / str(self.uid)


@dataclass
class Record:
    """Everything one workshop made and runs; ``Record.load(root)`` reads it back."""

    root: str
    created_root: bool = False
    prefix: str = "learner"
    ip: str = "0.0.0.0"
    port: int = 8000
    hub_port: int = 0
    proxy_api_port: int = 0
    hub_pid: int | None = None
    learners: list[Learner] = field(default_factory=list)
    firewall: bool = False

    @property
    def path(self) -> Path:
        return Path(self.root) / RECORD_FILE

    @property
    def hub_dir(self) -> Path:
        """The hub's config, database, secrets and log."""
        return Path(self.root) / "hub"

    @property
    def venv(self) -> Path:
        """The learners' shared, read-only Python environment."""
        return Path(self.root) / "venv"

    @property
    def url(self) -> str:
        """Where learners log in (``127.0.0.1`` stands for ``0.0.0.0``, which only a server can listen on)."""
        host = "127.0.0.1" if self.ip in ("", "0.0.0.0") else self.ip
        return f"http://{host}:{self.port}/"

    def learner(self, name: str) -> Learner | None:
        return next((learner for learner in self.learners if learner.name == name), None)

    @classmethod
    def load(cls, root: Path) -> Record | None:
        """The record in ``root``; None when there is none. InvalidInputError naming the file if it is unreadable."""
        path = Path(root) / RECORD_FILE
        try:
            document: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise InvalidInputError(f"{path}: not a workshop record ({error}); remove it by hand") from None
        try:
            learners = [Learner(**item) for item in document.pop("learners")]
            return cls(**document, learners=learners)
        except (KeyError, TypeError) as error:
            raise InvalidInputError(f"{path}: not a workshop record (field {error}); remove it by hand") from None

    def save(self) -> None:
        """Write the record (0600) by renaming a complete file into place."""
        data = json.dumps(asdict(self), indent=2).encode() + b"\n"
        temporary = self.path.with_name(f".{RECORD_FILE}.{secrets.token_hex(6)}")
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as stream:
            stream.write(data)
        os.replace(temporary, self.path)
