"""The Python entry points a notebook uses: ``ocilab.open``, ``resolve``, ``validate``, ``doctor``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocilab.model import Descriptor, Platform
from ocilab.operations.validate import ValidationReport, validate_store
from ocilab.stores.image import Image, ImageIndex, load_image
from ocilab.stores.image import resolve as resolve_store
from ocilab.stores.transports import open_store

if TYPE_CHECKING:
    import pandas

    from ocilab.engines.docker_build import DockerBuild, Log
    from ocilab.operations.copy import CopyReport
    from ocilab.operations.remove import Removal
    from ocilab.operations.runtime import RunResult
    from ocilab.operations.unpack import UnpackReport


def open(reference: str, platform: str | Platform | None = None, tls_verify: bool = True) -> Image:  # noqa: A001
    """The image named by a transport string (``oci:DIR:TAG``, ``docker://HOST/REPO:TAG`` ...).

    From an index, the image for ``platform`` (``"linux/arm64"``; default linux/amd64).
    The image keeps its store open: use it as a context manager or call ``close()``.
    """
    wanted = Platform.parse(platform) if isinstance(platform, str) else platform
    store = open_store(reference, tls_verify=tls_verify)
    try:
        return load_image(store, wanted)
    except BaseException:
        store.close()
        raise


def resolve(reference: str, tls_verify: bool = True) -> Image | ImageIndex:
    """What the reference names, as it is: an ``Image`` or an ``ImageIndex``."""
    store = open_store(reference, tls_verify=tls_verify)
    try:
        return resolve_store(store)
    except BaseException:
        store.close()
        raise


def validate(reference: str, tls_verify: bool = True) -> ValidationReport:
    """Check a whole image: every blob present, digests and sizes right, diff_ids true to the layers."""
    with open_store(reference, tls_verify=tls_verify) as store:
        return validate_store(store)


def doctor() -> pandas.DataFrame:
    """Which components are present and working, with versions and how to get what is missing."""
    import pandas

    from ocilab.operations.components import doctor as probe
    from ocilab.operations.components import doctor_json

    return pandas.DataFrame(doctor_json(probe()))


@contextmanager
def _opened(image: Image | str, platform: str | Platform | None = None) -> Iterator[Image]:
    """The image itself, or the image a reference string names, for ``platform`` from an index (closed on exit)."""
    if isinstance(image, str):
        with open(image, platform) as opened:
            yield opened
    else:
        yield image


def layer_table(image: Image | str, platform: str | Platform | None = None) -> pandas.DataFrame:
    """One row per layer from the manifest and config alone (no layer is read).

    Columns index, digest, diff_id, size, media_type (short: ``oci.layer.gzip``), created_by.
    """
    import pandas

    from ocilab.present.rows import LAYER_COLUMNS, layer_rows

    with _opened(image, platform) as opened:
        return pandas.DataFrame(layer_rows(opened), columns=LAYER_COLUMNS)


def history(image: Image | str, platform: str | Platform | None = None) -> pandas.DataFrame:
    """One row per build step: created, created_by, empty_layer, layer (the one it made, or empty), comment."""
    import pandas

    from ocilab.present.rows import HISTORY_COLUMNS, history_rows

    with _opened(image, platform) as opened:
        return pandas.DataFrame(history_rows(opened), columns=HISTORY_COLUMNS).astype({"layer": "Int64"})


def layers(image: Image | str, platform: str | Platform | None = None) -> pandas.DataFrame:
    """One row per layer: descriptor, build step, and counts of paths added, modified and removed.

    Every layer is read. ``platform`` (``"linux/arm64"``) picks the image when a reference string names an index.
    """
    import pandas

    from ocilab.operations.analysis import layer_summaries
    from ocilab.present.rows import SUMMARY_COLUMNS, summary_rows

    with _opened(image, platform) as opened:
        return pandas.DataFrame(summary_rows(layer_summaries(opened)), columns=SUMMARY_COLUMNS)


def changes(
    image: Image | str, layer: int | None = None, strict: bool = False, platform: str | Platform | None = None
) -> pandas.DataFrame:
    """Each layer's changeset (or only layer ``layer``'s): columns layer, path, change, type, size."""
    import pandas

    from ocilab.operations.analysis import changes as layer_changes
    from ocilab.present.rows import CHANGE_COLUMNS, change_rows

    with _opened(image, platform) as opened:
        return pandas.DataFrame(change_rows(layer_changes(opened, layer, strict)), columns=CHANGE_COLUMNS)


def diff(
    a: Image | str, b: Image | str, strict: bool = False, platform: str | Platform | None = None
) -> pandas.DataFrame:
    """Files that differ from ``a`` to ``b`` (path, change, type, size_a, size_b).

    ``frame.attrs["config"]`` holds the config keys that differ and
    ``frame.attrs["layers"]`` the layers shared by content (diff_id), those
    only in one image, and the shared ones stored with another compression.
    ``platform`` picks both images from indexes.
    """
    import pandas

    from ocilab.operations.analysis import diff_images
    from ocilab.present.rows import DIFF_COLUMNS, diff_document

    with _opened(a, platform) as first, _opened(b, platform) as second:
        document = diff_document(diff_images(first, second, strict))
    frame = pandas.DataFrame(document["files"], columns=DIFF_COLUMNS).astype({"size_a": "Int64", "size_b": "Int64"})
    frame.attrs.update(config=document["config"], layers=document["layers"])
    return frame


def efficiency(image: Image | str, top: int | None = None, platform: str | Platform | None = None) -> pandas.DataFrame:
    """The paths that waste bytes (path, occurrences, wasted_bytes, visible), largest first; ``top`` of them.

    ``frame.attrs`` holds the totals: efficiency, total_bytes, final_bytes,
    wasted_bytes and wasted_percent.
    """
    import pandas

    from ocilab.operations.analysis import efficiency as measure
    from ocilab.present.rows import WASTE_COLUMNS, efficiency_document

    with _opened(image, platform) as opened:
        document = efficiency_document(measure(opened), top)
    frame = pandas.DataFrame(document.pop("files"), columns=WASTE_COLUMNS)
    frame.attrs.update(document)
    return frame


def copy(
    source: str,
    destination: str,
    *,
    platform: str | Platform | None = None,
    all_platforms: bool = False,
    image_format: str | None = None,
    compression: str | None = None,
    quiet: bool = False,
    src_tls_verify: bool = True,
    dest_tls_verify: bool = True,
) -> CopyReport:
    """Copy an image between any two stores (``"oci:out:1"``, ``"docker://127.0.0.1:5000/demo:1"`` ...).

    Digests are kept unless ``image_format`` (``"oci"``/``"docker"``) or
    ``compression`` (``"gzip"``/``"zstd"``) asks for a conversion; the
    report's ``notes`` say what was converted. The destination is written all
    or nothing where it can be (layouts, archives); the tag is set last.
    """
    from ocilab.operations.copy import copy_image
    from ocilab.present.progress import observer
    from ocilab.stores.transports import open_destination

    wanted = Platform.parse(platform) if isinstance(platform, str) else platform
    with (
        open_store(source, tls_verify=src_tls_verify) as reader,
        open_destination(destination, dest_tls_verify) as writer,
    ):
        return copy_image(
            reader,
            writer,
            platform=wanted,
            all_platforms=all_platforms,
            image_format=image_format,
            compression=compression,
            observer=observer(quiet),
        )


def remove(reference: str, tls_verify: bool = True) -> Removal:
    """Remove what ``reference`` names: a registry tag or manifest, a layout's tag, an engine's image.

    Nothing is freed on disk until garbage collection; the removal's ``note`` says which collector frees it.
    """
    from ocilab.operations.remove import remove as remove_reference

    return remove_reference(reference, tls_verify)


def build(
    tag: str,
    base: str = "scratch",
    *,
    add: Sequence[tuple[str | Path, str]] = (),
    delete: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
    platform: str | None = None,
    compression: str = "gzip",
    timestamp: int | str | None = None,
    quiet: bool = False,
    tls_verify: bool = True,
) -> Descriptor:
    """Build as ``ocilab build`` does and write the image to ``tag``; the descriptor written.

    ``add`` is ``[(source, dest), ...]`` (a Dockerfile COPY each, one layer
    each), ``delete`` paths become one layer of whiteouts, ``config`` takes
    ``ocilab.Builder.config``'s keywords (``{"cmd": ["/bin/sh"], "env": {"A": "1"}}``).
    For more steps, use ``ocilab.Builder`` itself.
    """
    from ocilab.operations.builder import assemble
    from ocilab.present.progress import observer

    image = assemble(
        base,
        add=add,
        delete=delete,
        config=config,
        platform=platform,
        compression=compression,
        timestamp=timestamp,
        tls_verify=tls_verify,
    )
    return image.write(tag, tls_verify=tls_verify, observer=observer(quiet))


def docker_build(
    context: str | Path,
    tag: str,
    *,
    dockerfile: str | Path | None = None,
    buildargs: Mapping[str, str] | None = None,
    nocache: bool = False,
    log: Log | None = None,
    quiet: bool = False,
    engine: str | None = None,
) -> DockerBuild:
    """Build ``context`` with the Docker engine as ``tag``, its log shown live; which step made which layer.

    ``result.steps`` is a DataFrame, one row per Dockerfile instruction (step,
    instruction, layer, diff_id, size, cached, seconds, image; <NA> layer for a
    step that made none), ``result.image`` the image ID, ``result.reference``
    what ``ocilab.open`` takes. Each log line goes to ``log`` (default: printed
    in a notebook, stderr in a terminal; nothing with ``quiet``). ``dockerfile``
    is relative to the context. A failed step raises ``DockerBuildError``, with
    the partial build as its ``build``; no engine raises ComponentUnavailableError.
    ``engine``: ``docker``, ``podman`` or ``auto`` (default ``OCILAB_ENGINE``, else ``auto``).
    """
    from ocilab.engines.docker_build import docker_build as run_build
    from ocilab.present.docker_build_commands import live_log

    return run_build(
        context,
        tag,
        dockerfile=dockerfile,
        buildargs=buildargs,
        nocache=nocache,
        log=None if quiet else (log or live_log()),
        engine=engine,
    )


def unpack(
    image: Image | str,
    bundle: str | Path,
    *,
    platform: str | Platform | None = None,
    rootless: bool = False,
    command: Sequence[str] | None = None,
    tls_verify: bool = True,
) -> UnpackReport:
    """Unpack an image into an OCI runtime bundle (``bundle/rootfs`` and ``bundle/config.json``), as ``ocilab unpack``.

    ``bundle`` must be absent or an empty directory; it is created mode 0700,
    and a failure leaves nothing behind. ``command`` replaces the image's Cmd.
    """
    from ocilab.operations.unpack import unpack as unpack_image

    if not isinstance(image, str):
        return unpack_image(image, bundle, rootless=rootless, command=command)
    with open(image, platform, tls_verify) as opened:
        return unpack_image(opened, bundle, rootless=rootless, command=command)


def run(
    target: str | Path,
    command: Sequence[str] | None = None,
    *,
    engine: str = "runc",
    platform: str | Platform | None = None,
    rootless: bool = False,
) -> RunResult:
    """Run an image reference (or a bundle directory, with runc) and return its exit code and output.

    ``ocilab.runtime.Container`` gives the runc lifecycle one step at a time.
    """
    from ocilab.operations.runtime import run as run_target

    return run_target(target, command, engine=engine, platform=platform, rootless=rootless)
