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
import shutil
import threading
from pathlib import Path
from typing import BinaryIO

from ocilab.errors import InvalidInputError, ReferenceFormatError, UnsupportedError
from ocilab.model import Descriptor, Manifest, Reference, parse_manifest
from ocilab.model import mediatype as mt
from ocilab.stores.archive_writer import tar_layout
from ocilab.stores.base import Writer
from ocilab.stores.docker_archive import IMAGE_NAME, MANIFEST_FILE
from ocilab.stores.layout import blob_path, open_layout
from ocilab.stores.layout_writer import OciLayoutWriter, temporary_directory_beside


class DockerArchiveWriter(Writer):
    """A Writer for one image in a new ``docker save`` archive; ``manifest`` is set once committed."""

    def __init__(self, path: Path, name: str | None) -> None:
        self.path = Path(path)
        self.reference = f"docker-archive:{self.path}" + (f":{name}" if name else "")
        if os.path.lexists(self.path):
            raise InvalidInputError(f"{self.path}: already exists; a docker-archive is written to a new file")
        self.repo_tag: str | None = None
        self._name: Reference | None = None
        if name:
            self.repo_tag, self._name = _repo_tag(name)
        self.manifest: Manifest | None = None
        self._root: Descriptor | None = None
        self._temp: Path | None = None
        self._layout: OciLayoutWriter | None = None
        self._creating = threading.Lock()
        self._finished = False

    def _writer(self) -> OciLayoutWriter:
        if self._finished:
            raise InvalidInputError(f"{self.reference}: this write was already committed or aborted")
        with self._creating:  # blobs arrive from several threads: build one layout, once
            if self._layout is None:
                self._temp = temporary_directory_beside(self.path)
                self._layout = OciLayoutWriter(self._temp / "layout", self._name.tag if self._name else None)
            return self._layout

    def accepts(self, media_type: str) -> bool:
        return not mt.is_index(media_type)

    def has_blob(self, descriptor: Descriptor) -> bool:
        return self._writer().has_blob(descriptor)

    def put_blob(self, descriptor: Descriptor, stream: BinaryIO) -> None:
        self._writer().put_blob(descriptor, stream)

    def put_manifest(self, descriptor: Descriptor, raw: bytes) -> None:
        self._refuse_index(descriptor)
        self._writer().put_manifest(descriptor, raw)

    def set_root(self, descriptor: Descriptor) -> None:
        self._refuse_index(descriptor)
        annotations = dict(descriptor.annotations)
        if self._name is not None:
            annotations[IMAGE_NAME] = str(self._name)
        self._writer().set_root(dataclasses.replace(descriptor, annotations=annotations))
        self._root = descriptor

    def commit(self) -> None:
        if self._finished:
            return
        if self._root is None:
            raise InvalidInputError(f"{self.reference}: no image was written, so there is no archive to make")
        writer = self._writer()
        writer.commit()
        with open_layout(writer.path) as layout:
            raw = layout.read_document(self._root, "manifest")
        manifest = parse_manifest(raw, f"{self.reference}: manifest {self._root.digest}", self._root.media_type)
        entry = {
            "Config": blob_path(manifest.config.digest),
            "RepoTags": [self.repo_tag] if self.repo_tag else None,
            "Layers": [blob_path(layer.digest) for layer in manifest.layers],
        }
        (writer.path / MANIFEST_FILE).write_text(json.dumps([entry], separators=(",", ":")))
        tar_layout(writer.path, self.path, replace=False)
        self.manifest = manifest
        self.abort()  # the temporary directory is no longer needed

    def abort(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
        self._finished = True

    def close(self) -> None:
        self.abort()

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
