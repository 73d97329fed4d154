"""Glue for the notebooks: a fresh working directory per notebook."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

WORKSPACE_ENV = "OCILAB_WORKSPACE"


def workspace(notebook: str) -> Path:
    """An empty directory for one notebook's files: ``$OCILAB_WORKSPACE/<notebook>``.

    The default root is ``ocilab-lab`` in the system temp directory. Whatever a
    previous run of the same notebook left there is removed first, so every run
    starts from the same place.
    """
    root = Path(os.environ.get(WORKSPACE_ENV) or Path(tempfile.gettempdir()) / "ocilab-lab")
    directory = root / notebook
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory
