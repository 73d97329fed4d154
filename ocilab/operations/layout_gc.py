"""Garbage collection of an OCI image layout: mark from ``index.json``, sweep ``blobs/``.

Kept (marked): every entry of ``index.json`` and what it reaches -- a nested
index's manifests, a manifest's config and layers -- and every manifest or
index in the layout whose ``subject`` is a kept document (a referrer:
signature, SBOM ...), with what it reaches, until nothing more is found.
Documents are parsed (and verified) only when a descriptor says they are
manifests or indexes, plus, for referrers, blobs of at most
``MAX_DOCUMENT_BYTES`` that start like JSON. Removed: every other
``blobs/<alg>/<encoded>`` file, and the leftover temporary files of
interrupted writes (``TEMP_PREFIX`` at the top of the layout). Nothing is
removed when marking fails (a kept manifest that does not verify), and nothing
at all in a dry run. Do not collect a layout while something writes to it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocilab.errors import DigestFormatError, InvalidInputError
from ocilab.model import MAX_DOCUMENT_BYTES, Descriptor, Digest, Index, parse_root
from ocilab.model import mediatype as mt
from ocilab.stores.layout import LayoutStore, blob_path, open_layout
from ocilab.stores.layout_writer import TEMP_PREFIX


@dataclass(frozen=True)
class LayoutGcReport:
    """What a collection found and removed (or would remove, in a dry run); sizes in bytes."""

    layout: Path
    dry_run: bool
    blobs_before: int
    bytes_before: int
    removed: tuple[tuple[Digest, int], ...]
    temporary_files: tuple[str, ...]

    @property
    def blobs_after(self) -> int:
        return self.blobs_before - len(self.removed)

    @property
    def bytes_after(self) -> int:
        return self.bytes_before - sum(size for _, size in self.removed)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON for ``ocilab gc --json``."""
        return {
            "layout": str(self.layout),
            "dry_run": self.dry_run,
            "blobs_before": self.blobs_before,
            "blobs_after": self.blobs_after,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "removed": [{"digest": str(digest), "size": size} for digest, size in self.removed],
            "temporary_files": list(self.temporary_files),
        }


def collect_layout(path: Path, dry_run: bool = False) -> LayoutGcReport:
    """Remove the blobs of the layout at ``path`` that nothing in ``index.json`` reaches; the report."""
    with open_layout(path) as store:
        blobs = dict(_blobs(path))
        kept = _mark(store, path, blobs)
    removed = tuple(sorted((digest, size) for digest, size in blobs.items() if digest not in kept))
    temporary = tuple(sorted(entry.name for entry in os.scandir(path) if entry.name.startswith(TEMP_PREFIX)))
    if not dry_run:
        for digest, _ in removed:
            (path / blob_path(digest)).unlink(missing_ok=True)
        for name in temporary:
            (path / name).unlink(missing_ok=True)
    return LayoutGcReport(
        layout=path,
        dry_run=dry_run,
        blobs_before=len(blobs),
        bytes_before=sum(blobs.values()),
        removed=removed,
        temporary_files=temporary,
    )


def _blobs(layout: Path) -> Iterator[tuple[Digest, int]]:
    """Each regular file ``blobs/<alg>/<encoded>`` named by a digest, with its size; other files are left alone."""
    top = layout / "blobs"
    if not top.is_dir():
        return
    for algorithm in os.scandir(top):
        if not algorithm.is_dir(follow_symlinks=False):
            continue
        for entry in os.scandir(algorithm.path):
            if not entry.is_file(follow_symlinks=False):
                continue
            try:
                digest = Digest.parse(f"{algorithm.name}:{entry.name}")
            except DigestFormatError:
                continue
            yield digest, entry.stat(follow_symlinks=False).st_size


def _mark(store: LayoutStore, layout: Path, blobs: dict[Digest, int]) -> set[Digest]:
    """The digests reachable from index.json, referrers included (see the module docstring)."""
    kept: set[Digest] = set()
    referrers = _referrers(layout, blobs)
    pending = list(store.index.manifests)
    while pending:
        descriptor = pending.pop()
        if descriptor.digest in kept:
            continue
        kept.add(descriptor.digest)
        pending.extend(referrers.get(descriptor.digest, ()))
        if descriptor.digest in blobs and (mt.is_manifest(descriptor.media_type) or mt.is_index(descriptor.media_type)):
            pending.extend(_children(store, descriptor))
    return kept


def _children(store: LayoutStore, descriptor: Descriptor) -> Iterable[Descriptor]:
    """What a manifest (config, layers) or an index (manifests) points at; the document is verified first."""
    what = "index" if mt.is_index(descriptor.media_type) else "manifest"
    raw = store.read_document(descriptor, what)
    document = parse_root(raw, f"{store.reference}: {what} {descriptor.digest}", descriptor.media_type)
    if isinstance(document, Index):
        return document.manifests
    return (document.config, *document.layers)


def _referrers(layout: Path, blobs: dict[Digest, int]) -> dict[Digest, list[Descriptor]]:
    """Subject digest -> descriptors of the manifests and indexes in the layout that name it as ``subject``.

    Only blobs of at most MAX_DOCUMENT_BYTES that look like JSON with a subject are
    parsed, after their digest is checked; anything else is not a referrer.
    """
    found: dict[Digest, list[Descriptor]] = {}
    for digest, size in blobs.items():
        if size > MAX_DOCUMENT_BYTES:
            continue
        path = layout / blob_path(digest)
        with open(path, "rb") as stream:
            raw = stream.read(MAX_DOCUMENT_BYTES)
        if (
            not raw.lstrip().startswith(b"{")
            or b'"subject"' not in raw
            or Digest.of_bytes(raw, digest.algorithm) != digest
        ):
            continue
        try:
            document = parse_root(raw, str(path))
        except InvalidInputError:
            continue  # not a manifest or index: not a referrer
        if document.subject is not None:
            found.setdefault(document.subject.digest, []).append(Descriptor(document.media_type, digest, size))
    return found


def _matches(raw: bytes, digest: Digest) -> bool:
    return digest.verifiable and Digest.of_bytes(raw, digest.algorithm) == digest
