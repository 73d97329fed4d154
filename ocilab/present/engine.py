"""Notebook cells that need a container engine (Docker, or Podman where Docker is absent), and say in one
sentence what they would show without one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ocilab.engines.engine_images import engine_images, prune_dangling
from ocilab.errors import ComponentUnavailableError
from ocilab.present.text import human_size

if TYPE_CHECKING:
    import pandas

Result = TypeVar("Result")
IMAGE_COLUMNS = ["image", "tags", "dangling", "size"]


@dataclass(frozen=True)
class NoEngine:
    """What a cell shows where no Docker engine answers: what it would have shown, in one sentence."""

    otherwise: str

    def __repr__(self) -> str:
        return f"No Docker engine here (nor Podman), so nothing ran. {self.otherwise}"

    def __getattr__(self, name: str) -> NoEngine:
        """A public attribute of a NoEngine is the NoEngine, so ``if_engine(...).removed`` still shows the sentence."""
        if name.startswith("_"):
            raise AttributeError(name)
        return self

    def __getitem__(self, key: object) -> NoEngine:
        """An item is the NoEngine too, so ``if_engine(...).steps[["step", "layer"]]`` shows the sentence."""
        return self


def if_engine(function: Callable[..., Result], *args: Any, otherwise: str, **kwargs: Any) -> Result | NoEngine:
    """``function(*args, **kwargs)``; a ``NoEngine`` saying ``otherwise`` when no engine can be reached.

    Only ComponentUnavailableError (no engine, no docker SDK) becomes the
    sentence; every other error is raised as usual.
    """
    try:
        return function(*args, **kwargs)
    except ComponentUnavailableError:
        return NoEngine(otherwise)


def images(label: str) -> pandas.DataFrame:
    """The engine's images carrying ``label`` as a table: short ID, tags (``<none>`` when dangling), size."""
    import pandas

    rows = [
        {
            "image": image.id.removeprefix("sha256:")[:12],
            "tags": ", ".join(image.tags) or "<none>",
            "dangling": image.dangling,
            "size": human_size(image.size),
        }
        for image in engine_images(label)
    ]
    return pandas.DataFrame(rows, columns=IMAGE_COLUMNS)


def prune(label: str) -> list[str]:
    """Prune the dangling images carrying ``label``: the lines ``docker image prune`` prints, total last."""
    pruned = prune_dangling(label)
    return [*pruned.lines, f"Total reclaimed space: {human_size(pruned.reclaimed)}"]


def engine() -> str:
    """The engine the lessons use: ``docker`` when it answers, else ``podman`` (``OCILAB_ENGINE`` overrides).

    Never raises: where no engine answers it names ``docker``, so the cell that uses it goes through
    ``if_engine`` and shows its sentence.
    """
    from ocilab.stores.daemon import connect_engine, engine_of

    try:
        return engine_of(connect_engine()).name
    except ComponentUnavailableError:
        return "docker"


def in_engine(name: str) -> str:
    """``name`` (``NAME:TAG``) in the engine that answers: ``docker-daemon:NAME`` or ``containers-storage:NAME``."""
    from ocilab.stores.daemon import ENGINES

    return f"{ENGINES[engine()].transport}:{name}"
