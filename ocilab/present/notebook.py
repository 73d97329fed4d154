"""Glue for the notebooks: a fresh working directory per notebook, per learner, per running kernel."""

from __future__ import annotations

import fcntl
import os
import shutil
from itertools import count
from pathlib import Path
from typing import IO

WORKSPACE_ENV = "OCILAB_WORKSPACE"
_held: dict[Path, IO[bytes]] = {}  # directory -> its lock file, open (and locked) while this process lives


def workspace_root() -> Path:
    """Where notebooks keep their files: ``$OCILAB_WORKSPACE``, else ``$XDG_CACHE_HOME/ocilab-lab``, else
    ``~/.cache/ocilab-lab``: the learner's own, never a path shared with other users (a relative
    ``XDG_CACHE_HOME`` is ignored, as the XDG spec says)."""
    explicit = os.environ.get(WORKSPACE_ENV)
    if explicit:
        return Path(explicit)
    cache = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(cache) if os.path.isabs(cache) else Path.home() / ".cache") / "ocilab-lab"


def workspace(notebook: str) -> Path:
    """An empty directory for one notebook's files: ``<workspace_root()>/<notebook>``.

    Whatever a previous run of the same notebook left there is removed first,
    so every run starts from the same place. The directory stays locked
    (``flock``) while this process lives; calling again from the same process
    gives the same directory, emptied. When another running process (a second
    kernel of the same learner) holds it, the next free ``<notebook>-2``,
    ``-3``... is used, so two runs at once never touch each other's files.
    """
    root = workspace_root()
    root.mkdir(parents=True, exist_ok=True)
    for number in count(1):
        directory = root / (notebook if number == 1 else f"{notebook}-{number}")
        if directory in _held or _lock(directory):
            break
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def _lock(directory: Path) -> bool:
    """Take ``directory``'s lock (a file beside it) for this process; False when another process holds it."""
    handle = open(directory.with_name(f".{directory.name}.lock"), "ab")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    _held[directory] = handle
    return True
