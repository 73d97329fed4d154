"""Copying an image between any two stores: one walk of the image graph, children before parents.

The walk reads every manifest and index first (they are small), then sends the
blobs the destination lacks -- in parallel, each verified against its digest
as it streams -- then the manifests and indexes, children before parents, and
last the tag. A copy that fails before the tag leaves no name pointing at an
incomplete image.

Bytes, and so digests, are kept exactly unless a conversion is asked for
(``image_format``, ``compression``) or the destination cannot hold a media
type as it is; every conversion is said in ``CopyReport.notes``. Converting
rewrites the manifests (new digests); recompressing a layer changes its blob
digest but never its diff_id, which is checked while the layer is re-encoded.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, cast

from ocilab.errors import UnsupportedError
from ocilab.model import Descriptor, Digest, Index, Manifest, Platform, VerifyingReader, build, parse_config, parse_root
from ocilab.model import mediatype as mt
from ocilab.stores.base import Store, Writer
from ocilab.stores.image import DEFAULT_PLATFORM, ImageIndex
from ocilab.tar.compression import open_uncompressed
from ocilab.tar.compressor import compress_stream

DEFAULT_WORKERS = 4
OUTCOMES = ("copied", "skipped", "mounted")


class CopyObserver:
    """What the copy engine reports while it works (progress bars implement this); the default ignores it all.

    Methods may be called from several threads at once.
    """

    def planned(self, blobs: Sequence[Descriptor]) -> None:
        """The blobs the copy will consider, before any is sent."""

    def advanced(self, descriptor: Descriptor, count: int) -> None:
        """``count`` more bytes of ``descriptor`` were read from the source."""

    def finished(self, descriptor: Descriptor, outcome: str) -> None:
        """The source blob ``descriptor`` is at the destination; ``outcome`` is one of OUTCOMES."""

    def close(self) -> None:
        """The copy is over (successfully or not)."""


@dataclass
class CopyReport:
    """What a copy did: the destination's root, how each blob got there, and what was converted."""

    source: str
    destination: str
    root: Descriptor | None = None
    blobs: dict[str, list[Digest]] = field(default_factory=lambda: {outcome: [] for outcome in OUTCOMES})
    bytes_sent: int = 0
    manifests: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``ocilab copy --json`` object."""
        return {
            "source": self.source,
            "destination": self.destination,
            "digest": str(self.root.digest) if self.root else None,
            "media_type": self.root.media_type if self.root else None,
            "blobs": {outcome: [str(d) for d in digests] for outcome, digests in self.blobs.items()},
            "bytes_sent": self.bytes_sent,
            "manifests": self.manifests,
            "notes": self.notes,
        }


def copy_image(
    source: Store,
    destination: Writer,
    *,
    platform: Platform | None = None,
    all_platforms: bool = False,
    image_format: str | None = None,
    compression: str | None = None,
    workers: int = DEFAULT_WORKERS,
    observer: CopyObserver | None = None,
) -> CopyReport:
    """Copy what ``source``'s reference names into ``destination`` and point its tag at it.

    From an index, only the image for ``platform`` (default linux/amd64) is
    copied, as a single manifest, unless ``all_platforms``. ``image_format``
    (``"oci"`` or ``"docker"``) and ``compression`` (``"gzip"``, ``"zstd"``,
    ``"none"``) convert; None keeps what the source has. The caller commits
    or aborts the writer.
    """
    if image_format is not None and image_format not in build.FORMATS:
        raise UnsupportedError(f"unknown image format {image_format!r}: use oci or docker")
    copier = _Copier(source, destination, image_format, compression, observer or CopyObserver())
    try:
        root = copier.choose_root(platform, all_platforms)
        copier.read_graph(root)
        copier.send_blobs(workers)
        final = copier.write_documents(root)
        # An index entry names an artifact's type (image-spec: artifactType in the descriptor).
        artifact_type = copier.documents[root.digest].artifact_type
        named = Descriptor(final.media_type, final.digest, final.size, artifact_type=artifact_type)
        destination.set_root(named)
    finally:
        copier.observer.close()
    copier.report.root = named
    return copier.report


@dataclass(frozen=True)
class _LayerPlan:
    """How one layer blob travels: as it is, or re-encoded to ``target`` compression (diff_id checked)."""

    descriptor: Descriptor
    target: str | None = None
    source_compression: str | None = None
    diff_id: Digest | None = None


class _Copier:
    def __init__(
        self,
        source: Store,
        destination: Writer,
        image_format: str | None,
        compression: str | None,
        observer: CopyObserver,
    ) -> None:
        self.source = source
        self.destination = destination
        self.image_format = image_format
        self.compression = compression
        self.observer = observer
        self.report = CopyReport(source.reference, destination.reference)
        self.documents: dict[Digest, Manifest | Index] = {}
        self.plans: dict[Digest, _LayerPlan] = {}
        self.sent: dict[Digest, Descriptor] = {}  # source blob digest -> descriptor at the destination
        self.recompressed: dict[Digest, str] = {}  # source layer digest -> its note, reported in layer order
        self._lock = threading.Lock()

    def choose_root(self, platform: Platform | None, all_platforms: bool) -> Descriptor:
        """The source's root, or from an index (without ``all_platforms``) the one image for ``platform``."""
        root = self.source.root()
        document = self._read(root)
        if isinstance(document, Index) and not all_platforms:
            index = ImageIndex(self.source, root, document)
            chosen = index.image(platform or DEFAULT_PLATFORM).descriptor
            self.report.notes.append(
                f"copied only the {chosen.platform or platform or DEFAULT_PLATFORM} image of the index"
                " (--all-platforms copies the whole index)"
            )
            return chosen
        return root

    def read_graph(self, descriptor: Descriptor) -> None:
        """Read every manifest and index under ``descriptor`` and plan every blob they name."""
        document = self._read(descriptor)
        if isinstance(document, Index):
            for child in document.manifests:
                if not (mt.is_manifest(child.media_type) or mt.is_index(child.media_type)):
                    raise UnsupportedError(
                        f"{self.source.reference}: index {descriptor.digest} lists {child.digest} of media type"
                        f" {child.media_type!r}, which ocilab cannot copy"
                    )
                self.read_graph(child)
            return
        self._plan(document, self._format(document.media_type))
        self.report.manifests += 1

    def send_blobs(self, workers: int) -> None:
        """Send every planned blob the destination lacks, ``workers`` at a time; the first failure stops the rest."""
        plans = list(self.plans.values())
        self.observer.planned([plan.descriptor for plan in plans])
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="ocilab-copy") as pool:
            futures = [pool.submit(self._send, plan) for plan in plans]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in done:
                future.result()
        self.report.notes += [
            self.recompressed[p.descriptor.digest] for p in plans if p.descriptor.digest in self.recompressed
        ]

    def write_documents(self, descriptor: Descriptor) -> Descriptor:
        """Put ``descriptor``'s document (converted where planned) after its children; its destination descriptor."""
        document = self.documents[descriptor.digest]
        if isinstance(document, Index):
            children = [self.write_documents(child) for child in document.manifests]
            out_format = self._format(document.media_type)
            if children == list(document.manifests) and out_format == build.format_of(document.media_type):
                return self._put(descriptor, document.raw)
            rebuilt = build.build_index(
                children,
                media_type=build.index_type(out_format),
                annotations=document.annotations,
                subject=document.subject,
            )
            return self._put(_carry(descriptor, build.describe(rebuilt)), rebuilt.raw)
        return self._write_manifest(descriptor, document)

    def _write_manifest(self, descriptor: Descriptor, manifest: Manifest) -> Descriptor:
        out_format = self._format(manifest.media_type)
        layers = [self.sent[layer.digest] for layer in manifest.layers]
        if layers == list(manifest.layers) and out_format == build.format_of(manifest.media_type):
            return self._put(descriptor, manifest.raw)
        config = manifest.config
        if config.media_type in mt.CONFIGS:
            config = replace(config, media_type=build.config_type(out_format))
        annotations = manifest.annotations
        if out_format == "docker" and annotations:
            self.report.notes.append(f"manifest {descriptor.digest}: Docker manifests carry no annotations; dropped")
            annotations = {}
        rebuilt = build.build_manifest(
            config,
            layers,
            media_type=build.manifest_type(out_format),
            annotations=annotations,
            subject=manifest.subject,
            artifact_type=manifest.artifact_type,
        )
        self.report.notes.append(f"manifest {descriptor.digest} rewritten as {rebuilt.digest} ({out_format})")
        return self._put(_carry(descriptor, build.describe(rebuilt)), rebuilt.raw)

    def _put(self, descriptor: Descriptor, raw: bytes) -> Descriptor:
        self.destination.put_manifest(descriptor, raw)
        return descriptor

    def _read(self, descriptor: Descriptor) -> Manifest | Index:
        known = self.documents.get(descriptor.digest)
        if known is None:
            raw = self.source.read_document(descriptor, "manifest")
            declared = descriptor.media_type if descriptor.media_type in mt.MANIFESTS | mt.INDEXES else None
            known = parse_root(raw, f"{self.source.reference}: manifest {descriptor.digest}", declared)
            self.documents[descriptor.digest] = known
        return known

    def _format(self, media_type: str) -> str:
        """The format a document of ``media_type`` is written in: asked for, or kept, or what the destination takes."""
        own = build.format_of(media_type)
        wanted = self.image_format or own
        kind = build.index_type if mt.is_index(media_type) else build.manifest_type
        if self.destination.accepts(kind(wanted)):
            return wanted
        other = "oci" if wanted == "docker" else "docker"
        if self.image_format is None and self.destination.accepts(kind(other)):
            note = f"{self.destination.reference} does not take {media_type}; converted to {kind(other)}"
            if note not in self.report.notes:
                self.report.notes.append(note)
            return other
        raise UnsupportedError(f"{self.destination.reference} cannot hold {kind(wanted)}")

    def _plan(self, manifest: Manifest, out_format: str) -> None:
        self.plans.setdefault(manifest.config.digest, _LayerPlan(manifest.config))
        is_image = manifest.config.media_type in mt.CONFIGS
        converting = out_format != build.format_of(manifest.media_type)
        diff_ids: tuple[Digest, ...] = ()
        for position, layer in enumerate(manifest.layers):
            current = mt.layer_compression(layer.media_type)
            target = self.compression or current
            if not is_image or current is None or layer.urls or (target == current and not converting):
                if converting and is_image and current is None:
                    raise UnsupportedError(
                        f"layer {layer.digest}: cannot convert the unknown layer media type {layer.media_type!r}"
                    )
                self.plans.setdefault(layer.digest, _LayerPlan(layer))
                continue
            assert target is not None
            out_type = build.layer_type(out_format, target)
            if out_type is None:
                raise UnsupportedError(
                    f"layer {layer.digest}: a {out_format} manifest has no {target} layer type;"
                    " copy with --format oci, or --dest-compress gzip"
                )
            if target == current:
                self.plans.setdefault(layer.digest, _LayerPlan(replace(layer, media_type=out_type)))
                continue
            diff_ids = diff_ids or self._diff_ids(manifest)
            plan = _LayerPlan(replace(layer, media_type=out_type), target, current, diff_ids[position])
            self.plans.setdefault(layer.digest, plan)

    def _diff_ids(self, manifest: Manifest) -> tuple[Digest, ...]:
        raw = self.source.read_document(manifest.config, "config")
        source = f"{self.source.reference}: config {manifest.config.digest}"
        return parse_config(raw, source, len(manifest.layers)).diff_ids

    def _send(self, plan: _LayerPlan) -> None:
        if plan.target is not None:
            self._send_recompressed(plan)
            return
        descriptor = plan.descriptor
        if self.destination.has_blob(descriptor):
            outcome = "skipped"
        elif self.destination.mount_blob(descriptor, self.source):
            outcome = "mounted"
        else:
            # Unverified on the way out: every writer verifies digest and size as it streams (the Writer
            # contract) and stores nothing on a mismatch, so each byte is hashed once, not twice.
            raw = self.source.open_raw(descriptor)
            try:
                self.destination.put_blob(descriptor, cast(BinaryIO, _Counting(raw, descriptor, self)))
            finally:
                raw.close()
            outcome = "copied"
        self._done(plan.descriptor, descriptor, outcome)

    def _send_recompressed(self, plan: _LayerPlan) -> None:
        assert plan.source_compression is not None and plan.target is not None and plan.diff_id is not None
        source = plan.descriptor
        what = f"{self.source.reference}: layer {source.digest}"
        with tempfile.TemporaryFile() as spool:
            with self.source.open_blob(source, "layer") as blob:
                counted = _Counting(blob, source, self)
                with open_uncompressed(counted, plan.source_compression, what) as plain:
                    checked = VerifyingReader(plain, plan.diff_id, None, f"{what} (uncompressed, diff_id)")
                    compress_stream(checked, spool, plan.target)
                blob.drain()
            spool.seek(0)
            digest, size = Digest.of_stream(spool)
            descriptor = replace(source, digest=digest, size=size)
            if self.destination.has_blob(descriptor):
                outcome = "skipped"
            else:
                spool.seek(0)
                self.destination.put_blob(descriptor, spool)
                outcome = "copied"
        with self._lock:
            self.recompressed[source.digest] = (
                f"layer {source.digest} recompressed {plan.source_compression} -> {plan.target} as {digest}"
            )
        self._done(source, descriptor, outcome)

    def count(self, descriptor: Descriptor, size: int) -> None:
        """``size`` more bytes of ``descriptor`` were read from the source (called from worker threads)."""
        with self._lock:
            self.report.bytes_sent += size
        self.observer.advanced(descriptor, size)

    def _done(self, source: Descriptor, sent: Descriptor, outcome: str) -> None:
        with self._lock:
            self.sent[source.digest] = sent
            self.report.blobs[outcome].append(sent.digest)
        self.observer.finished(source, outcome)


class _Counting:
    """A source stream that tells the observer (and the report) how many bytes went through."""

    def __init__(self, inner: BinaryIO | VerifyingReader, descriptor: Descriptor, copier: _Copier) -> None:
        self._inner = inner
        self._descriptor = descriptor
        self._copier = copier

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        if data:
            self._copier.count(self._descriptor, len(data))
        return data

    def close(self) -> None:
        self._inner.close()


def _carry(original: Descriptor, new: Descriptor) -> Descriptor:
    """``new``'s media type, digest and size with ``original``'s platform and annotations (an index entry)."""
    return replace(original, media_type=new.media_type, digest=new.digest, size=new.size)
