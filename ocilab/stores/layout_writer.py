"""Writing a new OCI image layout, all or nothing.

Everything is written into a temporary directory beside the destination and
renamed into place by ``commit``; an error (or ``abort``) removes the
temporary directory, so a failed write leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from ocilab.errors import InvalidInputError
from ocilab.model import Descriptor, Digest
from ocilab.model.digest import CHUNK_SIZE, new_hasher
from ocilab.model.mediatype import OCI_CONFIG, OCI_INDEX, OCI_LAYOUT_VERSION, OCI_MANIFEST
from ocilab.stores.layout import REF_NAME, blob_path


class LayoutWriter:
    """Builds a layout at ``destination``, which must not exist yet (or be an empty directory)."""

    def __init__(self, destination: Path) -> None:
        self.destination = Path(destination)
        if self.destination.exists() and (not self.destination.is_dir() or any(self.destination.iterdir())):
            raise InvalidInputError(
                f"{self.destination}: already exists and is not an empty directory; choose a new path"
            )
        self.destination.parent.mkdir(parents=True, exist_ok=True)
        self._work = Path(tempfile.mkdtemp(prefix=f".{self.destination.name}.", dir=self.destination.parent))
        (self._work / "blobs" / "sha256").mkdir(parents=True)
        self._entries: list[Descriptor] = []

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        """Store ``data`` as a blob; its descriptor."""
        digest = Digest.of_bytes(data)
        (self._work / blob_path(digest)).write_bytes(data)
        return Descriptor(media_type, digest, len(data))

    def put_stream(self, stream: BinaryIO, media_type: str) -> Descriptor:
        """Store a stream as a blob, hashing while copying; its descriptor."""
        hasher = new_hasher("sha256")
        size = 0
        with tempfile.NamedTemporaryFile(dir=self._work, delete=False) as spool:
            while chunk := stream.read(CHUNK_SIZE):
                hasher.update(chunk)
                spool.write(chunk)
                size += len(chunk)
        digest = Digest("sha256", hasher.hexdigest())
        os.chmod(spool.name, 0o644)  # as put_bytes' blobs: temporary files are created private
        os.replace(spool.name, self._work / blob_path(digest))
        return Descriptor(media_type, digest, size)

    def put_image(self, config: Mapping[str, object], layers: Sequence[Descriptor], tag: str) -> Descriptor:
        """Store ``config`` and an OCI manifest over ``layers`` (compact JSON), tagged ``tag``; its descriptor."""
        config_descriptor = self.put_bytes(_compact(config), OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_descriptor.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
        descriptor = self.put_bytes(_compact(manifest), OCI_MANIFEST)
        self.tag(descriptor, tag)
        return descriptor

    def tag(self, descriptor: Descriptor, tag: str) -> None:
        """List ``descriptor`` in index.json under the ref.name ``tag``."""
        annotations = dict(descriptor.annotations, **{REF_NAME: tag})
        self._entries.append(
            Descriptor(descriptor.media_type, descriptor.digest, descriptor.size, annotations=annotations)
        )

    def commit(self) -> Path:
        """Write ``oci-layout`` and ``index.json`` and rename the layout into place."""
        (self._work / "oci-layout").write_text(json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d.to_json() for d in self._entries]}
        (self._work / "index.json").write_text(json.dumps(index, indent=2) + "\n")
        if self.destination.is_dir():
            self.destination.rmdir()
        os.rename(self._work, self.destination)
        return self.destination

    def abort(self) -> None:
        """Remove everything written so far."""
        shutil.rmtree(self._work, ignore_errors=True)

    def __enter__(self) -> LayoutWriter:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is not None:
            self.abort()


def _compact(document: Mapping[str, object]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
