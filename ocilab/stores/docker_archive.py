"""``docker save`` archives (``docker-archive:FILE[:NAME:TAG]`` or ``docker-archive:FILE:@N``), read in place.

Two formats share ``manifest.json``, a JSON array with one item per image::

    [{"Config": "<path>", "RepoTags": ["busybox:latest"], "Layers": ["<path>", ...]}]

- Legacy (Docker < 25): ``Config`` is ``<hex>.json``, ``Layers`` are
  ``<v1 id>/layer.tar`` (uncompressed; a repeated layer is a symlink to an
  earlier one). No manifest is stored, so one is synthesised (by
  ``ocilab.model.build``, like every manifest ocilab makes): Docker v2 schema 2,
  layers typed ``rootfs.diff.tar`` because that is what they are (skopeo labels
  them ``tar.gzip``, hence its different manifest digest). An uncompressed
  layer's digest is its diff_id, so the config (itself verified by the image ID)
  gives each layer's digest; the bytes are checked when the layer is read, as
  every store's are, and opening an archive reads no layer.
- OCI-in-tar (Docker 25+): the archive is also an OCI image layout
  (``oci-layout``, ``index.json``, ``blobs/``) and ``manifest.json`` points into
  ``blobs/``. The real manifest is served, found by the ``index.json`` entry
  annotated with the image's name or, failing that, by its config digest. An
  index that lists nothing (Docker 25 saving an image by ID) falls back to the
  legacy reading, which Docker 25's uncompressed layer blobs satisfy.

Every path named by ``manifest.json`` must be relative and stay inside the
archive; nothing is extracted or written.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ocilab.errors import NotFoundError, ReferenceFormatError, UnsafePathError, ValidationError
from ocilab.model import MAX_DOCUMENT_BYTES, Descriptor, Digest, Reference, load_object, parse_config, parse_manifest
from ocilab.model import mediatype as mt
from ocilab.model.build import build_manifest
from ocilab.model.jsondoc import Fields, load_array
from ocilab.stores.base import Store
from ocilab.stores.layout import REF_NAME, LayoutStore
from ocilab.stores.tree import TarTree, Tree, confined

MANIFEST_FILE = "manifest.json"
IMAGE_NAME = "io.containerd.image.name"
"""The annotation Docker 25+ (via containerd) puts on ``index.json`` entries: the full image name."""


@dataclass(frozen=True)
class ArchiveEntry:
    """One item of ``manifest.json``; ``field`` is its JSON path (``manifest.json[0]``) for messages."""

    field: str
    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


class LegacyArchiveStore(Store):
    """A legacy ``docker save`` image served with a synthesised Docker v2 schema 2 manifest."""

    def __init__(self, tree: Tree, reference: str, manifest: bytes, members: dict[Digest, str]) -> None:
        self.tree = tree
        self.reference = reference
        self.manifest = manifest
        self._members = members
        self._root = Descriptor(mt.DOCKER_MANIFEST, Digest.of_bytes(manifest), len(manifest))

    def root(self) -> Descriptor:
        return self._root

    def open_raw(self, descriptor: Descriptor) -> BinaryIO:
        if descriptor.digest == self._root.digest:
            return io.BytesIO(self.manifest)
        path = self._members.get(descriptor.digest)
        if path is None:
            raise NotFoundError(f"{self.reference}: no blob {descriptor.digest} in this image")
        return self.tree.open(path)

    def close(self) -> None:
        self.tree.close()


class OciArchiveStore(Store):
    """A Docker 25+ archive read through its OCI layout; ``root`` is the real manifest (or index)."""

    def __init__(self, layout: LayoutStore, reference: str, descriptor: Descriptor) -> None:
        self.layout = layout
        self.reference = reference
        self._root = descriptor

    def root(self) -> Descriptor:
        return self._root

    def open_raw(self, descriptor: Descriptor) -> BinaryIO:
        return self.layout.open_raw(descriptor)

    def close(self) -> None:
        self.layout.close()


def open_docker_archive(path: Path, name: str | None = None) -> Store:
    """The image ``name`` (``NAME:TAG`` or ``@N``) in the ``docker save`` archive ``path``.

    Without ``name`` the archive must hold exactly one image. Raises NotFoundError
    (no archive, no manifest.json, no such image or member), ValidationError
    (malformed manifest.json or config, ambiguous choice) or UnsafePathError (a path
    leaving the archive). A layer that does not match its diff_id fails when it is read.
    """
    reference = f"docker-archive:{path}" + (f":{name}" if name else "")
    tree = TarTree(Path(path))
    try:
        entry = _select(_read_entries(tree), name, tree.name)
        _check_paths(entry, tree.name)
        config_raw = _read_member(tree, entry.config, f"{entry.field}.Config")
        if _lists_images(tree):
            layout = LayoutStore(tree, None, reference)
            names = _wanted_names(entry, name, tree.name)
            descriptor = _find_in_index(layout, entry, names, Digest.of_bytes(config_raw))
            if descriptor is not None:
                return OciArchiveStore(layout, reference, descriptor)
        return _synthesise(tree, entry, config_raw, reference)
    except BaseException:
        tree.close()
        raise


def _read_entries(tree: Tree) -> list[ArchiveEntry]:
    """The items of the archive's ``manifest.json``, validated; NotFoundError when there is none."""
    if not tree.exists(MANIFEST_FILE):
        raise NotFoundError(f"{tree.name}: not a docker save archive (no {MANIFEST_FILE} in it)")
    source = f"{tree.name}/{MANIFEST_FILE}"
    items = load_array(tree.read(MANIFEST_FILE, MAX_DOCUMENT_BYTES), source)
    if not items:
        raise ValidationError("", "lists no images", source)
    return [_entry(Fields(item, f"[{position}]", source)) for position, item in enumerate(items)]


def _entry(fields: Fields) -> ArchiveEntry:
    """One validated item; ``RepoTags`` may be null (an image saved by ID)."""
    repo_tags = fields.string_list("RepoTags") if fields.obj.get("RepoTags") is not None else None
    return ArchiveEntry(
        field=f"{MANIFEST_FILE}{fields.path}",
        config=fields.string("Config", required=True) or "",
        repo_tags=tuple(repo_tags or ()),
        layers=tuple(fields.string_list("Layers", required=True) or ()),
    )


def _select(entries: list[ArchiveEntry], name: str | None, where: str) -> ArchiveEntry:
    """The entry ``name`` designates: ``@N`` by position, ``NAME:TAG`` by RepoTags, None the only one."""
    listing = "; ".join(f"@{i}: {', '.join(e.repo_tags) or 'untagged'}" for i, e in enumerate(entries))
    if name is None:
        if len(entries) != 1:
            raise ValidationError(
                "", f"holds {len(entries)} images; add NAME:TAG or @N to choose ({listing})", f"{where}/{MANIFEST_FILE}"
            )
        return entries[0]
    if name.startswith("@"):
        if not name[1:].isdecimal():
            raise ReferenceFormatError(f"docker-archive image {name!r}: '@' must be followed by a number (@0, @1...)")
        if int(name[1:]) >= len(entries):
            raise NotFoundError(f"{where}: no image {name}; the archive holds {len(entries)} ({listing})")
        return entries[int(name[1:])]
    wanted = _tagged(name)
    found = [entry for entry in entries if wanted in _parsed_tags(entry, where)]
    if not found:
        raise NotFoundError(f"{where}: no image {name} in the archive ({listing})")
    if len(found) > 1:
        raise ValidationError("", f"{len(found)} images are tagged {name}", f"{where}/{MANIFEST_FILE}")
    return found[0]


def _tagged(text: str) -> Reference:
    """``text`` normalised as Docker does (``busybox`` is ``docker.io/library/busybox:latest``); no digest."""
    reference = Reference.parse(text)
    if reference.digest is not None:
        raise ReferenceFormatError(f"{text!r}: a docker archive names images by NAME:TAG, not by digest")
    return reference


def _parsed_tags(entry: ArchiveEntry, where: str) -> list[Reference]:
    tags = []
    for position, text in enumerate(entry.repo_tags):
        try:
            tags.append(_tagged(text))
        except ReferenceFormatError as error:
            field = f"{entry.field}.RepoTags[{position}]"
            raise ValidationError(field, str(error), f"{where}/{MANIFEST_FILE}") from None
    return tags


def _check_paths(entry: ArchiveEntry, where: str) -> None:
    """UnsafePathError, naming the field, for a Config or Layers path that is absolute or climbs out."""
    confined(entry.config, f"{where}: {entry.field}.Config")
    for position, path in enumerate(entry.layers):
        confined(path, f"{where}: {entry.field}.Layers[{position}]")


@contextmanager
def _naming(tree: Tree, path: str, field: str) -> Iterator[None]:
    """Errors about member ``path`` say which manifest.json ``field`` named it."""
    try:
        yield
    except NotFoundError:
        raise NotFoundError(f"{tree.name}: {field} names {path}, which is not in the archive") from None
    except UnsafePathError as error:
        raise UnsafePathError(f"{error} (named by {field})") from None


def _read_member(tree: Tree, path: str, field: str) -> bytes:
    with _naming(tree, path, field):
        return tree.read(path, MAX_DOCUMENT_BYTES)


def _lists_images(tree: Tree) -> bool:
    """True when the archive is also an OCI layout whose index lists images (Docker 25 writes null for IDs)."""
    if not (tree.exists("oci-layout") and tree.exists("index.json")):
        return False
    index = load_object(tree.read("index.json", MAX_DOCUMENT_BYTES), f"{tree.name}/index.json")
    return bool(index.get("manifests"))


def _wanted_names(entry: ArchiveEntry, name: str | None, where: str) -> set[Reference]:
    """The names an ``index.json`` entry may carry for this image: the one asked for, else all its RepoTags."""
    if name is not None and not name.startswith("@"):
        return {_tagged(name)}
    return set(_parsed_tags(entry, where))


def _find_in_index(
    layout: LayoutStore, entry: ArchiveEntry, names: set[Reference], config: Digest
) -> Descriptor | None:
    """The ``index.json`` entry for this image: by name annotation, else by config digest; None if neither.

    A named manifest whose config is not the entry's Config is refused (ValidationError).
    """
    named = {d.digest: d for d in layout.index.manifests if _annotated_names(d) & names}
    if len(named) > 1:
        problem = f"{len(named)} different entries carry the name of {entry.field}"
        raise ValidationError("manifests", problem, f"{layout.tree.name}/index.json")
    candidates = list(named.values()) or [d for d in layout.index.manifests if mt.is_manifest(d.media_type)]
    for descriptor in candidates:
        if not mt.is_manifest(descriptor.media_type):
            return descriptor
        source = f"{layout.reference}: manifest {descriptor.digest}"
        manifest = parse_manifest(layout.read_document(descriptor, "manifest"), source, descriptor.media_type)
        if manifest.config.digest == config:
            return descriptor
        if named:
            problem = f"is {manifest.config.digest}, but {entry.field}.Config ({entry.config}) is {config}"
            raise ValidationError("config.digest", problem, source)
    return None


def _annotated_names(descriptor: Descriptor) -> set[Reference]:
    """The image names an ``index.json`` entry carries; a bare tag in ref.name is not a name and is ignored."""
    names = set()
    for key in (IMAGE_NAME, REF_NAME):
        text = descriptor.annotations.get(key, "")
        if "/" in text or ":" in text:
            try:
                names.add(_tagged(text))
            except ReferenceFormatError:
                continue
    return names


def _synthesise(tree: Tree, entry: ArchiveEntry, config_raw: bytes, reference: str) -> LegacyArchiveStore:
    """A store for a legacy entry: each layer's digest is its diff_id, checked when the layer is read."""
    config = parse_config(config_raw, f"{tree.name}: config {entry.config}", layer_count=len(entry.layers))
    config_descriptor = Descriptor(mt.DOCKER_CONFIG, Digest.of_bytes(config_raw), len(config_raw))
    members = {config_descriptor.digest: entry.config}
    layers = []
    for position, (path, diff_id) in enumerate(zip(entry.layers, config.diff_ids, strict=True)):
        with _naming(tree, path, f"{entry.field}.Layers[{position}]"):
            size = tree.size(path)
        members[diff_id] = path
        layers.append(Descriptor(mt.DOCKER_LAYER_TAR, diff_id, size))
    manifest = build_manifest(config_descriptor, layers, media_type=mt.DOCKER_MANIFEST)
    return LegacyArchiveStore(tree, reference, manifest.raw, members)
