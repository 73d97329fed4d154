"""Image configurations (image-spec config.md), raw bytes kept beside the parsed form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ocilab.errors import DigestFormatError
from ocilab.model.descriptor import Platform
from ocilab.model.digest import Digest
from ocilab.model.jsondoc import Fields, load_object


@dataclass(frozen=True)
class HistoryEntry:
    """One step of how the image was built; ``empty_layer`` steps made no layer."""

    created: str | None
    created_by: str | None
    author: str | None
    comment: str | None
    empty_layer: bool


@dataclass(frozen=True)
class ImageConfig:
    """The parsed image config. ``container_config`` is the runtime ``config`` section, verbatim."""

    raw: bytes = field(repr=False)
    platform: Platform
    created: str | None
    author: str | None
    container_config: dict[str, Any] = field(compare=False, hash=False)
    diff_ids: tuple[Digest, ...]
    history: tuple[HistoryEntry, ...]

    @property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.raw)


def parse_config(raw: bytes, source: str = "config", layer_count: int | None = None) -> ImageConfig:
    """Parse and validate an image config.

    Checks ``rootfs.type == "layers"``, every diff_id, that history's non-empty
    steps agree with the number of diff_ids, and, when ``layer_count`` is given,
    that there is one diff_id per manifest layer.
    """
    fields = Fields(load_object(raw, source), "", source)
    platform = Platform(
        os=fields.string("os", required=True) or "",
        architecture=fields.string("architecture", required=True) or "",
        variant=fields.string("variant"),
        os_version=fields.string("os.version"),
        os_features=tuple(fields.string_list("os.features") or ()),
    )
    rootfs = Fields(fields.obj_field("rootfs", required=True), "rootfs", source)
    rootfs_type = rootfs.string("type", required=True)
    if rootfs_type != "layers":
        raise rootfs.error("type", f'must be "layers", got {rootfs_type!r}')
    diff_ids = []
    for position, text in enumerate(rootfs.string_list("diff_ids", required=True) or []):
        try:
            diff_ids.append(Digest.parse(text))
        except DigestFormatError as error:
            raise rootfs.error(f"diff_ids[{position}]", error.problem) from None
    if layer_count is not None and layer_count != len(diff_ids):
        raise rootfs.error("diff_ids", f"has {len(diff_ids)} entries but the manifest has {layer_count} layers")
    history = _history(fields)
    made_layers = sum(1 for entry in history if not entry.empty_layer)
    if history and made_layers != len(diff_ids):
        raise fields.error(
            "history", f"has {made_layers} steps that made a layer, but rootfs has {len(diff_ids)} diff_ids"
        )
    container_config = fields.obj_field("config") or {}
    return ImageConfig(
        raw=raw,
        platform=platform,
        created=fields.string("created"),
        author=fields.string("author"),
        container_config=container_config,
        diff_ids=tuple(diff_ids),
        history=history,
    )


def _history(fields: Fields) -> tuple[HistoryEntry, ...]:
    entries = []
    for position, item in enumerate(fields.array("history") or []):
        entry = Fields(item, f"history[{position}]", fields.source)
        empty = entry.obj.get("empty_layer", False)
        if not isinstance(empty, bool):
            raise entry.error("empty_layer", "expected a boolean")
        entries.append(
            HistoryEntry(
                created=entry.string("created"),
                created_by=entry.string("created_by"),
                author=entry.string("author"),
                comment=entry.string("comment"),
                empty_layer=empty,
            )
        )
    return tuple(entries)
