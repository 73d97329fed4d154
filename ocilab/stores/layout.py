"""OCI image layouts (image-spec image-layout.md): a directory (``oci:``) or a tar of one (``oci-archive:``).

A layout holds ``oci-layout`` (``{"imageLayoutVersion": "1.0.0"}``),
``index.json`` (an image index naming the entry points, tags in the
``org.opencontainers.image.ref.name`` annotation) and ``blobs/<alg>/<encoded>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from ocilab.errors import NotFoundError, ValidationError
from ocilab.model import MAX_DOCUMENT_BYTES, Descriptor, Digest, Index, load_object, parse_index
from ocilab.model.mediatype import OCI_LAYOUT_VERSION
from ocilab.stores.base import Store
from ocilab.stores.tree import DirectoryTree, TarTree, Tree

REF_NAME = "org.opencontainers.image.ref.name"


def blob_path(digest: Digest) -> str:
    """Where a layout keeps a blob. The digest grammar admits no ``/``, so the path stays inside ``blobs/``."""
    return f"blobs/{digest.algorithm}/{digest.encoded}"


class LayoutStore(Store):
    """An OCI image layout read through a confined file tree.

    ``tag`` selects the ``index.json`` entry whose ref.name annotation equals it;
    without a tag the layout must hold exactly one entry.
    """

    def __init__(self, tree: Tree, tag: str | None, reference: str) -> None:
        self.tree = tree
        self.tag = tag or None
        self.reference = reference
        try:
            self._check_layout_file()
            self.index: Index = self._read_index()
        except BaseException:
            tree.close()
            raise

    def _check_layout_file(self) -> None:
        if not self.tree.exists("oci-layout"):
            raise NotFoundError(f"{self.tree.name}: not an OCI image layout (no oci-layout file)")
        source = f"{self.tree.name}/oci-layout"
        document = load_object(self.tree.read("oci-layout", MAX_DOCUMENT_BYTES), source)
        version = document.get("imageLayoutVersion")
        if not isinstance(version, str):
            raise ValidationError("imageLayoutVersion", "required string is missing", source)
        if version.split(".")[0] != OCI_LAYOUT_VERSION.split(".")[0]:
            raise ValidationError("imageLayoutVersion", f"unsupported layout version {version!r}", source)

    def _read_index(self) -> Index:
        if not self.tree.exists("index.json"):
            raise NotFoundError(f"{self.tree.name}: OCI image layout without index.json")
        return parse_index(self.tree.read("index.json", MAX_DOCUMENT_BYTES), f"{self.tree.name}/index.json")

    def tags(self) -> list[str]:
        """The ref.name annotations of index.json's entries, in order."""
        return [d.annotations[REF_NAME] for d in self.index.manifests if REF_NAME in d.annotations]

    def root(self) -> Descriptor:
        entries = self.index.manifests
        if self.tag is not None:
            entries = tuple(d for d in entries if d.annotations.get(REF_NAME) == self.tag)
            if not entries:
                raise NotFoundError(
                    f"{self.tree.name}: no image tagged {self.tag!r} (tags: {', '.join(self.tags()) or 'none'})"
                )
        if not entries:
            raise NotFoundError(f"{self.tree.name}: the layout's index.json lists no images")
        if len(entries) > 1:
            what = f"tag {self.tag!r} names" if self.tag else "the layout holds"
            raise ValidationError(
                "manifests",
                f"{what} {len(entries)} entries; add a tag to choose (tags: {', '.join(self.tags()) or 'none'})",
                f"{self.tree.name}/index.json",
            )
        return entries[0]

    def open_raw(self, descriptor: Descriptor) -> BinaryIO:
        path = blob_path(descriptor.digest)
        if not self.tree.exists(path):
            raise NotFoundError(f"{self.tree.name}: blob {descriptor.digest} is missing ({path})")
        return self.tree.open(path)

    def close(self) -> None:
        self.tree.close()


def open_layout(directory: Path, tag: str | None = None) -> LayoutStore:
    """The layout in ``directory`` (``oci:DIR[:TAG]``)."""
    return LayoutStore(DirectoryTree(directory), tag, f"oci:{directory}" + (f":{tag}" if tag else ""))


def open_oci_archive(archive: Path, tag: str | None = None) -> LayoutStore:
    """The layout tarred in ``archive`` (``oci-archive:FILE[:TAG]``), read in place."""
    return LayoutStore(TarTree(archive), tag, f"oci-archive:{archive}" + (f":{tag}" if tag else ""))
