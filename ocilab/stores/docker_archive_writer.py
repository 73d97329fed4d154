"""Writing ``docker-archive:FILE[:NAME:TAG]`` in the format Docker 25+ saves: an OCI layout plus ``manifest.json``.

::

    [{"Config": "blobs/sha256/<hex>", "RepoTags": ["name:tag"], "Layers": ["blobs/sha256/<hex>", ...]}]

The layout keeps the manifest's bytes, so its digest survives; ``manifest.json``
is all Docker 20.10's ``docker load`` reads (it decompresses gzip layers and
checks them against the config's diff_ids). The ``index.json`` entry carries the
image name as Docker 25 writes it (``io.containerd.image.name``, and the tag as
ref.name). One image per archive, so indexes are not accepted; an existing
file is refused. The archive is built in a temporary directory and appears
whole, or not at all, on ``commit``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from ocilab.errors import InvalidInputError, ReferenceFormatError, UnsupportedError
from ocilab.model import Descriptor, Manifest, Reference, parse_manifest
from ocilab.model import mediatype as mt
from ocilab.stores.archive_writer import TarredLayoutWriter, tar_layout
from ocilab.stores.docker_archive import IMAGE_NAME, MANIFEST_FILE
from ocilab.stores.layout import blob_path, open_layout


class DockerArchiveWriter(TarredLayoutWriter):
    """A Writer for one image in a new ``docker save`` archive; ``manifest`` is set once committed."""

    def __init__(self, path: Path, name: str | None) -> None:
        self.repo_tag: str | None = None
        self._name: Reference | None = None
        if name:
            self.repo_tag, self._name = _repo_tag(name)
        super().__init__(
            path, self._name.tag if self._name else None, f"docker-archive:{path}" + (f":{name}" if name else "")
        )
        if os.path.lexists(self.path):
            raise InvalidInputError(f"{self.path}: already exists; a docker-archive is written to a new file")
        self.manifest: Manifest | None = None
        self._root: Descriptor | None = None

    def accepts(self, media_type: str) -> bool:
        return not mt.is_index(media_type)

    def put_manifest(self, descriptor: Descriptor, raw: bytes) -> None:
        self._refuse_index(descriptor)
        super().put_manifest(descriptor, raw)

    def set_root(self, descriptor: Descriptor) -> None:
        self._refuse_index(descriptor)
        annotations = dict(descriptor.annotations)
        if self._name is not None:
            annotations[IMAGE_NAME] = str(self._name)
        super().set_root(dataclasses.replace(descriptor, annotations=annotations))
        self._root = descriptor

    def commit(self) -> None:
        if not self._finished and self._root is None:
            raise InvalidInputError(f"{self.reference}: no image was written, so there is no archive to make")
        super().commit()

    def _publish(self, layout: Path) -> None:
        """Add Docker's ``manifest.json`` (what ``docker load`` reads) beside the OCI layout, then tar it."""
        assert self._root is not None
        with open_layout(layout) as store:
            raw = store.read_document(self._root, "manifest")
        manifest = parse_manifest(raw, f"{self.reference}: manifest {self._root.digest}", self._root.media_type)
        entry = {
            "Config": blob_path(manifest.config.digest),
            "RepoTags": [self.repo_tag] if self.repo_tag else None,
            "Layers": [blob_path(layer.digest) for layer in manifest.layers],
        }
        (layout / MANIFEST_FILE).write_text(json.dumps([entry], separators=(",", ":")))
        tar_layout(layout, self.path, replace=False)
        self.manifest = manifest

    def _refuse_index(self, descriptor: Descriptor) -> None:
        if mt.is_index(descriptor.media_type):
            raise UnsupportedError(
                f"{self.reference}: a docker-archive holds one image, not an index ({descriptor.digest});"
                " choose one platform"
            )


def _repo_tag(name: str) -> tuple[str, Reference]:
    """The RepoTags entry for ``name`` (as given, ``:latest`` added when it has no tag) and its parsed form."""
    reference = Reference.parse(name)
    if reference.digest is not None:
        raise ReferenceFormatError(f"{name!r}: a docker-archive names its image NAME:TAG, not by digest")
    tagged = name if ":" in name.rpartition("/")[2] else f"{name}:{reference.tag}"
    return tagged, reference
