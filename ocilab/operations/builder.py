"""The daemonless builder: images made from files, with no engine, reproducibly.

A ``Builder`` is an image value. It starts from ``scratch`` or from any image
reference (``Builder.from_image("oci:base:1")``), and every step returns a new
Builder (nothing is mutated): ``add`` (a Dockerfile ``COPY``: a file lands at
DEST, a directory's contents under it), ``add_files`` (in memory), ``add_tar``,
``delete`` (whiteouts), ``replace_dir`` (an opaque whiteout, then new
content), ``config`` (Cmd, Entrypoint, Env merged by name, WorkingDir, User,
Labels, ExposedPorts, Volumes, StopSignal), ``history``, ``annotate`` and
``for_platform``. Each step records one history entry (a config step one per
field, as Dockerfile instructions do); only layer steps make layers.

Reproducible by default (``ocilab.tar.tarwriter``): sorted entries, owner
0:0, mtimes clamped to ``SOURCE_DATE_EPOCH`` (default 0), ``created`` from it,
deterministic gzip/zstd, and history that names sources by their base name
only, so the same inputs give the same digests in any directory.
``timestamp="now"`` opts out. A layer step writes its compressed blob to a
temporary file at once (read streaming, hashed on the way); the file is
removed when no Builder refers to it any more. ``write(reference)`` sends the
image to any store through the copy engine; ``write_index`` assembles an
index from per-platform builders.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from ocilab.errors import InvalidInputError, ValidationError
from ocilab.model import Descriptor, Digest, Platform, build
from ocilab.model import mediatype as mt
from ocilab.operations.copy import CopyObserver, copy_image
from ocilab.stores.base import Store
from ocilab.stores.image import load_image
from ocilab.stores.transports import open_destination, open_store
from ocilab.tar.entries import read_layer
from ocilab.tar.merge import MergedFilesystem
from ocilab.tar.tarwriter import (
    Content,
    Copy,
    Delta,
    LayerBlob,
    Lower,
    Memory,
    Opaque,
    Part,
    Stamp,
    Whiteout,
    destination,
    plan_entries,
    rewrite_tar,
    write_entries,
    write_layer,
)

EPOCH_ENV = "SOURCE_DATE_EPOCH"
COMPRESSIONS = ("gzip", "zstd")
#: Runtime config keys in the order image-spec's config.md lists them (and they are written).
CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels", "StopSignal")
_PROTOCOLS = ("tcp", "udp", "sctp")


class _Spool:
    """A layer blob written by this process: a temporary file, removed when the last Builder using it goes."""

    def __init__(self) -> None:
        handle, name = tempfile.mkstemp(prefix="ocilab-layer-", suffix=".blob")
        os.close(handle)
        self.path = Path(name)
        weakref.finalize(self, self.path.unlink, missing_ok=True)


@dataclasses.dataclass(frozen=True)
class _Layer:
    descriptor: Descriptor
    diff_id: Digest
    spool: _Spool | None = None  # None: the base image's blob
    delta: Delta | None = None  # what the layer did (base layers: see _Base)


class _Base:
    """The image a build starts from: reopened to send its blobs, and scanned (once, when a step needs it)."""

    def __init__(self, reference: str, platform: Platform | None, tls_verify: bool) -> None:
        self.reference, self.platform, self.tls_verify = reference, platform, tls_verify
        self._view: dict[str, Lower] | None = None

    def open(self) -> Store:
        return open_store(self.reference, tls_verify=self.tls_verify)

    def lookup(self, path: str) -> Lower | None:
        """What the base image shows at ``path`` (read through its layers the first time)."""
        if self._view is None:
            self._view = self._scan()
        return self._view.get(path)

    def _scan(self) -> dict[str, Lower]:
        merged = MergedFilesystem()
        with self.open() as store:
            image = load_image(store, self.platform)
            for layer in image.layers:
                compression = mt.layer_compression(layer.media_type) or "none"
                with image.open_layer(layer.index) as blob:
                    merged.apply(read_layer(blob, compression, layer.diff_id, f"{self.reference}: layer {layer.index}"))
        return {
            path: Lower(
                entry.kind if entry.kind in ("dir", "symlink") else "other",
                entry.mode,
                entry.uid,
                entry.gid,
                int(entry.mtime),
            )
            for path, entry in merged.entries.items()
        }


@dataclasses.dataclass(frozen=True)
class Builder:
    """An image being built; every method returns a new Builder. See the module docstring."""

    platform: Platform
    compression: str = "gzip"
    stamp: Stamp = Stamp()
    created: str = "1970-01-01T00:00:00Z"
    runtime_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    history_entries: tuple[Mapping[str, Any], ...] = ()
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()
    _layers: tuple[_Layer, ...] = ()
    _base: _Base | None = None
    _extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # base config fields kept as they are

    # ------------------------------------------------------------------------------------------ starting points

    @classmethod
    def scratch(
        cls,
        platform: str | Platform | None = None,
        *,
        compression: str = "gzip",
        timestamp: int | str | None = None,
        owner: tuple[int, int] = (0, 0),
    ) -> Builder:
        """An empty image for ``platform`` (default: linux and this machine's architecture).

        ``timestamp``: None takes ``SOURCE_DATE_EPOCH`` (or 0), an int is an
        epoch, ``"now"`` keeps file mtimes and dates the image now. ``owner``
        is the uid/gid every entry gets.
        """
        if compression not in COMPRESSIONS:
            raise InvalidInputError(f"compression {compression!r}: use one of {', '.join(COMPRESSIONS)}")
        epoch, clamp = _epoch(timestamp)
        return cls(
            platform=_platform(platform) if platform else Platform("linux", host_architecture()),
            compression=compression,
            stamp=Stamp(epoch, clamp, *owner),
            created=datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    @classmethod
    def from_image(
        cls,
        reference: str,
        platform: str | Platform | None = None,
        *,
        compression: str = "gzip",
        timestamp: int | str | None = None,
        owner: tuple[int, int] = (0, 0),
        tls_verify: bool = True,
    ) -> Builder:
        """Start from the image ``reference`` names in any store (``"scratch"``: an empty image).

        Its layers are kept byte for byte (same digests); its config, history
        and platform carried over. From an index, ``platform`` picks the image.
        """
        if reference == "scratch":
            return cls.scratch(platform, compression=compression, timestamp=timestamp, owner=owner)
        wanted = _platform(platform) if platform else None
        start = cls.scratch(compression=compression, timestamp=timestamp, owner=owner)
        with open_store(reference, tls_verify=tls_verify) as store:
            image = load_image(store, wanted)
            document = json.loads(image.config.raw)
        layers = tuple(_Layer(_as_oci(layer.descriptor), layer.diff_id) for layer in image.layers)
        known = {"created", "architecture", "variant", "os", "config", "rootfs", "history"}
        return dataclasses.replace(
            start,
            platform=image.platform,
            runtime_config=dict(document.get("config") or {}),
            history_entries=tuple(document.get("history") or ()),
            _layers=layers,
            _base=_Base(reference, wanted, tls_verify),
            _extra={key: value for key, value in document.items() if key not in known},
        )

    # ------------------------------------------------------------------------------------------ layer steps

    def add(self, source: str | Path, dest: str, *, created_by: str | None = None) -> Builder:
        """A layer with ``source`` as a Dockerfile ``COPY source dest`` puts it (file at DEST, dir's contents under)."""
        source = Path(source)
        label = f"COPY {source.name}{'/' if source.is_dir() else ''} {dest}"
        return self._layer([Copy(source, dest)], created_by or label)

    def add_files(self, files: Mapping[str, Content], *, created_by: str | None = None) -> Builder:
        """A layer with in-memory entries: ``{"/etc/motd": b"hi", "/bin/sh": Symlink("busybox")}``."""
        if not files:
            raise InvalidInputError("add_files: no files given")
        return self._layer([Memory(dict(files))], created_by or f"COPY <memory> {' '.join(sorted(files))}")

    def add_tar(self, source: str | Path, dest: str = "/", *, created_by: str | None = None) -> Builder:
        """A layer with the entries of the tar ``source`` (plain, gzip or zstd) under ``dest``, in the tar's order."""
        source = Path(source)
        delta = Delta()
        blob = _spool(lambda out: rewrite_tar(source, dest, self.stamp, out, delta), self.compression)
        return self._with_layer(blob, delta, created_by or f"ADD {source.name} {dest}", ())

    def delete(self, *paths: str, created_by: str | None = None) -> Builder:
        """A layer of whiteouts: each path (and what is under it) is gone from the lower layers."""
        if not paths:
            raise InvalidInputError("delete: no paths given")
        return self._layer([Whiteout(path) for path in paths], created_by or f"DELETE {' '.join(paths)}")

    def replace_dir(self, dest: str, source: str | Path | None = None, *, created_by: str | None = None) -> Builder:
        """A layer that hides all the lower layers have under ``dest`` (opaque whiteout), with ``source``'s contents."""
        parts: list[Part] = [Opaque(dest)]
        if source is not None:
            parts.append(Copy(Path(source), dest))
        label = f"REPLACE {dest}" + (f" WITH {Path(source).name}/" if source is not None else "")
        return self._layer(parts, created_by or label)

    # ------------------------------------------------------------------------------------------ config steps

    def config(
        self,
        *,
        cmd: Sequence[str] | None = None,
        entrypoint: Sequence[str] | None = None,
        env: Mapping[str, str] | Iterable[str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        labels: Mapping[str, str] | None = None,
        expose: Iterable[int | str] | None = None,
        volumes: Iterable[str] | None = None,
        stop_signal: str | None = None,
        created_by: str | None = None,
    ) -> Builder:
        """Set runtime config fields; Env and Labels merge by name, ports and volumes are added.

        One history entry per field given, as Dockerfile instructions record
        them (``created_by`` replaces them all with one entry).
        """
        config = dict(self.runtime_config)
        steps: list[str] = []
        if user is not None:
            config["User"] = user
            steps.append(f"USER {user}")
        if expose is not None:
            ports = [_port(port) for port in expose]
            config["ExposedPorts"] = {**(config.get("ExposedPorts") or {}), **{port: {} for port in ports}}
            steps.append(f"EXPOSE {' '.join(ports)}")
        if env is not None:
            pairs = _env_pairs(env)
            merged = dict(_env_pairs(config.get("Env") or []))
            merged.update(pairs)
            config["Env"] = [f"{name}={value}" for name, value in merged.items()]
            steps.append("ENV " + " ".join(f"{name}={value}" for name, value in pairs.items()))
        if entrypoint is not None:
            config["Entrypoint"] = _argv(entrypoint, "entrypoint")
            steps.append(f"ENTRYPOINT {json.dumps(config['Entrypoint'])}")
        if cmd is not None:
            config["Cmd"] = _argv(cmd, "cmd")
            steps.append(f"CMD {json.dumps(config['Cmd'])}")
        if volumes is not None:
            paths = [destination(volume, "volume") for volume in volumes]
            config["Volumes"] = {**(config.get("Volumes") or {}), **{path: {} for path in paths}}
            steps.append(f"VOLUME {json.dumps(paths)}")
        if workdir is not None:
            config["WorkingDir"] = destination(workdir, "workdir")
            steps.append(f"WORKDIR {config['WorkingDir']}")
        if labels is not None:
            config["Labels"] = {**(config.get("Labels") or {}), **dict(labels)}
            steps.append("LABEL " + " ".join(f"{key}={value}" for key, value in labels.items()))
        if stop_signal is not None:
            config["StopSignal"] = stop_signal
            steps.append(f"STOPSIGNAL {stop_signal}")
        if not steps:
            raise InvalidInputError("config: no field given")
        entries = [self._entry(created_by, True)] if created_by else [self._entry(step, True) for step in steps]
        return dataclasses.replace(self, runtime_config=config, history_entries=(*self.history_entries, *entries))

    def history(self, created_by: str, comment: str | None = None) -> Builder:
        """Record a history entry that made no layer."""
        entry = {**self._entry(created_by, True), **({"comment": comment} if comment else {})}
        return dataclasses.replace(self, history_entries=(*self.history_entries, entry))

    def annotate(self, annotations: Mapping[str, str]) -> Builder:
        """Add manifest annotations (``org.opencontainers.image.source`` ...)."""
        return dataclasses.replace(self, annotations={**self.annotations, **annotations})

    def for_platform(self, platform: str | Platform) -> Builder:
        """The same image declared for another platform (``"linux/arm64"``); the files are not checked."""
        return dataclasses.replace(self, platform=_platform(platform))

    # ------------------------------------------------------------------------------------------ results

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        """The layer descriptors, base first."""
        return tuple(layer.descriptor for layer in self._layers)

    def config_bytes(self) -> bytes:
        """The image config as it will be stored (built by ocilab.model.build)."""
        ordered = {key: self.runtime_config[key] for key in CONFIG_KEYS if key in self.runtime_config}
        ordered.update({key: value for key, value in self.runtime_config.items() if key not in ordered})
        document = build.config_document(
            architecture=self.platform.architecture,
            os=self.platform.os,
            variant=self.platform.variant,
            diff_ids=[str(layer.diff_id) for layer in self._layers],
            config=ordered,
            created=self.created,
            history=self.history_entries,
        )
        document.update(self._extra)
        return build.encode(document)

    def manifest(self) -> tuple[Descriptor, bytes]:
        """The manifest's descriptor (with the platform) and bytes."""
        raw = self.config_bytes()
        config = Descriptor(mt.OCI_CONFIG, Digest.of_bytes(raw), len(raw))
        manifest = build.build_manifest(config, self.layers, annotations=self.annotations)
        return build.describe(manifest, platform=self.platform), manifest.raw

    @property
    def digest(self) -> Digest:
        """The manifest digest the image has in OCI format."""
        return self.manifest()[0].digest

    def write(self, reference: str, *, tls_verify: bool = True, observer: CopyObserver | None = None) -> Descriptor:
        """Write the image to ``reference`` (``oci:DIR:TAG``, ``docker://HOST/REPO:TAG`` ...); the root written.

        The destination is written all or nothing where it can be; a store that
        cannot hold OCI documents gets them converted by the copy engine.
        """
        return _send([self], None, reference, tls_verify, observer)

    # ------------------------------------------------------------------------------------------ internals

    def _entry(self, created_by: str, empty: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"created": self.created, "created_by": created_by}
        if empty:
            entry["empty_layer"] = True
        return entry

    def _lower(self, path: str) -> Lower | None:
        """What the layers below show at the literal ``path``: this build's own layers, then the base."""
        for layer in reversed(self._layers):
            if layer.delta is None:
                break
            if path in layer.delta.entries:
                return layer.delta.entries[path]
            if any(path == gone or path.startswith(f"{gone}/") for gone in layer.delta.whiteouts):
                return None
            if any(path.startswith(f"{directory.rstrip('/')}/") for directory in layer.delta.opaque):
                return None
        return self._base.lookup(path) if self._base is not None else None

    def _layer(self, parts: list[Part], created_by: str) -> Builder:
        plan = plan_entries(parts, self.stamp, self._lower)
        blob = _spool(lambda out: write_entries(plan, out), self.compression)
        return self._with_layer(blob, plan.delta(), created_by, plan.notes)

    def _with_layer(
        self, blob: tuple[_Spool, LayerBlob], delta: Delta, created_by: str, notes: Sequence[str]
    ) -> Builder:
        spool, written = blob
        media_type = build.layer_type("oci", self.compression)
        assert media_type is not None
        layer = _Layer(Descriptor(media_type, written.digest, written.size), written.diff_id, spool, delta)
        return dataclasses.replace(
            self,
            _layers=(*self._layers, layer),
            history_entries=(*self.history_entries, self._entry(created_by, False)),
            notes=(*self.notes, *notes),
        )


def write_index(
    builders: Sequence[Builder],
    reference: str,
    *,
    annotations: Mapping[str, str] | None = None,
    tls_verify: bool = True,
    observer: CopyObserver | None = None,
) -> Descriptor:
    """Write a multi-platform index of ``builders`` (one per platform) to ``reference``; the index written."""
    if not builders:
        raise InvalidInputError("write_index: no images given")
    platforms = [str(builder.platform) for builder in builders]
    repeated = sorted({platform for platform in platforms if platforms.count(platform) > 1})
    if repeated:
        raise InvalidInputError(f"write_index: more than one image for {', '.join(repeated)}")
    return _send(builders, dict(annotations or {}), reference, tls_verify, observer)


def host_architecture() -> str:
    """This machine's architecture as OCI names it (amd64, arm64 ...)."""
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


class _BuiltStore(Store):
    """The built images as a read-only store the copy engine reads from: documents in memory, blobs in spools."""

    def __init__(self, root: Descriptor, documents: dict[Digest, bytes], builders: Sequence[Builder]) -> None:
        self.reference = "ocilab build"
        self._root = root
        self._documents = documents
        self._spools = {
            layer.descriptor.digest: layer.spool.path
            for builder in builders
            for layer in builder._layers
            if layer.spool is not None
        }
        self._bases: list[tuple[set[Digest], Store]] = []
        try:
            for builder in builders:
                if builder._base is not None:
                    digests = {layer.descriptor.digest for layer in builder._layers if layer.spool is None}
                    self._bases.append((digests, builder._base.open()))
        except BaseException:
            self.close()
            raise

    def root(self) -> Descriptor:
        return self._root

    def open_raw(self, descriptor: Descriptor) -> BinaryIO:
        if descriptor.digest in self._documents:
            return io.BytesIO(self._documents[descriptor.digest])
        if descriptor.digest in self._spools:
            return self._spools[descriptor.digest].open("rb")
        for digests, store in self._bases:
            if descriptor.digest in digests:
                return store.open_raw(descriptor)
        raise InvalidInputError(f"ocilab build: {descriptor.digest} is not part of the build")  # pragma: no cover

    def close(self) -> None:
        for _, store in self._bases:
            store.close()


def _send(
    builders: Sequence[Builder],
    index_annotations: dict[str, str] | None,
    reference: str,
    tls_verify: bool,
    observer: CopyObserver | None,
) -> Descriptor:
    """Copy the images (as one image, or as an index when ``index_annotations`` is not None) to ``reference``."""
    documents: dict[Digest, bytes] = {}
    manifests = []
    for builder in builders:
        config = builder.config_bytes()
        documents[Digest.of_bytes(config)] = config
        descriptor, raw = builder.manifest()
        documents[descriptor.digest] = raw
        manifests.append(descriptor)
    root = dataclasses.replace(manifests[0], platform=None)
    if index_annotations is not None:
        index = build.build_index(manifests, annotations=index_annotations)
        root = build.describe(index)
        documents[root.digest] = index.raw
    with _BuiltStore(root, documents, builders) as source, open_destination(reference, tls_verify) as writer:
        report = copy_image(source, writer, all_platforms=True, observer=observer)
    assert report.root is not None
    return report.root


def _spool(produce: Callable[[BinaryIO], None], compression: str) -> tuple[_Spool, LayerBlob]:
    spool = _Spool()
    try:
        with spool.path.open("wb") as out:
            written = write_layer(produce, compression, out)
    except BaseException:
        spool.path.unlink(missing_ok=True)
        raise
    return spool, written


def _epoch(timestamp: int | str | None) -> tuple[int, bool]:
    """The epoch for times and whether mtimes are clamped to it."""
    if timestamp == "now":
        return int(time.time()), False
    if isinstance(timestamp, int):
        return timestamp, True
    if timestamp is not None:
        raise InvalidInputError(f"timestamp {timestamp!r}: give an epoch (seconds) or 'now'")
    text = os.environ.get(EPOCH_ENV, "0")
    if not text.isdigit():
        raise InvalidInputError(f"{EPOCH_ENV}={text!r} must be a number of seconds since 1970")
    return int(text), True


def _platform(platform: str | Platform) -> Platform:
    return Platform.parse(platform) if isinstance(platform, str) else platform


def _as_oci(layer: Descriptor) -> Descriptor:
    """A base layer's descriptor in an OCI manifest: Docker layer media types become their OCI twins (same bytes)."""
    compression = mt.layer_compression(layer.media_type)
    if build.format_of(layer.media_type) != "docker" or compression is None or layer.media_type in mt.NONDISTRIBUTABLE:
        return layer
    media_type = build.layer_type("oci", compression)
    assert media_type is not None
    return dataclasses.replace(layer, media_type=media_type)


def _argv(value: Sequence[str], field: str) -> list[str]:
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        raise ValidationError(field, f'must be a list of strings, like ["/bin/sh", "-c"], not {value!r}')
    return list(value)


def _env_pairs(env: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    """Environment variables by name; InvalidInputError for an item that is not NAME=VALUE."""
    if isinstance(env, Mapping):
        items = [f"{name}={value}" for name, value in env.items()]
    else:
        items = list(env)
    pairs: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name or any(char.isspace() for char in name):
            raise InvalidInputError(f"env {item!r}: write NAME=VALUE (a name without spaces, then '=')")
        pairs[name] = value
    return pairs


def _port(port: int | str) -> str:
    """``80`` -> ``80/tcp``; InvalidInputError for anything but PORT[/tcp|udp|sctp] with 1 <= PORT <= 65535."""
    number, _, protocol = str(port).partition("/")
    protocol = protocol or "tcp"
    if not number.isdigit() or not 1 <= int(number) <= 65535 or protocol not in _PROTOCOLS:
        raise InvalidInputError(f"expose {port!r}: write PORT or PORT/PROTOCOL (tcp, udp, sctp), PORT 1-65535")
    return f"{int(number)}/{protocol}"


def assemble(
    base: str = "scratch",
    *,
    add: Sequence[tuple[str | Path, str]] = (),
    delete: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
    platform: str | None = None,
    compression: str = "gzip",
    timestamp: int | str | None = None,
    tls_verify: bool = True,
) -> Builder:
    """The build ``ocilab build`` describes: ``base``, one layer per ``(source, dest)`` in ``add``, one layer
    of whiteouts for ``delete``, then the ``config`` fields (``Builder.config``'s keywords).

    ``platform`` picks the base from an index, or declares a scratch image's platform.
    """
    image = Builder.from_image(base, platform, compression=compression, timestamp=timestamp, tls_verify=tls_verify)
    for source, dest in add:
        image = image.add(source, dest)
    if delete:
        image = image.delete(*delete)
    if config:
        image = image.config(**config)
    return image
