"""The Docker engine's own view of images: which are tagged, which are dangling, and pruning the dangling ones.

An engine image loses its last tag when another image takes the tag (a
rebuild, a second ``docker load``): it becomes **dangling**, listed as
``<none>:<none>``, and keeps its layers until it is pruned or removed. Both
functions select images by a label (``KEY=VALUE`` or ``KEY``), so a lesson
or a test touches only its own images, never the engine's others.
ComponentUnavailableError when no engine answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocilab.errors import InvalidInputError
from ocilab.stores.daemon import connect_engine


@dataclass(frozen=True)
class EngineImage:
    """One engine image: its ID (``sha256:`` and the config digest), its tags (none when dangling), its size."""

    id: str
    tags: tuple[str, ...]
    size: int

    @property
    def dangling(self) -> bool:
        return not self.tags


@dataclass(frozen=True)
class Pruned:
    """What a prune removed: ``docker image prune``'s ``Untagged:``/``Deleted:`` lines and the bytes it freed."""

    lines: tuple[str, ...]
    reclaimed: int


def _label_filter(label: str) -> str:
    if not label or label.startswith("=") or any(character.isspace() for character in label):
        raise InvalidInputError(f"label filter {label!r}: write KEY or KEY=VALUE, without spaces")
    return label


def engine_images(label: str) -> list[EngineImage]:
    """The engine's images carrying ``label``, tagged or dangling: tagged first, then by ID."""
    wanted = _label_filter(label)
    images = connect_engine().images.list(filters={"label": wanted})
    found = [EngineImage(image.id, tuple(sorted(image.tags)), int(image.attrs.get("Size") or 0)) for image in images]
    return sorted(found, key=lambda image: (image.dangling, image.id))


def prune_dangling(label: str) -> Pruned:
    """Remove the dangling images carrying ``label``, and each of their layers no other image uses.

    Tagged images are left alone, whatever their label.
    """
    wanted = _label_filter(label)
    answer = connect_engine().images.prune(filters={"dangling": True, "label": wanted})
    lines = tuple(f"{action}: {value}" for item in answer.get("ImagesDeleted") or () for action, value in item.items())
    return Pruned(lines, int(answer.get("SpaceReclaimed") or 0))
