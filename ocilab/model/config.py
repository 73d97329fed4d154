"""Image configurations (image-spec config.md), raw bytes kept beside the parsed form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ocilab.errors import DigestFormatError
from ocilab.model.descriptor import Platform
from ocilab.model.digest import Digest
from ocilab.model.jsondoc import Fields, Finding, load_object


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
    warnings: tuple[Finding, ...] = field(default=(), compare=False, hash=False, repr=False)

    @property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.raw)


def parse_config(raw: bytes, source: str = "config", layer_count: int | None = None) -> ImageConfig:
    """Parse and validate an image config; what is allowed but odd is kept in ``warnings``.

    Type-checks every field config.md types (an optional field set to null
    counts as absent), checks ``rootfs.type == "layers"`` and every diff_id,
    and, when ``layer_count`` is given, that there is one diff_id per manifest
    layer. History whose non-empty steps do not line up with the diff_ids is a warning.
    """
    fields = Fields(load_object(raw, source), "", source, null_is_absent=True)
    platform = Platform.from_fields(fields)
    for key in ("os", "architecture"):
        if not fields.obj[key]:
            raise fields.error(key, "must not be empty")
    rootfs = fields.nested(fields.obj_field("rootfs", required=True), "rootfs")
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
        fields.warn("history", f"has {made_layers} steps that made a layer, but rootfs has {len(diff_ids)} diff_ids")
    container_config = fields.obj_field("config") or {}
    _check_runtime_config(fields.nested(container_config, "config"))
    return ImageConfig(
        raw=raw,
        platform=platform,
        created=fields.date_time("created"),
        author=fields.string("author"),
        container_config=container_config,
        diff_ids=tuple(diff_ids),
        history=history,
        warnings=tuple(fields.warnings),
    )


def _history(fields: Fields) -> tuple[HistoryEntry, ...]:
    entries = []
    for position, item in enumerate(fields.array("history") or []):
        entry = fields.nested(item, f"history[{position}]")
        entries.append(
            HistoryEntry(
                created=entry.date_time("created"),
                created_by=entry.string("created_by"),
                author=entry.string("author"),
                comment=entry.string("comment"),
                empty_layer=bool(entry.boolean("empty_layer")),
            )
        )
    return tuple(entries)


def _check_runtime_config(fields: Fields) -> None:
    """Type-check the runtime ``config`` section, which the parsed form keeps verbatim."""
    for key in ("User", "WorkingDir", "StopSignal"):
        fields.string(key)
    for key in ("Entrypoint", "Cmd"):
        fields.string_list(key)
    for position, variable in enumerate(fields.string_list("Env") or []):
        name, equals, _ = variable.partition("=")
        if not name or not equals:
            raise fields.error(f"Env[{position}]", f"{variable!r} is not NAME=VALUE")
    for port in fields.empty_object_map("ExposedPorts"):
        _check_port(fields, port)
    fields.empty_object_map("Volumes")
    fields.annotations("Labels")
    fields.boolean("ArgsEscaped")
    for key in ("Memory", "MemorySwap", "CpuShares"):
        fields.integer(key)
    fields.obj_field("Healthcheck")


def _check_port(fields: Fields, key: str) -> None:
    """An ExposedPorts key: ``port/tcp``, ``port/udp`` or ``port``; another protocol is a warning."""
    number, slash, protocol = key.partition("/")
    where = f"ExposedPorts.{key}"
    if not (number.isascii() and number.isdigit() and int(number) <= 65535) or (slash and not protocol):
        raise fields.error(where, "is not a port: expected PORT/tcp, PORT/udp or PORT, with PORT from 0 to 65535")
    if slash and protocol not in ("tcp", "udp"):
        fields.warn(where, f"protocol {protocol!r} is not one of the spec's (tcp, udp)")
